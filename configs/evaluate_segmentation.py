"""Segmentation evaluation: python -m launch.evaluate_segmentation --config.checkpoint=runs/segmentation"""

import ml_collections

NANOCT = "../shared/data/nmc532_nanoct"
GROUP_B = ",".join(f"{NANOCT}/images/{n}.tif" for n in (103, 360, 510, 738, 929, 1098))


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.checkpoint = "runs/segmentation"
    config.output = "runs/segmentation_evaluation"
    # Held-out slices (sub-volume B of the nano-CT data by default) and their label maps.
    config.images = GROUP_B
    config.labels = f"{NANOCT}/labels"
    config.label_suffix = "_label.tif"
    config.threshold = 0.5  # probability above which a pixel is the positive phase
    return config
