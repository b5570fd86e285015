"""Scoring: python -m launch.score --config.input=PATH --config.output=results.csv [--config.report=DIR]"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # An image, a folder of slices, a volume (multi-page TIFF); several, comma-separated (a comma
    # inside a path is written \,).
    config.input = ""
    config.output = "results.csv"
    # A folder for the report (figures and index.html); empty: no report.
    config.report = ""
    # An exported model folder or a training work directory; empty: the shipped default model.
    config.checkpoint = ""
    # Each slice is scored on its centre crop or on a grid of crops covering it (averaged).
    config.crops = "grid"
    config.batch_size = 16  # slices per call on the accelerator
    config.normalisation = "auto"  # auto | minmax | percentile | none (see tiqa.io)
    # A TIFF page of 3 or 4 sample planes (tifffile's default for a (3|4, H, W) array): a
    # volume of 3 or 4 slices, or one colour image (colour).
    config.tiff_planes = "volume"
    return config
