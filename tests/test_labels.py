"""Label projection: hand-computed cases, real slices, and labels that describe their images."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import metrics

from tiqa import labels
from tests.images import real_crops as _real_crops, synthetic as _synthetic


def test_worst_level_normalisation_hand_computed():
    config = labels.ProjectionConfig(observers=("mse",))
    distances = jnp.asarray([0.0, 1.0, 2.0, 3.0, 4.0, 4.0]).reshape(1, 1, 6, 1)
    got = labels.labels_from_distances(distances, jnp.asarray([5.0]), config)
    # q = 1 - d / 4 -> 1, .75, .5, .25, 0, 0; label = 1 + 4 q
    np.testing.assert_allclose(got[0, 0], [5, 4, 3, 2, 1, 1], atol=1e-6)


@pytest.mark.slow
def test_observers_are_averaged_and_psnr_ssim_become_distances():
    config = labels.ProjectionConfig(observers=("psnr", "ssim"), psnr_cap=60.0)
    # The observers disagree at the middle level, so their mean differs from their max or min.
    raw = jnp.asarray([[np.inf, 1.0], [40.0, 0.9], [20.0, 0.6]]).reshape(1, 1, 3, 2)
    distances = labels.observer_distances(raw, config)
    np.testing.assert_allclose(distances[0, 0], [[0, 0], [20, 0.1], [40, 0.4]], atol=1e-6)
    got = labels.labels_from_distances(distances, jnp.asarray([3.0]), config)
    # psnr q: 1, .5, 0 -> 3, 2, 1; ssim q: 1, .75, 0 -> 3, 2.5, 1; their mean for S0 = 3:
    np.testing.assert_allclose(got[0, 0], [3, 2.25, 1], atol=1e-6,
                               err_msg="the label must be the mean over the observers")


def test_fixed_normalisation_hand_computed():
    config = labels.ProjectionConfig(observers=("gmsd",), normalisation="fixed",
                                     fixed_scales=(("gmsd", 0.2),))
    distances = jnp.asarray([0.0, 0.05, 0.1, 0.3]).reshape(1, 1, 4, 1)
    got = labels.labels_from_distances(distances, jnp.asarray([4.0]), config)
    np.testing.assert_allclose(got[0, 0], [4, 3.25, 2.5, 1], atol=1e-6)


@pytest.fixture(scope="module")
def real_projection(request):
    nanoct_dir = request.getfixturevalue("nanoct_dir")
    crops = _real_crops(nanoct_dir, count=2)
    scores = jnp.asarray([4.2, 3.1])
    result = labels.project(crops, scores, jax.random.key(0))
    return crops, scores, result


@pytest.mark.slow
def test_labels_on_real_slices_fall_with_level(real_projection):
    _, scores, result = real_projection
    lab = np.asarray(result.labels)
    assert result.images.shape == (2, 3, 6, 224, 224)
    assert lab.shape == (2, 3, 6)
    np.testing.assert_allclose(lab[:, :, 0], np.repeat(np.asarray(scores)[:, None], 3, 1), atol=1e-6)
    assert lab.min() >= 1.0 - 1e-6 and lab.max() <= 5.0 + 1e-6
    for kind in ("blur", "noise"):
        k = ("blur", "noise", "ring").index(kind)
        assert np.all(np.diff(lab[:, k], axis=1) < 0), (kind, lab[:, k])
    assert np.all(lab[:, :, 5] < lab[:, :, 1])


def test_labels_describe_the_returned_images(real_projection):
    crops, _, result = real_projection
    images = np.asarray(result.images, np.float64)
    raw = np.asarray(result.observer_scores)
    for n in range(2):
        for k in range(3):
            for level in (1, 3, 5):
                ref, dist = images[n, k, 0], images[n, k, level]
                np.testing.assert_allclose(ref, crops[n], atol=1e-7)
                assert raw[n, k, level, 0] == pytest.approx(metrics.mean_squared_error(ref, dist), rel=1e-4)
                assert raw[n, k, level, 1] == pytest.approx(
                    metrics.peak_signal_noise_ratio(ref, dist, data_range=1.0), rel=1e-4)
                assert raw[n, k, level, 2] == pytest.approx(metrics.structural_similarity(
                    ref, dist, data_range=1.0, gaussian_weights=True, sigma=1.5,
                    use_sample_covariance=False), abs=1e-4)


@pytest.mark.slow
def test_quantized_images_are_8bit_exact_and_batching_does_not_change_results():
    refs = np.stack([_synthetic(64, 0), _synthetic(64, 1)])
    keys = jax.random.split(jax.random.key(9), 2)
    config = labels.ProjectionConfig(quantize_8bit=True)
    # Jitted, as the phases run it (eagerly the test takes 3x longer; jit against eager is
    # test_project_under_jit_equals_eager's business).
    project = jax.jit(labels.project, static_argnums=3)
    both = project(refs, jnp.asarray([4.0, 3.0]), keys, config)
    alone = project(refs[1:], jnp.asarray([3.0]), keys[1:], config)
    np.testing.assert_allclose(both.images[1], alone.images[0], atol=1e-6)
    np.testing.assert_allclose(both.labels[1], alone.labels[0], atol=1e-5)
    scaled = np.asarray(both.images) * 255
    np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-3)


@pytest.mark.slow
def test_project_under_jit_equals_eager():
    refs = np.stack([_synthetic(48, 0)])
    config = labels.ProjectionConfig(kinds=("noise", "ring"))
    eager = labels.project(refs, jnp.asarray([4.0]), jax.random.key(1), config)
    jitted = jax.jit(labels.project, static_argnums=3)(refs, jnp.asarray([4.0]), jax.random.key(1), config)
    np.testing.assert_allclose(eager.labels, jitted.labels, atol=1e-5)
    assert eager.images.shape == (1, 2, 6, 48, 48)


def test_config_from_mapping_names_unknown_keys():
    with pytest.raises(ValueError, match="psnr_capp"):
        labels.ProjectionConfig.from_mapping({"psnr_capp": 50.0})
    with pytest.raises(ValueError, match="kinds"):
        labels.ProjectionConfig(kinds=("jpeg",))
    config = labels.ProjectionConfig.from_mapping({"kinds": ["noise"], "fixed_scales": {"mse": 0.1}})
    assert config.kinds == ("noise",) and config.fixed_scales == (("mse", 0.1),)
