"""The JAX observers against the MATLAB originals' published values, scikit-image, and themselves."""

import functools

import jax
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import metrics

from tiqa import observers
from tiqa.benchmark.reference_numpy import gmsd_numpy, mdsi_numpy

# MATLAB values (../shared/docs/SPEC.md section 4; from piq's test suite): (metric, images, options, value).
MATLAB_VALUES = [
    ("gmsd", "goldhill", {}, 0.138012587141798),
    ("gmsd", "i01", {}, 0.094124655829098),
    ("mdsi", "goldhill", {"combination": "sum"}, 0.395910876130775),
    ("mdsi", "goldhill", {"combination": "mult"}, 0.328692181289061),
    ("mdsi", "i01", {"combination": "sum"}, 0.338972600511665),
    ("mdsi", "i01", {"combination": "mult"}, 0.258002917257516),
]
NUMPY_PEERS = {"gmsd": gmsd_numpy, "mdsi": mdsi_numpy}
GREY_METRICS = {"mse": observers.mse, "psnr": observers.psnr, "ssim": observers.ssim,
                "gmsd": observers.gmsd, "mdsi": observers.mdsi}


def _load(path):
    return np.asarray(Image.open(path)).squeeze().astype(np.float32)


@pytest.fixture(scope="module")
def reference_pairs(iqa_reference_dir):
    """(reference, distorted) pixel arrays, 0..255."""
    return {
        "goldhill": (_load(iqa_reference_dir / "goldhill.gif"),
                     _load(iqa_reference_dir / "goldhill_jpeg.gif")),
        "i01": (_load(iqa_reference_dir / "I01.BMP"), _load(iqa_reference_dir / "i01_01_5.bmp")),
    }


@pytest.fixture(scope="module")
def nanoct_batch(nanoct_dir):
    """Three real slices, normalised to [0, 1] and centre-cropped to 224 x 224, with a noisy and a
    blurred distortion of each: (reference, noisy, blurred), each (3, 224, 224) float32."""
    import tifffile

    rng = np.random.default_rng(0)
    references = []
    for name in ("1.tif", "300.tif", "510.tif"):
        image = tifffile.imread(nanoct_dir / "images" / name).astype(np.float64)
        low, high = np.percentile(image, [0.5, 99.5])
        image = np.clip((image - low) / (high - low), 0.0, 1.0)
        top, left = (image.shape[0] - 224) // 2, (image.shape[1] - 224) // 2
        references.append(image[top:top + 224, left:left + 224])
    references = np.stack(references)
    noisy = np.clip(references + rng.normal(0.0, 0.05, references.shape), 0.0, 1.0)
    blurred = ndimage.gaussian_filter(references, sigma=(0, 1.5, 1.5))
    return tuple(a.astype(np.float32) for a in (references, noisy, blurred))


@pytest.fixture(scope="module")
def synthetic_batch():
    """Smooth random grey images (2, 96, 80) in [0, 1] and a noisy copy; needs no shared data."""
    rng = np.random.default_rng(1)
    reference = ndimage.gaussian_filter(rng.uniform(size=(2, 96, 80)), sigma=(0, 3, 3))
    reference = (reference - reference.min()) / (reference.max() - reference.min())
    distorted = np.clip(reference + rng.normal(0.0, 0.05, reference.shape), 0.0, 1.0)
    return reference.astype(np.float32), distorted.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# MATLAB originals
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("metric, images, options, expected", MATLAB_VALUES)
def test_matlab_values_jax(reference_pairs, metric, images, options, expected):
    reference, distorted = reference_pairs[images]
    value = GREY_METRICS[metric](reference, distorted, data_range=255.0, **options)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


@pytest.mark.parametrize("metric, images, options, expected", MATLAB_VALUES)
def test_matlab_values_numpy_peer(reference_pairs, metric, images, options, expected):
    reference, distorted = reference_pairs[images]
    value = NUMPY_PEERS[metric](reference, distorted, data_range=255.0, **options)
    np.testing.assert_allclose(value, expected, rtol=1e-5)


@pytest.mark.slow
def test_ssim_matlab_value_with_downsampling(reference_pairs):
    reference, distorted = reference_pairs["goldhill"]
    value = observers.ssim(reference, distorted, data_range=255.0, downsample=True)
    np.testing.assert_allclose(float(value), 0.8202, atol=1e-4)


def test_downsampling_factor_rounds_half_away_from_zero():
    # min(H, W) / 256 = 2.5: MATLAB's round gives 3 where Python's round would give 2.
    assert observers._downsampling_factor(640, 700) == 3
    assert observers._downsampling_factor(100, 700) == 1
    assert observers._downsampling_factor(384, 512) == 2


# ---------------------------------------------------------------------------------------------
# scikit-image on real nano-CT slices
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("distortion", ["noisy", "blurred"])
def test_against_scikit_image(nanoct_batch, distortion):
    references, noisy, blurred = nanoct_batch
    distorted = noisy if distortion == "noisy" else blurred
    ours_mse = np.asarray(observers.mse(references, distorted))
    ours_psnr = np.asarray(observers.psnr(references, distorted, data_range=1.0))
    ours_ssim = np.asarray(observers.ssim(references, distorted, data_range=1.0))
    for i, (reference, image) in enumerate(zip(references, distorted)):
        np.testing.assert_allclose(ours_mse[i], metrics.mean_squared_error(reference, image),
                                   rtol=1e-5)
        np.testing.assert_allclose(
            ours_psnr[i], metrics.peak_signal_noise_ratio(reference, image, data_range=1.0),
            rtol=1e-5)
        expected_ssim = metrics.structural_similarity(
            reference, image, data_range=1.0, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False)
        np.testing.assert_allclose(ours_ssim[i], expected_ssim, atol=1e-5)


@pytest.mark.slow
def test_gmsd_mdsi_match_numpy_peer_on_slices(nanoct_batch):
    references, noisy, _ = nanoct_batch
    np.testing.assert_allclose(observers.gmsd(references, noisy),
                               [gmsd_numpy(r, d) for r, d in zip(references, noisy)], rtol=1e-5)
    np.testing.assert_allclose(observers.mdsi(references, noisy),
                               [mdsi_numpy(r, d) for r, d in zip(references, noisy)], rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Batching, transformations, edge cases
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GREY_METRICS))
def test_batched_jit_and_vmap_equal_per_image(synthetic_batch, name):
    reference, distorted = synthetic_batch
    metric = functools.partial(GREY_METRICS[name], data_range=1.0)
    batched = np.asarray(metric(reference, distorted))
    assert batched.shape == (2,)
    per_image = [float(metric(r, d)) for r, d in zip(reference, distorted)]
    np.testing.assert_allclose(batched, per_image, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(jax.jit(metric)(reference, distorted), batched, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(jax.vmap(metric)(reference, distorted), batched, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_options_under_jit(synthetic_batch):
    reference, distorted = synthetic_batch
    # data_range traced; downsample and combination static.
    ssim_jit = jax.jit(observers.ssim, static_argnames="downsample")
    np.testing.assert_allclose(ssim_jit(reference, distorted, 1.0, downsample=True),
                               observers.ssim(reference, distorted, 1.0, downsample=True), rtol=1e-5)
    mdsi_jit = jax.jit(observers.mdsi, static_argnames="combination")
    np.testing.assert_allclose(mdsi_jit(reference, distorted, 1.0, combination="mult"),
                               observers.mdsi(reference, distorted, 1.0, combination="mult"),
                               rtol=1e-5)


@pytest.mark.slow
def test_rgb_batch_equals_per_image():
    rng = np.random.default_rng(2)
    reference = ndimage.gaussian_filter(rng.uniform(0, 255, (2, 64, 72, 3)), sigma=(0, 2, 2, 0))
    distorted = np.clip(reference + rng.normal(0, 10, reference.shape), 0, 255)
    reference, distorted = reference.astype(np.float32), distorted.astype(np.float32)
    for metric, peer in ((observers.gmsd, gmsd_numpy), (observers.mdsi, mdsi_numpy)):
        batched = np.asarray(metric(reference, distorted, data_range=255.0))
        assert batched.shape == (2,)
        expected = [peer(r, d, data_range=255.0) for r, d in zip(reference, distorted)]
        np.testing.assert_allclose(batched, expected, rtol=1e-5)
        np.testing.assert_allclose(jax.vmap(functools.partial(metric, data_range=255.0))(
            reference, distorted), batched, rtol=1e-5)


def test_identical_images(synthetic_batch):
    reference, _ = synthetic_batch
    np.testing.assert_array_equal(observers.mse(reference, reference), 0.0)
    assert np.all(np.isposinf(observers.psnr(reference, reference)))
    np.testing.assert_allclose(observers.ssim(reference, reference), 1.0, atol=1e-5)
    np.testing.assert_allclose(observers.gmsd(reference, reference), 0.0, atol=1e-6)
    for combination in ("sum", "mult"):
        np.testing.assert_allclose(observers.mdsi(reference, reference, combination=combination),
                                   0.0, atol=1e-3)


def test_gmsd_depends_on_contrast(synthetic_batch):
    # The old reference code rescaled by 255 / max, so halving the contrast changed nothing.
    reference, distorted = synthetic_batch
    assert np.all(np.asarray(observers.gmsd(reference, 0.5 * reference)) > 1e-3)
    assert np.all(np.abs(np.asarray(observers.gmsd(reference, 0.5 * distorted))
                         - np.asarray(observers.gmsd(reference, distorted))) > 1e-3)


@pytest.mark.parametrize("name", sorted(GREY_METRICS))
def test_mismatched_shapes_raise(name):
    with pytest.raises(ValueError, match="same shape"):
        GREY_METRICS[name](np.zeros((32, 32)), np.zeros((32, 30)))


def test_bad_rank_and_combination_raise():
    with pytest.raises(ValueError, match="same shape"):
        observers.ssim(np.zeros((1, 2, 32, 32)), np.zeros((1, 2, 32, 32)))
    with pytest.raises(ValueError, match="combination"):
        observers.mdsi(np.zeros((32, 32)), np.zeros((32, 32)), combination="max")


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["mse", "psnr", "ssim", "gmsd", "mdsi"])
def test_one_to_many_equals_pairwise(metric):
    rng = np.random.default_rng(3)
    reference = rng.random((2, 40, 48)).astype(np.float32)
    distorted = np.clip(reference[:, None] + 0.1 * rng.standard_normal((2, 3, 40, 48)), 0, 1).astype(np.float32)
    got = observers.one_to_many(metric, reference, distorted)
    assert got.shape == (2, 3)
    function = getattr(observers, metric)
    for n in range(2):
        expected = function(np.repeat(reference[n][None], 3, 0), distorted[n])
        np.testing.assert_allclose(got[n], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one_to_many needs"):
        observers.one_to_many(metric, reference, distorted[:, 0])
