"""Fine-tune phase: python -m launch.finetune --config=configs/finetune.py[:smoke] --config.rank_checkpoint=DIR"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.workdir = "runs/finetune"
    # The rank phase's work directory, or an exported model (e.g. tiqa/assets/default_model to
    # tune the shipped model further); empty starts from the model below (an ablation).
    config.rank_checkpoint = "runs/rank"
    common.add_data_source(config)
    common.add_model(config)
    common.add_runtime(config)
    common.add_projection(config)
    config.finetune = ml_collections.ConfigDict()
    # Use only the first N reference slices of the pool (0: all): the number of annotated
    # originals. With the phantom mixed in, the input's slices come first.
    config.finetune.originals = 0
    # Steps per epoch; 0: one pass over the pool. A fixed number keeps the training budget
    # the same when `originals` changes (an ablation of the number of annotated originals).
    config.finetune.epoch_steps = 0
    config.finetune.originals_per_batch = 1
    config.finetune.epochs = 20
    config.finetune.learning_rate = 5e-5
    config.finetune.decay_every_epochs = 4
    config.finetune.decay_factor = 0.5
    # > 0: add this weight times the hinge rank loss over each group's levels (an original
    # under one kind, an object under one factor) to the MSE, with `rank_margin` on the label
    # scale: the order of neighbouring levels, whose labels can be close, is asked for itself.
    config.finetune.rank_weight = 0.0
    config.finetune.rank_margin = 0.1
    # Fit label ~ a * score + c on a few batches and fold it into the output layer first, so
    # the rank network's scale (pairs 6 apart) does not cost the fine-tune its first epochs.
    config.finetune.calibrate_head = True
    config.finetune.calibration_steps = 4
    # 'frozen': measure BatchNorm statistics on `population_batches` batches first and train
    # with them fixed. Each batch is one original's distortions, so with 'batch' the network
    # learns on statistics of a single slice's series, which scoring never has (held out, the
    # scores came out compressed: originals at 2.7 for a label of 4).
    # 'kept': train with the starting network's statistics fixed, measuring nothing (to tune an
    # exported model further without re-measuring; tiqa.phases.training.BATCH_NORM_MODES).
    config.finetune.batch_norm = "frozen"
    config.finetune.population_batches = 16
    # -1: every parameter trains. K >= 0: only the last K blocks of the EfficientNet trunk, its
    # head and the score head train; the stem and earlier blocks stay the start's (to tune a
    # shipped network further without moving how its early layers read fine detail).
    config.finetune.trained_blocks = -1
    # > 0: add this weight times the squared difference from the starting network's score of
    # each image that weighs fully (originals, plain objects' ladders; not the lighter texture
    # and denoising ladders), so a shipped network learns those without moving the rest.
    config.finetune.anchor_weight = 0.0
    if variant == "smoke":
        common.apply_smoke(config)
        config.workdir = "runs/smoke/finetune"
        config.rank_checkpoint = "runs/smoke/rank"
        config.finetune.epochs = 2
        config.finetune.originals_per_batch = 2
        config.finetune.learning_rate = 1e-3
    elif variant:
        raise ValueError(f"unknown finetune config variant {variant!r}; known: smoke")
    return config
