"""The rank phase (SPEC.md 1.4): self-supervised ranking with the pairwise hinge loss on fresh
distortions of the reference slices (no labels needed). It builds its batches on the
accelerator, trains with `loop.run` and writes `model.json` (the model's config) beside its
checkpoints, which is all the scoring code needs.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib

import jax
import optax
from flax import nnx

from tiqa import checkpoints, labels
from tiqa.models.iqa import IQAConfig, build_model
from tiqa.phases import settings, training
from tiqa.train import batches, loop, losses


@dataclasses.dataclass(frozen=True)
class RankSettings:
    """The `rank` block of configs/train_rank.py."""
    kinds: tuple[str, ...]
    margin: float
    originals_per_batch: int
    epochs: int
    learning_rate: float
    decay_every_epochs: int
    decay_factor: float
    batch_norm: str
    population_batches: int
    init_model: str


@dataclasses.dataclass(frozen=True)
class RankPhase:
    run: training.Runtime
    source: settings.DataSource
    model: IQAConfig  # unused when rank.init_model names a network to start from
    rank: RankSettings
    config: dict  # the whole config as data, for the resume check


def read_settings(config) -> RankPhase:
    """configs/train_rank.py as frozen settings; a bad key or value is refused here."""
    rank = settings.block(RankSettings, config.rank, "config.rank")
    labels.ProjectionConfig(kinds=rank.kinds)  # validates the kinds before any work
    training.frozen_batch_norm(rank.batch_norm, "rank.batch_norm")
    return RankPhase(training.runtime(config), settings.data_source(config),
                     training.model_config(config), rank, config.to_dict())


def run(config) -> pathlib.Path:
    """Runs the rank phase described by configs/train_rank.py; returns the work directory."""
    phase = read_settings(config)
    run_, source, rank = phase.run, phase.source, phase.rank
    workdir = pathlib.Path(run_.workdir)
    kinds = rank.kinds
    loop.check_resume(workdir, phase.config, run_.resume_with_changes)
    mesh, pool = training.mesh_and_pool(run_, source, rank.originals_per_batch, len(kinds))
    model_key, data_key, train_key = training.run_keys(run_)
    if rank.init_model:
        initial = checkpoints.load_model(rank.init_model)
        model_cfg = initial.config
        model = nnx.merge(initial.graphdef, initial.params, initial.batch_stats)
        logging.info("rank: starting from the network in %s", rank.init_model)
    else:
        model_cfg = phase.model
        model = build_model(model_cfg, model_key)
    epoch_steps = batches.steps_per_epoch(pool.images.shape[0], rank.originals_per_batch)
    schedule = loop.step_decay(rank.learning_rate, rank.decay_every_epochs * epoch_steps,
                               rank.decay_factor)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=schedule)
    frozen = training.frozen_batch_norm(rank.batch_norm, "rank.batch_norm")
    graphdef, state = loop.init_state(model, optimizer)
    checkpoints.write_run_info(workdir, {checkpoints.MODEL_INFO_KEY: model_cfg.to_dict(),
                                         "phase": "rank", "crop": source.crop,
                                         "resize": source.resize,
                                         "own_pixels": source.own_pixels, "init_model": rank.init_model})
    make_batch = functools.partial(batches.rank_batch, key=data_key,
                                   originals_per_batch=rank.originals_per_batch,
                                   crop=source.crop, kinds=kinds,
                                   objects_per_batch=source.ladders.objects_per_batch,
                                   turns=source.random_turns)
    if training.measures_batch_norm(rank.batch_norm) and not loop.has_checkpoint(workdir):
        measuring_batch = functools.partial(make_batch, key=jax.random.fold_in(data_key, 998))
        state = loop.with_population_statistics(graphdef, state, pool, measuring_batch,
                                                rank.population_batches,
                                                jax.random.fold_in(train_key, 998))
    loop.run(workdir=workdir, state=state,
             train_step=loop.make_train_step(graphdef, optimizer,
                                             losses.rank_loss_fn(rank.margin), frozen_batch_norm=frozen),
             make_batch=make_batch, batch_inputs=pool, num_steps=rank.epochs * epoch_steps,
             key=train_key, mesh=mesh,
             images_per_step=training.images_per_batch(source.ladders, rank.originals_per_batch,
                                                       len(kinds)),
             log_every=run_.log_every, checkpoint_every=run_.checkpoint_every,
             keep_checkpoints=run_.keep_checkpoints, description="rank")
    return workdir
