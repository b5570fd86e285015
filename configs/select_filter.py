"""Pre-processing selection: python -m launch.select_filter --config.input=VOLUME [--config.output=DIR]"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.input = ""  # a volume (TIFF stack, scan.h5[:/dataset], scan.zarr), a folder of slices or a slice
    config.output = "runs/select_filter"
    # Slices sampled evenly through the volume (0: all).
    config.samples = 8
    # Sampled among these slices only: '' (all), an index or a Python slice ('100:900').
    config.slices = ""
    # Empty: the default grid (tiqa.filters.CANDIDATES). Otherwise e.g.
    # "median:radius=1,2;gaussian:sigma=0.5,1;ring_removal:radial_window=9,21:sectors=1,2;identity"
    config.candidates = ""
    config.checkpoint = ""  # empty: the shipped default model
    config.crops = "grid"
    # Score slices larger than the model's resize (255 px) on crops at their own pixels, not
    # after the area resize that halves a 512 px slice and shrinks a 2048 px one 8 times: the
    # network then sees a pixel or two of blur and the noise at the scan's pixels
    # (docs/acquisition_ladder.md, "Scoring at the slice's own pixels"). About (side / 224)^2
    # crops a slice on the grid (100 for 2048 px), so slower; scores are not comparable with
    # those of the default path.
    config.own_pixels = False
    config.batch_size = 8
    config.normalisation = "auto"
    config.tiff_planes = "volume"  # as in configs/score.py
    # Check the sampled slices' angular sampling first (tiqa.view_check), and say in the output
    # when they look made from too few views: the score orders such scans poorly.
    config.view_check = True
    return config
