"""The fine-tune phase (SPEC.md 1.5): MSE regression to the human scores of the originals and
the labels projected onto their distorted versions, starting from the rank checkpoint. It
writes `model.json` beside its checkpoints, as the rank phase does.
"""

from __future__ import annotations

import functools
import logging
import pathlib

import jax
import numpy as np
import optax

from tiqa import checkpoints, errors, labels
from tiqa.models.forward import eval_forward
from tiqa.models.iqa import IQAConfig, IQANet, build_model
from tiqa.phases import training
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


def run(config) -> pathlib.Path:
    """Runs the fine-tune phase described by configs/finetune.py; returns the work directory."""
    workdir = pathlib.Path(config.workdir)
    tune = config.finetune
    projection = labels.ProjectionConfig.from_mapping(config.projection)
    loop.check_resume(workdir, config.to_dict(), config.resume_with_changes)
    mesh, pool = training.mesh_and_pool(config, tune.originals_per_batch, len(projection.kinds))
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
        model_cfg = training.model_config(config)
        model = build_model(model_cfg, model_key)
    if tune.epoch_steps < 0:
        raise errors.InputError(f"finetune.epoch_steps must be 0 (one pass over the pool) or positive, "
                                f"got {tune.epoch_steps}")
    epoch_steps = tune.epoch_steps or batches.steps_per_epoch(pool.images.shape[0],
                                                              tune.originals_per_batch)
    schedule = loop.step_decay(tune.learning_rate, tune.decay_every_epochs * epoch_steps,
                               tune.decay_factor)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=schedule)
    frozen = training.frozen_batch_norm(tune.batch_norm, "finetune.batch_norm")
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
        state = loop.with_population_statistics(graphdef, state, pool, measuring_batch,
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
             train_step=loop.make_train_step(graphdef, optimizer, losses.mse_loss_fn,
                                             frozen_batch_norm=frozen),
             make_batch=make_batch, batch_inputs=pool, num_steps=tune.epochs * epoch_steps,
             key=train_key, mesh=mesh,
             images_per_step=training.images_per_batch(config, tune.originals_per_batch,
                                               len(projection.kinds)),
             log_every=config.log_every, checkpoint_every=config.checkpoint_every,
             keep_checkpoints=config.keep_checkpoints, description="finetune")
    return workdir
