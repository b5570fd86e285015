"""Evaluation: python -m launch.evaluate --config.checkpoint=DIR --config.input=HELD_OUT [--config.output=DIR]"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # A training work directory (fine-tune or rank) with model.json and checkpoints/.
    config.checkpoint = "runs/finetune"
    config.output = "runs/evaluation"
    common.add_data_source(config)  # the held-out slices; empty input: a phantom
    common.add_projection(config)
    config.seed = 1  # different from training's, so the distortions are new draws
    # 'jax' (tiqa.distortions) or 'skimage' (scikit-image and a numpy ring loop, one image at a
    # time: held-out distortions made independently of the code under test).
    config.distortion_backend = "jax"
    config.batch_size = 64  # images per forward pass
    config.projection_batch = 8  # originals distorted and labelled per call
    if variant == "smoke":
        config.checkpoint = "runs/smoke/finetune"
        config.output = "runs/smoke/evaluation"
        config.phantom.slices = 3
        config.phantom.size = 96
        config.resize = 80
        config.crop = 64
        config.batch_size = 32
    elif variant:
        raise ValueError(f"unknown evaluate config variant {variant!r}; known: smoke")
    return config
