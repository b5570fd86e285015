"""Comparison: python -m launch.compare --config.input=HELD_OUT [--config.checkpoint=DIR]
[--config.rankiqa_checkpoint=DIR] [--config.brisque_training.input=TRAINING_SLICES]"""

import ml_collections
from ml_collections import config_dict

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.checkpoint = ""  # TIQA's work directory or exported model; empty: the shipped one
    config.rankiqa_checkpoint = ""  # a VGG16 fine-tune (model.backbone=vgg16); empty: left out
    config.output = "runs/compare"
    common.add_data_source(config)  # `input`: the held-out slices
    # Crops at the slices' own pixels (True) or resized to `resize` (False, the paper's
    # protocol); None: as the TIQA model was trained (model.json `own_pixels`), the crops a
    # user's scores come from. Every contender scores the same crops.
    config.own_pixels = config_dict.placeholder(bool)
    common.add_projection(config)
    config.distortion_backend = "skimage"  # independent of the JAX distortions TIQA trained on
    config.seed = 1
    config.batch_size = 64
    config.bootstrap = 1000  # resamples for the 95% intervals
    # Krasula: a pair of images differs when their labels are more than this apart (1..5 scale).
    config.dmos_threshold = 0.5
    # Phantom scans whose quality order is known: listed from the worst acquisition to the best.
    config.phantom_acquisitions = ml_collections.ConfigDict()
    config.phantom_acquisitions.photons = (2e3, 5e3, 2e4, 1e5)
    config.phantom_acquisitions.gain_error_std = (0.008, 0.004, 0.002, 0.0)
    config.phantom_acquisitions.slices = 4
    config.phantom_acquisitions.size = 288
    config.phantom_acquisitions.seed = 7
    # `brisque_model`: a retrained BRISQUE directory (svm.txt, scaling.json); empty: fitted
    # now on the slices of `brisque_training` and saved to output/brisque_retrained.
    common.add_brisque_training(config)
    if variant == "smoke":
        config.output = "runs/smoke/compare"
        config.bootstrap = 20
        config.resize, config.crop = 80, 64
        config.phantom.slices, config.phantom.size = 2, 96
        config.phantom_acquisitions.photons = (2e3, 1e5)
        config.phantom_acquisitions.gain_error_std = (0.008, 0.0)
        config.phantom_acquisitions.slices = 2
        config.phantom_acquisitions.size = 96
        common.apply_brisque_training_smoke(config)
    elif variant:
        raise ValueError(f"unknown compare config variant {variant!r}; known: smoke")
    return config
