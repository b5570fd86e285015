"""Acquisition-ladder benchmark: python -m launch.evaluate_acquisition --config.grey=SLICES
--config.label_maps=LABELS [--config.checkpoint=DIR] [--config.output=DIR]"""

import ml_collections
from ml_collections import config_dict

from configs import common
from configs import select_filter


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.checkpoint = ""  # TIQA's work directory or exported model; empty: the shipped one
    config.output = "runs/acquisition_ladder"
    # Held-out objects, comma-separated: grey slices (real reconstructions) and label maps
    # (scanned without texture), plus `phantoms` synthetic electrodes of unseen seeds.
    config.grey = ""
    config.label_maps = ""
    config.phantoms = 3
    config.phantom_seed = 1000  # training phantoms use seeds from 100
    # Stochastic textures made by the project (tiqa.objects.texture_image), drawn from `seed`'s
    # generator: objects whose fine detail is their own, so a score that reads it as noise
    # shows here (clean ones scored low, mild blur scored higher).
    config.textures = 0
    # The scale slices and label maps are drawn at (tiqa.objects.SCALES): "native", their own
    # pixels times a random zoom in 0.75..1.5; "scored", as the scoring path shows a whole slice.
    config.object_scale = "native"
    config.factors = ("photons", "gain_error", "views", "centre_offset", "detector_blur")
    config.output_size = 256  # reconstructed square, scored through the scoring path
    config.max_views = 720
    config.resize = 255
    # Every contender's centre crop at the acquisition's own pixels (no resize) when it is at
    # least `resize`; None: as the TIQA model was trained (model.json `own_pixels`).
    config.own_pixels = config_dict.placeholder(bool)
    config.crop = 224
    config.seed = 1
    config.batch_size = 64
    config.bootstrap = 1000  # resamples of the objects for the 95% intervals
    config.brisque = True  # BRISQUE LIVE and retrained as contenders
    common.add_brisque_training(config)
    # A training ladder bank (.npz, the phases' acquisition.cache): NIQE's pristine model is
    # fitted on its ideal acquisitions. Empty: NIQE is left out.
    config.niqe_pristine = ""
    # D-LinkNet checkpoints (comma-separated, launch.train_segmentation's work directories):
    # every acquisition is segmented and its mask compared with the ideal acquisition's, so
    # the report says what each level costs the segmentation. Empty: not measured.
    config.segmenters = ""
    config.segmentation_threshold = 0.5  # binary segmenters' probability threshold
    # Filter selection on the objects' acquisitions at `filter_photons` photons, checked
    # against the SSIM each candidate gains; `filter_selection` is configs/select_filter.py
    # (its input, output and checkpoint are set here).
    config.filter_check = True
    config.filter_photons = 1e4
    config.filter_selection = select_filter.get_config()
    config.filter_selection.samples = 0  # every object's acquisition
    if variant == "smoke":
        config.output = "runs/smoke/acquisition_ladder"
        config.phantoms = 2
        config.factors = ("photons", "gain_error", "detector_blur")
        config.output_size, config.max_views = 80, 180
        config.resize, config.crop = 80, 64
        config.bootstrap = 20
        config.filter_selection.candidates = "identity;gaussian:sigma=1,3;median:radius=1"
        config.filter_photons = 3e3
        common.apply_brisque_training_smoke(config)
    elif variant:
        raise ValueError(f"unknown evaluate_acquisition config variant {variant!r}; known: smoke")
    return config
