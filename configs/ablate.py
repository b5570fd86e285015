"""Ablation: python -m launch.ablate --config=configs/ablate.py[:smoke] \
    --config.sweeps='({"rank.rank.margin": 4.0}, {"finetune.finetune.originals": 2})'

A base pipeline (the rank, fine-tune and evaluation configs below) plus `sweeps`: a tuple of
flattened override dicts, one trial each, applied to the base with
`ConfigDict.update_from_flattened_dict` (keys: dotted keys under rank. or finetune., or
rank_pretraining). On the command line `--config.sweeps` is a Python literal of that tuple (a
list works too; strings quoted, True/False, tuples for tuple-valued keys:
`{"finetune.projection.observers": ("ssim", "gmsd")}`). The base trial always runs first.
"""

import ml_collections

from configs import evaluate, finetune, train_rank


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    if variant not in ("", "smoke"):
        raise ValueError(f"unknown ablate config variant {variant!r}; known: smoke")
    config = ml_collections.ConfigDict()
    config.workdir = "runs/ablation"
    # The base pipeline. Their workdir, rank_checkpoint, checkpoint, output and (training) seed
    # are set per trial by the ablation; evaluate is the same held-out test for every trial.
    config.rank = train_rank.get_config(variant)
    config.finetune = finetune.get_config(variant)
    config.evaluate = evaluate.get_config(variant)
    # False: fine-tune from the model's initial weights (ImageNet for pretrained Lite trunks).
    config.rank_pretraining = True
    config.sweeps = ({"rank_pretraining": False}, {"finetune.finetune.originals": 2},
                     {"finetune.finetune.originals": 5})  # the base: 11 originals
    config.seeds = (0, 1)  # every trial runs once per seed (the training phases' seed)
    # The result column plotted against each swept parameter (overall SROCC against the
    # projected labels; also plcc, krocc, rmse, srocc_level_<kind>, train_seconds).
    config.plot_metric = "srocc"
    # Not a training seed: with an empty evaluate.input the held-out phantom is a scan of its own.
    config.evaluate.seed = 100
    if variant == "smoke":
        config.workdir = "runs/smoke/ablation"
        config.sweeps = ({"rank_pretraining": False},)
        config.seeds = (0,)
        config.rank.rank.epochs = 1
        config.finetune.finetune.epochs = 1
        config.finetune.finetune.population_batches = 2
        config.finetune.finetune.calibration_steps = 2
        return config
    for phase in (config.rank, config.finetune):
        # Sub-volume A's five slices in input (see README) come first, then six phantom slices:
        # originals=5 is the real slices alone, 11 the whole pool. Input empty: the phantom.
        phase.phantom.mix_with_input = True
        phase.phantom.slices = 6
        phase.phantom.gain_error_std = 0.004
    # The study: each trial a few minutes on a 2-core CPU (smaller crops, a few epochs).
    for phase in (config.rank, config.finetune, config.evaluate):
        phase.crop = 128
        phase.resize = 146  # 128 x 255 / 224, the paper's ratio of resize to crop
    for phase in (config.rank, config.finetune):
        phase.log_every = 11
        phase.checkpoint_every = 44
    config.rank.rank.epochs = 8
    config.rank.rank.learning_rate = 1e-4
    config.rank.rank.decay_every_epochs = 4
    config.rank.rank.decay_factor = 0.5
    config.finetune.finetune.epochs = 8
    config.finetune.finetune.learning_rate = 1e-4
    # The base trial uses the whole pool (5 real + 6 phantom slices with the README's input).
    config.finetune.finetune.originals = 11
    # The same number of steps whatever `originals` is (11 = one pass over the whole pool), so
    # the sweep changes the annotations seen and not the training budget.
    config.finetune.finetune.epoch_steps = 11
    return config
