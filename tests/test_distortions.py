"""Distortions against scikit-image and hand-built references."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import draw, filters, metrics, util

from tiqa import distortions
from tests.images import real_crops as _real_crops, synthetic as _synthetic


@pytest.mark.parametrize("level", range(1, 6))
def test_blur_matches_skimage_on_real_slices(nanoct_dir, level):
    crops = _real_crops(nanoct_dir)
    sigma = distortions.LEVEL_TABLES["blur"][level]
    ours = np.asarray(distortions.apply("blur", crops, level, jax.random.key(0)))
    for crop, out in zip(crops, ours):
        expected = filters.gaussian(crop.astype(np.float64), sigma=sigma)
        np.testing.assert_allclose(out, expected, atol=1e-4)


def test_blur_matches_skimage_on_non_square_image():
    image = _synthetic(224)[:150, :]
    for level in (1, 5):  # sigma 33.2: a 267-tap kernel on a 150-row image
        expected = filters.gaussian(image.astype(np.float64), sigma=distortions.LEVEL_TABLES["blur"][level])
        out = distortions.apply("blur", image, level, jax.random.key(0))
        np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.slow
def test_traced_level_equals_static_level():
    images = np.stack([_synthetic(64, seed) for seed in range(3)])
    key = jax.random.key(3)
    for kind in distortions.ALL_KINDS:
        traced = jax.jit(lambda im, lv, k, kind=kind: distortions.apply(kind, im, lv, k))
        for level in (0, 2, 5):
            np.testing.assert_allclose(traced(images, jnp.int32(level), key),
                                       distortions.apply(kind, images, level, key), atol=1e-5)


@pytest.mark.slow
def test_level_zero_is_identity():
    image = _synthetic(96)
    for kind in distortions.ALL_KINDS:
        out = distortions.apply(kind, image, 0, jax.random.key(1))
        np.testing.assert_allclose(out, image, atol=1e-6, err_msg=kind)


@pytest.mark.parametrize("level", range(1, 6))
def test_noise_has_requested_variance_before_clipping(level):
    variance = distortions.LEVEL_TABLES["noise"][level]
    image = jnp.full((512, 512), 0.5, jnp.float32)
    noisy = distortions.gaussian_noise(image, jax.random.key(level), variance, clip=False)
    residual = np.asarray(noisy - image, np.float64)
    # 262,144 samples: the sample variance is within ~0.3% (1 sd) of the truth.
    assert abs(residual.var() / variance - 1) < 0.02
    assert abs(residual.mean()) < 4 * np.sqrt(variance / residual.size)


@pytest.mark.parametrize("level", [1, 3, 5])
def test_noise_statistics_match_skimage_random_noise(level):
    variance = distortions.LEVEL_TABLES["noise"][level]
    image = _synthetic(256)
    ours = np.asarray(distortions.apply("noise", image, level, jax.random.key(7)), np.float64)
    theirs = util.random_noise(image.astype(np.float64), mode="gaussian", var=variance,
                               rng=np.random.default_rng(7))
    assert 0.0 <= ours.min() and ours.max() <= 1.0
    # Same model, different random numbers: the statistics of the clipped result agree.
    assert abs(ours.mean() - theirs.mean()) < 0.01
    assert abs((ours - image).std() / (theirs - image).std() - 1) < 0.02


def _hand_built_rings(image, radii, coefficient):
    """The image-domain ring model written as the reference code's loop, every ring kept."""
    height, width = image.shape
    result = image.astype(np.float64).copy()
    for i, radius in enumerate(radii):
        if radius > 400:
            break
        outer_r, outer_c = draw.disk((height // 2, width // 2), radius + 2, shape=image.shape)
        annulus = np.zeros(image.shape, bool)
        annulus[outer_r, outer_c] = True
        inner_r, inner_c = draw.disk((height // 2, width // 2), radius, shape=image.shape)
        annulus[inner_r, inner_c] = False
        sign = 1.0 if i % 2 == 1 else -1.0
        result[annulus] += sign * coefficient * image[annulus]
    return np.clip(result, 0, 1)


def test_ring_model_matches_hand_built_reference():
    image = _synthetic(120)
    key = jax.random.key(11)
    radii, drawn = distortions.ring_radii(key)
    radii = np.asarray(radii)
    assert radii[0] == 20
    steps = np.diff(radii)
    assert steps.min() >= 5 and steps.max() <= 25
    assert np.asarray(drawn).all() == (radii.max() <= 400)
    for level in (1, 5):
        coefficient = distortions.LEVEL_TABLES["ring"][level]
        expected = _hand_built_rings(image, radii, coefficient)
        ours = distortions.ring_artifact(jnp.asarray(image), key, coefficient)
        np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_ring_model_keeps_every_ring():
    image = np.full((224, 224), 0.5, np.float32)
    key = jax.random.key(2)
    radii, _ = distortions.ring_radii(key)
    out = np.asarray(distortions.ring_artifact(jnp.asarray(image), key, 0.2))
    changed_rows = out[112, 112:] != 0.5  # a ray from the centre crosses every ring on the image
    visible = [r for r in np.asarray(radii) if r + 2 <= 112]
    assert len(visible) >= 3
    for r in visible:
        assert changed_rows[r] and changed_rows[r + 1]


@pytest.mark.slow
@pytest.mark.parametrize("kind", distortions.ALL_KINDS)
def test_higher_level_never_raises_ssim(kind, nanoct_dir):
    image = _real_crops(nanoct_dir, count=1)[0]
    key = jax.random.key(5)  # the same key: the same rings and noise pattern at every level
    values = []
    for level in range(6):
        out = np.asarray(distortions.apply(kind, image, level, key), np.float64)
        values.append(metrics.structural_similarity(image.astype(np.float64), out, data_range=1.0))
    assert values[0] == pytest.approx(1.0)
    assert all(b <= a + 1e-9 for a, b in zip(values, values[1:])), values


@pytest.mark.slow
def test_batch_shapes_levels_and_independent_draws():
    images = np.stack([_synthetic(64)] * 4)
    out = distortions.apply("noise", images, 3, jax.random.key(0))
    assert out.shape == images.shape
    assert not np.allclose(out[0], out[1])  # each image draws its own noise
    per_image = distortions.apply("blur", images, jnp.array([0, 1, 2, 5]), jax.random.key(0))
    np.testing.assert_allclose(per_image[0], images[0], atol=1e-6)
    np.testing.assert_allclose(per_image[3], distortions.apply("blur", images[3], 5, jax.random.key(0)),
                               atol=1e-5)


def test_sinogram_ring_makes_rings_centred_on_the_image():
    image = np.full((128, 128), 0.5, np.float32)
    out = np.asarray(distortions.apply("sinogram_ring", image, 5, jax.random.key(4)))
    error = out - image
    assert np.abs(error).max() > 0.01
    rows, cols = np.mgrid[:128, :128]
    radius = np.hypot(rows - 64, cols - 64).round().astype(int)
    profile = np.bincount(radius.ravel(), np.abs(error).ravel()) / np.bincount(radius.ravel())
    # Rings: the error varies with the radius far more than along a circle.
    within = np.mean([error[radius == r].std() for r in range(5, 60)])
    assert profile[5:60].std() > 0 and within < np.abs(error).mean() * 2


def test_bad_arguments_raise_clear_errors():
    image = _synthetic(32)
    with pytest.raises(ValueError, match="unknown distortion kind"):
        distortions.apply("jpeg", image, 1, jax.random.key(0))
    with pytest.raises(ValueError, match="level must be in 0..5"):
        distortions.apply("blur", image, 6, jax.random.key(0))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(N, H, W\)"):
        distortions.apply("blur", image[None, None], 1, jax.random.key(0))
