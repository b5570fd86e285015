"""Ablation: python -m launch.ablate --config=configs/ablate.py[:smoke] --config.sweeps='("margin=2,4",)'

A base pipeline (the rank, fine-tune and evaluation configs below) plus a list of sweeps. Each
sweep is "name=value1,value2,...": a name of tiqa.ablation.PARAMETERS (margin, observers,
kinds, backbone, pretrained, rank_pretraining, originals, rank_epochs, finetune_epochs) or any
dotted key of this config under rank. or finetune. (e.g. "rank.rank.learning_rate=1e-4,3e-5").
Values are separated by commas outside brackets; each is a Python literal or a bare word (a
string), and for a tuple-valued key a bare "ssim+gmsd" is the tuple ('ssim', 'gmsd'):
"observers=ssim+gmsd,mse+psnr+ssim" or "observers=('ssim','gmsd'),('mse',)".
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
    config.sweeps = ("rank_pretraining=True,False", "originals=2,5,11")
    config.seeds = (0, 1)  # every trial runs once per seed (the training phases' seed)
    # False: one parameter at a time from the base (the base trial run once and shared);
    # True: every combination of the swept values.
    config.grid = False
    # The result column plotted against each swept parameter (overall SROCC against the
    # projected labels; also plcc, krocc, rmse, srocc_level_<kind>, train_seconds).
    config.plot_metric = "srocc"
    # Not a training seed: with an empty evaluate.input the held-out phantom is a scan of its own.
    config.evaluate.seed = 100
    if variant == "smoke":
        config.workdir = "runs/smoke/ablation"
        config.sweeps = ("rank_pretraining=True,False",)
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
