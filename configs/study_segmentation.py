"""The study: python -m launch.study_segmentation --config.score_checkpoint=... --config.segmentation_checkpoint=..."""

import ml_collections
from ml_collections import config_dict

from configs import evaluate_segmentation


def get_config() -> ml_collections.ConfigDict:
    base = evaluate_segmentation.get_config()
    config = ml_collections.ConfigDict()
    config.score_checkpoint = ""  # empty: the shipped default score model
    # The score model's ring check (its model.json `ring_check` penalty), as in launch.score;
    # False: the network alone.
    config.ring_check = True
    # And its view penalty (model.json `view_check`: the comb of sparse views), as in
    # launch.score; False: without it.
    config.view_penalty = True
    # And its centre penalty (model.json `centre_check`: the estimated rotation-centre offset),
    # as in launch.score; False: without it.
    config.centre_penalty = True
    # And its noise penalty (model.json `noise_check`: photon noise in the scored crops), as in
    # launch.score; False: without it.
    config.noise_penalty = True
    # One D-LinkNet checkpoint, or several comma-separated (trainings with other seeds): each
    # image is then segmented by each, and Table 1 is given against the mean F1 with the mean
    # and SD of every segmenter's own table.
    config.segmentation_checkpoint = "runs/segmentation"
    config.output = "runs/segmentation_study"
    config.images = base.images
    config.labels = base.labels
    config.label_suffix = base.label_suffix
    config.threshold = base.threshold
    config.kinds = ("blur", "noise", "ring")
    config.crops = "grid"
    # Score the slices (500 x 572 px) on crops at their own pixels, not resized to 255 px
    # (configs/score.py's own_pixels); None: as the model was trained.
    config.own_pixels = config_dict.placeholder(bool)
    config.seed = 2
    # The kind whose levels the S2 and segmentation figures show (the paper's Fig. 7).
    config.figure_kind = "noise"
    return config
