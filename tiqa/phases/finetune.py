"""The fine-tune phase (SPEC.md 1.5): MSE regression to the human scores of the originals and
the labels projected onto their distorted versions, starting from the rank checkpoint. It
writes `model.json` beside its checkpoints, as the rank phase does.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib

import jax
import numpy as np
import optax

from tiqa import checkpoints, errors, labels
from tiqa.models.forward import eval_forward
from tiqa.models.iqa import IQAConfig, IQANet, build_model, with_output_line
from tiqa.phases import settings, training
from tiqa.train import batches, loop, losses


def calibrate_output(graphdef, state: loop.TrainState, pool, make_batch, steps: int
                     ) -> loop.TrainState:
    """Rescales the output layer so the rank network's scores start on the label scale.

    The rank phase only fixes the order of the scores (pairs m = 6 apart), not their scale, so a
    fine-tune from it would first spend its steps shrinking the output. A least-squares line
    label ~ a * score + c on a few fine-tune batches, folded into the last layer, starts the
    fine-tune where only the finer structure remains to learn. The order is unchanged (a > 0).
    """
    batch_fn = jax.jit(make_batch)
    scores, targets = [], []
    for step in range(steps):
        batch = batch_fn(pool, jax.numpy.int32(step))
        images = batch["images"]
        # Images of ladders left out of the losses are left out of the fit too.
        kept = batches.trained_images(batch)
        scored = np.asarray(eval_forward(graphdef, state.params, state.batch_stats, images))
        scores.append(scored[kept])
        targets.append(np.asarray(batch["labels"])[kept])
    scores, targets = np.concatenate(scores), np.concatenate(targets)
    if np.std(scores) < 1e-3 * (1.0 + abs(np.mean(scores))):
        logging.warning("finetune: the rank network's scores barely vary; output left as is")
        return state
    slope, intercept = np.polyfit(scores, targets, 1)
    if not slope > 0:
        logging.warning("finetune: calibration slope %.3g is not positive; output left as is", slope)
        return state
    params = with_output_line(state.params, slope, intercept)
    logging.info("finetune: output calibrated, label ~ %.4f * score + %.4f (%d images)",
                 slope, intercept, len(scores))
    return state.replace(params=params)


def with_anchors(make_batch, start: checkpoints.LoadedModel):
    """`make_batch` with `anchors`: the starting network's scores of the batch's images
    (evaluation mode, its own weights and statistics), for `losses.anchored_loss_fn`."""
    def anchored_batch(pool, step):
        batch = make_batch(pool, step)
        return dict(batch, anchors=eval_forward(start.graphdef, start.params, start.batch_stats,
                                                batch["images"]))
    return anchored_batch


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    """The `finetune` block of configs/finetune.py."""
    originals: int
    epoch_steps: int
    originals_per_batch: int
    epochs: int
    learning_rate: float
    decay_every_epochs: int
    decay_factor: float
    rank_weight: float
    rank_margin: float
    calibrate_head: bool
    calibration_steps: int
    batch_norm: str
    population_batches: int
    trained_blocks: int
    anchor_weight: float


@dataclasses.dataclass(frozen=True)
class FinetunePhase:
    run: training.Runtime
    source: settings.DataSource
    model: IQAConfig  # used only without a rank checkpoint
    projection: labels.ProjectionConfig
    finetune: FinetuneSettings
    rank_checkpoint: str
    config: dict  # the whole config as data, for the resume check


def read_settings(config) -> FinetunePhase:
    """configs/finetune.py as frozen settings; a bad key or value is refused here."""
    tune = settings.block(FinetuneSettings, config.finetune, "config.finetune")
    if tune.originals < 0:
        raise errors.InputError(f"finetune.originals must be 0 (all) or a positive number of slices, got "
                                f"{tune.originals}")
    if tune.epoch_steps < 0:
        raise errors.InputError(f"finetune.epoch_steps must be 0 (one pass over the pool) or positive, "
                                f"got {tune.epoch_steps}")
    if tune.rank_weight < 0 or (tune.rank_weight > 0 and not tune.rank_margin > 0):
        raise errors.InputError(f"finetune.rank_weight must be 0 (MSE only) or positive with a positive "
                                f"finetune.rank_margin, got {tune.rank_weight} and {tune.rank_margin}")
    training.frozen_batch_norm(tune.batch_norm, "finetune.batch_norm")
    if tune.anchor_weight < 0:
        raise errors.InputError(f"finetune.anchor_weight must be 0 (no anchor) or positive, got "
                                f"{tune.anchor_weight}")
    if tune.anchor_weight and not config.rank_checkpoint:
        raise errors.InputError("finetune.anchor_weight needs a starting network: set "
                                "config.rank_checkpoint")
    if tune.trained_blocks < -1:
        raise errors.InputError(f"finetune.trained_blocks must be -1 (every parameter) or the "
                                f"number of last trunk blocks to train, got {tune.trained_blocks}")
    return FinetunePhase(training.runtime(config), settings.data_source(config),
                         training.model_config(config), settings.projection(config), tune,
                         settings.block(_Checkpoint, config).rank_checkpoint, config.to_dict())


@dataclasses.dataclass(frozen=True)
class _Checkpoint:
    rank_checkpoint: str


def run(config) -> pathlib.Path:
    """Runs the fine-tune phase described by configs/finetune.py; returns the work directory."""
    phase = read_settings(config)
    run_, source, tune, projection = phase.run, phase.source, phase.finetune, phase.projection
    rank_checkpoint = phase.rank_checkpoint
    workdir = pathlib.Path(run_.workdir)
    loop.check_resume(workdir, phase.config, run_.resume_with_changes)
    mesh, pool = training.mesh_and_pool(run_, source, tune.originals_per_batch,
                                        len(projection.kinds))
    pool = batches.first_originals(pool, tune.originals)  # the annotated originals it may use
    model_key, data_key, train_key = training.run_keys(run_)
    start = None
    if rank_checkpoint:
        # The network is the rank phase's (a work directory), or an exported model's (to tune
        # a shipped model further): its config and weights come from there.
        start = checkpoints.load_model(rank_checkpoint)
        model_cfg = start.config
        model = checkpoints.abstract_network(IQANet, model_cfg)
    else:
        logging.warning("finetune: no rank_checkpoint given; starting from %s weights",
                        "ImageNet" if phase.model.pretrained else "random")
        model_cfg = phase.model
        model = build_model(model_cfg, model_key)
    epoch_steps = tune.epoch_steps or batches.steps_per_epoch(pool.images.shape[0],
                                                              tune.originals_per_batch)
    schedule = loop.step_decay(tune.learning_rate, tune.decay_every_epochs * epoch_steps,
                               tune.decay_factor)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=schedule)
    frozen = training.frozen_batch_norm(tune.batch_norm, "finetune.batch_norm")
    graphdef, state = loop.init_state(model, optimizer)
    trained = training.trained_parameters(state.params, tune.trained_blocks,
                                          "finetune.trained_blocks")
    starting = not loop.has_checkpoint(workdir)  # a resumed run has measured and calibrated
    if start is not None:
        # Parameters and statistics only: the step and the optimiser start afresh.
        state = state.replace(params=start.params, batch_stats=start.batch_stats)
    make_batch = functools.partial(batches.finetune_batch, key=data_key,
                                   originals_per_batch=tune.originals_per_batch,
                                   crop=source.crop, projection=projection,
                                   objects_per_batch=source.ladders.objects_per_batch,
                                   ladder_normalisation=source.ladders.label_normalisation,
                                   turns=source.random_turns)
    # Measuring and calibrating draw batches of their own (other keys), not training's.
    if training.measures_batch_norm(tune.batch_norm) and starting:
        measuring_batch = functools.partial(make_batch, key=jax.random.fold_in(data_key, 998))
        state = loop.with_population_statistics(graphdef, state, pool, measuring_batch,
                                                tune.population_batches,
                                                jax.random.fold_in(train_key, 998))
    if rank_checkpoint and starting and tune.calibrate_head:
        calibration_batch = functools.partial(make_batch, key=jax.random.fold_in(data_key, 999))
        state = calibrate_output(graphdef, state, pool, calibration_batch,
                                 steps=tune.calibration_steps)
    checkpoints.write_run_info(workdir, {checkpoints.MODEL_INFO_KEY: model_cfg.to_dict(),
                                         "phase": "finetune", "crop": source.crop,
                                         "resize": source.resize,
                                         "own_pixels": source.own_pixels,
                                         "rank_checkpoint": rank_checkpoint,
                                         "originals": int(pool.images.shape[0])})
    loss_fn = (losses.mse_rank_loss_fn(tune.rank_weight, tune.rank_margin) if tune.rank_weight
               else losses.mse_loss_fn)
    if tune.anchor_weight:
        loss_fn = losses.anchored_loss_fn(loss_fn, tune.anchor_weight)
        make_batch = with_anchors(make_batch, start)
    loop.run(workdir=workdir, state=state,
             train_step=loop.make_train_step(graphdef, optimizer, loss_fn, frozen_batch_norm=frozen,
                                              trained=trained),
             make_batch=make_batch, batch_inputs=pool, num_steps=tune.epochs * epoch_steps,
             key=train_key, mesh=mesh,
             images_per_step=training.images_per_batch(source.ladders, tune.originals_per_batch,
                                                       len(projection.kinds)),
             log_every=run_.log_every, checkpoint_every=run_.checkpoint_every,
             keep_checkpoints=run_.keep_checkpoints, description="finetune")
    return workdir
