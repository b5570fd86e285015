"""A no-reference measure of photon noise in the crops the network scores, for a noise penalty.

At a scan's own pixels the network's score stops ordering the noisiest scans: it is level at
about 2 from 1e3 to 5e3 photons on the comparison's phantom, the noise of the training
ladders' worst level and beyond (docs/comparison.md). A score network saturates where its
training stops; a measure does not. `noise_sigma` estimates the noise standard deviation
from the finest diagonal Haar wavelet coefficients by their median absolute value (Donoho and
Johnstone 1994; what scikit-image's `estimate_sigma` does with another wavelet): the median
ignores the few large coefficients that edges make, and fine diagonal detail is mostly noise
in a reconstruction. The model's `noise_check` penalty (`tiqa.penalties`, fitted by
`launch.calibrate` on the `low_photons` ladders) takes score points off above a floor that the
noise of clean scans stays under. Fine stochastic texture (a pore network at the pixel scale)
reads as noise here too, as it does to the network.

The penalty measures only *correlated* noise (`correlated_noise`). Photon noise in a
reconstruction has passed through the reconstruction (the back-projection's interpolation, the
filter's window, the pixel grid), so neighbouring pixels share it: its finest Haar sigma is
0.54 to 0.75 of the next level's on the calibration ladders. Image-domain white noise, the
paper's noise kind, reads 0.93 to 1.07 from its second level on, and the network already
scores it on its labels; a penalty on plain sigma pushed it off the scale and lost the paper's
overall figure (docs/comparison.md, "A noise penalty"). So sigma is weighted by a gate on that
ratio, whose thresholds sit between the two (chosen on the calibration objects and sub-volume
A's kinds, runs of 2026-12-07).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tiqa import penalties

__all__ = ["UNIT", "CAPS", "FLOORS", "MAD_TO_SIGMA", "CORRELATED_RATIO", "WHITE_RATIO",
           "noise_sigma", "level_ratio", "correlated_noise"]

UNIT = ("correlated noise sigma (finest diagonal Haar coefficients' median absolute value / "
        "0.6745, gated by its ratio to the next level's)")
# The median absolute value of N(0, sigma^2) samples is 0.6745 sigma.
MAD_TO_SIGMA = 0.6745
# The fit's grid (penalties.fit_penalty), in the [0, 1] units of the crops. Floors start above
# the noise of clean scans and of the training objects' ideal acquisitions (at most about
# 0.03 on the 256 px bank; nano-CT slices of sub-volumes A and B read 0.006 to 0.009), so a
# clean scan never pays; past about 0.15 the percentile normalisation of a scan saturates.
FLOORS = (0.04, 0.05, 0.06, 0.07, 0.08)
CAPS = (0.12, 0.15, penalties.NO_CAP)
# The gate on sigma1 / sigma2 (finest level over the next): full weight at or under
# CORRELATED_RATIO (the calibration ladders' noisy levels read at most 0.75), none at or over
# WHITE_RATIO (white noise of sigma 0.07 or more reads at least 0.93), linear between.
CORRELATED_RATIO = 0.78
WHITE_RATIO = 0.90


def _haar(images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One orthonormal Haar level over the images' 2 x 2 blocks (an odd last row or column is
    left out): (approximation, block sums / 2; diagonal detail HH), each (..., H/2, W/2)."""
    height, width = images.shape[-2] // 2 * 2, images.shape[-1] // 2 * 2
    images = images[..., :height, :width]
    top_left, top_right = images[..., 0::2, 0::2], images[..., 0::2, 1::2]
    bottom_left, bottom_right = images[..., 1::2, 0::2], images[..., 1::2, 1::2]
    return ((top_left + top_right + bottom_left + bottom_right) / 2.0,
            (top_left - top_right - bottom_left + bottom_right) / 2.0)


def _sigma(diagonal: jax.Array) -> jax.Array:
    """The noise sigma a diagonal detail band gives: its median absolute value / 0.6745."""
    flat = jnp.abs(diagonal).reshape(diagonal.shape[:-2] + (-1,))
    return jnp.median(flat, axis=-1) / MAD_TO_SIGMA


def noise_sigma(images: jax.Array) -> jax.Array:
    """(..., H, W) images -> (...,) noise standard deviation estimates, in the images' units:
    the median |HH| of the one-level Haar transform over the image's 2 x 2 blocks, / 0.6745.
    An odd last row or column is left out."""
    return _sigma(_haar(jnp.asarray(images, jnp.float32))[1])


def _finest_and_ratio(images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(finest, ratio): `noise_sigma` of the images cut to a multiple of 4 px a side, and its
    ratio to the sigma of their Haar approximation (orthonormal, so white noise keeps its
    sigma there)."""
    images = jnp.asarray(images, jnp.float32)
    height, width = images.shape[-2] // 4 * 4, images.shape[-1] // 4 * 4
    approximation, diagonal = _haar(images[..., :height, :width])
    finest = _sigma(diagonal)
    return finest, finest / jnp.maximum(_sigma(_haar(approximation)[1]), 1e-12)


def level_ratio(images: jax.Array) -> jax.Array:
    """(..., H, W) -> (...,) the finest level's `noise_sigma` over the next level's: about 1 for
    white noise, under 1 where neighbouring pixels share their noise (or structure dominates)."""
    return _finest_and_ratio(images)[1]


def correlated_noise(images: jax.Array) -> jax.Array:
    """(..., H, W) -> (...,) the noise penalty's measure: the finest level's sigma (of the
    images cut to a multiple of 4 px a side, as `level_ratio` reads it) weighted by the gate on
    `level_ratio` (1 at or under CORRELATED_RATIO, 0 at or over WHITE_RATIO)."""
    finest, ratio = _finest_and_ratio(images)
    weight = jnp.clip((WHITE_RATIO - ratio) / (WHITE_RATIO - CORRELATED_RATIO), 0.0, 1.0)
    return finest * weight
