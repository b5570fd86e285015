"""Tests for tiqa.evaluation: metrics, logistic mapping, tables, scatter plots, bad inputs."""

import csv
import math
import warnings

import numpy as np
import pytest
import scipy.stats
from PIL import Image

from tests import images
from tiqa import evaluation as ev



def _scores(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reference labels in 1..5 and noisy predictions of them, with many tied labels."""
    rng = np.random.default_rng(seed)
    reference = rng.integers(1, 6, size=n).astype(np.float64)  # integer labels: ties
    predicted = reference + rng.normal(0.0, 0.8, size=n)
    return predicted, reference


def _kinds(n: int) -> np.ndarray:
    return np.array(["blur", "noise", "ring"] * (n // 3) + ["blur"] * (n % 3))


# --------------------------------------------------------------------------------------------
# Metrics.
# --------------------------------------------------------------------------------------------


def test_correlations_match_scipy():
    predicted, reference = _scores()
    assert ev.plcc(predicted, reference) == pytest.approx(
        scipy.stats.pearsonr(predicted, reference).statistic, abs=1e-12)
    assert ev.srocc(predicted, reference) == pytest.approx(
        scipy.stats.spearmanr(predicted, reference).statistic, abs=1e-12)
    assert ev.krocc(predicted, reference) == pytest.approx(
        scipy.stats.kendalltau(predicted, reference).statistic, abs=1e-12)
    for metric in (ev.plcc, ev.srocc, ev.krocc, ev.rmse):
        assert type(metric(predicted, reference)) is float


def test_rank_correlations_with_ties_in_both():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=40).astype(np.float64)
    y = x + rng.integers(0, 3, size=40)
    assert ev.srocc(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)
    assert ev.krocc(x, y) == pytest.approx(scipy.stats.kendalltau(x, y).statistic, abs=1e-12)


def test_kendall_tau_b_by_hand():
    # Pairs: 4 concordant, 0 discordant, one tie in x only, one tie in y only:
    # tau_b = 4 / sqrt((6 - 1) * (6 - 1)) = 0.8.
    assert ev.krocc([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    # No ties: 5 concordant, 1 discordant of 6 pairs.
    assert ev.krocc([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # Spearman with average ranks: x ranks (1.5, 1.5, 3, 4), y ranks (1, 2.5, 2.5, 4).
    assert ev.srocc([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(
        ev.plcc([1.5, 1.5, 3, 4], [1, 2.5, 2.5, 4]))


def test_rmse_by_hand():
    # Errors 1, -2, 0, 1: mean square 6 / 4.
    assert ev.rmse([2.0, 1.0, 3.0, 5.0], [1.0, 3.0, 3.0, 4.0]) == pytest.approx(math.sqrt(1.5))
    assert ev.rmse([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 0.0


def test_perfect_and_reversed_order():
    x = np.array([0.1, 0.5, 0.7, 2.0, 9.0])
    y = np.exp(x)  # monotone but not linear
    assert ev.srocc(x, y) == pytest.approx(1.0)
    assert ev.krocc(x, -y) == pytest.approx(-1.0)
    assert ev.plcc(x, 3 * x + 1) == pytest.approx(1.0)


@pytest.mark.parametrize("metric", [ev.plcc, ev.srocc, ev.krocc])
def test_constant_input_gives_nan_with_warning(metric):
    with pytest.warns(ev.ConstantInputWarning, match="constant"):
        value = metric([2.0, 2.0, 2.0, 2.0], [1.0, 2.0, 3.0, 4.0])
    assert math.isnan(value)
    with pytest.warns(ev.ConstantInputWarning):
        assert math.isnan(metric([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))


@pytest.mark.parametrize("metric", [ev.plcc, ev.srocc, ev.krocc, ev.rmse])
def test_bad_inputs(metric):
    with pytest.raises(ValueError, match="differ in length"):
        metric([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="at least 3"):
        metric([1.0, 2.0], [2.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        metric([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="inf"):
        metric([1.0, 2.0, 3.0], [1.0, np.inf, 3.0])
    with pytest.raises(ValueError, match="1-D"):
        metric(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="not numeric"):
        metric(["a", "b", "c"], [1.0, 2.0, 3.0])


# --------------------------------------------------------------------------------------------
# Logistic mapping.
# --------------------------------------------------------------------------------------------


def test_fit_logistic_recovers_parameters():
    x = np.linspace(-3.0, 3.0, 61)
    truth = (5.0, 1.0, 0.0, 0.5)
    y = ev.logistic(x, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean fit warns about nothing
        params = ev.fit_logistic(x, y)
    assert params.converged
    np.testing.assert_allclose(params.as_tuple(), truth, atol=1e-3)
    np.testing.assert_allclose(ev.logistic(x, params), y, atol=1e-6)


def test_logistic_formula():
    b1, b2, b3, b4 = 4.0, 2.0, 1.0, -0.5  # negative b4 acts as |b4|
    x = np.array([-1.0, 1.0, 3.0])
    expected = (b1 - b2) / (1.0 + np.exp(-(x - b3) / abs(b4))) + b2
    np.testing.assert_allclose(ev.logistic(x, (b1, b2, b3, b4)), expected, rtol=1e-12)


def test_logistic_mapping_raises_plcc_of_monotone_nonlinear_relation():
    rng = np.random.default_rng(2)
    predicted = np.sort(rng.uniform(-4.0, 4.0, size=80))
    reference = ev.logistic(predicted, (5.0, 1.0, 0.5, 0.7)) + rng.normal(0.0, 0.05, size=80)
    before = ev.plcc(predicted, reference)
    mapped = ev.logistic(predicted, ev.fit_logistic(predicted, reference))
    after = ev.plcc(mapped, reference)
    assert after > before + 0.02 and after > 0.99
    assert ev.rmse(mapped, reference) < 0.1


def test_fit_logistic_falls_back_to_a_line():
    with pytest.warns(ev.LogisticFitWarning, match="linear"):
        params = ev.fit_logistic([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])  # too few points
    assert not params.converged
    np.testing.assert_allclose(ev.logistic([5.0], params), [10.0])
    with pytest.warns(ev.LogisticFitWarning, match="constant"):
        params = ev.fit_logistic([3.0] * 6, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    np.testing.assert_allclose(ev.logistic([3.0, 7.0], params), [3.5, 3.5])


# --------------------------------------------------------------------------------------------
# Tables.
# --------------------------------------------------------------------------------------------


def test_correlation_table_rows():
    predicted, reference = _scores(61)
    kinds = _kinds(61)
    # Make 'noise' predictions a perfectly monotone (nonlinear) function of the labels.
    noise = kinds == "noise"
    predicted[noise] = np.exp(reference[noise])
    rows = ev.correlation_table(predicted, reference, kinds)
    assert [row["kind"] for row in rows] == ["blur", "noise", "ring", "overall"]
    assert [row["n"] for row in rows] == [21, 20, 20, 61]
    assert all(tuple(row) == ev.COLUMNS for row in rows)
    by_kind = {row["kind"]: row for row in rows}
    assert by_kind["noise"]["srocc"] == pytest.approx(1.0)
    assert by_kind["noise"]["krocc"] == pytest.approx(1.0)
    overall = by_kind["overall"]
    assert overall["plcc"] == pytest.approx(ev.plcc(predicted, reference))
    assert overall["rmse"] == pytest.approx(ev.rmse(predicted, reference))
    assert overall["plcc_logistic"] >= overall["plcc"] - 1e-9
    for row in rows:
        assert all(isinstance(row[k], float) for k in ev.COLUMNS[2:])


def test_correlation_table_without_logistic_and_small_kinds():
    predicted, reference = _scores(12)
    kinds = np.array(["blur"] * 10 + ["sinogram_ring"] * 2)
    with pytest.warns(RuntimeWarning, match="fewer than 3"):
        rows = ev.correlation_table(predicted, reference, kinds, logistic=False)
    small = rows[1]
    assert small["kind"] == "sinogram_ring" and small["n"] == 2
    assert all(math.isnan(small[k]) for k in ev.COLUMNS[2:])
    assert math.isnan(rows[0]["plcc_logistic"]) and not math.isnan(rows[0]["plcc"])


def test_correlation_table_bad_inputs():
    predicted, reference = _scores(9)
    with pytest.raises(ValueError, match="kinds"):
        ev.correlation_table(predicted, reference, _kinds(8))
    with pytest.raises(ValueError, match="reserved"):
        ev.correlation_table(predicted, reference, ["overall"] * 9)
    with pytest.raises(ValueError, match="differ in length"):
        ev.correlation_table(predicted[:-1], reference, _kinds(9))


def test_write_table_round_trip(tmp_path):
    predicted, reference = _scores(30)
    rows = ev.correlation_table(predicted, reference, _kinds(30))
    rows[0]["krocc"] = math.nan  # NaN survives the round trip too
    csv_path, md_path = tmp_path / "table.csv", tmp_path / "table.md"
    ev.write_table(rows, csv_path, md_path)
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == ev.COLUMNS
        read = list(reader)
    assert len(read) == len(rows)
    for original, back in zip(rows, read):
        assert back["kind"] == original["kind"] and int(back["n"]) == original["n"]
        for key in ev.COLUMNS[2:]:
            np.testing.assert_equal(float(back[key]), original[key])  # exact, NaN == NaN
    markdown = md_path.read_text(encoding="utf-8")
    assert markdown == ev.format_table(rows)
    lines = markdown.splitlines()
    assert lines[0] == "| " + " | ".join(ev.COLUMNS) + " |"
    assert len(lines) == 2 + len(rows)
    assert f"{rows[-1]['plcc']:.4f}" in lines[-1] and lines[-1].startswith("| overall | 30 |")
    assert "| nan |" in lines[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv", "table.md"]


def test_write_table_failure_leaves_no_file(tmp_path):
    predicted, reference = _scores(30)
    rows = ev.correlation_table(predicted, reference, _kinds(30))
    missing = tmp_path / "no_such_folder"
    with pytest.raises(FileNotFoundError):
        ev.write_table(rows, tmp_path / "table.csv", missing / "table.md")
    with pytest.raises(FileNotFoundError):
        ev.write_table(rows, missing / "table.csv", tmp_path / "table.md")
    assert list(tmp_path.iterdir()) == []
    # A failure while writing (an unwritable value) leaves nothing, temporaries included.

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("cannot format")

    with pytest.raises(RuntimeError):
        ev.write_table([{"kind": Broken(), "n": 1}], tmp_path / "t.csv", tmp_path / "t.md")
    assert list(tmp_path.iterdir()) == []


def test_write_table_bad_rows(tmp_path):
    with pytest.raises(ValueError, match="no rows"):
        ev.write_table([], tmp_path / "t.csv", tmp_path / "t.md")
    with pytest.raises(ValueError, match="keys"):
        ev.format_table([{"kind": "a", "n": 1}, {"kind": "b"}])


# --------------------------------------------------------------------------------------------
# Scatter plot.
# --------------------------------------------------------------------------------------------


def test_scatter_plot_writes_png(tmp_path):
    predicted, reference = _scores(45)
    path = tmp_path / "scatter.png"
    ev.scatter_plot(predicted, reference, _kinds(45), path, title="test")
    assert path.read_bytes()[:8] == images.PNG_SIGNATURE
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        assert min(image.size) >= 200
        # Not a blank canvas: the points and text make many distinct colours.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 10
    assert [p.name for p in tmp_path.iterdir()] == ["scatter.png"]


def test_scatter_plot_bad_inputs(tmp_path):
    predicted, reference = _scores(9)
    with pytest.raises(ValueError, match="kinds"):
        ev.scatter_plot(predicted, reference, _kinds(6), tmp_path / "s.png")
    with pytest.raises(ValueError, match="differ in length"):
        ev.scatter_plot(predicted[:5], reference, _kinds(9), tmp_path / "s.png")
    with pytest.raises(FileNotFoundError):
        ev.scatter_plot(predicted, reference, None, tmp_path / "missing" / "s.png")
    assert list(tmp_path.iterdir()) == []
