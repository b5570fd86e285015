"""Pre-processing selection: python -m launch.select_filter --config.input=VOLUME [--config.output=DIR]"""

import ml_collections
from ml_collections import config_dict


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
    # Slices larger than the model's resize scored on crops at their own pixels, as
    # configs/score.py's own_pixels (it sees the blur and noise a filter trades); None: as the
    # model was trained.
    config.own_pixels = config_dict.placeholder(bool)
    config.batch_size = 8
    config.normalisation = "auto"
    config.tiff_planes = "volume"  # as in configs/score.py
    # Check the sampled slices' angular sampling first (tiqa.view_check), and say in the output
    # when they look made from too few views: the score orders such scans poorly.
    config.view_check = True
    return config
