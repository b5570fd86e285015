"""Candidate pre-processing filters for tomography slices, to be ranked by the quality score.

The paper uses the score to guide pre-processing: apply candidate denoising / artefact-removal
filters to sampled slices of a volume, score every result and keep the best. This module holds
those candidates. Every filter is a pure numpy function `fn(image, **params) -> image` on a
float32 (H, W) image in [0, 1]; `apply` validates the image and the parameters, runs the filter
and clips the result to [0, 1] float32.

Filters (`FILTERS`)
    identity         the unfiltered baseline.
    median           skimage.filters.median with a disk footprint of `radius` px.
    gaussian         skimage.filters.gaussian with `sigma` px, mode 'nearest'.
    nl_means         skimage.restoration.denoise_nl_means, fast mode, h = `h` times the noise
                     sigma estimated from the image (see `estimate_noise_sigma`).
    total_variation  skimage.restoration.denoise_tv_chambolle with `weight`.
    bilateral        skimage.restoration.denoise_bilateral (`sigma_color`, `sigma_spatial`).
    ring_removal     image-domain ring-artefact removal around `centre` (see `ring_removal`).

Grids
    `CANDIDATES` is the default grid of (name, params) pairs; `parse_candidates` expands a compact
    command-line spec such as "median:radius=1,2;ring_removal:radial_window=9,21:sectors=1,2;
    identity" into every combination per filter; `describe` names one, e.g. "median(radius=2)".
"""

from __future__ import annotations

import inspect
import itertools
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import scipy.ndimage as ndi
import scipy.stats
from skimage import filters as sk_filters
from skimage import morphology, restoration

Params = dict[str, Any]
Candidate = tuple[str, Params]

# Radial sampling of `ring_removal`: bins of half a pixel resolve a ring 1-2 px wide.
RING_BIN_PX = 0.5
# Fraction of the values dropped at each end when averaging over the angles at one radius.
RING_TRIM = 0.25

# Daubechies-2 decomposition high-pass filter, PyWavelets' Wavelet('db2').dec_hi.
_SQRT3 = math.sqrt(3.0)
_DB2_HIGH = np.array([-(1 + _SQRT3), 3 + _SQRT3, -(3 - _SQRT3), 1 - _SQRT3]) / (4 * math.sqrt(2))


# --------------------------------------------------------------------------------------------
# Noise estimate
# --------------------------------------------------------------------------------------------


def _dwt_detail(data: np.ndarray, axis: int) -> np.ndarray:
    """Detail coefficients of one db2 DWT level along `axis`, as PyWavelets' 'symmetric' mode.

    pywt computes out[k] = sum_j f[j] x[2k + 1 - j] on the half-sample symmetric extension of x,
    for k = 0 .. floor((N + 3) / 2) - 1.
    """
    taps = len(_DB2_HIGH)
    pad = [(0, 0)] * data.ndim
    pad[axis] = (taps - 1, taps - 1)
    extended = np.pad(data, pad, mode="symmetric")  # x[i] is extended[i + taps - 1]
    count = (data.shape[axis] + taps - 1) // 2
    base = 2 * np.arange(count) + 1 + (taps - 1)
    return sum(weight * np.take(extended, base - j, axis=axis) for j, weight in enumerate(_DB2_HIGH))


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Noise standard deviation by Donoho's robust wavelet estimator.

    The same estimator as skimage.restoration.estimate_sigma (median absolute value of the
    finest diagonal db2 detail coefficients over the 0.75 normal quantile, exact zeros dropped),
    written out here because skimage needs PyWavelets for it, which the project does not depend on.
    """
    detail = _dwt_detail(_dwt_detail(np.asarray(image, np.float64), 0), 1)
    detail = detail[detail != 0]  # flat regions (padding, saturation) carry no noise
    if detail.size == 0:
        return 0.0
    return float(np.median(np.abs(detail)) / scipy.stats.norm.ppf(0.75))


# --------------------------------------------------------------------------------------------
# The filters: pure numpy, (H, W) float image in [0, 1] -> (H, W) float image
# --------------------------------------------------------------------------------------------


def identity(image: np.ndarray) -> np.ndarray:
    """No filter: the baseline every candidate is compared against."""
    return np.array(image, np.float32, copy=True)


def median(image: np.ndarray, radius: int = 1) -> np.ndarray:
    """Median over a disk of `radius` px: removes impulsive noise, keeps edges."""
    return sk_filters.median(np.asarray(image, np.float32), footprint=morphology.disk(radius),
                             mode="nearest")


def gaussian(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian smoothing with `sigma` px; edges padded with the nearest pixel."""
    return sk_filters.gaussian(np.asarray(image, np.float64), sigma=sigma, mode="nearest",
                               preserve_range=True)


def nl_means(image: np.ndarray, h: float = 0.8, patch_size: int = 5,
             patch_distance: int = 6) -> np.ndarray:
    """Non-local means (fast mode) with filter strength `h` times the estimated noise sigma.

    Tying h to the image's own noise level makes one `h` meaningful across slices and scans
    (skimage recommends h of about 0.8 sigma with `sigma` passed in fast mode).
    """
    image = np.asarray(image, np.float64)
    sigma = estimate_noise_sigma(image)
    if sigma <= 0:  # no measurable noise: nothing to average away
        return image.copy()
    return restoration.denoise_nl_means(image, h=h * sigma, sigma=sigma, fast_mode=True,
                                        patch_size=patch_size, patch_distance=patch_distance,
                                        channel_axis=None)


def total_variation(image: np.ndarray, weight: float = 0.05) -> np.ndarray:
    """Chambolle total-variation denoising: flattens noise, keeps sharp phase boundaries."""
    return restoration.denoise_tv_chambolle(np.asarray(image, np.float64), weight=weight,
                                            channel_axis=None)


def bilateral(image: np.ndarray, sigma_color: float = 0.1, sigma_spatial: float = 1.0) -> np.ndarray:
    """Bilateral filter: averages neighbours that are close both in space and in grey value."""
    return restoration.denoise_bilateral(np.asarray(image, np.float64), sigma_color=sigma_color,
                                         sigma_spatial=sigma_spatial, mode="edge",
                                         channel_axis=None)


def _group_trimmed_means(values: np.ndarray, groups: np.ndarray, num_groups: int,
                         trim: float) -> np.ndarray:
    """Mean of the central values of every group 0..num_groups-1 (NaN for an empty group).

    `trim` is the fraction dropped at each end: 0.25 is the interquartile mean, as robust as the
    median to what covers under a quarter of the group on either side, and smoother than the
    median when a structure covers close to half of it (the median then jumps between the two).
    """
    order = np.lexsort((values, groups))  # by group, then by value within the group
    cumulative = np.concatenate([[0.0], np.cumsum(values[order])])
    counts = np.bincount(groups, minlength=num_groups)
    starts = np.cumsum(counts) - counts
    dropped = np.floor(counts * trim).astype(np.int64)
    low, high = starts + dropped, starts + counts - dropped  # high > low wherever counts > 0
    means = np.full(num_groups, np.nan)
    filled = counts > 0
    means[filled] = (cumulative[high[filled]] - cumulative[low[filled]]) / (high - low)[filled]
    return means


def _fill_gaps(profile: np.ndarray) -> np.ndarray:
    """Linearly interpolates the NaN entries of a 1-D profile from its defined ones."""
    defined = np.isfinite(profile)
    if defined.all() or not defined.any():
        return np.nan_to_num(profile)
    index = np.arange(profile.size)
    return np.interp(index, index[defined], profile[defined])


def ring_correction(image: np.ndarray, radial_window: int = 15, sectors: int = 1,
                    centre: Sequence[float] | None = None,
                    sector_offset: float = 0.0) -> np.ndarray:
    """The ring signal that `ring_removal` subtracts (same parameters), as an (H, W) image."""
    image = np.asarray(image, np.float64)
    height, width = image.shape
    centre_row, centre_col = (height // 2, width // 2) if centre is None else centre
    rows, cols = np.mgrid[:height, :width]
    d_row, d_col = rows - centre_row, cols - centre_col

    # Polar coordinates by binning every pixel, not by resampling: a ring's profile and its
    # correction then come from exactly the same pixels, with no interpolation blur either way.
    radius_bin = np.floor(np.hypot(d_row, d_col) / RING_BIN_PX).astype(np.int64)
    num_bins = int(radius_bin.max()) + 1
    # Angle 0 points along +columns, angles grow towards +rows (clockwise on screen).
    angle = np.mod(np.arctan2(d_row, d_col) - np.deg2rad(sector_offset), 2 * np.pi)
    sector = np.minimum((angle / (2 * np.pi / sectors)).astype(np.int64), sectors - 1)

    # The median over the irregular angles of a bin's pixels jitters from bin to bin with the
    # image's smooth angular variation, which would read as fake rings: take it from the image
    # less a blur wider than the window, which keeps the narrow rings and drops that variation.
    detail = image - ndi.gaussian_filter(image, sigma=radial_window, mode="nearest")
    group = (sector * num_bins + radius_bin).ravel()
    profiles = _group_trimmed_means(detail.ravel(), group, sectors * num_bins, RING_TRIM)
    profiles = profiles.reshape(sectors, num_bins)

    # A ring is a narrow bump on the angular median profile; a running median of the profile
    # along the radius, wider than the ring, is the ring-free background.
    window = 2 * int(round(radial_window / RING_BIN_PX / 2)) + 1
    rings = np.empty_like(profiles)
    for index, profile in enumerate(profiles):
        profile = _fill_gaps(profile)
        rings[index] = profile - ndi.median_filter(profile, size=window, mode="nearest")
    return rings.reshape(-1)[group].reshape(height, width)


def ring_removal(image: np.ndarray, radial_window: int = 15, sectors: int = 1,
                 centre: Sequence[float] | None = None, sector_offset: float = 0.0) -> np.ndarray:
    """Removes ring artefacts centred on `centre` (default the image centre (H // 2, W // 2)).

    The standard image-domain approach: in polar coordinates around the rotation axis a ring is
    a line of constant radius, so the median over the angles at each radius (bins of
    `RING_BIN_PX` px) holds the rings plus the slowly varying mean structure. A running median
    of that profile along the radius, `radial_window` px wide, keeps the structure and drops the
    rings; their difference is the ring signal, subtracted from every pixel at that radius.

    Args:
      image: (H, W) image.
      radial_window: running-median width in px along the radius; wider than the rings
        (5..31 typical), narrower than the radial structure to keep.
      sectors: profiles estimated separately in this many equal angular sectors: 1 for full
        rings, 2 for the half rings of 180-degree scans, 4 for rings that vary around the circle.
      centre: (row, col) of the rotation axis; None for the image centre.
      sector_offset: angle in degrees where the first sector starts (0 = along +columns,
        growing towards +rows), so sector borders can be put at the ends of half rings.
    """
    image = np.asarray(image, np.float64)
    return image - ring_correction(image, radial_window, sectors, centre, sector_offset)
