"""What the rank and fine-tune phases (and the ablation and comparison built on them) share:
the network's config, the reference pool and the device mesh."""

from __future__ import annotations

from tiqa import errors, labels
from tiqa.models.iqa import IQAConfig
from tiqa.train import batches, loop


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


def reference_scores(config):
    annotations = labels.read_annotations(config.annotations) if config.annotations else {}
    return lambda sources: labels.reference_scores_for(sources, annotations,
                                                       config.default_reference_score)


def images_per_batch(config, per_batch: int, num_kinds: int) -> int:
    ladders = config.acquisition
    return batches.images_per_batch(per_batch, num_kinds, ladders.objects_per_batch,
                                    len(ladders.factors))


def mesh_and_pool(config, per_batch: int, num_kinds: int):
    loop.initialise_distributed(config.distributed)
    mesh = loop.data_mesh(config.num_devices)
    if config.acquisition.objects_per_batch < 0:
        raise errors.InputError("acquisition.objects_per_batch must be 0 (no ladders) or positive, got "
                                f"{config.acquisition.objects_per_batch}")
    loop.check_batch_divides(images_per_batch(config, per_batch, num_kinds), mesh)
    pool = batches.pool_from_config(config, reference_scores(config))
    return mesh, pool


BATCH_NORM_MODES = ("batch", "frozen")


def frozen_batch_norm(mode: str, key_name: str) -> bool:
    if mode not in BATCH_NORM_MODES:
        raise errors.InputError(f"{key_name} must be one of {BATCH_NORM_MODES}, got {mode!r}")
    return mode == "frozen"
