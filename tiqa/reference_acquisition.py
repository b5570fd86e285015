"""The acquisition model one image at a time in numpy and scikit-image.

It is the peer of the batched JAX model (`tiqa.acquisition`) in the acquisition benchmark and
its independent check in the tests: the same physics, written with `skimage.transform.radon`
and `iradon` (sparse views by dropping angles), scipy's Gaussian filter for the detector
PSF and numpy's FFT for sub-pixel shifts. Random numbers are numpy's, unless the caller gives
the gains, counts or zingers it wants.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import transform

from tiqa import acquisition


def project(attenuation: np.ndarray, max_views: int = acquisition.MAX_VIEWS) -> np.ndarray:
    """Line integrals (N, max_views) of an (N, N) object inside its inscribed circle."""
    size = attenuation.shape[0]
    offsets = np.arange(size) - size // 2
    inside = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= (size // 2) ** 2
    return transform.radon(np.where(inside, attenuation, 0.0), acquisition.scan_angles(max_views),
                           circle=True)


def shift_detector(sinogram: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Column a moved by shifts[a] px along the detector (Fourier shift, zero padded)."""
    size = sinogram.shape[0]
    spectrum = np.fft.rfft(sinogram, n=2 * size, axis=0)
    phase = np.exp(-2j * np.pi * np.fft.rfftfreq(2 * size)[:, None] * shifts[None, :])
    return np.fft.irfft(spectrum * phase, n=2 * size, axis=0)[:size]


def measure(line_integrals: np.ndarray, settings: dict, rng: np.random.Generator, *,
            gains: np.ndarray | None = None) -> np.ndarray:
    """The detector: shifts, PSF, gains, Poisson counts, zingers, unit-gain flat field, log."""
    detectors, views = line_integrals.shape
    angles = np.deg2rad(acquisition.scan_angles(views))
    progress = np.arange(views) / max(views - 1, 1)
    shifts = settings["centre_offset"] + settings["drift"] * progress * np.cos(angles)
    # Without the rigid translation (a cos + b sin) they imply: the reconstruction stays put.
    rigid = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    shifts = shifts - rigid @ np.linalg.lstsq(rigid, shifts, rcond=None)[0]
    moved = shift_detector(line_integrals, shifts)
    photons = float(settings["photons"])
    noisy = np.isfinite(photons)
    flat = photons if noisy else 1.0
    intensity = flat * np.exp(-moved)
    if settings["detector_blur"] > 0:
        intensity = ndimage.gaussian_filter1d(intensity, settings["detector_blur"], axis=0,
                                              mode="nearest", truncate=4.0)
    if gains is None:
        gains = 1.0 + settings["gain_error"] * rng.standard_normal(detectors)
    intensity = intensity * gains[:, None]
    counts = rng.poisson(intensity).astype(np.float64) if noisy else intensity
    hit = rng.random(counts.shape) < settings["zingers"]
    counts = counts + hit * rng.uniform(*acquisition.ZINGER_COUNTS, counts.shape) * flat
    floor = acquisition.MIN_COUNTS if noisy else np.finfo(np.float64).tiny
    return -np.log(np.maximum(counts, floor) / flat)


def reconstruct(measured: np.ndarray, views: int, output_size: int) -> np.ndarray:
    """FBP of the kept views (every max_views / views-th angle), the centred square kept."""
    max_views = measured.shape[1]
    stride = max_views // int(views)
    angles = acquisition.scan_angles(max_views)[::stride]
    image = transform.iradon(measured[:, ::stride], theta=angles, filter_name="ramp",
                             interpolation="linear", circle=True)
    start = image.shape[0] // 2 - output_size // 2
    return image[start:start + output_size, start:start + output_size]


def simulate(attenuation: np.ndarray, settings: dict, rng: np.random.Generator,
             output_size: int, max_views: int = acquisition.MAX_VIEWS) -> np.ndarray:
    """One acquisition of one object, per image (the peer of `acquisition.simulate`)."""
    measured = measure(project(attenuation, max_views), settings, rng)
    return reconstruct(measured, settings["views"], output_size)


def ladder_settings(factor: str, max_views: int = acquisition.MAX_VIEWS) -> list[dict]:
    """Levels 0..5 of `factor` as plain dicts, the other factors ideal (all views of a
    coarser angle grid)."""
    rows = []
    for level in range(acquisition.NUM_LEVELS):
        row = {name: acquisition.LEVELS[name][0] for name in acquisition.FACTORS}
        row["views"] = min(row["views"], max_views)
        row[factor] = acquisition.LEVELS[factor][level]
        rows.append(row)
    return rows
