"""Annotation survey: python -m launch.annotate --config.images=DIR --config.store=ratings.sqlite
and its export: python -m launch.annotate --config.store=ratings.sqlite --config.export=out.csv"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # The folder (or file, or multi-page TIFF) of slices to rate; read with tiqa.io.
    config.images = ""
    # The SQLite file that keeps observers, presentation orders and every rating.
    config.store = "ratings.sqlite"
    # Empty: serve the survey. A CSV path: write the annotations (path,score,std,n,ci95) instead.
    config.export = ""
    # The page is served on loopback only, unless another host is named; then `token` is
    # required and every request must carry it (?token=, the X-TIQA-Token header or the cookie).
    config.host = "127.0.0.1"
    config.port = 8080  # 0: any free port (the address is printed)
    config.token = ""
    # About this share of the images is shown a second time, to measure each observer's consistency.
    config.repeat_fraction = 0.1
    config.seed = 0  # with the observer's name, seeds their presentation order
    # A slice whose centre crop, distorted at levels 1..5, illustrates the instruction; empty:
    # the first image of `images`.
    config.examples = ""
    config.example_size = 128  # side of that crop, in pixels
    config.normalisation = "auto"  # how slices become 8-bit grey (tiqa.io modes)
    # Export: observer screening (tiqa.annotate.export: auto | bt500 | correlation | both | none).
    config.screening = "auto"
    config.min_correlation = 0.5  # correlation rule: drop an observer below this r
    config.bt500_min_observers = 4  # BT.500 needs images rated by at least this many observers
    config.min_common_images = 5  # images an observer must share with the others to be judged
    return config
