"""BRISQUE baselines: our wrapper against the `brisque` package's own scoring, and the
retrained SVR on a case whose answer is known."""

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from skimage import color, data, filters

from tests import images
from tiqa.baselines import brisque

import cv2  # noqa: E402,F401  (pinned: BRISQUE needs OpenCV; a missing pin fails, not skips)


def _package_score(rgb_uint8: np.ndarray) -> float:
    """`brisque.BRISQUE.score`, the package's own pipeline, with only its numpy-2 failure
    mended: `float()` of its one-element feature arrays raises TypeError under numpy 2."""
    from brisque import BRISQUE

    def first(values):
        return np.array([np.asarray(v, float).reshape(-1)[0] for v in values])

    def scale_features(self, features):
        low, high = first(self.scale_params["min_"]), first(self.scale_params["max_"])
        return -1 + 2.0 / (high - low) * (first(features) - low)

    original = BRISQUE.scale_features
    BRISQUE.scale_features = scale_features
    try:
        return float(BRISQUE(url=False).score(rgb_uint8))
    finally:
        BRISQUE.scale_features = original


def test_live_model_equals_the_package_on_a_natural_image(iqa_reference_dir):
    rgb = np.asarray(Image.open(iqa_reference_dir / "I01.BMP"))
    ours = brisque.LiveBrisque()([color.rgb2gray(rgb)])[0]
    assert ours == pytest.approx(_package_score(rgb), rel=1e-9)
    assert 0 < ours < 40  # a pristine photograph: a good (low) BRISQUE score


def test_live_model_equals_the_package_on_a_grey_slice_stored_as_rgb():
    grey = np.round(images.synthetic(160, seed=3) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    ours = brisque.LiveBrisque()([color.rgb2gray(rgb)])[0]
    assert ours == pytest.approx(_package_score(rgb), rel=1e-9)


def test_live_score_grows_with_blur_and_noise():
    # A natural photograph (bundled with scikit-image), the kind of image LIVE holds.
    image = data.camera()[128:384, 128:384] / 255.0
    model = brisque.LiveBrisque()
    blurred = model([filters.gaussian(image, sigma) for sigma in (0.0, 1.0, 2.0, 4.0)])
    assert np.all(np.diff(blurred) > 0), blurred
    rng = np.random.default_rng(0)
    noisy = model([np.clip(image + rng.normal(0, s, image.shape), 0, 1) for s in (0.02, 0.1, 0.3)])
    assert np.all(np.diff(noisy) > 0), noisy


def test_features_refuse_bad_images():
    with pytest.raises(ValueError, match="2-D grey"):
        brisque.brisque_features(np.zeros((32, 32, 3)))
    bad = np.full((32, 32), 0.5)
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        brisque.brisque_features(bad)


def _blur_series(seeds, size=96):
    pictures, targets = [], []
    for seed in seeds:
        image = images.synthetic(size, seed=seed).astype(np.float64)
        for level, sigma in enumerate((0.0, 0.7, 1.4, 2.8, 5.6)):
            pictures.append(filters.gaussian(image, sigma) if sigma else image)
            targets.append(5.0 - level)
    return brisque.features_of(pictures), np.asarray(targets)


@pytest.mark.slow
def test_retrained_svr_learns_a_known_order_and_survives_a_round_trip(tmp_path):
    features, targets = _blur_series(range(6))
    model = brisque.fit_brisque(features, targets, c_values=(1.0, 16.0), gamma_values=(0.03, 0.3),
                                folds=3)
    held_features, held_targets = _blur_series(range(100, 103))
    predicted = model.score_features(held_features)
    assert stats.spearmanr(predicted, held_targets)[0] > 0.9
    loaded = brisque.RetrainedBrisque.load(model.save(tmp_path / "brisque"))
    np.testing.assert_allclose(loaded.score_features(held_features), predicted, rtol=1e-6)
    assert loaded.hyper["C"] in (1.0, 16.0) and loaded.hyper["samples"] == len(targets)


def test_retrained_svr_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="36"):
        brisque.fit_brisque(np.zeros((10, 5)), np.zeros(10))
    with pytest.raises(FileNotFoundError, match="svm.txt"):
        brisque.RetrainedBrisque.load(tmp_path)


@pytest.mark.slow
def test_niqe_distance_grows_with_noise_and_blur_away_from_its_pristine_model(tmp_path):
    from skimage import filters

    from tiqa import phantom
    from tiqa.baselines import niqe

    clean, _ = phantom.phantom_volume(0, n_slices=4, size=128, photons=None)
    clean = np.clip((clean - clean.min()) / np.ptp(clean), 0, 1)
    model = niqe.Niqe.fit(list(clean[:3]))
    held_out = clean[3]
    noisy = np.clip(held_out + np.random.default_rng(0).normal(0, 0.1, held_out.shape), 0, 1)
    blurred = filters.gaussian(held_out, 2.0)
    distances = model([held_out, noisy, blurred])
    assert distances[0] < distances[1] and distances[0] < distances[2]
    model.save(tmp_path / "niqe")
    np.testing.assert_allclose(niqe.Niqe.load(tmp_path / "niqe")([held_out]), distances[:1])
    assert len(niqe.patches(np.zeros((120, 170)))) == 2 * 3
