"""What the rank and fine-tune phases (and the ablation and comparison built on them) share:
their runtime keys, the network's config, the reference pool and the device mesh."""

from __future__ import annotations

import dataclasses

import jax

from tiqa import errors
from tiqa.models.iqa import IQAConfig
from tiqa.phases import settings
from tiqa.train import batches, loop


@dataclasses.dataclass(frozen=True)
class Runtime:
    """configs/common.add_runtime and the phase's work directory."""
    workdir: str
    seed: int
    training_seed: int  # -1: `seed` (configs/common.add_runtime)
    log_every: int
    checkpoint_every: int
    keep_checkpoints: int
    num_devices: int
    distributed: bool
    resume_with_changes: bool


def runtime(config) -> Runtime:
    run = settings.block(Runtime, config)
    if run.training_seed < -1:
        raise errors.InputError(f"config.training_seed must be -1 (config.seed) or a seed of 0 "
                                f"or more, got {run.training_seed}")
    return run


def run_keys(run: Runtime) -> tuple:
    """(model_key, data_key, train_key) of a training phase: the network's initialisation, the
    batches' draws and the steps' dropout, from `training_seed` (or `seed` where it is -1)."""
    seed = run.seed if run.training_seed == -1 else run.training_seed
    return tuple(jax.random.split(jax.random.key(seed), 3))


def model_config(config) -> IQAConfig:
    """The IQAConfig of a phase config's `model` block (placeholders left unset are dropped)."""
    values = dict(config.model)
    overrides = {k: v for k, v in dict(values.pop("trunk_overrides", {})).items() if v is not None}
    return IQAConfig.from_mapping(dict(values, trunk_overrides=overrides))


def images_per_batch(ladders: batches.LadderSettings, per_batch: int, num_kinds: int) -> int:
    return batches.images_per_batch(per_batch, num_kinds, ladders.objects_per_batch,
                                    ladders.num_ladders)


def mesh_and_pool(run: Runtime, source: settings.DataSource, per_batch: int, num_kinds: int):
    loop.initialise_distributed(run.distributed)
    mesh = loop.data_mesh(run.num_devices)
    loop.check_batch_divides(images_per_batch(source.ladders, per_batch, num_kinds), mesh)
    pool = settings.reference_pool(source, settings.annotated_scores(source))
    return mesh, pool


# 'batch': normalise with each batch's statistics; 'frozen': measure the data's statistics
# first, then keep them fixed; 'kept': keep the starting network's statistics fixed, measuring
# nothing (to tune a shipped network further without moving what it computes before its first
# step; docs/acquisition_ladder.md, "The start's BatchNorm statistics kept: round 84").
BATCH_NORM_MODES = ("batch", "frozen", "kept")


def frozen_batch_norm(mode: str, key_name: str) -> bool:
    """Whether BatchNorm trains with fixed statistics under `mode` (the config key `key_name`,
    named in the error for an unknown mode)."""
    if mode not in BATCH_NORM_MODES:
        raise errors.InputError(f"{key_name} must be one of {BATCH_NORM_MODES}, got {mode!r}")
    return mode in ("frozen", "kept")


def measures_batch_norm(mode: str) -> bool:
    """Whether a phase measures BatchNorm statistics on its data before training."""
    return mode == "frozen"


def trained_parameters(params, trained_blocks: int, key_name: str):
    """A pytree of bools like `params`: which parameters a phase trains.

    `trained_blocks` -1 trains every parameter. K >= 0 trains only the last K MBConv blocks of
    the EfficientNet trunk, the trunk's head (conv and BatchNorm) and the score head (hidden
    and output layers); the stem and the earlier blocks stay the starting network's, so a
    fine-tune cannot change how the early trunk reads fine detail (docs/acquisition_ladder.md,
    "Only the last blocks trained: rounds 86 and 87"). `key_name` is named in the error.
    """
    if trained_blocks == -1:
        return jax.tree.map(lambda _: True, params)
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    names = [tuple(getattr(k, "key", getattr(k, "name", None)) for k in path) for path, _ in flat]
    blocks = {name[2] for name in names if name[:2] == ("trunk", "blocks")}
    if trained_blocks < -1 or not blocks or trained_blocks > len(blocks):
        raise errors.InputError(f"{key_name} must be -1 (every parameter) or 0..{len(blocks)} (the "
                                f"last blocks of an EfficientNet trunk), got {trained_blocks}")
    first_trained = len(blocks) - trained_blocks

    def trained(name: tuple) -> bool:
        if name[0] != "trunk":
            return True  # the score head
        if name[1] == "blocks":
            return name[2] >= first_trained
        return name[1].startswith("head")

    return jax.tree_util.tree_unflatten(jax.tree.structure(params),
                                        [trained(name) for name in names])
