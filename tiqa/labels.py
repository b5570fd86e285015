"""Label projection: five full-reference metrics stand in for human observers (SPEC.md 1.3).

For every reference crop with a human score S0 and every distortion kind, the crop is
distorted at levels 0..5 and each observer compares the reference with each distorted image.
Each observer's raw score becomes a distance d (0 for the reference itself):

    mse  -> MSE                 ssim -> 1 - SSIM
    psnr -> max(0, cap - PSNR)  gmsd -> GMSD          mdsi -> MDSI

and is normalised to a common quality range q in [0, 1] across the levels of its kind:

    'worst_level' (default): q = 1 - d / max over the levels of d  (the heaviest level of the
                  kind gets q = 0; per reference, so labels do not depend on the batch)
    'fixed':      q = clip(1 - d / scale, 0, 1) with one fixed scale per observer, which keeps
                  mild distortions near S0 whatever the other levels do.

then rescaled against S0, label = 1 + (S0 - 1) q, so the reference keeps S0 and heavier
distortions go towards 1; the generated label is the mean over the observers.

Unlike the reference code (SPEC.md section 3): no rounding or string formatting of scores,
one data range for every metric, every ring kept, and the labels are computed on exactly the
images returned (optionally after the 8-bit quantisation they will be saved with).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from tiqa import distortions, errors, observers

OBSERVERS = ("mse", "psnr", "ssim", "gmsd", "mdsi")
NORMALISATIONS = ("worst_level", "fixed")
# What each observer gives for an image compared with itself.
IDENTITY_SCORES = {"mse": 0.0, "psnr": float("inf"), "ssim": 1.0, "gmsd": 0.0, "mdsi": 0.0}


@dataclasses.dataclass(frozen=True)
class ProjectionConfig:
    """How distorted images are made and labelled; every field is a plain value (hashable)."""

    kinds: tuple[str, ...] = distortions.KINDS
    observers: tuple[str, ...] = OBSERVERS
    normalisation: str = "worst_level"
    # PSNR above this (dB) counts as no visible difference (the usual "visually lossless"
    # threshold for 8-bit images), so a barely touched image keeps most of S0.
    psnr_cap: float = 40.0
    # Distances that map to q = 0 under the 'fixed' normalisation, per observer.
    fixed_scales: tuple[tuple[str, float], ...] = (
        ("mse", 0.05), ("psnr", 45.0), ("ssim", 1.0), ("gmsd", 0.35), ("mdsi", 0.6))
    # Round images to 1/255 steps before labelling, so 8-bit files hold exactly what was labelled.
    quantize_8bit: bool = False
    mdsi_combination: str = "sum"

    def __post_init__(self):
        unknown = set(self.kinds) - set(distortions.ALL_KINDS)
        if unknown or not self.kinds:
            raise errors.InputError(f"kinds must be a non-empty subset of {distortions.ALL_KINDS}, "
                                    f"got {self.kinds}")
        unknown = set(self.observers) - set(OBSERVERS)
        if unknown or not self.observers:
            raise errors.InputError(f"observers must be a non-empty subset of {OBSERVERS}, "
                                    f"got {self.observers}")
        if self.normalisation not in NORMALISATIONS:
            raise errors.InputError(f"normalisation must be one of {NORMALISATIONS}, "
                                    f"got {self.normalisation!r}")

    @classmethod
    def from_mapping(cls, values: Mapping) -> "ProjectionConfig":
        """Builds the config from a ConfigDict or dict, naming any key it does not know."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = dict(values)
        unknown = sorted(set(values) - fields)
        if unknown:
            raise errors.InputError(f"unknown projection config key(s) {unknown}; known: {sorted(fields)}")
        for name in ("kinds", "observers"):
            if name in values:
                values[name] = tuple(values[name])
        if "fixed_scales" in values:
            scales = values["fixed_scales"]
            items = scales.items() if hasattr(scales, "items") else scales
            values["fixed_scales"] = tuple((str(k), float(v)) for k, v in items)
        return cls(**values)


class Projection(NamedTuple):
    """Distorted images and their labels; axis 2 runs over levels 0..5 (0 = the reference)."""

    images: jnp.ndarray  # (N, K, L, H, W) in [0, 1]
    labels: jnp.ndarray  # (N, K, L) in [1, 5]; labels[:, :, 0] equals the reference scores
    observer_scores: jnp.ndarray  # (N, K, L, O) raw metric values, for the manifest


def _quantize(images: jnp.ndarray) -> jnp.ndarray:
    return jnp.round(images * 255.0) / 255.0


def _per_image_keys(key: jax.Array, count: int) -> jax.Array:
    """One key per reference: a single key is split, a batch of keys is used as given."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.split(key, count) if key.ndim == 0 else key
    key = jnp.asarray(key)
    return jax.random.split(key, count) if key.ndim == 1 else key


def _observer_scores(references: jnp.ndarray, distorted: jnp.ndarray,
                     config: ProjectionConfig) -> jnp.ndarray:
    """Raw scores (N, M, O) of M distorted versions (N, M, H, W) of each reference (N, H, W)."""
    scores = []
    for name in config.observers:
        options = {"combination": config.mdsi_combination} if name == "mdsi" else {}
        scores.append(observers.one_to_many(name, references, distorted, data_range=1.0, **options))
    return jnp.stack(scores, axis=-1)


def observer_distances(scores: jnp.ndarray, config: ProjectionConfig) -> jnp.ndarray:
    """Turns raw scores (..., O) into distances that are 0 for identical images and grow with damage."""
    distances = []
    for index, name in enumerate(config.observers):
        value = scores[..., index]
        if name == "psnr":
            value = jnp.maximum(config.psnr_cap - value, 0.0)  # +inf PSNR -> 0
        elif name == "ssim":
            value = 1.0 - value
        distances.append(jnp.maximum(value, 0.0))
    return jnp.stack(distances, axis=-1)


def labels_from_distances(distances: jnp.ndarray, reference_scores: jnp.ndarray,
                          config: ProjectionConfig) -> jnp.ndarray:
    """Labels (N, K, L) from distances (N, K, L, O) and human scores (N,)."""
    if config.normalisation == "worst_level":
        worst = jnp.max(distances, axis=2, keepdims=True)
        # A kind that changes nothing (e.g. blur of a flat crop) leaves the label at S0.
        quality = jnp.where(worst > 0, 1.0 - distances / jnp.where(worst > 0, worst, 1.0), 1.0)
    else:
        scales = dict(config.fixed_scales)
        scale = jnp.asarray([scales[name] for name in config.observers], distances.dtype)
        quality = jnp.clip(1.0 - distances / scale, 0.0, 1.0)
    s0 = reference_scores[:, None, None, None]
    per_observer = 1.0 + (s0 - 1.0) * quality
    return jnp.mean(per_observer, axis=-1)


def distort_all_levels(references: jnp.ndarray, keys: jax.Array,
                       config: ProjectionConfig) -> jnp.ndarray:
    """(N, H, W) references -> (N, K, L, H, W) images; level 0 is the reference itself."""
    per_kind = []
    for kind_index, kind in enumerate(config.kinds):
        levels = [references]
        for level in range(1, distortions.NUM_LEVELS):
            level_keys = jax.vmap(
                lambda k, ki=kind_index, lv=level: jax.random.fold_in(jax.random.fold_in(k, ki), lv)
            )(keys)
            levels.append(distortions.apply(kind, references, level, level_keys))
        per_kind.append(jnp.stack(levels, axis=1))
    return jnp.stack(per_kind, axis=1)


def project(references: jnp.ndarray, reference_scores: jnp.ndarray, key: jax.Array,
            config: ProjectionConfig = ProjectionConfig()) -> Projection:
    """Distorts every reference at every kind and level and projects the human score onto them.

    Args:
      references: (N, H, W) crops in [0, 1].
      reference_scores: (N,) human scores S0 in [1, 5].
      key: one PRNG key (split per reference) or (N,) keys, one per reference; giving one key
        per reference makes each reference's images independent of how references are batched.
      config: a ProjectionConfig (hashable, so `jax.jit(project, static_argnums=3)` works).

    Returns:
      Projection(images (N, K, L, H, W), labels (N, K, L), observer_scores (N, K, L, O)).
    """
    references = jnp.asarray(references, jnp.float32)
    chex.assert_rank(references, 3)
    count = references.shape[0]
    reference_scores = jnp.asarray(reference_scores, jnp.float32)
    chex.assert_shape(reference_scores, (count,))
    keys = _per_image_keys(key, count)
    if config.quantize_8bit:
        references = _quantize(references)
    images = distort_all_levels(references, keys, config)
    if config.quantize_8bit:
        images = _quantize(images)
    return label_images(images, reference_scores, config)


def label_images(images: jnp.ndarray, reference_scores: jnp.ndarray,
                 config: ProjectionConfig = ProjectionConfig()) -> Projection:
    """Labels for images already distorted: (N, K, L, H, W) with the references at level 0.

    `project` uses it on its own distortions; it also labels distortions made elsewhere (e.g.
    the per-image scikit-image path of `tiqa.reference_distortions`).
    """
    images = jnp.asarray(images, jnp.float32)
    chex.assert_rank(images, 5)
    count, num_kinds, num_levels = images.shape[:3]
    references = images[:, 0, 0]
    # Level 0 is the reference itself: its distances are 0 by definition, so only 1..5 are measured.
    distorted = images[:, :, 1:].reshape((count, -1) + images.shape[-2:])
    raw = _observer_scores(references, distorted, config)
    raw = raw.reshape(count, num_kinds, num_levels - 1, -1)
    identity = jnp.asarray([IDENTITY_SCORES[name] for name in config.observers], raw.dtype)
    raw = jnp.concatenate(
        [jnp.broadcast_to(identity, (count, num_kinds, 1, raw.shape[-1])), raw], axis=2)
    reference_scores = jnp.asarray(reference_scores, jnp.float32)
    labels = labels_from_distances(observer_distances(raw, config), reference_scores, config)
    return Projection(images=images, labels=labels, observer_scores=raw)



def summarise(labels: np.ndarray, kinds: Iterable[str]) -> str:
    """A small text table of mean label per kind and level."""
    labels = np.asarray(labels)
    header = "kind           " + " ".join(f"L{level:<5d}" for level in range(labels.shape[2]))
    lines = [header]
    for index, kind in enumerate(kinds):
        means = labels[:, index].mean(axis=0)
        lines.append(f"{kind:<15s}" + " ".join(f"{m:<6.3f}" for m in means))
    return "\n".join(lines)
