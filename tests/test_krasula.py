"""Tests for Krasula's method, roc_auc and DeLong's test in tiqa.evaluation."""

import math

import numpy as np
import pytest

from tiqa import evaluation as ev

# Well separated except three deliberately similar pairs (|dMOS| <= 0.5, the default threshold).
SUBJECTIVE = np.array([1.0, 1.2, 2.5, 2.6, 4.0, 4.3])


def _brute_force_delong(pos_a, neg_a, pos_b, neg_b):
    """DeLong's covariance of (AUC_A, AUC_B) straight from the psi kernel matrices."""
    def components(pos, neg):
        pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
        psi = (pos > neg) + 0.5 * (pos == neg)  # m x n kernel, ties half
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)

    auc_a, v10_a, v01_a = components(pos_a, neg_a)
    auc_b, v10_b, v01_b = components(pos_b, neg_b)
    m, n = len(pos_a), len(neg_a)
    covariance = np.cov([v10_a, v10_b]) / m + np.cov([v01_a, v01_b]) / n
    return auc_a, auc_b, covariance


def test_perfect_metric():
    result = ev.krasula(SUBJECTIVE, SUBJECTIVE.copy())
    assert result["auc_ds"] == 1.0
    assert result["auc_bw"] == 1.0
    assert result["cc0"] == 1.0
    assert result["pairs"] == 15
    assert result["similar_pairs"] == 3 and result["different_pairs"] == 12
    assert "dMOS threshold" in result["significance_rule"]
    assert "default" in result["significance_rule"]


def test_reversed_metric():
    result = ev.krasula(SUBJECTIVE, -SUBJECTIVE)
    assert result["cc0"] == 0.0
    assert result["auc_bw"] == 0.0
    assert result["auc_ds"] == 1.0  # |d objective| does not see the sign


def test_ties_count_half():
    # Pair (0, 1) has a constant objective: d = 0 there, half a correct order.
    with pytest.warns(ev.KrasulaWarning):  # no similar pair: auc_ds is NaN
        result = ev.krasula([1.0, 3.0, 5.0], [0.0, 0.0, 1.0])
    assert math.isnan(result["auc_ds"])
    assert result["cc0"] == pytest.approx(2 / 3 + 0.5 / 3)
    # Oriented d = {0, 1, 1} against {0, -1, -1}: 0 vs 0 is half -> (0.5 + 2 + 6) / 9.
    assert result["auc_bw"] == pytest.approx(8.5 / 9)
    # Similar pair (0, 1) has |d obj| 1; different pairs have {1, 0}: (0.5 + 0) / 2.
    result = ev.krasula([1.0, 1.1, 3.0], [0.0, 1.0, 1.0])
    assert result["auc_ds"] == pytest.approx(0.25)


def test_z_test_path():
    subjective = [1.0, 1.2, 3.0]
    # SE^2 = 1/25 each: dMOS 0.2 -> z 0.71 (similar), 2.0 and 1.8 -> z > 6 (different).
    result = ev.krasula(subjective, subjective, subjective_std=[1.0, 1.0, 1.0],
                        subjective_n=25)
    assert "z-test" in result["significance_rule"]
    assert result["different_pairs"] == 2 and result["similar_pairs"] == 1
    assert result["auc_ds"] == 1.0 and result["cc0"] == 1.0
    # One rater's worth of precision: nothing is significant, so the AUCs are NaN.
    with pytest.warns(ev.KrasulaWarning):
        result = ev.krasula(subjective, subjective, subjective_std=1.0, subjective_n=1)
    assert result["different_pairs"] == 0
    assert math.isnan(result["auc_bw"]) and math.isnan(result["cc0"])


def test_explicit_dmos_threshold():
    with pytest.warns(ev.KrasulaWarning):  # every pair different: auc_ds is NaN
        result = ev.krasula(SUBJECTIVE, SUBJECTIVE, dmos_threshold=0.05)
    assert result["similar_pairs"] == 0
    assert "given" in result["significance_rule"]


@pytest.mark.parametrize("kwargs, objective", [
    ({}, [1.0, 2.0]),                                # length mismatch
    ({}, [1.0, 2.0, math.nan, 4.0, 5.0, 6.0]),       # NaN
    ({"subjective_std": 1.0}, SUBJECTIVE),           # std without n
    ({"subjective_std": 1.0, "subjective_n": 5, "dmos_threshold": 0.5}, SUBJECTIVE),
    ({"subjective_std": [1.0, 1.0], "subjective_n": 5}, SUBJECTIVE),
])
def test_krasula_errors(kwargs, objective):
    with pytest.raises(ValueError):
        ev.krasula(SUBJECTIVE, objective, **kwargs)


def test_krasula_too_few_stimuli():
    with pytest.raises(ValueError, match="at least 3"):
        ev.krasula([1.0, 2.0], [1.0, 2.0])


def test_roc_auc_hand_computed():
    # 3>1, 3>0, 2>1, 2>0, 1=1 (half), 1>0: 5.5 of 6 pairs.
    assert ev.roc_auc([3.0, 2.0, 1.0], [1.0, 0.0]) == pytest.approx(5.5 / 6)
    assert ev.roc_auc([1.0, 1.0], [1.0]) == 0.5
    assert ev.roc_auc([0.0], [1.0, 2.0]) == 0.0
    with pytest.raises(ValueError):
        ev.roc_auc([math.nan], [1.0])


def test_delong_identical_metrics():
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(1.0, 1.0, 40), rng.normal(0.0, 1.0, 50)
    result = ev.delong_test(pos, neg, pos, neg)
    assert result["auc_a"] == result["auc_b"]
    assert result["z"] == 0.0
    assert result["p_value"] == pytest.approx(1.0)


def test_delong_clearly_better_metric():
    rng = np.random.default_rng(2)
    m, n = 150, 150
    signal_pos, signal_neg = rng.normal(1.0, 1.0, m), rng.normal(-1.0, 1.0, n)
    # A sees the signal almost cleanly; B sees it buried in noise.
    pos_a, neg_a = signal_pos + rng.normal(0, 0.2, m), signal_neg + rng.normal(0, 0.2, n)
    pos_b, neg_b = signal_pos + rng.normal(0, 3.0, m), signal_neg + rng.normal(0, 3.0, n)
    result = ev.delong_test(pos_a, neg_a, pos_b, neg_b)
    assert result["auc_a"] > result["auc_b"] + 0.1
    assert result["z"] > 0
    assert result["p_value"] < 1e-4


def test_delong_variance_hand_computed():
    # psi = [[1, 0], [1, 0]]: V10 = (.5, .5) has variance 0, V01 = (1, 0) has variance 0.5,
    # so Var(AUC) = 0 / 2 + 0.5 / 2 = 0.25.
    result = ev.delong_test([1.0, 2.0], [0.0, 3.0], [1.0, 2.0], [0.0, 3.0])
    assert result["auc_a"] == 0.5
    assert result["covariance"][0, 0] == pytest.approx(0.25)


def test_delong_matches_brute_force_with_ties():
    rng = np.random.default_rng(3)
    # Integer scores force many ties between and within classes.
    pos_a, neg_a = rng.integers(0, 5, 12), rng.integers(0, 4, 9)
    pos_b, neg_b = rng.integers(0, 6, 12), rng.integers(0, 6, 9)
    result = ev.delong_test(pos_a, neg_a, pos_b, neg_b)
    auc_a, auc_b, covariance = _brute_force_delong(pos_a, neg_a, pos_b, neg_b)
    assert result["auc_a"] == pytest.approx(auc_a)
    assert result["auc_b"] == pytest.approx(auc_b)
    np.testing.assert_allclose(result["covariance"], covariance, rtol=1e-12, atol=1e-15)
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    assert result["z"] == pytest.approx((auc_a - auc_b) / math.sqrt(variance))


def test_delong_errors():
    with pytest.raises(ValueError, match="same cases"):
        ev.delong_test([1.0, 2.0, 3.0], [0.0, 1.0], [1.0, 2.0], [0.0, 1.0])
    with pytest.raises(ValueError):
        ev.delong_test([1.0], [0.0, 1.0], [1.0], [0.0, 1.0])
