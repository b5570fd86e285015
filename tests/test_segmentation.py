"""Tests for tiqa.segmentation: scores, uncertainty, two-point correlation, IoU map, figures."""

import math
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from tests import images
from tiqa import segmentation as seg


# 4x4 hand-built masks: P a 2x2 square at the top left, T the same square one column right.
PRED = np.array([[1, 1, 0, 0],
                 [1, 1, 0, 0],
                 [0, 0, 0, 0],
                 [0, 0, 0, 0]], dtype=bool)
TARGET = np.array([[0, 1, 1, 0],
                   [0, 1, 1, 0],
                   [0, 0, 0, 0],
                   [0, 0, 0, 0]], dtype=bool)


# --------------------------------------------------------------------------------------------
# Decisions.
# --------------------------------------------------------------------------------------------


def test_threshold_and_argmax():
    p = np.array([[0.2, 0.5], [0.51, 1.0]])
    np.testing.assert_array_equal(seg.threshold(p), [[False, False], [True, True]])
    np.testing.assert_array_equal(seg.threshold(jnp.asarray(p), level=0.1), [[True] * 2] * 2)
    probabilities = np.array([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]])  # (1, 2, 3)
    labels = seg.argmax_labels(probabilities)
    np.testing.assert_array_equal(labels, [[0, 2]])
    assert labels.dtype == np.int64
    with pytest.raises(ValueError, match="threshold"):
        seg.argmax_labels(np.full((2, 2, 1), 0.3))
    with pytest.raises(ValueError, match="outside"):
        seg.threshold(np.array([[0.5, 1.5]]))


# --------------------------------------------------------------------------------------------
# IoU and F1.
# --------------------------------------------------------------------------------------------


def test_iou_f1_by_hand():
    # |P| = |T| = 4, |P n T| = 2, |P u T| = 6.
    assert seg.iou(PRED, TARGET) == pytest.approx(2 / 6)
    assert seg.f1(PRED, TARGET) == pytest.approx(2 * 2 / (4 + 4))
    # Everything predicted, one true pixel: |P n T| = 1, |P u T| = 16, |P| + |T| = 17.
    everything, one = np.ones((4, 4), dtype=np.uint8), np.zeros((4, 4), dtype=np.uint8)
    one[3, 3] = 1
    assert seg.iou(everything, one) == pytest.approx(1 / 16)
    assert seg.f1(everything, one) == pytest.approx(2 / 17)
    # Disjoint and identical masks; 0/1 floats and JAX arrays are taken as masks.
    assert seg.iou(PRED, ~PRED) == 0.0 and seg.f1(PRED, ~PRED) == 0.0
    assert seg.iou(jnp.asarray(TARGET, jnp.float32), TARGET) == 1.0
    assert isinstance(seg.f1(PRED, TARGET), float)


def test_empty_masks_score_one():
    empty = np.zeros((4, 4), dtype=bool)
    assert seg.iou(empty, empty) == 1.0
    assert seg.f1(empty, empty) == 1.0
    assert seg.iou(empty, TARGET) == 0.0 and seg.f1(PRED, empty) == 0.0


def test_batched_scores_equal_per_image():
    rng = np.random.default_rng(0)
    pred = rng.random((5, 8, 8)) > 0.5
    target = rng.random((5, 8, 8)) > 0.4
    target[2] = pred[2] = False  # an empty-empty image inside the batch
    ious, f1s = seg.iou(pred, target), seg.f1(pred, target)
    assert ious.shape == f1s.shape == (5,)
    np.testing.assert_allclose(ious, [seg.iou(p, t) for p, t in zip(pred, target)])
    np.testing.assert_allclose(f1s, [seg.f1(p, t) for p, t in zip(pred, target)])
    assert ious[2] == f1s[2] == 1.0


def test_bad_masks_raise():
    with pytest.raises(ValueError, match="shape"):
        seg.iou(PRED, TARGET[:3])
    with pytest.raises(ValueError, match="shape"):
        seg.f1(PRED[None], TARGET)
    with pytest.raises(ValueError, match="binary"):
        seg.f1(PRED * 0.7, TARGET)
    with pytest.raises(ValueError, match="shape"):
        seg.iou(np.array([1, 0]), np.array([1, 0]))


def test_per_class_scores_by_hand():
    target = np.array([[0, 0, 1],
                       [2, 2, 1]])
    pred = np.array([[0, 1, 1],
                     [2, 0, 1]])
    # class 0: T {(0,0), (0,1)}, P {(0,0), (1,1)}, overlap 1 -> IoU 1/3, F1 2/4.
    # class 1: T {(0,2), (1,2)}, P {(0,1), (0,2), (1,2)}, overlap 2 -> IoU 2/3, F1 4/5.
    # class 2: T {(1,0), (1,1)}, P {(1,0)}, overlap 1 -> IoU 1/2, F1 2/3.
    expected = [(1 / 3, 1 / 2), (2 / 3, 4 / 5), (1 / 2, 2 / 3)]
    result = seg.per_class_scores(jnp.asarray(pred), target, 3)
    for row, c, (i, f) in zip(result["classes"], range(3), expected):
        assert row["class"] == c and row["support"] == 2
        assert row["iou"] == pytest.approx(i) and row["f1"] == pytest.approx(f)
    assert result["mean_iou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert result["mean_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    # One-vs-rest agrees with the binary scores.
    assert result["classes"][1]["iou"] == pytest.approx(seg.iou(pred == 1, target == 1))
    # A class absent from both maps scores 1 but is left out of the means.
    four = seg.per_class_scores(pred, target, 4)
    assert four["classes"][3] == {"class": 3, "iou": 1.0, "f1": 1.0, "support": 0}
    assert four["mean_iou"] == pytest.approx(result["mean_iou"])
    with pytest.raises(ValueError, match="outside"):
        seg.per_class_scores(pred, target, 2)
    with pytest.raises(ValueError, match="shape"):
        seg.per_class_scores(pred, target[:, :2], 3)


# --------------------------------------------------------------------------------------------
# Entropy.
# --------------------------------------------------------------------------------------------


def test_entropy_values():
    for classes in (2, 3, 5):
        uniform = np.full((4, 6, classes), 1 / classes)
        np.testing.assert_allclose(seg.entropy(uniform), math.log(classes), rtol=1e-12)
    one_hot = np.eye(3)[np.array([[0, 1], [2, 0]])]  # (2, 2, 3)
    entropies = seg.entropy(jnp.asarray(one_hot))
    assert entropies.shape == (2, 2)
    np.testing.assert_array_equal(entropies, 0.0)
    assert float(seg.binary_entropy(0.5)) == pytest.approx(math.log(2))
    np.testing.assert_array_equal(seg.binary_entropy(np.array([0.0, 1.0])), 0.0)
    # A class axis of size 1 is a binary probability, read as (p, 1 - p).
    p = np.random.default_rng(1).random((3, 5))
    np.testing.assert_allclose(seg.entropy(p[..., None]), seg.binary_entropy(p))
    np.testing.assert_allclose(seg.entropy(np.stack([p, 1 - p], axis=-1)),
                               seg.binary_entropy(p), rtol=1e-12)
    # The class axis may be elsewhere.
    np.testing.assert_allclose(seg.entropy(np.moveaxis(one_hot, -1, 0), axis=0), 0.0)


# --------------------------------------------------------------------------------------------
# Two-point correlation.
# --------------------------------------------------------------------------------------------


def _direct_s2(mask: np.ndarray, axis: int, max_r: int) -> np.ndarray:
    """S2 by looping over r: the mean of m[i] m[i + r] over pairs inside the image."""
    m = np.moveaxis(mask.astype(np.float64), axis, -1)
    return np.array([np.mean(m[..., :m.shape[-1] - r] * m[..., r:]) for r in range(max_r + 1)])


def test_two_point_phase_fraction_and_direct():
    rng = np.random.default_rng(2)
    mask = rng.random((24, 37)) < 0.3
    s2 = seg.two_point_correlation(mask)
    assert s2.shape == (37 // 2 + 1,)
    assert s2[0] == pytest.approx(mask.mean(), abs=1e-15)
    assert seg.two_point_correlation(mask, axis=0)[0] == pytest.approx(mask.mean(), abs=1e-15)
    for axis, image_axis, max_r in ((1, 1, 36), (0, 0, 23), (-2, 0, 5)):
        np.testing.assert_allclose(seg.two_point_correlation(mask, axis=axis, max_r=max_r),
                                   _direct_s2(mask, image_axis, max_r), rtol=1e-12)
    with pytest.raises(ValueError, match="max_r"):
        seg.two_point_correlation(mask, axis=0, max_r=24)


def test_two_point_on_stripes():
    # Columns 1100 1100 1100 1100: width 16, height 8, phase fraction 1/2.
    stripes = np.tile(np.array([1, 1, 0, 0] * 4, dtype=np.uint8), (8, 1))
    # Along X, pairs (i, i + r) with i < 16 - r; on columns are 0,1, 4,5, 8,9, 12,13:
    # r = 0: 8 of 16; r = 1: (0,1) (4,5) (8,9) (12,13) of 15; r = 2: none of 14 (always the
    # opposite stripe); r = 3: (1,4) (5,8) (9,12) of 13; r = 4: i in {0,1,4,5,8,9} of 12.
    expected_x = [8 / 16, 4 / 15, 0 / 14, 3 / 13, 6 / 12]
    np.testing.assert_allclose(seg.two_point_correlation(stripes, axis=1, max_r=4),
                               expected_x, rtol=1e-12)
    # Each column is constant, so along Y every pair agrees: S2 is the fraction throughout.
    np.testing.assert_allclose(seg.two_point_correlation(stripes, axis=0), np.full(5, 0.5))


def test_two_point_batched_is_mean_of_images():
    rng = np.random.default_rng(3)
    masks = rng.random((4, 16, 20)) < np.array([0.2, 0.4, 0.6, 0.8])[:, None, None]
    for axis in (0, 1):
        batched = seg.two_point_correlation(jnp.asarray(masks), axis=axis, max_r=7)
        each = [seg.two_point_correlation(m, axis=axis, max_r=7) for m in masks]
        np.testing.assert_allclose(batched, np.mean(each, axis=0), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# IoU map.
# --------------------------------------------------------------------------------------------


def test_iou_map_colours():
    picture = seg.iou_map(PRED, TARGET)
    assert picture.shape == (4, 4, 3) and picture.dtype == np.uint8
    assert tuple(picture[0, 1]) == (255, 0, 0)  # true positive
    assert tuple(picture[3, 3]) == (0, 0, 0)  # true negative
    assert tuple(picture[0, 2]) == (0, 255, 0)  # false negative
    assert tuple(picture[1, 0]) == (0, 0, 255)  # false positive
    # Every pixel has one of the four colours, in the right numbers (2 TP, 2 FN, 2 FP).
    colours = {tuple(c): n for c, n in zip(*np.unique(picture.reshape(-1, 3), axis=0,
                                                        return_counts=True))}
    assert colours == {(255, 0, 0): 2, (0, 255, 0): 2, (0, 0, 255): 2, (0, 0, 0): 10}


# --------------------------------------------------------------------------------------------
# Figures.
# --------------------------------------------------------------------------------------------


def _slice(seed: int = 4, side: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic slice with round particles, its truth, and a noisy probability map."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:side, :side]
    truth = np.zeros((side, side), dtype=bool)
    for cy, cx, radius in rng.uniform([0, 0, 4], [side, side, 12], size=(6, 3)):
        truth |= (y - cy) ** 2 + (x - cx) ** 2 < radius ** 2
    image = 0.3 + 0.5 * truth + rng.normal(0, 0.1, truth.shape)
    probability = 1 / (1 + np.exp(-8 * (image - 0.55)))
    return image, truth, probability


def _figure_calls(tmp_path: pathlib.Path) -> dict:
    image, truth, probability = _slice()
    labels = np.where(truth, 0, np.where(image > 0.3, 1, 2))  # particle, binder, pore
    three = np.stack([probability, (1 - probability) / 2, (1 - probability) / 2], axis=-1)
    s2 = seg.two_point_correlation(truth)
    return {
        "segmentation.png": lambda p: seg.figure_segmentation(
            image, truth, seg.threshold(probability), probability, p, title="slice 12"),
        "segmentation3.png": lambda p: seg.figure_segmentation(
            image, labels, seg.argmax_labels(three), jnp.asarray(three), p, phase=0),
        "two_point.png": lambda p: seg.figure_two_point(
            {"ground truth": s2, "blur level 1": s2 * 0.97, "blur level 3": s2[:20] * 0.9},
            p, title="particles along X", end_labels={"blur level 1": 4.2}),
        "score_vs_f1.png": lambda p: seg.figure_score_vs_f1(
            [4.5, 3.9, 3.1, 2.2, 4.4, 3.0, 1.9, 4.8], [0.95, 0.93, 0.9, 0.8, 0.96, 0.85, 0.7, 0.97],
            ["blur"] * 4 + ["noise"] * 3 + ["none"], p),
    }


def test_figures_write_png(tmp_path):
    for name, draw in _figure_calls(tmp_path).items():
        draw(tmp_path / name)
        images.check_png(tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(_figure_calls(tmp_path))


def test_figure_failure_leaves_no_temporary(tmp_path, monkeypatch):
    def broken_savefig(self, path, **kwargs):
        pathlib.Path(path).write_bytes(images.PNG_SIGNATURE)  # a partial file, then the failure
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    for name, draw in _figure_calls(tmp_path).items():
        with pytest.raises(RuntimeError, match="disk full"):
            draw(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_figure_inputs_checked(tmp_path):
    image, truth, probability = _slice()
    with pytest.raises(ValueError, match="shape"):
        seg.figure_segmentation(image, truth[:10], truth, probability, tmp_path / "a.png")
    with pytest.raises(ValueError, match="fits neither"):
        seg.figure_segmentation(image, truth, truth, probability[:10], tmp_path / "a.png")
    with pytest.raises(ValueError, match="one length"):
        seg.figure_score_vs_f1([1, 2], [0.5], ["a", "b"], tmp_path / "b.png")
    with pytest.raises(ValueError, match="nothing"):
        seg.figure_two_point({}, tmp_path / "c.png")
    assert list(tmp_path.iterdir()) == []
