"""D-LinkNet training on labelled slices (configs/segmentation.py): the segmentation half of
the paper (SPEC.md 1.8), with the score network's machinery (`loop.make_train_step`,
`loop.run`) and the batches and loss of `tiqa.train.segmentation`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib

import jax
import optax
from flax import nnx

from tiqa import checkpoints, errors, io, phantom
from tiqa.models.dlinknet import DLinkNet, DLinkNetConfig
from tiqa.phases import settings, training
from tiqa.train import loop, segmentation


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    learning_rate: float
    lr_drop_factor: float
    lr_drop_steps: tuple[int, ...]
    plateau_patience: int


@dataclasses.dataclass(frozen=True)
class LossSettings:
    bce_weight: float
    dice_weight: float


@dataclasses.dataclass(frozen=True)
class SegmentationSettings:
    """configs/segmentation.py, read once."""
    images: str
    labels: str
    label_suffix: str
    positive_class: int
    crop: int
    batch_size: int
    intensity_jitter: float
    epochs: int
    steps_per_epoch: int
    run: training.Runtime  # work directory, seed, logging, checkpoints, devices, resume
    phantom: phantom.PhantomSettings
    model: DLinkNetConfig
    loss: LossSettings
    optimizer: OptimizerSettings
    config: dict  # the whole config as data, for the resume check


def read_settings(config) -> SegmentationSettings:
    """configs/segmentation.py as frozen settings; a bad key or value is refused here."""
    return settings.block(
        SegmentationSettings, config,
        run=training.runtime(config),
        phantom=settings.block(phantom.PhantomSettings, config.phantom, "config.phantom"),
        model=model_config(config),
        loss=settings.block(LossSettings, config.loss, "config.loss"),
        optimizer=settings.block(OptimizerSettings, config.optimizer, "config.optimizer"),
        config=config.to_dict())


def _optimizer(config: OptimizerSettings, steps_per_epoch: int) -> optax.GradientTransformation:
    schedule = optax.piecewise_constant_schedule(
        config.learning_rate,
        {int(step): config.lr_drop_factor for step in config.lr_drop_steps}
    ) if config.lr_drop_steps else optax.constant_schedule(config.learning_rate)
    transforms = [optax.inject_hyperparams(optax.adam)(learning_rate=schedule)]
    if config.plateau_patience > 0:
        # lr / 5 when the loss stops improving for `plateau_patience` logged windows of steps.
        transforms.append(optax.contrib.reduce_on_plateau(
            factor=config.lr_drop_factor, patience=config.plateau_patience,
            accumulation_size=steps_per_epoch))
    return optax.chain(*transforms)


def model_config(config) -> DLinkNetConfig:
    return DLinkNetConfig.from_mapping(config.model)


def load_training_pool(config: SegmentationSettings) -> segmentation.LabelledPool:
    images, label_maps = [], []
    if config.images:
        paths = io.split_paths(config.images)
        images, label_maps = segmentation.read_labelled_slices(paths, config.labels, config.label_suffix)
    if not config.images or config.phantom.mix_with_input:
        volume, labels = phantom.phantom_volume(
            config.run.seed, n_slices=config.phantom.slices, size=config.phantom.size,
            photons=config.phantom.photons, gain_error_std=config.phantom.gain_error_std)
        images += list(phantom.to_unit_range(volume))
        label_maps += list(labels)
    targets = [segmentation.target_classes(label_map, config.model.num_classes,
                                           config.positive_class)
               for label_map in label_maps]
    return segmentation.build_labelled_pool(images, targets)


def run(config) -> pathlib.Path:
    """Runs the D-LinkNet training described by configs/segmentation.py."""
    config = read_settings(config)
    run_ = config.run
    workdir = pathlib.Path(run_.workdir)
    if config.crop % 32:
        raise errors.InputError(f"config.crop={config.crop} must be a multiple of 32 (D-LinkNet)")
    loop.check_resume(workdir, config.config, run_.resume_with_changes)
    loop.initialise_distributed(run_.distributed)
    mesh = loop.data_mesh(run_.num_devices)
    loop.check_batch_divides(config.batch_size, mesh)
    pool = load_training_pool(config)
    logging.info("segmentation pool: %d slices", pool.images.shape[0])
    model_key, data_key, train_key = training.run_keys(run_)
    model_cfg = config.model
    model = nnx.jit(lambda: DLinkNet(model_cfg, rngs=nnx.Rngs(params=model_key)))()
    optimizer = _optimizer(config.optimizer, config.steps_per_epoch)
    graphdef, state = loop.init_state(model, optimizer)
    checkpoints.write_run_info(workdir, {checkpoints.SEGMENTATION_INFO_KEY: model_cfg.to_dict(),
                                         "positive_class": config.positive_class,
                                         "phase": "segmentation"})
    loss_fn = functools.partial(segmentation.segmentation_loss, bce_weight=config.loss.bce_weight,
                                dice_weight=config.loss.dice_weight)
    make_batch = functools.partial(segmentation.augmented_batch, key=data_key, batch_size=config.batch_size,
                                   crop=config.crop, jitter=config.intensity_jitter)
    loop.run(workdir=workdir, state=state,
             train_step=loop.make_train_step(graphdef, optimizer,
                                             lambda logits, batch: loss_fn(logits, batch["labels"])),
             make_batch=make_batch, batch_inputs=pool,
             num_steps=config.epochs * config.steps_per_epoch, key=train_key, mesh=mesh,
             images_per_step=config.batch_size, log_every=run_.log_every,
             checkpoint_every=run_.checkpoint_every, keep_checkpoints=run_.keep_checkpoints,
             description="segmentation")
    return workdir
