"""The distortions of the data phase: blur, noise and ring artefacts, five levels each
(README "Distortion levels", SPEC.md section 2).

Pure, jittable, [0, 1] in and out; level 0 is the identity. The level tables are data, so an
ablation can swap them without touching code. `apply` is the public entry.
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from tiqa import tomography

KINDS = ("blur", "noise", "ring")
ALL_KINDS = KINDS + ("sinogram_ring",)
NUM_LEVELS = 6  # level 0 (the original) and five distortion levels

# One row per kind: the distortion parameter at levels 0..5 (SPEC.md section 2).
LEVEL_TABLES: Mapping[str, tuple[float, ...]] = {
    # Gaussian sigma in pixels, as skimage.filters.gaussian.
    "blur": (0.0, 1.2, 2.5, 6.5, 15.2, 33.2),
    # Variance of the additive Gaussian noise, as skimage.util.random_noise(mode='gaussian').
    "noise": (0.0, 0.001, 0.006, 0.022, 0.088, 1.0),
    # Ring coefficient of the image-domain model.
    "ring": (0.0, 0.10, 0.13, 0.15, 0.18, 0.20),
    # Standard deviation of the relative detector gain errors (sinogram domain, then FBP),
    # for a sample whose full-contrast pixel has ATTENUATION_PER_PIXEL.
    "sinogram_ring": (0.0, 0.003, 0.005, 0.007, 0.009, 0.012),
}

# scikit-image's gaussian filter truncates its kernel at 4 sigma (scipy's default).
GAUSSIAN_TRUNCATE = 4.0

# Image-domain ring model of the reference code (start radius, radius step, limits, width).
RING_FIRST_RADIUS = 20
RING_STEP_RANGE = (5, 25)  # inclusive, a fresh uniform integer for every next ring
RING_MAX_COUNT = 20
RING_MAX_RADIUS = 400
RING_WIDTH = 2

# Angles of the simulated 180-degree parallel-beam scan for the sinogram ring model.
SINOGRAM_ANGLES = 180
# Line integral through one pixel of image value 1 (mu times pixel size). It sets how strong a
# gain error looks against the image contrast: 0.02 means 224 pixels of full contrast
# transmit exp(-4.5) of the beam, a dense electrode; a 1% gain error is then a clear ring.
ATTENUATION_PER_PIXEL = 0.02


def _gaussian_weights(sigma: float) -> np.ndarray:
    """The 1-D kernel of scipy.ndimage.gaussian_filter1d (radius int(4 sigma + 0.5))."""
    radius = int(GAUSSIAN_TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (x / sigma) ** 2)
    return weights / weights.sum()


@functools.lru_cache(maxsize=64)
def gaussian_blur_matrix(size: int, sigma: float) -> np.ndarray:
    """The (size, size) operator of a 1-D Gaussian filter with edge ('nearest') padding: exact
    for a kernel wider than the image, and a batch of blurs becomes matrix products."""
    if sigma <= 0:
        return np.eye(size, dtype=np.float32)
    weights = _gaussian_weights(sigma)
    radius = (len(weights) - 1) // 2
    matrix = np.zeros((size, size), dtype=np.float64)
    rows = np.arange(size)
    for offset, weight in zip(range(-radius, radius + 1), weights):
        # 'nearest' padding: a tap that falls off the image reads the edge pixel.
        np.add.at(matrix, (rows, np.clip(rows + offset, 0, size - 1)), weight)
    return matrix.astype(np.float32)


def _blur_matrices(size: int, sigmas: tuple[float, ...]) -> jnp.ndarray:
    return jnp.asarray(np.stack([gaussian_blur_matrix(size, s) for s in sigmas]))


def _separable_apply(image: jnp.ndarray, rows: jnp.ndarray, cols: jnp.ndarray) -> jnp.ndarray:
    # HIGHEST keeps float32 accuracy on GPUs, whose default matmul precision is lower.
    out = jnp.matmul(rows, image, precision=jax.lax.Precision.HIGHEST)
    return jnp.matmul(out, cols.T, precision=jax.lax.Precision.HIGHEST)


def gaussian_blur(image: jnp.ndarray, sigma: float) -> jnp.ndarray:
    """(..., H, W) blurred as `skimage.filters.gaussian(image, sigma)`; `sigma` a Python float."""
    height, width = image.shape[-2:]
    rows = jnp.asarray(gaussian_blur_matrix(height, float(sigma)))
    cols = jnp.asarray(gaussian_blur_matrix(width, float(sigma)))
    return jnp.clip(_separable_apply(image, rows, cols), 0.0, 1.0)


def gaussian_noise(image: jnp.ndarray, key: jax.Array, variance, clip: bool = True) -> jnp.ndarray:
    """As `skimage.util.random_noise(image, mode='gaussian', var=variance)`; `clip=False` keeps
    the noise before clipping (to check its variance)."""
    noise = jnp.sqrt(jnp.asarray(variance, image.dtype)) * jax.random.normal(
        key, image.shape, image.dtype)
    return jnp.clip(image + noise, 0.0, 1.0) if clip else image + noise


def ring_radii(key: jax.Array) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(radii, drawn), each (RING_MAX_COUNT,): the rings' inner radii and which are drawn."""
    low, high = RING_STEP_RANGE
    steps = jax.random.randint(key, (RING_MAX_COUNT - 1,), low, high + 1)
    radii = RING_FIRST_RADIUS + jnp.concatenate([jnp.zeros((1,), steps.dtype), jnp.cumsum(steps)])
    return radii, radii <= RING_MAX_RADIUS


def ring_artifact(image: jnp.ndarray, key: jax.Array, coefficient) -> jnp.ndarray:
    """Image-domain rings about pixel (H // 2, W // 2). Every ring is kept (the reference label
    script kept only the last one, SPEC.md section 3)."""
    height, width = image.shape[-2:]
    radii, drawn = ring_radii(key)
    rows = np.arange(height)[:, None] - height // 2
    cols = np.arange(width)[None, :] - width // 2
    distance_sq = rows**2 + cols**2  # integers, so ring membership is exact
    # A lookup table over squared distances: +-1 from r_i^2 up to (r_i + 2)^2, built as a
    # cumulative sum of steps, then read once per pixel (cheaper than testing every ring).
    sign = jnp.where(jnp.arange(RING_MAX_COUNT) % 2 == 0, -1, 1) * drawn
    table_size = int(distance_sq.max()) + 2
    steps = jnp.zeros((table_size,), jnp.int32)
    steps = steps.at[jnp.minimum(radii**2, table_size - 1)].add(sign)
    steps = steps.at[jnp.minimum((radii + RING_WIDTH) ** 2, table_size - 1)].add(-sign)
    modulation = jnp.cumsum(steps)[distance_sq].astype(image.dtype)
    return jnp.clip(image + coefficient * modulation * image, 0.0, 1.0)


def detector_gain_offsets(key: jax.Array, num_detectors: int, gain_std) -> jnp.ndarray:
    """Line-integral offsets -log(gain) that a unit-gain flat field leaves in every projection;
    the floor on the gain only guards the logarithm at absurd error levels."""
    gains = 1.0 + gain_std * jax.random.normal(key, (num_detectors,))
    return -jnp.log(jnp.maximum(gains, 0.05))


def sinogram_ring_artifact(image: jnp.ndarray, key: jax.Array, gain_std,
                           num_angles: int = SINOGRAM_ANGLES,
                           attenuation_per_pixel: float = ATTENUATION_PER_PIXEL) -> jnp.ndarray:
    """Rings from detector gain errors in the sinogram, then FBP. FBP is linear, so only the
    offsets are reconstructed and added: level 0 stays the exact identity, and the image is
    never re-projected. `image` is (H, W) with one key, or (N, H, W) with (N,) keys (one pass,
    several times faster than vmap) and (N,) or scalar `gain_std`.
    """
    height, width = image.shape[-2:]
    num_detectors = tomography.min_detectors((height, width))  # covers the image's diagonal
    if image.ndim == 2:
        offsets = detector_gain_offsets(key, num_detectors, gain_std)
    else:
        gain_std = jnp.broadcast_to(jnp.asarray(gain_std, jnp.float32), (image.shape[0],))
        offsets = jax.vmap(detector_gain_offsets, in_axes=(0, None, 0))(key, num_detectors, gain_std)
    angles = np.linspace(0.0, 180.0, num_angles, endpoint=False)
    # Offsets are line integrals; dividing by the attenuation of a full-contrast pixel puts
    # the reconstructed rings in the image's own [0, 1] units.
    rings = tomography.detector_offset_rings(offsets / attenuation_per_pixel, (height, width), angles)
    return jnp.clip(image + rings.astype(image.dtype), 0.0, 1.0)


def _blur_at_level(image: jnp.ndarray, key: jax.Array, level) -> jnp.ndarray:
    del key  # blur is deterministic
    height, width = image.shape[-2:]
    sigmas = LEVEL_TABLES["blur"]
    if isinstance(level, (int, np.integer)):
        return gaussian_blur(image, sigmas[int(level)])
    # A traced level picks its operator from the table of all levels.
    rows = _blur_matrices(height, sigmas)[level]
    cols = _blur_matrices(width, sigmas)[level]
    return jnp.clip(_separable_apply(image, rows, cols), 0.0, 1.0)


def _table_value(kind: str, level) -> jnp.ndarray:
    return jnp.asarray(LEVEL_TABLES[kind], jnp.float32)[level]


_SINGLE_IMAGE: Mapping[str, Callable] = {
    "blur": _blur_at_level,
    "noise": lambda image, key, level: gaussian_noise(image, key, _table_value("noise", level)),
    "ring": lambda image, key, level: ring_artifact(image, key, _table_value("ring", level)),
    "sinogram_ring": lambda image, key, level: sinogram_ring_artifact(
        image, key, _table_value("sinogram_ring", level)),
}


def _check_level(level) -> None:
    if isinstance(level, (int, np.integer)) and not 0 <= int(level) < NUM_LEVELS:
        raise ValueError(f"level must be in 0..{NUM_LEVELS - 1}, got {level}")


def apply(kind: str, image: jnp.ndarray, level, key: jax.Array) -> jnp.ndarray:
    """`image` ((H, W) or (N, H, W)) distorted by `kind` at `level` (0..5): a Python int, a
    traced integer or (N,) levels. A batch takes one key (split per image) or (N,) keys.
    """
    if kind not in _SINGLE_IMAGE:
        raise ValueError(f"unknown distortion kind {kind!r}; expected one of {ALL_KINDS}")
    _check_level(level)
    image = jnp.asarray(image, jnp.float32)
    if image.ndim == 2:
        return _SINGLE_IMAGE[kind](image, key, level)
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W) or (N, H, W), got shape {image.shape}")
    keys = key if key.ndim == 1 else jax.random.split(key, image.shape[0])
    if kind == "sinogram_ring":
        return sinogram_ring_artifact(image, keys, _table_value(kind, level))
    if isinstance(level, (int, np.integer)):
        # A concrete level keeps the static (cheaper) path for blur.
        return jax.vmap(lambda im, k: _SINGLE_IMAGE[kind](im, k, int(level)))(image, keys)
    levels = jnp.broadcast_to(jnp.asarray(level), (image.shape[0],))
    return jax.vmap(_SINGLE_IMAGE[kind])(image, keys, levels)
