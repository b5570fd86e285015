"""Radon transform, ramp filter and FBP against scikit-image; the ring model of detector offsets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.data import shepp_logan_phantom
from skimage.transform import iradon, radon, resize

from tiqa import tomography
from tests.images import radial_profile

ANGLES = np.linspace(0.0, 180.0, 180, endpoint=False)


def _relative_error(ours, reference) -> float:
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


def _inside_circle(size: int, fraction: float = 1.0) -> np.ndarray:
    offsets = np.arange(size) - size // 2
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= (fraction * (size // 2)) ** 2


def _shepp_logan(size: int) -> np.ndarray:
    image = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    return np.where(_inside_circle(size), image, 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("size", [128, 97])
def test_radon_matches_skimage(size):
    image = _shepp_logan(size)
    # Uniform angles, plus irregular ones that hit 0, 60, 90 and 120 degrees exactly.
    for angles in (ANGLES, np.array([0.0, 13.7, 60.0, 90.0, 120.0, 151.3, 179.0])):
        expected = radon(image, angles, circle=True)
        ours = tomography.radon(image, angles)
        assert ours.shape == expected.shape and ours.dtype == jnp.float32
        # Measured: ~5e-7 (float32 against skimage's float64).
        assert _relative_error(ours, expected) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("size, output_size", [(128, None), (97, None), (128, 100)])
def test_fbp_matches_skimage_iradon(size, output_size):
    sinogram = radon(_shepp_logan(size), ANGLES, circle=True)
    expected = iradon(sinogram, ANGLES, output_size=output_size, filter_name="ramp",
                      interpolation="linear", circle=True)
    ours = tomography.fbp(sinogram, ANGLES, output_size=output_size)
    assert ours.shape == expected.shape
    # Measured: ~1e-6.
    assert _relative_error(ours, expected) < 1e-5


def test_ramp_filter_matches_skimage():
    from skimage.transform.radon_transform import _get_fourier_filter

    for padded in (64, 256, 512):
        np.testing.assert_allclose(tomography.ramp_filter_response(padded),
                                   _get_fourier_filter(padded, "ramp")[:, 0], atol=1e-12)
    sinogram = np.random.default_rng(0).standard_normal((90, 7))
    response = _get_fourier_filter(256, "ramp")  # max(64, 2**ceil(log2(180)))
    padded = np.pad(sinogram, ((0, 256 - 90), (0, 0)))
    expected = np.real(np.fft.ifft(np.fft.fft(padded, axis=0) * response, axis=0))[:90]
    np.testing.assert_allclose(tomography.ramp_filter(sinogram), expected, atol=2e-5)


def test_fbp_of_radon_reconstructs_the_image():
    size = 128
    rows, cols = np.mgrid[:size, :size] - size // 2
    # Smooth blobs: FBP's own discretisation error stays small, unlike for sharp edges.
    image = (np.exp(-((rows - 15) ** 2 + (cols + 10) ** 2) / 300.0)
             + 0.5 * np.exp(-((rows + 20) ** 2 + (cols - 18) ** 2) / 120.0))
    image = np.where(_inside_circle(size), image, 0.0)
    reconstruction = np.asarray(tomography.fbp(tomography.radon(image, ANGLES), ANGLES))
    inner = _inside_circle(size, 0.9)
    assert _relative_error(reconstruction[inner], image[inner]) < 0.02
    # A sharp phantom reconstructs as well as skimage's own round trip does.
    phantom = _shepp_logan(size)
    ours = np.asarray(tomography.fbp(tomography.radon(phantom, ANGLES), ANGLES))
    theirs = iradon(radon(phantom, ANGLES), ANGLES, filter_name="ramp", circle=True)
    assert _relative_error(ours[inner], phantom[inner]) < 0.2
    assert abs(_relative_error(ours[inner], phantom[inner])
               - _relative_error(theirs[inner], phantom[inner])) < 1e-4


@pytest.mark.parametrize("radius", [12, 31, 50])
def test_single_detector_offset_makes_a_ring_at_its_radius(radius):
    shape = (112, 112)
    num_detectors = tomography.min_detectors(shape)
    for side in (1, -1):
        offsets = np.zeros(num_detectors, np.float32)
        offsets[num_detectors // 2 + side * radius] = 0.3
        rings = np.asarray(tomography.detector_offset_rings(offsets, shape, ANGLES))
        profile = radial_profile(rings)
        assert int(np.argmax(profile)) == radius
        assert profile[radius] > 3 * np.median(profile)


def test_rings_equal_fbp_of_a_sinogram_with_constant_rows():
    size = 96
    offsets = np.random.default_rng(1).normal(0.0, 0.05, size).astype(np.float32)
    sinogram = np.repeat(offsets[:, None], len(ANGLES), axis=1)
    expected = np.asarray(tomography.fbp(sinogram, ANGLES))
    # fbp zero-pads the detectors to the diagonal; zeros added on both sides (keeping detector
    # size // 2 on the axis) change nothing inside the circle: the filter is a linear
    # convolution, and only pixels outside the circle reach the added detectors.
    half = tomography.min_detectors((size, size)) // 2
    padded = np.zeros(2 * half + 1, np.float32)
    padded[half - size // 2:half - size // 2 + size] = offsets
    rings = np.asarray(tomography.detector_offset_rings(padded, (size, size), ANGLES))
    inside = _inside_circle(size)
    np.testing.assert_allclose(rings[inside], expected[inside], atol=1e-5)


@pytest.mark.slow
def test_linearity():
    rng = np.random.default_rng(2)
    size = 64
    mask = _inside_circle(size)
    x, y = rng.random((2, size, size)) * mask
    angles = ANGLES[::2]
    combined = 2.0 * tomography.radon(x, angles) - 3.0 * tomography.radon(y, angles)
    np.testing.assert_allclose(tomography.radon(2.0 * x - 3.0 * y, angles), combined, atol=2e-3)
    s, t = rng.standard_normal((2, size, len(angles)))
    np.testing.assert_allclose(tomography.fbp(0.5 * s + t, angles),
                               0.5 * tomography.fbp(s, angles) + tomography.fbp(t, angles),
                               atol=1e-4)
    num_detectors = tomography.min_detectors((50, 60))
    u, v = rng.standard_normal((2, num_detectors)) * 0.05
    ring = lambda o: tomography.detector_offset_rings(o, (50, 60), angles)
    np.testing.assert_allclose(ring(u - 2.0 * v), ring(u) - 2.0 * ring(v), atol=1e-5)


@pytest.mark.slow
def test_jit_and_vmap():
    rng = np.random.default_rng(3)
    size = 48
    images = rng.random((3, size, size)).astype(np.float32) * _inside_circle(size)
    angles = jnp.asarray(ANGLES[::3])  # traced angles under jit
    batched = jax.jit(jax.vmap(tomography.radon, in_axes=(0, None)))(images, angles)
    for image, sinogram in zip(images, batched):
        np.testing.assert_allclose(sinogram, tomography.radon(image, ANGLES[::3]), atol=1e-4)
    recon = jax.jit(jax.vmap(tomography.fbp, in_axes=(0, None)))(batched, angles)
    for sinogram, image in zip(batched, recon):
        np.testing.assert_allclose(image, tomography.fbp(sinogram, ANGLES[::3]), atol=1e-5)

    # Rings: jax.vmap and the native leading batch axis agree with one image at a time.
    shape = (40, 56)
    offsets = rng.standard_normal((4, tomography.min_detectors(shape))).astype(np.float32) * 0.05
    ring = jax.jit(lambda o, a: tomography.detector_offset_rings(o, shape, a))
    mapped = jax.vmap(ring, in_axes=(0, None))(offsets, angles)
    native = ring(offsets, angles)
    assert native.shape == (4,) + shape
    np.testing.assert_allclose(mapped, native, atol=1e-6)
    np.testing.assert_allclose(native[2], ring(offsets[2], angles), atol=1e-6)
    nested = ring(offsets.reshape(2, 2, -1), angles)
    np.testing.assert_allclose(nested.reshape(native.shape), native, atol=1e-6)


def test_rings_reject_too_few_detectors():
    shape = (64, 64)
    with pytest.raises(ValueError, match="half-diagonal"):
        tomography.detector_offset_rings(np.zeros(tomography.min_detectors(shape) - 2),
                                         shape, ANGLES)
