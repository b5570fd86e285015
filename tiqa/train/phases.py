"""The two training phases of the score network (SPEC.md 1.4, 1.5).

- `train_rank(config)`: self-supervised ranking with the pairwise hinge loss on fresh
  distortions of the reference slices (no labels needed).
- `finetune(config)`: MSE regression to the human scores of the originals and the labels
  projected onto their distorted versions, starting from the rank checkpoint.

Both build their batches on the accelerator, train with `loop.run` and write `model.json`
(the model's config) beside their checkpoints, which is all the scoring code needs.
"""

from __future__ import annotations

import functools
import logging
import pathlib

import jax
import numpy as np
import optax
from flax import nnx

from tiqa import checkpoints, errors, labels
from tiqa.models.forward import eval_forward
from tiqa.models.iqa import IQAConfig, IQANet, build_model
from tiqa.train import batches, loop, losses


def model_config(config) -> IQAConfig:
    """The IQAConfig of a phase config's `model` block (placeholders left unset are dropped)."""
    values = dict(config.model)
    overrides = {k: v for k, v in dict(values.pop("trunk_overrides", {})).items() if v is not None}
    return IQAConfig.from_mapping(dict(values, trunk_overrides=overrides))


def _reference_scores(config):
    annotations = labels.read_annotations(config.annotations) if config.annotations else {}
    return lambda sources: labels.reference_scores_for(sources, annotations,
                                                       config.default_reference_score)


def _images_per_batch(config, per_batch: int, num_kinds: int) -> int:
    ladders = config.acquisition
    return batches.images_per_batch(per_batch, num_kinds, ladders.objects_per_batch,
                                    len(ladders.factors))


def _mesh_and_pool(config, per_batch: int, num_kinds: int):
    loop.initialise_distributed(config.distributed)
    mesh = loop.data_mesh(config.num_devices)
    if config.acquisition.objects_per_batch < 0:
        raise errors.InputError("acquisition.objects_per_batch must be 0 (no ladders) or positive, got "
                                f"{config.acquisition.objects_per_batch}")
    loop.check_batch_divides(_images_per_batch(config, per_batch, num_kinds), mesh)
    pool = batches.pool_from_config(config, _reference_scores(config))
    return mesh, pool


BATCH_NORM_MODES = ("batch", "frozen")


def _frozen_batch_norm(mode: str, key_name: str) -> bool:
    if mode not in BATCH_NORM_MODES:
        raise errors.InputError(f"{key_name} must be one of {BATCH_NORM_MODES}, got {mode!r}")
    return mode == "frozen"


def with_population_statistics(graphdef, state: loop.TrainState, pool, make_batch,
                               batches_to_measure: int, key: jax.Array) -> loop.TrainState:
    """The state with BatchNorm statistics measured on `batches_to_measure` training batches."""
    batch_fn = jax.jit(make_batch)
    images = (batch_fn(pool, jax.numpy.int32(step))["images"] for step in range(batches_to_measure))
    stats = loop.population_batch_stats(graphdef, state.params, state.batch_stats, images, key)
    logging.info("BatchNorm statistics measured on %d batches, then frozen", batches_to_measure)
    return state.replace(batch_stats=stats)


def rank_loss_fn(margin: float):
    def loss_fn(scores, batch):
        loss = losses.hinge_rank_loss(scores, batch["levels"], batch["group_ids"], margin)
        return loss, {"score_mean": scores.mean(), "pair_accuracy": losses.pair_accuracy(
            scores, batch["levels"], batch["group_ids"])}
    return loss_fn


def mse_loss_fn(scores, batch):
    return losses.mse_loss(scores, batch["labels"]), {"score_mean": scores.mean()}


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
        scores.append(np.asarray(eval_forward(graphdef, state.params, state.batch_stats, images)))
        targets.append(np.asarray(batch["labels"]))
    scores, targets = np.concatenate(scores), np.concatenate(targets)
    if np.std(scores) < 1e-3 * (1.0 + abs(np.mean(scores))):
        logging.warning("finetune: the rank network's scores barely vary; output left as is")
        return state
    slope, intercept = np.polyfit(scores, targets, 1)
    if not slope > 0:
        logging.warning("finetune: calibration slope %.3g is not positive; output left as is", slope)
        return state
    params = jax.tree.map(lambda x: x, state.params)
    output = params["output"]
    output["kernel"] = jax.tree.map(lambda k: k * slope, output["kernel"])
    output["bias"] = jax.tree.map(lambda b: b * slope + intercept, output["bias"])
    logging.info("finetune: output calibrated, label ~ %.4f * score + %.4f (%d images)",
                 slope, intercept, len(scores))
    return state.replace(params=params)


def train_rank(config) -> pathlib.Path:
    """Runs the rank phase described by configs/train_rank.py; returns the work directory."""
    workdir = pathlib.Path(config.workdir)
    rank = config.rank
    kinds = tuple(rank.kinds)
    labels.ProjectionConfig(kinds=kinds)  # validates the kinds before any work
    loop.check_resume(workdir, config.to_dict(), config.resume_with_changes)
    mesh, pool = _mesh_and_pool(config, rank.originals_per_batch, len(kinds))
    model_key, data_key, train_key = jax.random.split(jax.random.key(config.seed), 3)
    if rank.init_model:
        initial = checkpoints.load_model(rank.init_model)
        model_cfg = initial.config
        model = nnx.merge(initial.graphdef, initial.params, initial.batch_stats)
        logging.info("rank: starting from the network in %s", rank.init_model)
    else:
        model_cfg = model_config(config)
        model = build_model(model_cfg, model_key)
    epoch_steps = batches.steps_per_epoch(pool.images.shape[0], rank.originals_per_batch)
    schedule = loop.step_decay(rank.learning_rate, rank.decay_every_epochs * epoch_steps,
                               rank.decay_factor)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=schedule)
    frozen = _frozen_batch_norm(rank.batch_norm, "rank.batch_norm")
    graphdef, state = loop.init_state(model, optimizer)
    checkpoints.write_run_info(workdir, {checkpoints.MODEL_INFO_KEY: model_cfg.to_dict(),
                                         "phase": "rank", "crop": config.crop,
                                         "resize": config.resize, "init_model": rank.init_model})
    make_batch = functools.partial(batches.rank_batch, key=data_key,
                                   originals_per_batch=rank.originals_per_batch,
                                   crop=config.crop, kinds=kinds,
                                   objects_per_batch=config.acquisition.objects_per_batch)
    if frozen and not loop.has_checkpoint(workdir):
        measuring_batch = functools.partial(make_batch, key=jax.random.fold_in(data_key, 998))
        state = with_population_statistics(graphdef, state, pool, measuring_batch,
                                           rank.population_batches,
                                           jax.random.fold_in(train_key, 998))
    loop.run(workdir=workdir, state=state,
             train_step=loop.make_train_step(graphdef, optimizer,
                                             rank_loss_fn(rank.margin), frozen_batch_norm=frozen),
             make_batch=make_batch, batch_inputs=pool, num_steps=rank.epochs * epoch_steps,
             key=train_key, mesh=mesh,
             images_per_step=_images_per_batch(config, rank.originals_per_batch, len(kinds)),
             log_every=config.log_every, checkpoint_every=config.checkpoint_every,
             keep_checkpoints=config.keep_checkpoints, description="rank")
    return workdir


def finetune(config) -> pathlib.Path:
    """Runs the fine-tune phase described by configs/finetune.py; returns the work directory."""
    workdir = pathlib.Path(config.workdir)
    tune = config.finetune
    projection = labels.ProjectionConfig.from_mapping(config.projection)
    loop.check_resume(workdir, config.to_dict(), config.resume_with_changes)
    mesh, pool = _mesh_and_pool(config, tune.originals_per_batch, len(projection.kinds))
    pool = batches.first_originals(pool, tune.originals)  # the annotated originals it may use
    model_key, data_key, train_key = jax.random.split(jax.random.key(config.seed), 3)
    if config.rank_checkpoint:
        # The network is the rank phase's: its config comes from the rank work directory.
        model_cfg = IQAConfig.from_mapping(
            checkpoints.read_run_info(config.rank_checkpoint)[checkpoints.MODEL_INFO_KEY])
        model = checkpoints.abstract_network(IQANet, model_cfg)
    else:
        logging.warning("finetune: no rank_checkpoint given; starting from %s weights",
                        "ImageNet" if config.model.pretrained else "random")
        model_cfg = model_config(config)
        model = build_model(model_cfg, model_key)
    if tune.epoch_steps < 0:
        raise errors.InputError(f"finetune.epoch_steps must be 0 (one pass over the pool) or positive, "
                                f"got {tune.epoch_steps}")
    epoch_steps = tune.epoch_steps or batches.steps_per_epoch(pool.images.shape[0],
                                                              tune.originals_per_batch)
    schedule = loop.step_decay(tune.learning_rate, tune.decay_every_epochs * epoch_steps,
                               tune.decay_factor)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=schedule)
    frozen = _frozen_batch_norm(tune.batch_norm, "finetune.batch_norm")
    graphdef, state = loop.init_state(model, optimizer)
    starting = not loop.has_checkpoint(workdir)  # a resumed run has measured and calibrated
    if config.rank_checkpoint:
        # Parameters and statistics only: the step and the optimiser start afresh.
        params, batch_stats = checkpoints.restore_variables(config.rank_checkpoint,
                                                            state.params, state.batch_stats)
        state = state.replace(params=params, batch_stats=batch_stats)
    make_batch = functools.partial(batches.finetune_batch, key=data_key,
                                   originals_per_batch=tune.originals_per_batch,
                                   crop=config.crop, projection=projection,
                                   objects_per_batch=config.acquisition.objects_per_batch)
    # Measuring and calibrating draw batches of their own (other keys), not training's.
    if frozen and starting:
        measuring_batch = functools.partial(make_batch, key=jax.random.fold_in(data_key, 998))
        state = with_population_statistics(graphdef, state, pool, measuring_batch,
                                           tune.population_batches,
                                           jax.random.fold_in(train_key, 998))
    if config.rank_checkpoint and starting and tune.calibrate_head:
        calibration_batch = functools.partial(make_batch, key=jax.random.fold_in(data_key, 999))
        state = calibrate_output(graphdef, state, pool, calibration_batch,
                                 steps=tune.calibration_steps)
    checkpoints.write_run_info(workdir, {checkpoints.MODEL_INFO_KEY: model_cfg.to_dict(),
                                         "phase": "finetune", "crop": config.crop,
                                         "resize": config.resize,
                                         "rank_checkpoint": config.rank_checkpoint,
                                         "originals": int(pool.images.shape[0])})
    loop.run(workdir=workdir, state=state,
             train_step=loop.make_train_step(graphdef, optimizer, mse_loss_fn,
                                             frozen_batch_norm=frozen),
             make_batch=make_batch, batch_inputs=pool, num_steps=tune.epochs * epoch_steps,
             key=train_key, mesh=mesh,
             images_per_step=_images_per_batch(config, tune.originals_per_batch,
                                               len(projection.kinds)),
             log_every=config.log_every, checkpoint_every=config.checkpoint_every,
             keep_checkpoints=config.keep_checkpoints, description="finetune")
    return workdir
