"""Candidate pre-processing filters for tomography slices, to be ranked by the quality score.

Every filter (`FILTERS`) is a pure numpy `fn(image, **params) -> image` on a float32 (H, W)
image in [0, 1], mostly scikit-image's; `apply` checks the image and parameters and clips the
result. `CANDIDATES` is the default grid; `parse_candidates` reads a command-line grid.
"""

from __future__ import annotations

import inspect
import itertools
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import scipy.ndimage as ndi
from skimage import filters as sk_filters
from skimage import morphology, restoration

from tiqa import errors, observers

Params = dict[str, Any]
Candidate = tuple[str, Params]

# Radial sampling of `ring_removal`: bins of half a pixel resolve a ring 1-2 px wide.
RING_BIN_PX = 0.5
# Standard error of a median over n normal samples, times sqrt(n) per MAD: sqrt(pi / 2) * 1.4826.
RING_MEDIAN_SE = math.sqrt(math.pi / 2) * 1.4826
# Ring estimates are shrunk against this many standard errors: the normal approximation
# understates the error of a median over textured slices, and on nano-CT crops 2 halves the
# fake rings made on ring-free slices while removing 0.05-contrast rings as well as 1 does.
RING_ERROR_SCALE = 2.0
# Most angles sampled on the polar grid (about one per pixel of arc at the largest radius).
RING_MAX_ANGLES = 8192

# Daubechies-2 decomposition high-pass filter, PyWavelets' Wavelet('db2').dec_hi.
_SQRT3 = math.sqrt(3.0)
_DB2_HIGH = np.array([-(1 + _SQRT3), 3 + _SQRT3, -(3 - _SQRT3), 1 - _SQRT3]) / (4 * math.sqrt(2))
# Upper quartile of the standard normal, scipy.stats.norm.ppf(0.75).
_NORMAL_QUARTILE = 0.6744897501960817


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
    """Noise std as `skimage.restoration.estimate_sigma` (Donoho's db2 estimator), written out
    because skimage needs PyWavelets for it, which the project does not depend on."""
    detail = _dwt_detail(_dwt_detail(np.asarray(image, np.float64), 0), 1)
    detail = detail[detail != 0]  # flat regions (padding, saturation) carry no noise
    if detail.size == 0:
        return 0.0
    return float(np.median(np.abs(detail)) / _NORMAL_QUARTILE)


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


def _group_medians(values: np.ndarray, groups: np.ndarray, num_groups: int) -> np.ndarray:
    """Median of `values` within every group 0..num_groups-1 (NaN for an empty group)."""
    order = np.lexsort((values, groups))  # by group, then by value within the group
    ordered = values[order]
    counts = np.bincount(groups, minlength=num_groups)
    starts = np.cumsum(counts) - counts
    medians = np.full(num_groups, np.nan)
    filled = counts > 0
    low = starts[filled] + (counts[filled] - 1) // 2
    high = starts[filled] + counts[filled] // 2
    medians[filled] = 0.5 * (ordered[low] + ordered[high])
    return medians


def _fill_gaps(profile: np.ndarray) -> np.ndarray:
    """Linearly interpolates the NaN entries of a 1-D profile from its defined ones."""
    defined = np.isfinite(profile)
    if defined.all() or not defined.any():
        return np.nan_to_num(profile)
    index = np.arange(profile.size)
    return np.interp(index, index[defined], profile[defined])


def _polar_background(image: np.ndarray, centre: tuple[float, float],
                      radial_window: int) -> np.ndarray:
    """The image with every radial line through `centre` median-filtered: mostly ring-free.
    Edges crossing a radial line survive a running median, thin rings mostly do not (on a steep
    slope a ring keeps its rank and passes: on textured slices part of it leaks through)."""
    height, width = image.shape
    centre_row, centre_col = centre
    corner_rows, corner_cols = np.array([0, height - 1]), np.array([0, width - 1])
    max_radius = float(np.hypot(np.abs(corner_rows - centre_row).max(),
                                np.abs(corner_cols - centre_col).max()))
    num_radii = int(math.ceil(max_radius)) + 2
    num_angles = int(np.clip(math.ceil(2 * math.pi * max_radius), 64, RING_MAX_ANGLES))
    theta = 2 * np.pi * np.arange(num_angles) / num_angles
    radius = np.arange(num_radii, dtype=np.float64)
    polar = ndi.map_coordinates(image, [centre_row + np.outer(np.sin(theta), radius),
                                        centre_col + np.outer(np.cos(theta), radius)],
                                order=1, mode="nearest")
    polar = ndi.median_filter(polar, size=(1, 2 * (radial_window // 2) + 1), mode="nearest")
    polar = np.concatenate([polar, polar[:1]])  # the angle wraps around: row n is row 0
    rows, cols = np.mgrid[:height, :width]
    d_row, d_col = rows - centre_row, cols - centre_col
    angle_index = np.mod(np.arctan2(d_row, d_col), 2 * np.pi) * (num_angles / (2 * np.pi))
    return ndi.map_coordinates(polar, [angle_index, np.hypot(d_row, d_col)], order=1,
                               mode="nearest")


def ring_correction(image: np.ndarray, radial_window: int = 15, sectors: int = 1,
                    centre: Sequence[float] | None = None,
                    sector_offset: float = 0.0) -> np.ndarray:
    """The ring signal that `ring_removal` subtracts (same parameters), as an (H, W) image."""
    image = np.asarray(image, np.float64)
    height, width = image.shape
    centre_row, centre_col = (height // 2, width // 2) if centre is None else centre
    rows, cols = np.mgrid[:height, :width]
    d_row, d_col = rows - centre_row, cols - centre_col

    # Rings plus noise and a little edge residue: the image less its ring-free background.
    # Without this, the angular median at one radius would also follow the image's own
    # variation around the circle, which jitters from radius to radius (each radius has its
    # own irregular set of pixel angles) and would be read as rings.
    detail = image - _polar_background(image, (centre_row, centre_col), radial_window)

    # The angular medians come from binning the pixels by radius (and sector), not from
    # resampling: a ring's estimate and its correction then use exactly the same pixels, with
    # no interpolation blur across its edges.
    radius_bin = np.floor(np.hypot(d_row, d_col) / RING_BIN_PX).astype(np.int64)
    num_bins = int(radius_bin.max()) + 1
    # Angle 0 points along +columns and grows towards +rows (clockwise on screen).
    angle = np.mod(np.arctan2(d_row, d_col) - np.deg2rad(sector_offset), 2 * np.pi)
    sector = np.minimum((angle * (sectors / (2 * np.pi))).astype(np.int64), sectors - 1)
    group = (sector * num_bins + radius_bin).ravel()
    num_groups = sectors * num_bins
    values = detail.ravel()
    profiles = _group_medians(values, group, num_groups)
    # Standard error of each median (normal approximation from the MAD): large where a bin has
    # few pixels (near the centre, in narrow sectors) or is noisy.
    counts = np.bincount(group, minlength=num_groups)
    spread = _group_medians(np.abs(values - profiles[group]), group, num_groups)
    errors = RING_ERROR_SCALE * RING_MEDIAN_SE * spread / np.sqrt(np.maximum(counts, 1))

    # A ring is a narrow bump on the angular median profile; a running median of the profile
    # along the radius, wider than the ring, drops what is left of the smooth structure.
    window = 2 * int(round(radial_window / RING_BIN_PX / 2)) + 1
    rings = np.empty((sectors, num_bins))
    for index in range(sectors):
        profile = _fill_gaps(profiles[index * num_bins:(index + 1) * num_bins])
        ring = profile - ndi.median_filter(profile, size=window, mode="nearest")
        # Wiener-like shrinkage: an estimate within its own error is mostly noise, so it is
        # damped rather than subtracted, and thin data adds no fake rings.
        error_sq = np.nan_to_num(errors[index * num_bins:(index + 1) * num_bins]) ** 2
        rings[index] = ring * ring**2 / np.maximum(ring**2 + error_sq, 1e-30)
    return rings.reshape(-1)[group].reshape(height, width)


def ring_removal(image: np.ndarray, radial_window: int = 15, sectors: int = 1,
                 centre: Sequence[float] | None = None, sector_offset: float = 0.0) -> np.ndarray:
    """Removes ring artefacts about `centre` (default (H // 2, W // 2)): the standard
    image-domain approach, the angular median profile of the image less its ring-free
    background subtracted per radius bin and sector (`ring_correction`).

    Args:
      radial_window: running-median width in px along the radius; wider than the rings
        (5..31 typical), narrower than the radial structures to keep.
      sectors: profiles estimated separately in this many equal angular sectors: 1 for full
        rings, 2 for the half rings of 180-degree scans, 4 for rings that vary around the
        circle. A sector holds fewer pixels, so its estimate is noisier.
      centre: (row, col) of the rotation axis; None for the image centre.
      sector_offset: angle in degrees where the first sector starts (0 = along +columns,
        growing towards +rows), so that sector borders fall at the ends of half rings. With
        0 and 2 sectors the border is the horizontal line through the centre, where the half
        rings of `tiqa.tomography`'s 180-degree scans end.

    Limits: half rings are only removed with `sectors` >= 2 and borders at their ends; a
    structure covering over half of a circle (or sector) at some radius reads as a ring there;
    on textured slices faint rings (about 0.01 of the range) are only partly removed.
    """
    image = np.asarray(image, np.float64)
    return image - ring_correction(image, radial_window, sectors, centre, sector_offset)


# --------------------------------------------------------------------------------------------
# Registry, parameter checks and candidate grids
# --------------------------------------------------------------------------------------------

FILTERS: Mapping[str, Callable[..., np.ndarray]] = {
    "identity": identity,
    "median": median,
    "gaussian": gaussian,
    "nl_means": nl_means,
    "total_variation": total_variation,
    "bilateral": bilateral,
    "ring_removal": ring_removal,
}

# Slack allowed outside [0, 1] on input images (float round-off of earlier resampling).
_RANGE_TOLERANCE = 1e-6

_Rule = Callable[[Any], Any]  # returns the checked (normalised) value or raises ValueError


def _integer(low: int, high: int) -> _Rule:
    """An integer in [low, high]; integral floats (2.0) are taken as integers."""
    def check(value: Any) -> int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise ValueError(f"expected an integer, got {value!r}")
        if not float(value).is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"expected an integer in [{low}, {high}], got {value!r}")
        return int(value)
    return check


def _real(low: float, high: float, low_open: bool = True) -> _Rule:
    """A finite number in (low, high] (or [low, high] when not `low_open`)."""
    def check(value: Any) -> float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise ValueError(f"expected a number, got {value!r}")
        value = float(value)
        above = value > low if low_open else value >= low
        if not (math.isfinite(value) and above and value <= high):
            bracket = "(" if low_open else "["
            raise ValueError(f"expected a number in {bracket}{low}, {high}], got {value!r}")
        return value
    return check


def _centre(value: Any) -> tuple[float, float] | None:
    """None (the image centre) or a finite (row, col) pair."""
    if value is None:
        return None
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"expected none or a (row, col) pair such as 120x130, got {value!r}") from None
    if not (math.isfinite(row) and math.isfinite(col)):
        raise ValueError(f"expected a finite (row, col) pair, got {value!r}")
    return (row, col)


_RULES: Mapping[str, Mapping[str, _Rule]] = {
    "identity": {},
    "median": {"radius": _integer(1, 50)},
    "gaussian": {"sigma": _real(0.0, 50.0)},
    "nl_means": {"h": _real(0.0, 10.0), "patch_size": _integer(1, 21),
                 "patch_distance": _integer(1, 50)},
    "total_variation": {"weight": _real(0.0, 10.0)},
    "bilateral": {"sigma_color": _real(0.0, 1.0), "sigma_spatial": _real(0.0, 20.0)},
    "ring_removal": {"radial_window": _integer(3, 201), "sectors": _integer(1, 36),
                     "centre": _centre, "sector_offset": _real(-360.0, 360.0, low_open=False)},
}


def _check_name(name: str) -> Callable[..., np.ndarray]:
    if name not in FILTERS:
        raise errors.InputError(f"unknown filter {name!r}; known filters: {', '.join(FILTERS)}")
    return FILTERS[name]


def parameter_names(name: str) -> tuple[str, ...]:
    """The parameters of filter `name` (its signature less the image)."""
    return tuple(list(inspect.signature(_check_name(name)).parameters)[1:])


def check_params(name: str, params: Mapping[str, Any]) -> Params:
    """Checks the filter name, parameter names and values; returns the normalised parameters.

    Raises ValueError naming the unknown filter (listing the known ones), the unknown parameter
    (listing the filter's parameters) or the bad value.
    """
    allowed = parameter_names(name)
    checked = {}
    for key, value in params.items():
        if key not in allowed:
            raise errors.InputError(f"unknown parameter {key!r} for filter {name!r}; its parameters: "
                                    f"{', '.join(allowed) or 'none'}")
        try:
            checked[key] = _RULES[name][key](value)
        except ValueError as error:
            raise errors.InputError(f"bad value for {name}:{key}: {error}") from None
    return checked


def apply(name: str, image: np.ndarray, **params: Any) -> np.ndarray:
    """Runs filter `name` on a 2-D float image in [0, 1]; returns float32 clipped to [0, 1].

    Raises ValueError for an unknown filter or parameter, a bad parameter value, or an image
    that is not a 2-D, finite, floating-point array in [0, 1].
    """
    function = _check_name(name)
    params = check_params(name, params)
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 1:
        raise ValueError(f"expected a non-empty 2-D (H, W) image, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"expected a floating-point image in [0, 1], got dtype {image.dtype}")
    if not np.isfinite(image).all():
        raise ValueError("the image has NaN or infinite values")
    if image.min() < -_RANGE_TOLERANCE or image.max() > 1 + _RANGE_TOLERANCE:
        raise ValueError(f"expected an image in [0, 1], got values in "
                         f"[{image.min():.4g}, {image.max():.4g}]")
    output = function(np.clip(image, 0.0, 1.0).astype(np.float32), **params)
    return np.clip(output, 0.0, 1.0).astype(np.float32)


def _format_value(value: Any) -> str:
    """A parameter value in the syntax `parse_candidates` reads back."""
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return "x".join(_format_value(v) for v in value)
    return repr(value)


def describe(name: str, params: Mapping[str, Any]) -> str:
    """A short label such as "median(radius=2)" (just the name when there are no parameters)."""
    if not params:
        return name
    return f"{name}({', '.join(f'{key}={_format_value(v)}' for key, v in params.items())})"


def _parse_value(text: str) -> Any:
    """'none', an integer, a float, or a ROWxCOL pair (for `centre`)."""
    lowered = text.strip().lower()
    if lowered == "none":
        return None
    if "x" in lowered:
        return tuple(_parse_value(part) for part in lowered.split("x"))
    try:
        return int(lowered)
    except ValueError:
        pass
    try:
        return float(lowered)
    except ValueError:
        raise errors.InputError(f"bad value {text!r}: expected a number, 'none' or ROWxCOL") from None


def parse_candidates(spec: str) -> list[Candidate]:
    """Expands a compact grid spec into (name, params) candidates, every combination per filter.

    Entries separated by ';', each `name` or `name:param=v1,v2:param=v1,...`, e.g.
    "median:radius=1,2;ring_removal:radial_window=9,21:sectors=1,2;identity". Values are
    integers, floats, 'none' or ROWxCOL (a `centre`). Duplicates are dropped, order is kept.
    """
    candidates: list[Candidate] = []
    for entry in spec.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        name, *fields = [field.strip() for field in entry.split(":")]
        allowed = parameter_names(name)  # raises for an unknown filter
        grid: dict[str, list[Any]] = {}
        for field in fields:
            key, sep, values = (part.strip() for part in field.partition("="))
            if not sep or not key or not values:
                raise errors.InputError(f"bad field {field!r} in {entry!r}: expected param=v1,v2,...")
            if key not in allowed:
                raise errors.InputError(f"unknown parameter {key!r} for filter {name!r}; its "
                                        f"parameters: {', '.join(allowed) or 'none'}")
            if key in grid:
                raise errors.InputError(f"parameter {key!r} given twice in {entry!r}")
            try:
                grid[key] = [_parse_value(value) for value in values.split(",")]
            except ValueError as error:
                raise errors.InputError(f"{name}:{key}: {error}") from None
        for combination in itertools.product(*grid.values()):
            candidate = (name, check_params(name, dict(zip(grid, combination))))
            if candidate not in candidates:
                candidates.append(candidate)
    if not candidates:
        raise errors.InputError(f"no candidates in {spec!r}")
    return candidates


# The default grid: each filter at a few strengths, and the unfiltered baseline.
CANDIDATES: list[Candidate] = [
    ("identity", {}),
    *[("median", {"radius": radius}) for radius in (1, 2, 3)],
    *[("gaussian", {"sigma": sigma}) for sigma in (0.5, 1.0, 2.0)],
    *[("nl_means", {"h": h}) for h in (0.6, 0.8, 1.2)],
    *[("total_variation", {"weight": weight}) for weight in (0.02, 0.05, 0.1)],
    *[("bilateral", {"sigma_color": sigma_color}) for sigma_color in (0.05, 0.1)],
    *[("ring_removal", {"radial_window": window, "sectors": sectors})
      for window in (9, 21) for sectors in (1, 2)],
]
# The candidates that remove noise: the ring filters leave a ring-free acquisition as it was.
DENOISERS: list[Candidate] = [c for c in CANDIDATES if c[0] != "ring_removal"]


def denoising_ladder(ideal: np.ndarray, noisy: np.ndarray, levels: int = 5,
                     candidates: Sequence[Candidate] = tuple(DENOISERS)) -> np.ndarray:
    """(levels + 1, H, W): `ideal`, then `levels` of the candidates' outputs on `noisy`, from
    the most to the least like `ideal` by SSIM, picked evenly along that order.

    A training ladder whose order is the one filter selection has to find: a filter is better
    when it brings the acquisition closer to the ideal one, not when it looks smoother. With
    the unfiltered `identity` among the candidates, the noisy image itself is usually last.
    """
    if len(candidates) < levels:
        raise ValueError(f"a denoising ladder of {levels} levels needs at least {levels} "
                         f"candidates, got {len(candidates)}")
    ideal = np.asarray(ideal, np.float32)
    outputs = np.stack([apply(name, noisy, **params) for name, params in candidates])
    similarity = np.asarray(observers.ssim(np.broadcast_to(ideal, outputs.shape), outputs))
    order = np.argsort(-similarity, kind="stable")
    picks = order[np.round(np.linspace(0, len(candidates) - 1, levels)).astype(int)]
    return np.concatenate([ideal[None], outputs[picks]]).astype(np.float32)
