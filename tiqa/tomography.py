"""Parallel-beam tomography in JAX: Radon transform, ramp filter and filtered back-projection.

The geometry is scikit-image's (`radon(circle=True)`, `iradon(filter_name='ramp',
interpolation='linear', circle=True)`), so results are checked against it: an (N, N) image
rotates about pixel (N // 2, N // 2) and is zero outside the inscribed circle; a sinogram is
(detectors, angles), detector j at j - detectors // 2, angles in degrees. Everything is
jittable, float32, and scans over the angles so memory holds one angle's samples.

Sample coordinates are int32 fixed point, not float32: XLA:CPU duplicates the coordinate
arithmetic into several fusions whose copies can round differently, so on an integer coordinate
(every other ray at 60 or 120 degrees) the gather's floor and the weights' fraction disagreed
and read a neighbouring pixel (errors to ~0.5 % of a projection with float32, as in
`jax.scipy.ndimage.map_coordinates`). Integer arithmetic is exact; its quantisation (2**-22 px,
2**-18 px at 2000 px) is below float32's own resolution there.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "radon",
    "ramp_filter",
    "fbp",
    "detector_offset_rings",
    "min_detectors",
    "ramp_filter_response",
    "COMPILER_OPTIONS",
]

# What jits built on these projectors compile with: LLVM optimisation level 2, whatever
# XLA_FLAGS say. The projectors are loops of gathers whose run time depends on it (a 256 px scan
# runs 5 to 7 times slower at level 0), and a process may lower the level for everything else:
# the test suite does, because it compiles the networks 2 to 4 times faster. Level 2 rather
# than XLA's default 3: on the CPU the scans run as fast and compile in half the time.
COMPILER_OPTIONS = {"xla_backend_optimization_level": 2}


def _frac_bits(extent: float) -> int:
    """Fractional bits for coordinates up to `extent` px, one bit of int32 head-room kept."""
    integer_bits = max(1, math.ceil(math.log2(extent + 2.0)))
    bits = 30 - integer_bits
    if bits < 8:
        raise ValueError(f"image too large for int32 fixed-point coordinates (extent {extent})")
    return min(bits, 22)


def _cos_sin_fixed(angles_deg: jnp.ndarray, bits: int) -> jnp.ndarray:
    """(n_angles, 2) int32 array of round(cos a * 2**bits), round(sin a * 2**bits)."""
    angles = jnp.deg2rad(jnp.asarray(angles_deg, jnp.float32).reshape(-1))
    unit = jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)
    return jnp.round(unit * float(1 << bits)).astype(jnp.int32)


def _split_fixed(position: jnp.ndarray, bits: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Floor (int32) and fraction in [0, 1) (float32) of a fixed-point coordinate."""
    floor = jnp.right_shift(position, bits)  # arithmetic shift: floor for negatives too
    fraction = jnp.bitwise_and(position, (1 << bits) - 1).astype(jnp.float32)
    return floor, fraction * (1.0 / (1 << bits))


def radon(image: jnp.ndarray, angles_deg) -> jnp.ndarray:
    """(N, N) image -> (N, n_angles) sinogram, as `skimage.transform.radon(circle=True)`.

    Mass outside the inscribed circle is not checked: it is projected, but leaves the detector
    range at some angles.
    """
    image = jnp.asarray(image, jnp.float32)
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"radon expects a square (N, N) image, got shape {image.shape}")
    size = image.shape[0]
    centre = size // 2
    # Coordinates reach at most c + |s| + |t| <= 1.5 N before clipping.
    bits = _frac_bits(1.5 * size + 2)
    cos_sin = _cos_sin_fixed(angles_deg, bits)
    offsets = jnp.arange(size, dtype=jnp.int32) - centre  # detector s and ray t positions

    # One zero pixel before and two after on both axes, so coordinates clipped to [-1, N]
    # always read zeros outside the image (bilinear with zero fill, as skimage's warp). Each
    # entry holds a pixel's 2x2 neighbourhood: one gather of 4 values per sample is faster on
    # XLA's CPU backend than 4 scalar gathers.
    padded = jnp.pad(image, ((1, 2), (1, 2)))
    stride = size + 2
    quads = jnp.stack([padded[:-1, :-1], padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]],
                      axis=-1).reshape(-1, 4)
    low, high = -(1 << bits), size << bits

    def project(cs: jnp.ndarray) -> jnp.ndarray:
        cos_a, sin_a = cs[0], cs[1]
        s, t = offsets[None, :], offsets[:, None]  # rows of the sample grid are rays' t
        col = (centre << bits) + s * cos_a + t * sin_a
        row = (centre << bits) - s * sin_a + t * cos_a
        r0, fr = _split_fixed(jnp.clip(row, low, high), bits)
        c0, fc = _split_fixed(jnp.clip(col, low, high), bits)
        quad = quads[(r0 + 1) * stride + (c0 + 1)]
        top = quad[..., 0] + fc * (quad[..., 1] - quad[..., 0])
        bottom = quad[..., 2] + fc * (quad[..., 3] - quad[..., 2])
        return jnp.sum(top + fr * (bottom - top), axis=0)

    # A scan over the angles: memory holds one (N, N) sample grid at a time.
    return jax.lax.map(project, cos_sin).T


def ramp_filter_response(padded_size: int) -> np.ndarray:
    """skimage's 'ramp' response for an FFT of `padded_size` points: the FFT of Kak & Slaney's
    spatial Ram-Lak kernel (`radon_transform._get_fourier_filter`), not |f| sampled."""
    n = np.concatenate((np.arange(1, padded_size / 2 + 1, 2, dtype=int),
                        np.arange(padded_size / 2 - 1, 0, -2, dtype=int)))
    kernel = np.zeros(padded_size)
    kernel[0] = 0.25
    kernel[1::2] = -1.0 / (np.pi * n) ** 2
    return 2.0 * np.real(np.fft.fft(kernel))


def _padded_size(num_detectors: int) -> int:
    # skimage: max(64, 2 ** ceil(log2(2 D))), written in integers.
    return max(64, 1 << (2 * num_detectors - 1).bit_length())


def ramp_filter(sinogram: jnp.ndarray) -> jnp.ndarray:
    """Ramp-filters (D, ...) projections along the detectors, as skimage's `iradon`; the padding
    to at least 2 D makes it a linear, not circular, convolution."""
    sinogram = jnp.asarray(sinogram, jnp.float32)
    num_detectors = sinogram.shape[0]
    padded = _padded_size(num_detectors)
    # The response is real and even, so rfft/irfft give real(ifft(fft(x) * H)) at half the cost.
    response = ramp_filter_response(padded)[: padded // 2 + 1].astype(np.float32)
    response = response.reshape((-1,) + (1,) * (sinogram.ndim - 1))
    spectrum = jnp.fft.rfft(sinogram, n=padded, axis=0)
    filtered = jnp.fft.irfft(spectrum * response, n=padded, axis=0)
    return filtered[:num_detectors].astype(jnp.float32)


def _backproject(columns, cos_sin: jnp.ndarray, shape: tuple[int, int], num_detectors: int,
                 bits: int, per_angle: bool) -> jnp.ndarray:
    """Unscaled (H, W, *batch) back-projection of `columns`: (n_angles, D, *batch) when
    `per_angle`, else one (D, *batch) profile for every angle. Beyond the outermost detectors
    reads 0, as skimage's `numpy.interp(left=0, right=0)`."""
    height, width = shape
    batch_shape = columns.shape[2:] if per_angle else columns.shape[1:]
    x = (jnp.arange(width, dtype=jnp.int32) - width // 2)[None, :]
    y = (jnp.arange(height, dtype=jnp.int32) - height // 2)[:, None]
    origin = (num_detectors // 2) << bits
    last = (num_detectors - 1) << bits
    trailing = (slice(None), slice(None)) + (None,) * len(batch_shape)

    def add_angle(total, inputs):
        cs, column = inputs if per_angle else (inputs, columns)
        position = x * cs[0] - y * cs[1] + origin  # fixed-point detector index
        inside = (position >= 0) & (position <= last)
        # Clipping to D - 2 makes the last detector an exact weight-1 endpoint.
        i0 = jnp.clip(jnp.right_shift(position, bits), 0, num_detectors - 2)
        frac = (position - jnp.left_shift(i0, bits)).astype(jnp.float32) * (1.0 / (1 << bits))
        lower, upper = column[i0], column[i0 + 1]
        value = lower + frac[trailing] * (upper - lower)
        return total + jnp.where(inside[trailing], value, 0.0), None

    total = jnp.zeros((height, width) + batch_shape, jnp.float32)
    xs = (cos_sin, columns) if per_angle else cos_sin
    total, _ = jax.lax.scan(add_angle, total, xs)
    return total


def fbp(sinogram: jnp.ndarray, angles_deg, output_size: int | None = None, *,
        angle_weights: jnp.ndarray | None = None, circle: bool = True) -> jnp.ndarray:
    """(D, n_angles) sinogram -> (output_size, output_size) image, as
    `skimage.transform.iradon(filter_name='ramp', interpolation='linear', circle=True)`.

    output_size: default D; a smaller side reconstructs the centred square only (with
      `circle=False`, a crop of the field of view at its cost).
    angle_weights: (n_angles,) weights of the filtered projections (0 drops an angle), so that
      sparse-view scans of different densities batch on one angle grid.
    circle: zero the pixels outside the inscribed circle, as skimage does.
    """
    sinogram = jnp.asarray(sinogram, jnp.float32)
    if sinogram.ndim != 2:
        raise ValueError(f"fbp expects a (detectors, angles) sinogram, got {sinogram.shape}")
    num_detectors, num_angles = sinogram.shape
    size = num_detectors if output_size is None else int(output_size)
    # skimage's _sinogram_circle_to_square: the filter spreads into the added detectors, and
    # pixels near the circle's edge read them.
    diagonal = int(np.ceil(np.sqrt(2) * num_detectors))
    before = diagonal // 2 - num_detectors // 2
    padded = jnp.pad(sinogram, ((before, diagonal - num_detectors - before), (0, 0)))
    filtered = ramp_filter(padded)
    bits = _frac_bits(size + diagonal / 2 + 2)
    cos_sin = _cos_sin_fixed(angles_deg, bits)
    if cos_sin.shape[0] != num_angles:
        raise ValueError(f"{cos_sin.shape[0]} angles given for a sinogram of {num_angles}")
    columns = filtered.T
    if angle_weights is not None:
        columns = columns * jnp.asarray(angle_weights, jnp.float32)[:, None]
    image = _backproject(columns, cos_sin, (size, size), diagonal, bits, per_angle=True)
    if not circle:
        return image * (np.pi / (2 * num_angles))
    radius = size // 2
    offsets = np.arange(size) - radius
    outside = (offsets[:, None] ** 2 + offsets[None, :] ** 2) > radius**2
    return jnp.where(outside, 0.0, image) * (np.pi / (2 * num_angles))


def min_detectors(shape: tuple[int, int]) -> int:
    """The smallest odd detector count whose positions cover every pixel of an (H, W) grid
    centred at (H // 2, W // 2), for use with `detector_offset_rings`."""
    height, width = shape
    return 2 * math.ceil(math.hypot(height // 2, width // 2)) + 1


def detector_offset_rings(offsets: jnp.ndarray, shape: tuple[int, int],
                          angles_deg) -> jnp.ndarray:
    """FBP of a sinogram whose every angle holds the same (..., D) detector offsets (gain
    errors g_j under a unit-gain flat field: -log g_j), i.e. their ring artefacts, as (..., H, W).

    The same filter, interpolation and scaling as `fbp`, on any (H, W) grid, without the circle
    mask; FBP is linear, so adding it to a reconstruction equals reconstructing with the offsets.
    The profile is filtered once, not per angle. Leading axes batch in one pass (faster than
    vmap). D must be at least `min_detectors(shape)`.
    """
    offsets = jnp.asarray(offsets, jnp.float32)
    height, width = shape
    num_detectors = offsets.shape[-1]
    reach = math.hypot(height // 2, width // 2)
    if num_detectors // 2 < reach or num_detectors - 1 - num_detectors // 2 < reach:
        raise ValueError(
            f"{num_detectors} detectors do not cover the half-diagonal {reach:.1f} px of a "
            f"{height}x{width} grid; use at least {min_detectors(shape)}")
    batch_shape = offsets.shape[:-1]
    # Detector axis first and the batch last, so each pixel gathers contiguous batch rows.
    profiles = ramp_filter(offsets.reshape(-1, num_detectors).T)  # (D, B)
    bits = _frac_bits(height / 2 + width / 2 + num_detectors / 2 + 2)
    cos_sin = _cos_sin_fixed(angles_deg, bits)
    rings = _backproject(profiles, cos_sin, (height, width), num_detectors, bits,
                         per_angle=False)  # (H, W, B)
    rings = jnp.moveaxis(rings, -1, 0).reshape(batch_shape + (height, width))
    return rings * (np.pi / (2 * cos_sin.shape[0]))
