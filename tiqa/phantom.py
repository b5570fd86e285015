"""Synthetic Li-ion electrode tomography with ground truth: microstructure, then a simulated scan.

The microstructure is a 3-D packing of polydisperse spheres (NMC particles), a carbon-binder
domain (CBD) coating them and bridging their necks, and pores elsewhere; 2-D phantoms are
sections of the same kind of packing, so particle sections have the size spread of real slices.
Labels follow the real nano-CT labels in ../shared/data/nmc532_nanoct/labels:

    0 particle, 1 carbon-binder, 2 pore

Attenuation, in relative units times `mu_per_pixel` (the linear attenuation coefficient per
pixel of a relative-1 phase), is by default particle 1.0, binder 0.3, pore 0.0, with a few
per cent of smooth texture inside the particles, speckle in the nanoporous binder, and cracks
(labelled pore) through some particles. With the default mu_per_pixel = 0.01 a 256-pixel
slice attenuates a ray through its centre by roughly exp(-1.5), a realistic transmission.

`acquire` scans a slice physically: parallel-beam line integrals (tiqa.tomography.radon),
Beer-Lambert photon counts with Poisson noise and per-detector-pixel gains that a unit-gain
flat field leaves in (the cause of ring artefacts), then filtered back-projection.

The microstructure is numpy (deterministic for a seed through np.random.default_rng); the scan
is JAX (deterministic for a seed or key through jax.random). `load_reference_slices` gives the
training and evaluation phases their reference slices: the input's, the phantom's, or both.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from tiqa import io, tomography

PARTICLE, BINDER, PORE = 0, 1, 2
# Relative attenuation of each label (index = label).
PHASE_ATTENUATION = (1.0, 0.3, 0.0)
DEFAULT_MU_PER_PIXEL = 0.01
# The floor on detector gains only guards the logarithm at absurd error levels.
MIN_GAIN = 0.05

__all__ = [
    "PARTICLE", "BINDER", "PORE", "PHASE_ATTENUATION", "DEFAULT_MU_PER_PIXEL",
    "microstructure", "microstructure_volume", "acquire", "phantom_volume",
    "scan_detectors", "scan_angles", "detector_gains",
]


# --------------------------------------------------------------------------------------------
# Microstructure (numpy)
# --------------------------------------------------------------------------------------------

def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to zero mean and unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / max(field.std(), 1e-12)


def _sphere_box(shape: Sequence[int], centre: np.ndarray, radius: float):
    """Slices of the volume's part of a sphere's bounding box, and the voxel offsets in it."""
    slices, offsets = [], []
    for axis, size in enumerate(shape):
        low = max(0, int(math.floor(centre[axis] - radius)))
        high = min(size, int(math.ceil(centre[axis] + radius)) + 1)
        if low >= high:
            return None, None
        slices.append(slice(low, high))
        offsets.append(np.arange(low, high) - centre[axis])
    grids = np.meshgrid(*offsets, indexing="ij", sparse=True)
    return tuple(slices), grids


def _pack_spheres(rng: np.random.Generator, shape: tuple[int, int, int], fraction: float,
                  radius_median: float, radius_sigma: float, max_overlap: float,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random sequential addition of log-normal spheres until `fraction` of the volume is solid.

    Centres lie within one radius of the volume, so particles are cut by its faces as in a
    sub-volume of an electrode. Two spheres may interpenetrate by `max_overlap` of the sum of
    their radii (contacts, as after calendering); when the packing jams below the target the
    allowed overlap grows a little, so the target is always reached.

    Returns (centres (n, 3), radii (n,), owner): owner is the int32 volume of the index of the
    sphere each voxel belongs to (the last one placed where they overlap), -1 outside.
    """
    owner = np.full(shape, -1, np.int32)
    target = fraction * owner.size
    solid = 0
    centres = np.zeros((0, 3))
    radii = np.zeros((0,))
    dims = np.asarray(shape, float)
    overlap = max_overlap
    failures = 0
    while solid < target:
        radius = float(np.clip(radius_median * np.exp(radius_sigma * rng.standard_normal()),
                               max(1.5, 0.4 * radius_median), 3.0 * radius_median))
        # 64 candidate centres at once; keep the first that respects the overlap limit.
        candidates = rng.uniform(-radius, dims + radius, size=(64, 3))
        if len(radii):
            distance = np.linalg.norm(candidates[:, None, :] - centres[None], axis=-1)
            allowed = (1.0 - overlap) * (radius + radii)[None, :]
            ok = np.all(distance >= allowed, axis=1)
        else:
            ok = np.ones(len(candidates), bool)
        if not ok.any():
            failures += 1
            if failures >= 40:  # jammed: let particles press a little harder into each other
                overlap = min(overlap + 0.05, 0.9)
                failures = 0
            continue
        failures = 0
        centre = candidates[np.argmax(ok)]
        slices, grids = _sphere_box(shape, centre, radius)
        if slices is None:
            continue
        inside = sum(g**2 for g in grids) <= radius**2
        region = owner[slices]
        solid += int(np.count_nonzero(inside & (region < 0)))
        region[inside] = len(radii)
        centres = np.vstack([centres, centre])
        radii = np.append(radii, radius)
    return centres, radii, owner


def _crack_particles(rng: np.random.Generator, labels: np.ndarray, owner: np.ndarray,
                     centres: np.ndarray, radii: np.ndarray, probability: float) -> None:
    """Cut thin planar cracks (labelled pore) through a random subset of the particles.

    Each crack is a slab of width 0.8..1.6 px through the particle, stopped on one side by a
    second random plane so that cracks end inside the particle, as intergranular cracks do.
    """
    for index in np.flatnonzero(rng.random(len(radii)) < probability):
        centre, radius = centres[index], radii[index]
        slices, grids = _sphere_box(labels.shape, centre, radius)
        if slices is None or radius < 4:
            continue
        for _ in range(rng.integers(1, 3)):
            normal, stop = rng.standard_normal((2, 3))
            normal /= np.linalg.norm(normal)
            stop /= np.linalg.norm(stop)
            height = sum(n * g for n, g in zip(normal, grids)) - rng.uniform(-0.4, 0.4) * radius
            side = sum(m * g for m, g in zip(stop, grids)) - rng.uniform(-0.6, 0.2) * radius
            width = rng.uniform(0.8, 1.6)
            crack = (np.abs(height) <= width / 2) & (side >= 0)
            crack &= owner[slices] == index
            labels[slices][crack] = PORE


def microstructure_volume(seed: int, shape: tuple[int, int, int] = (32, 256, 256), *,
                          particle_fraction: float = 0.5, binder_fraction: float = 0.4,
                          radius_median: float = 16.0, radius_sigma: float = 0.35,
                          max_overlap: float = 0.15, crack_probability: float = 0.3,
                          texture: float = 0.04,
                          phase_attenuation: Sequence[float] = PHASE_ATTENUATION,
                          mu_per_pixel: float = DEFAULT_MU_PER_PIXEL,
                          ) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D electrode microstructure; its z-slices are consistent sections.

    Args:
      seed: seed of np.random.default_rng; equal seeds give identical volumes.
      shape: (depth, H, W) in voxels.
      particle_fraction: particle volume fraction (before cracks; reached to within a voxel
        layer of the last particle).
      binder_fraction: fraction of the non-particle space given to the carbon-binder domain.
      radius_median, radius_sigma: particle radii are log-normal with this median (voxels)
        and log-standard deviation, clipped to [0.4, 3] medians.
      max_overlap: the fraction of the sum of two radii by which particles may interpenetrate.
      crack_probability: fraction of particles with one or two cracks.
      texture: relative amplitude of the grey-level texture inside particles and binder.
      phase_attenuation: relative attenuation of labels 0, 1, 2.
      mu_per_pixel: attenuation per voxel of a relative-1 phase.

    Returns:
      (attenuation float32 (depth, H, W), labels uint8 (depth, H, W)); labels 0 particle,
      1 binder, 2 pore.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be (depth, H, W), got {shape}")
    # Beyond ~0.9 even heavily interpenetrating spheres leave no room; 0 leaves no particles.
    if not 0.0 < particle_fraction <= 0.9:
        raise ValueError(f"particle_fraction must be in (0, 0.9], got {particle_fraction}")
    if not 0.0 <= binder_fraction <= 1.0:
        raise ValueError(f"binder_fraction must be in [0, 1], got {binder_fraction}")
    rng = np.random.default_rng(seed)
    centres, radii, owner = _pack_spheres(rng, shape, particle_fraction, radius_median,
                                          radius_sigma, max_overlap)
    particle = owner >= 0

    # CBD coats the particles and fills the necks between them: the pore voxels closest to a
    # particle, the distance roughened by a smooth field so the coating thickness varies.
    distance = ndimage.distance_transform_edt(~particle)
    roughness = _smooth_noise(rng, shape, sigma=min(3.0, max(shape) / 8))
    score = distance + 1.5 * roughness
    labels = np.full(shape, PORE, np.uint8)
    labels[particle] = PARTICLE
    if binder_fraction > 0 and (~particle).any():
        threshold = np.quantile(score[~particle], binder_fraction)
        labels[~particle & (score <= threshold)] = BINDER
    _crack_particles(rng, labels, owner, centres, radii, crack_probability)

    # Grey levels: a per-particle factor (composition, density) and smooth texture inside the
    # particles; finer speckle in the nanoporous binder.
    grain = 1.0 + texture * np.clip(rng.standard_normal(len(radii) + 1), -2.5, 2.5)
    smooth = _smooth_noise(rng, shape, sigma=1.5)
    speckle = _smooth_noise(rng, shape, sigma=0.7)
    values = np.asarray(phase_attenuation, np.float64)[labels]
    factor = np.where(labels == PARTICLE, grain[owner] * (1.0 + texture * smooth),
                      1.0 + 2.5 * texture * speckle)
    attenuation = np.maximum(values * factor, 0.0) * mu_per_pixel
    return attenuation.astype(np.float32), labels


def microstructure(seed: int, shape: tuple[int, int] = (256, 256),
                   **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D electrode slice: a section of a sphere packing (see `microstructure_volume`).

    Returns (attenuation float32 (H, W), labels uint8 (H, W)); keyword arguments as
    `microstructure_volume`.
    """
    attenuation, labels = microstructure_volume(seed, (1,) + tuple(shape), **kwargs)
    return attenuation[0], labels[0]


# --------------------------------------------------------------------------------------------
# Acquisition (JAX)
# --------------------------------------------------------------------------------------------

def scan_detectors(size: int, pad: bool = True) -> int:
    """Detector pixels of the scan of a size x size slice.

    With `pad`, the slice is embedded in air in a square of side ceil(sqrt(2) size) + 2, whose
    inscribed circle (the scanned field of view) holds the whole slice; otherwise the slice's
    own inscribed circle is scanned.
    """
    return int(math.ceil(math.sqrt(2.0) * size)) + 2 if pad else int(size)


def scan_angles(n_angles: int) -> np.ndarray:
    """n_angles projection angles evenly spaced over [0, 180) degrees (skimage's default)."""
    return np.linspace(0.0, 180.0, n_angles, endpoint=False)


def detector_gains(key: jax.Array, num_detectors: int, gain_error_std) -> jnp.ndarray:
    """Per-detector-pixel gains 1 + gain_error_std * N(0, 1), floored at MIN_GAIN."""
    gains = 1.0 + gain_error_std * jax.random.normal(key, (num_detectors,), jnp.float32)
    return jnp.maximum(gains, MIN_GAIN)


def _as_key(seed) -> jax.Array:
    if isinstance(seed, (int, np.integer)):
        return jax.random.key(int(seed))
    return seed


@functools.partial(jax.jit, static_argnames=("n_angles", "pad", "noisy"),
                   compiler_options=tomography.COMPILER_OPTIONS)
def _scan(attenuation: jnp.ndarray, key: jax.Array, photons: jnp.ndarray, gains: jnp.ndarray,
          n_angles: int, pad: bool, noisy: bool) -> jnp.ndarray:
    """Project, count photons, flat-field with unit gains, log, and reconstruct one slice."""
    size = attenuation.shape[0]
    angles = scan_angles(n_angles)
    if pad:
        padded = scan_detectors(size, pad=True)
        before = padded // 2 - size // 2
        sample = jnp.pad(attenuation, ((before, padded - size - before),) * 2)
    else:
        offsets = np.arange(size) - size // 2
        inside = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= (size // 2) ** 2
        sample = jnp.where(inside, attenuation, 0.0)
    line_integrals = tomography.radon(sample, angles)  # (detectors, angles)
    if noisy:
        expected = photons * gains[:, None] * jnp.exp(-line_integrals)
        counts = jax.random.poisson(key, expected, dtype=jnp.int32).astype(jnp.float32)
        # A unit-gain flat field: the gains stay in, and zero counts are floored at one photon.
        measured = -jnp.log(jnp.maximum(counts, 1.0) / photons)
    else:
        measured = line_integrals - jnp.log(gains)[:, None]
    reconstruction = tomography.fbp(measured, angles)
    if pad:
        reconstruction = reconstruction[before:before + size, before:before + size]
    return reconstruction


def acquire(attenuation, seed, photons: float | None = 1e4, gain_error_std: float = 0.0,
            n_angles: int = 180, *, gains=None, pad: bool = True) -> jnp.ndarray:
    """Simulated parallel-beam scan and FBP reconstruction of one slice.

    p = radon(attenuation); counts I = Poisson(photons * gain_j * exp(-p)) with per-detector
    gains gain_j = 1 + gain_error_std * N(0, 1), fixed over the angles; a flat field that
    assumes unit gain gives p_meas = -log(max(I, 1) / photons), so -log(gain_j) stays in every
    projection of detector j (rings of radius |j - D // 2|); then `tomography.fbp`.

    Args:
      attenuation: (N, N) attenuation per pixel (e.g. from `microstructure`).
      seed: int seed or jax PRNG key; equal seeds give identical scans. It is split into a
        gain key and a noise key.
      photons: incident photons per detector pixel and projection; None or inf for a
        noise-free scan (the gains still apply).
      gain_error_std: standard deviation of the relative detector gain errors.
      n_angles: projections over [0, 180) degrees.
      gains: explicit (scan_detectors(N, pad),) gains; overrides gain_error_std (use it to
        give every slice of a volume the same detector).
      pad: embed the slice in air so the whole square is scanned (detector count
        `scan_detectors(N)`); with False only the inscribed circle is scanned and the rest
        of the reconstruction is 0.

    Returns:
      (N, N) float32 reconstruction, in the units of `attenuation`.
    """
    attenuation = jnp.asarray(attenuation, jnp.float32)
    if attenuation.ndim != 2 or attenuation.shape[0] != attenuation.shape[1]:
        raise ValueError(f"acquire expects a square (N, N) slice, got {attenuation.shape}")
    num_detectors = scan_detectors(attenuation.shape[0], pad)
    gain_key, noise_key = jax.random.split(_as_key(seed))
    if gains is None:
        gains = (detector_gains(gain_key, num_detectors, gain_error_std) if gain_error_std
                 else jnp.ones((num_detectors,), jnp.float32))
    gains = jnp.asarray(gains, jnp.float32)
    if gains.shape != (num_detectors,):
        raise ValueError(f"gains must have shape ({num_detectors},), got {gains.shape}")
    noisy = photons is not None and math.isfinite(photons)
    return _scan(attenuation, noise_key, jnp.float32(photons if noisy else 1.0), gains,
                 n_angles=int(n_angles), pad=bool(pad), noisy=noisy)


def phantom_volume(seed: int, n_slices: int = 16, size: int = 256,
                   photons: float | None = 1e4, gain_error_std: float = 0.0, *,
                   n_angles: int = 180, pad: bool = True,
                   **microstructure_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """A reconstructed phantom volume with its labels, for demos, tests and training slices.

    Every slice of a `microstructure_volume` is scanned with `acquire`, all with the same
    detector gains (a real detector's rings sit at the same place in every slice) and
    independent photon noise. The full-reference target of a scan is the same call with
    `photons=None, gain_error_std=0` (the same structure, noise-free and with perfect gains).

    Returns:
      (reconstruction (n_slices, size, size) float32, labels (n_slices, size, size) uint8),
      numpy arrays.
    """
    attenuation, labels = microstructure_volume(seed, (n_slices, size, size),
                                                **microstructure_kwargs)
    num_detectors = scan_detectors(size, pad)
    gain_key, noise_key = jax.random.split(jax.random.key(seed))
    gains = detector_gains(gain_key, num_detectors, gain_error_std)
    slice_keys = jax.random.split(noise_key, n_slices)
    reconstruction = np.empty(attenuation.shape, np.float32)
    for index in range(n_slices):
        reconstruction[index] = acquire(attenuation[index], slice_keys[index], photons,
                                        n_angles=n_angles, gains=gains, pad=pad)
    return reconstruction, labels


def to_unit_range(reconstruction: np.ndarray) -> np.ndarray:
    """A reconstruction mapped to [0, 1] by its own 0.5 and 99.5 percentiles, then clipped:
    how the project's phantom volumes become slices to score or train on."""
    low, high = np.percentile(reconstruction, [0.5, 99.5])
    return np.clip((reconstruction - low) / (high - low), 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class PhantomSettings:
    """The project's phantom as a source of reference slices (configs/common.add_phantom)."""
    slices: int = 8
    size: int = 288
    photons: float = 2e4
    gain_error_std: float = 0.002
    mix_with_input: bool = False  # also with an input: its slices first, then the phantom's


def load_reference_slices(inputs: str, settings: PhantomSettings, seed: int
                          ) -> tuple[list[np.ndarray], list[str]]:
    """Slices from `inputs` (comma-separated slices, volumes or folders) and/or phantom slices:
    the reference slices of the training and evaluation phases.

    The phantom (a simulated scan of a synthetic electrode, drawn from `seed`) is used alone
    when `inputs` is empty (smoke runs, demos) and added to the input's slices when
    `settings.mix_with_input` is set. Returns (slices in [0, 1], source names).
    """
    slices, sources = [], []
    if inputs:
        for path in io.split_paths(inputs):
            for source, index in io.list_inputs(path):
                slices.append(io.read_item((source, index)))
                sources.append(str(source))
    if not inputs or settings.mix_with_input:
        reconstruction, _ = phantom_volume(
            seed, n_slices=settings.slices, size=settings.size,
            photons=settings.photons, gain_error_std=settings.gain_error_std)
        slices += list(to_unit_range(reconstruction))
        sources += [f"phantom-{seed}"] * len(reconstruction)
    return slices, sources
