"""Rank phase: python -m launch.train_rank --config=configs/train_rank.py[:smoke] --config.workdir=DIR"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.workdir = "runs/rank"
    common.add_data_source(config)
    common.add_model(config)
    common.add_runtime(config)
    config.rank = ml_collections.ConfigDict()
    config.rank.kinds = ("blur", "noise", "ring")
    config.rank.margin = 6.0
    # Originals per step; each brings its levels 0..5 of every kind (18 images for 3 kinds).
    config.rank.originals_per_batch = 1
    config.rank.epochs = 30
    config.rank.learning_rate = 3e-5
    # The paper's step decay: lr x factor every `decay_every_epochs`.
    config.rank.decay_every_epochs = 10
    config.rank.decay_factor = 0.1
    # 'batch': BatchNorm normalises with each batch (one original's series) as in the paper;
    # 'frozen': statistics measured on `population_batches` batches first, then kept fixed
    # (see configs/finetune.py). The shipped model's rank phase ran with 'batch'.
    config.rank.batch_norm = "batch"
    config.rank.population_batches = 16
    # Start from an exported model folder or a training work directory (its network and
    # weights); empty: the `model` block's network and ImageNet or random weights.
    config.rank.init_model = ""
    if variant == "smoke":
        common.apply_smoke(config)
        config.workdir = "runs/smoke/rank"
        config.rank.epochs = 2
        config.rank.originals_per_batch = 2
        config.rank.learning_rate = 1e-3
    elif variant:
        raise ValueError(f"unknown train_rank config variant {variant!r}; known: smoke")
    return config
