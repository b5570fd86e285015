"""From a phase's ConfigDict to frozen settings: the one place the drivers read config blocks.

`block(cls, config_block)` builds a frozen dataclass from the keys of a config block named like
its fields (sequences become tuples); a missing key or a value of the wrong type is an
`InputError` naming the key, raised before any work. The blocks several phases share (the
reference data, the phantom, the acquisition ladders) are read here; each driver reads its own.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Sequence

import numpy as np

from tiqa import acquisition, annotations, errors, labels, objects, phantom
from tiqa.train import batches

_SCALARS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _checked(value: Any, annotation: str, key: str) -> Any:
    """`value` as the field's type: a sequence for a tuple, an int for a float; else an error."""
    if annotation.startswith("tuple"):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise errors.InputError(f"{key} must be a tuple, got {value!r}")
        return tuple(value)
    allowed = _SCALARS.get(annotation.split(" |")[0])
    if allowed is None or (value is None and annotation.endswith("| None")):
        return value
    if (not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool))):
        raise errors.InputError(f"{key} must be a {annotation}, got {value!r}")
    return float(value) if annotation == "float" else value


def block(cls: type, values: Any, where: str = "config", **given: Any):
    """A frozen `cls` from the keys of `values` (a ConfigDict block or a mapping) named like its
    fields; `given` supplies fields that are not plain keys of the block (nested settings)."""
    hints = {field.name: field.type if isinstance(field.type, str) else field.type.__name__
             for field in dataclasses.fields(cls)}
    found = {}
    for name, annotation in hints.items():
        if name in given:
            continue
        key = f"{where}.{name}"
        try:
            value = values[name]
        except (KeyError, AttributeError) as error:
            raise errors.InputError(f"{key} is missing") from error
        found[name] = _checked(value, annotation, key)
    return cls(**found, **given)


def check_sizes(config, *keys: str, where: str = "config") -> None:
    """Every `<where>.<key>` of `keys` is a positive whole number (batch sizes, crops...)."""
    for key in keys:
        errors.check_positive(config[key], f"{where}.{key}")


# --- Shared blocks ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where reference slices come from and how they become crops (configs/common.add_data_source)."""
    input: str
    annotations: str
    default_reference_score: float
    resize: int
    # Slices at least `resize` kept at their own pixels (configs/common.py); None, where a
    # phase scores with a model (configs/compare.py): as that model was trained.
    own_pixels: bool | None
    crop: int
    random_turns: bool  # training crops flipped and turned at random (configs/common.py)
    seed: int  # draws the phantom (and the ladders' acquisitions)
    phantom: phantom.PhantomSettings
    ladders: batches.LadderSettings


def data_source(config, where: str = "config") -> DataSource:
    """The data-source keys of a phase config (or of a block holding them, e.g. brisque_training)."""
    source = block(DataSource, config, where,
                   phantom=block(phantom.PhantomSettings, config.phantom, f"{where}.phantom"),
                   ladders=block(batches.LadderSettings, config.acquisition,
                                 f"{where}.acquisition"))
    if source.ladders.objects_per_batch < 0:
        raise errors.InputError("acquisition.objects_per_batch must be 0 (no ladders) or positive, "
                                f"got {source.ladders.objects_per_batch}")
    objects.check_scale(source.ladders.object_scale, f"{where}.acquisition.object_scale")
    errors.check_non_negative(source.ladders.textures, f"{where}.acquisition.textures", "none")
    unknown = set(source.ladders.factors) - set(acquisition.LADDER_NAMES)
    if unknown or not source.ladders.factors:
        raise errors.InputError(f"{where}.acquisition.factors must name ladders among "
                                f"{acquisition.LADDER_NAMES}, got {tuple(source.ladders.factors)}")
    unknown = set(source.ladders.smooth_factors_left_out) - set(source.ladders.factors)
    if unknown:
        raise errors.InputError(f"{where}.acquisition.smooth_factors_left_out names factors that "
                                f"are not among {where}.acquisition.factors "
                                f"{tuple(source.ladders.factors)}: {sorted(unknown)}")
    if source.ladders.label_normalisation not in labels.NORMALISATIONS:
        raise errors.InputError(f"{where}.acquisition.label_normalisation must be one of "
                                f"{labels.NORMALISATIONS}, got {source.ladders.label_normalisation!r}")
    if source.ladders.denoising_ladder and "photons" not in source.ladders.factors:
        raise errors.InputError(f"{where}.acquisition.denoising_ladder needs 'photons' among "
                                f"{where}.acquisition.factors, got {source.ladders.factors}")
    factor_weights = source.ladders.factor_weights
    if factor_weights and (len(factor_weights) != len(source.ladders.factors) or not all(
            isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight >= 0
            for weight in factor_weights)):
        raise errors.InputError(f"{where}.acquisition.factor_weights must be empty or one weight "
                                f">= 0 for each of {where}.acquisition.factors "
                                f"{tuple(source.ladders.factors)}, got {tuple(factor_weights)}")
    _check_ladder_weight(f"{where}.acquisition.denoising_weight",
                         source.ladders.denoising_weight, source.ladders.denoising_ladder,
                         f"{where}.acquisition.denoising_ladder is False: there is no "
                         "denoising ladder to weigh")
    _check_ladder_weight(f"{where}.acquisition.texture_weight", source.ladders.texture_weight,
                         source.ladders.textures > 0, f"{where}.acquisition.textures is 0: "
                         "there are no texture objects to weigh")
    return source


def _check_ladder_weight(key: str, weight: float, weighed: bool, missing: str) -> None:
    """A loss weight of some ladders must be >= 0, and other than 1 only where there are such
    ladders (`weighed`; `missing` says why there are none)."""
    if weight < 0:
        raise errors.InputError(f"{key} must be >= 0, got {weight}")
    if weight != 1 and not weighed:
        raise errors.InputError(f"{key} is {weight}, but {missing}")


def projection(config, where: str = "config") -> labels.ProjectionConfig:
    """The label projection of a phase config's `projection` block."""
    try:
        return labels.ProjectionConfig.from_mapping(config.projection)
    except (TypeError, KeyError) as error:
        raise errors.InputError(f"{where}.projection: {error}") from error


def reference_slices(source: DataSource) -> tuple[list[np.ndarray], list[str]]:
    return phantom.load_reference_slices(source.input, source.phantom, source.seed)


def annotated_scores(source: DataSource) -> Callable[[list[str]], list[float]]:
    """sources -> reference scores: the human ones of `source.annotations`, else the prior."""
    human_scores = annotations.read_annotations(source.annotations) if source.annotations else {}
    return lambda sources: annotations.reference_scores_for(sources, human_scores,
                                                            source.default_reference_score)


def reference_pool(source: DataSource, scores_for_sources) -> batches.ReferencePool:
    """The training pool of `source`: its slices resized, their scores, and the ladder bank."""
    slices, sources = reference_slices(source)
    scores = scores_for_sources(sources)
    logging.info("reference pool: %d slices from %s", len(slices), source.input or "the phantom")
    pool = batches.build_pool(slices, scores, source.resize, source.crop, source.own_pixels)
    return batches.with_ladders(pool, source.ladders, source.seed, source.crop,
                                source.default_reference_score)

