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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tiqa import penalties

__all__ = ["UNIT", "CAPS", "FLOORS", "MAD_TO_SIGMA", "noise_sigma"]

UNIT = "noise sigma (finest diagonal Haar coefficients' median absolute value / 0.6745)"
# The median absolute value of N(0, sigma^2) samples is 0.6745 sigma.
MAD_TO_SIGMA = 0.6745
# The fit's grid (penalties.fit_penalty), in the [0, 1] units of the crops. Floors start above
# the noise of clean scans and of the training objects' ideal acquisitions (at most about
# 0.03 on the 256 px bank; nano-CT slices of sub-volumes A and B read 0.006 to 0.009), so a
# clean scan never pays; past about 0.15 the percentile normalisation of a scan saturates.
FLOORS = (0.04, 0.05, 0.06, 0.07, 0.08)
CAPS = (0.12, 0.15, penalties.NO_CAP)


def noise_sigma(images: jax.Array) -> jax.Array:
    """(..., H, W) images -> (...,) noise standard deviation estimates, in the images' units:
    the median |HH| of the one-level Haar transform over the image's 2 x 2 blocks, / 0.6745.
    An odd last row or column is left out."""
    images = jnp.asarray(images, jnp.float32)
    height, width = images.shape[-2] // 2 * 2, images.shape[-1] // 2 * 2
    images = images[..., :height, :width]
    diagonal = (images[..., 0::2, 0::2] - images[..., 0::2, 1::2]
                - images[..., 1::2, 0::2] + images[..., 1::2, 1::2]) / 2.0
    flat = jnp.abs(diagonal).reshape(diagonal.shape[:-2] + (-1,))
    return jnp.median(flat, axis=-1) / MAD_TO_SIGMA
