"""Agreement between predicted quality scores and reference labels: metrics, tables, plots.

Metrics (1-D float64 arrays in, Python float out)
    `plcc`   Pearson linear correlation (scipy.stats.pearsonr).
    `srocc`  Spearman rank correlation, ties given their average rank (scipy.stats.spearmanr).
    `krocc`  Kendall tau-b (ties corrected), via scipy.stats.kendalltau (O(n log n)).
    `rmse`   root mean squared error between predicted and reference.
    Every metric raises ValueError for inputs that are not 1-D, of different lengths, shorter
    than MIN_POINTS, or holding NaN/inf. A correlation is undefined when one input is constant:
    it is then NaN, with scipy's `ConstantInputWarning`, rather than an error, so one
    degenerate subset does not stop an evaluation.

Logistic mapping (VQEG)
    Scores and labels need not share a scale, so PLCC and RMSE are also reported after mapping
    the predictions through the customary 4-parameter logistic fitted to the labels,

        f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2,

    by `fit_logistic` (scipy.optimize.curve_fit, started at b1 = max(reference),
    b2 = min(reference), b3 = mean(predicted), b4 = std(predicted) or 1). When the fit fails
    (no convergence, non-finite result, constant predictions, fewer than 5 points) a least-
    squares line reference ~ a * predicted + c is used instead, with a `LogisticFitWarning`.

Tables and plots
    `correlation_table` gives one row per distortion kind plus an 'overall' row;
    `format_table` renders it as Markdown, `write_table` writes CSV and Markdown, and
    `scatter_plot` draws predictions against labels as a PNG. Files are written through
    `tiqa.io.atomic_write`, so each is written whole or not at all.
"""

from __future__ import annotations

import csv
import dataclasses
import io as _stdio
import math
import os
import pathlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Union

import matplotlib

matplotlib.use("Agg")  # no display: figures are only ever written to files

import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402
import scipy.special  # noqa: E402
import scipy.stats  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tiqa.io import atomic_write, save_figure  # noqa: E402

PathLike = Union[str, os.PathLike]

# Fewest points for which a correlation says anything (two points always correlate perfectly).
MIN_POINTS = 3
# Fewest points for the 4-parameter logistic: with 4 or fewer it interpolates the data exactly.
MIN_LOGISTIC_POINTS = 5
# Name of the table row over all kinds together.
OVERALL = "overall"
# Column order of `correlation_table` rows.
COLUMNS = ("kind", "n", "plcc", "srocc", "krocc", "rmse", "plcc_logistic", "rmse_logistic")
# Smallest |b4| used when evaluating the logistic, so a degenerate step stays finite.
_MIN_SCALE = 1e-12


# A correlation was asked of a constant input; it is reported as NaN. scipy's own class, so
# one filter silences the warnings of pearsonr, spearmanr and `krocc` alike.
ConstantInputWarning = scipy.stats.ConstantInputWarning


class LogisticFitWarning(RuntimeWarning):
    """The logistic fit failed and a linear fit was used instead."""


# --------------------------------------------------------------------------------------------
# Metrics.
# --------------------------------------------------------------------------------------------


def _as_vector(values: Any, name: str) -> np.ndarray:
    """`values` as a 1-D float64 array, or a ValueError saying why not."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not numeric ({exc})") from exc
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {array.shape}")
    return array


def _check_pair(x: Any, y: Any, minimum: int = MIN_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Validated 1-D float64 copies of two paired inputs."""
    x, y = _as_vector(x, "x"), _as_vector(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} vs {y.size}")
    if x.size < minimum:
        raise ValueError(f"need at least {minimum} paired points, got {x.size}")
    for name, array in (("x", x), ("y", y)):
        bad = ~np.isfinite(array)
        if bad.any():
            raise ValueError(f"{name}: {int(np.isnan(array).sum())} NaN and "
                             f"{int(bad.sum() - np.isnan(array).sum())} inf values "
                             f"(of {array.size}); remove or impute them first")
    return x, y


def _constant(x: np.ndarray, y: np.ndarray, metric: str) -> bool:
    """True (with a warning) when either input is constant, so `metric` is undefined.

    For `krocc`: scipy.stats.kendalltau returns NaN there without warning, unlike pearsonr.
    """
    for name, array in (("x", x), ("y", y)):
        if np.all(array == array[0]):
            warnings.warn(f"{metric}: {name} is constant ({array[0]:g}); the correlation is "
                          "undefined and reported as NaN", ConstantInputWarning, stacklevel=3)
            return True
    return False


def plcc(x: Any, y: Any) -> float:
    """Pearson linear correlation coefficient (NaN, with a warning, if an input is constant)."""
    x, y = _check_pair(x, y)
    return float(scipy.stats.pearsonr(x, y).statistic)


def srocc(x: Any, y: Any) -> float:
    """Spearman rank correlation, tied values sharing their average rank.

    NaN, with a warning, if an input is constant.
    """
    x, y = _check_pair(x, y)
    return float(scipy.stats.spearmanr(x, y).statistic)


def krocc(x: Any, y: Any) -> float:
    """Kendall rank correlation, tau-b (corrected for ties in either input).

    NaN, with a warning, if an input is constant.
    """
    x, y = _check_pair(x, y)
    if _constant(x, y, "krocc"):
        return math.nan
    # The asymptotic p-value is cheap; the statistic does not depend on the method.
    result = scipy.stats.kendalltau(x, y, variant="b", method="asymptotic")
    return float(result.statistic)


def rmse(predicted: Any, reference: Any) -> float:
    """Root mean squared error between predictions and reference labels."""
    predicted, reference = _check_pair(predicted, reference)
    return float(np.sqrt(np.mean((predicted - reference) ** 2)))


# --------------------------------------------------------------------------------------------
# Logistic mapping.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LogisticParams:
    """A fitted mapping from predictions to the reference scale.

    Attributes:
        b1, b2: the upper and lower asymptotes of the logistic.
        b3: its midpoint.
        b4: its scale (stored positive; the formula uses |b4|).
        linear: None for a logistic fit; (slope, intercept) when the fit fell back to a line,
            in which case b1..b4 are NaN and `logistic` applies the line.
    """

    b1: float
    b2: float
    b3: float
    b4: float
    linear: tuple[float, float] | None = None

    @property
    def converged(self) -> bool:
        """Whether the logistic fit itself succeeded (no linear fallback)."""
        return self.linear is None

    def as_tuple(self) -> tuple[float, float, float, float]:
        """(b1, b2, b3, b4)."""
        return (self.b1, self.b2, self.b3, self.b4)


ParamsLike = Union[LogisticParams, Sequence[float]]


def _logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The VQEG logistic; expit keeps it free of exp overflow for steep fits."""
    scale = max(abs(b4), _MIN_SCALE)
    return (b1 - b2) * scipy.special.expit((x - b3) / scale) + b2


def logistic(x: Any, params: ParamsLike) -> np.ndarray:
    """Maps predictions `x` to the reference scale with fitted parameters.

    Args:
        x: predictions, any shape.
        params: a `LogisticParams` from `fit_logistic` (its line if the fit fell back), or a
            plain (b1, b2, b3, b4).

    Returns:
        float64 array of the shape of `x`.
    """
    x = np.asarray(x, dtype=np.float64)
    if isinstance(params, LogisticParams):
        if params.linear is not None:
            slope, intercept = params.linear
            return slope * x + intercept
        params = params.as_tuple()
    b1, b2, b3, b4 = (float(p) for p in params)
    return _logistic4(x, b1, b2, b3, b4)


def _linear_fallback(predicted: np.ndarray, reference: np.ndarray, why: str) -> LogisticParams:
    """Least-squares line reference ~ slope * predicted + intercept, with a warning."""
    warnings.warn(f"logistic fit failed ({why}); using a linear fit instead",
                  LogisticFitWarning, stacklevel=3)
    if np.all(predicted == predicted[0]):
        slope, intercept = 0.0, float(reference.mean())  # no slope can be estimated
    else:
        slope, intercept = (float(c) for c in np.polyfit(predicted, reference, 1))
    nan = math.nan
    return LogisticParams(nan, nan, nan, nan, linear=(slope, intercept))


def fit_logistic(predicted: Any, reference: Any) -> LogisticParams:
    """Fits the 4-parameter VQEG logistic mapping predictions onto reference labels.

    f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2, by scipy.optimize.curve_fit started
    from b1 = max(reference), b2 = min(reference), b3 = mean(predicted), b4 = std(predicted)
    (1 if that is 0).

    Args:
        predicted: 1-D predictions (at least MIN_POINTS, finite).
        reference: 1-D reference labels, same length.

    Returns:
        The fitted `LogisticParams`. When the fit fails to converge or is non-finite, when the
        predictions are constant, or when there are fewer than MIN_LOGISTIC_POINTS points (the
        logistic would interpolate them), a `LogisticFitWarning` is issued and the result holds
        a least-squares line instead (`converged` is False); `logistic` applies it either way.

    Raises:
        ValueError: for inputs the metrics reject (lengths, too few points, NaN/inf).
    """
    predicted, reference = _check_pair(predicted, reference)
    if predicted.size < MIN_LOGISTIC_POINTS:
        return _linear_fallback(predicted, reference,
                                f"{predicted.size} points for 4 parameters")
    if np.all(predicted == predicted[0]):
        return _linear_fallback(predicted, reference, "constant predictions")
    spread = float(np.std(predicted))
    start = (float(reference.max()), float(reference.min()), float(predicted.mean()),
             spread if spread > 0 else 1.0)
    try:
        with warnings.catch_warnings():
            # A covariance that cannot be estimated does not make the fit itself wrong.
            warnings.simplefilter("ignore", scipy.optimize.OptimizeWarning)
            fitted, _ = scipy.optimize.curve_fit(_logistic4, predicted, reference, p0=start,
                                                 maxfev=20000)
    except (RuntimeError, ValueError) as exc:
        return _linear_fallback(predicted, reference, str(exc))
    if not np.all(np.isfinite(fitted)):
        return _linear_fallback(predicted, reference, f"non-finite parameters {fitted}")
    b1, b2, b3, b4 = (float(p) for p in fitted)
    return LogisticParams(b1, b2, b3, abs(b4))


# --------------------------------------------------------------------------------------------
# Tables.
# --------------------------------------------------------------------------------------------


def _row(kind: str, predicted: np.ndarray, reference: np.ndarray,
         use_logistic: bool) -> dict[str, Any]:
    """One table row; metrics NaN (with a warning) when the subset has too few points."""
    row: dict[str, Any] = {"kind": kind, "n": int(predicted.size)}
    if predicted.size < MIN_POINTS:
        warnings.warn(f"kind {kind!r}: {predicted.size} points, fewer than {MIN_POINTS}; its "
                      "metrics are reported as NaN", RuntimeWarning, stacklevel=3)
        row.update({key: math.nan for key in COLUMNS[2:]})
        return row
    row["plcc"] = plcc(predicted, reference)
    row["srocc"] = srocc(predicted, reference)
    row["krocc"] = krocc(predicted, reference)
    row["rmse"] = rmse(predicted, reference)
    if use_logistic:
        mapped = logistic(predicted, fit_logistic(predicted, reference))
        row["plcc_logistic"] = plcc(mapped, reference)
        row["rmse_logistic"] = rmse(mapped, reference)
    else:
        row["plcc_logistic"] = row["rmse_logistic"] = math.nan
    return row


def correlation_table(predicted: Any, reference: Any, kinds: Any, *,
                      logistic: bool = True) -> list[dict[str, Any]]:
    """Agreement metrics per distortion kind and overall.

    Args:
        predicted: 1-D predicted scores.
        reference: 1-D reference labels, same length.
        kinds: 1-D array of distortion-kind names (strings), same length.
        logistic: whether to fit a logistic per row for `plcc_logistic` / `rmse_logistic`
            (NaN otherwise).

    Returns:
        A list of dicts with keys COLUMNS: one row per kind present (sorted by name), then the
        row 'overall' over all points. A kind with fewer than MIN_POINTS points gets NaN
        metrics and a warning; a constant subset gives NaN correlations and a warning.

    Raises:
        ValueError: for mismatched lengths, NaN/inf scores, fewer than MIN_POINTS points in
            all, or a kind named 'overall'.
    """
    predicted, reference = _check_pair(predicted, reference)
    kinds = np.asarray(kinds)
    if kinds.ndim != 1 or kinds.size != predicted.size:
        raise ValueError(f"kinds must be 1-D with one entry per score ({predicted.size}), got "
                         f"shape {kinds.shape}")
    kinds = kinds.astype(str)
    names = sorted(set(kinds.tolist()))
    if OVERALL in names:
        raise ValueError(f"{OVERALL!r} is reserved for the row over all kinds; rename that kind")
    rows = [_row(name, predicted[kinds == name], reference[kinds == name], logistic)
            for name in names]
    rows.append(_row(OVERALL, predicted, reference, logistic))
    return rows


def _check_rows(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The shared keys of `rows`, or a ValueError if there are none or they differ."""
    if not rows:
        raise ValueError("no rows to write")
    keys = list(rows[0].keys())
    for i, row in enumerate(rows):
        if list(row.keys()) != keys:
            raise ValueError(f"row {i} has keys {list(row.keys())}, row 0 has {keys}")
    return keys


def _markdown_cell(value: Any) -> str:
    """Floats to 4 decimals; anything else as text, with pipes escaped."""
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else f"{float(value):.4f}"
    return str(value).replace("|", "\\|")


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a Markdown table (floats to 4 decimals, numbers right-aligned)."""
    keys = _check_rows(rows)
    numeric = [all(isinstance(row[k], (int, float, np.number)) and not isinstance(row[k], bool)
                   for row in rows) for k in keys]
    lines = ["| " + " | ".join(keys) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    lines += ["| " + " | ".join(_markdown_cell(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _csv_cell(value: Any) -> str:
    """Floats in full (repr) precision, so the CSV reads back to the same numbers."""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def write_table(rows: Sequence[Mapping[str, Any]], csv_path: PathLike,
                markdown_path: PathLike, notes: Sequence[str] = ()) -> None:
    """Writes the rows as CSV (header = keys, floats in full precision) and as Markdown, with
    `notes` as paragraphs after the Markdown table.

    Both folders are checked before either file is written, and each file is written
    atomically, so a bad path leaves no partial output.
    """
    keys = _check_rows(rows)
    buffer = _stdio.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(keys)
    writer.writerows([_csv_cell(row[k]) for k in keys] for row in rows)
    markdown = "\n\n".join([format_table(rows).rstrip("\n"), *notes]) + "\n"
    paths = [pathlib.Path(csv_path), pathlib.Path(markdown_path)]
    for path in paths:
        if not path.parent.is_dir():
            raise FileNotFoundError(f"{path}: folder {path.parent} does not exist")
    for path, text in zip(paths, (buffer.getvalue(), markdown)):
        with atomic_write(path) as temporary:
            temporary.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Plots.
# --------------------------------------------------------------------------------------------


def scatter_plot(predicted: Any, reference: Any, kinds: Any, path: PathLike,
                 title: str = "Predicted vs reference quality") -> None:
    """Writes a PNG scatter of predictions (y) against reference labels (x).

    Points are coloured by kind (with a legend); the dashed identity line marks perfect
    agreement, and the overall PLCC and SROCC follow the title (NaN, with a warning, for a
    constant input).

    Args:
        predicted: 1-D predicted scores.
        reference: 1-D reference labels, same length.
        kinds: 1-D kind names, same length, or None for a single unlabelled group.
        path: the PNG to write (atomically).
        title: the first line of the title.
    """
    predicted, reference = _check_pair(predicted, reference)
    if kinds is None:
        kinds = np.full(predicted.size, "all")
    kinds = np.asarray(kinds)
    if kinds.ndim != 1 or kinds.size != predicted.size:
        raise ValueError(f"kinds must be 1-D with one entry per score ({predicted.size}), got "
                         f"shape {kinds.shape}")
    kinds = kinds.astype(str)
    overall_plcc, overall_srocc = plcc(predicted, reference), srocc(predicted, reference)

    # A bare Figure (no pyplot) keeps no global state and needs no display.
    figure = Figure(figsize=(5.5, 5.0), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    colours = matplotlib.colormaps["tab10"]
    for i, name in enumerate(sorted(set(kinds.tolist()))):
        mask = kinds == name
        axes.scatter(reference[mask], predicted[mask], s=14, alpha=0.7, color=colours(i % 10),
                     label=f"{name} (n={int(mask.sum())})")
    low = float(min(predicted.min(), reference.min()))
    high = float(max(predicted.max(), reference.max()))
    margin = 0.05 * (high - low) if high > low else 0.5
    limits = (low - margin, high + margin)
    axes.plot(limits, limits, linestyle="--", color="0.4", linewidth=1.0, label="identity")
    axes.set_xlim(limits)
    axes.set_ylim(limits)
    axes.set_aspect("equal")
    axes.set_xlabel("reference score")
    axes.set_ylabel("predicted score")
    axes.set_title(f"{title}\nPLCC = {overall_plcc:.4f}, SROCC = {overall_srocc:.4f}")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    save_figure(figure, path)


# --------------------------------------------------------------------------------------------
# Krasula's method (QoMEX 2016) and DeLong's test.
# --------------------------------------------------------------------------------------------

# dMOS above which two stimuli count as different when no per-rater data is given: half a
# category on a 1..5 scale (an assumed default, reported in `significance_rule`).
DEFAULT_DMOS_THRESHOLD = 0.5


class KrasulaWarning(RuntimeWarning):
    """A Krasula AUC is undefined (no pairs of one class) and is reported as NaN."""


def _finite_vector(values: Any, name: str, minimum: int = 1) -> np.ndarray:
    """`values` as a finite 1-D float64 array of at least `minimum` entries."""
    array = _as_vector(values, name)
    if array.size < minimum:
        raise ValueError(f"{name}: need at least {minimum} values, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: {int((~np.isfinite(array)).sum())} NaN/inf values "
                         f"(of {array.size}); remove or impute them first")
    return array


def roc_auc(positive_scores: Any, negative_scores: Any) -> float:
    """ROC AUC = P(positive > negative) + P(positive == negative) / 2 (Mann-Whitney U / mn)."""
    pos = _finite_vector(positive_scores, "positive_scores")
    neg = _finite_vector(negative_scores, "negative_scores")
    # U of the first sample counts ties half; the p-value is not needed, so the cheapest method.
    u = scipy.stats.mannwhitneyu(pos, neg, method="asymptotic", use_continuity=False).statistic
    return float(u / (pos.size * neg.size))


def _delong_components(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's structural components V10 (per positive) and V01 (per negative).

    Sun & Xu (2014): V10_i = (rank of pos_i among all - rank among positives) / n and
    V01_j = 1 - (rank of neg_j among all - rank among negatives) / m, mid-ranks throughout,
    which equals the mean of psi(x, y) = [x > y] + [x == y] / 2 over the other class.
    """
    m, n = pos.size, neg.size
    pooled = scipy.stats.rankdata(np.concatenate([pos, neg]))
    v10 = (pooled[:m] - scipy.stats.rankdata(pos)) / n
    v01 = 1.0 - (pooled[m:] - scipy.stats.rankdata(neg)) / m
    return float(v10.mean()), v10, v01


def delong_test(positive_a: Any, negative_a: Any, positive_b: Any,
                negative_b: Any) -> dict[str, Any]:
    """DeLong's test (1988) for two correlated ROC AUCs on the same cases.

    `positive_a[i]` and `positive_b[i]` are the scores of metrics A and B for the same
    positive case (likewise for negatives), so both arrays of a class must match in length.
    Var(AUC_A - AUC_B) = c' S10 c / m + c' S01 c / n with c = (1, -1) and S10, S01 the
    sample covariances (ddof 1) of the structural components. Returns `auc_a`, `auc_b`,
    `z`, two-sided `p_value` (normal), `variance` of the difference, and `covariance`, the
    2x2 covariance matrix of (AUC_A, AUC_B).
    """
    pos_a = _finite_vector(positive_a, "positive_a", 2)
    neg_a = _finite_vector(negative_a, "negative_a", 2)
    pos_b = _finite_vector(positive_b, "positive_b", 2)
    neg_b = _finite_vector(negative_b, "negative_b", 2)
    if pos_a.size != pos_b.size or neg_a.size != neg_b.size:
        raise ValueError("DeLong's test compares AUCs on the same cases: positive_a/positive_b "
                         f"have {pos_a.size}/{pos_b.size} and negative_a/negative_b "
                         f"{neg_a.size}/{neg_b.size} values")
    m, n = pos_a.size, neg_a.size
    auc_a, v10_a, v01_a = _delong_components(pos_a, neg_a)
    auc_b, v10_b, v01_b = _delong_components(pos_b, neg_b)
    s10 = np.cov(np.vstack([v10_a, v10_b]))  # rows are variables; ddof 1
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    covariance = s10 / m + s01 / n
    c = np.array([1.0, -1.0])
    variance = float(max(c @ covariance @ c, 0.0))  # round-off can go just below 0
    difference = auc_a - auc_b
    if variance > 0.0:
        z = difference / math.sqrt(variance)
    else:
        # Zero variance: the metrics agree case by case (z 0) or differ with certainty.
        z = 0.0 if abs(difference) < 1e-15 else math.copysign(math.inf, difference)
    p_value = float(2.0 * scipy.stats.norm.sf(abs(z)))
    return {"auc_a": auc_a, "auc_b": auc_b, "z": float(z), "p_value": p_value,
            "variance": variance, "covariance": covariance}


def _per_stimulus(values: Any, name: str, size: int) -> np.ndarray:
    """A scalar or per-stimulus array broadcast to `size`, checked finite."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(size, float(array))
    array = _as_vector(array, name)
    if array.size != size:
        raise ValueError(f"{name}: expected {size} values (one per stimulus), got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: holds NaN/inf values")
    return array


def _auc_or_nan(positive: np.ndarray, negative: np.ndarray, what: str) -> float:
    """`roc_auc`, or NaN with a `KrasulaWarning` when a class is empty."""
    if positive.size == 0 or negative.size == 0:
        warnings.warn(f"krasula: {what} is undefined ({positive.size} positive and "
                      f"{negative.size} negative pairs); reported as NaN",
                      KrasulaWarning, stacklevel=3)
        return math.nan
    return roc_auc(positive, negative)


def krasula(subjective: Any, objective: Any, *, subjective_std: Any = None,
            subjective_n: Any = None, z_threshold: float = 2.0,
            dmos_threshold: float | None = None) -> dict[str, Any]:
    """Krasula et al. (QoMEX 2016) pairwise analysis of an objective metric.

    Every pair of stimuli (a, b) is called significantly different from the subjective data:
    with `subjective_std` and `subjective_n` (per-stimulus rater std and count, or scalars),
    by the z-test |dMOS| / sqrt(var_a/n_a + var_b/n_b) > `z_threshold`; otherwise by
    |dMOS| > `dmos_threshold` (default DEFAULT_DMOS_THRESHOLD, meant for a 1..5 scale).
    Higher scores are taken as better for both inputs.

    Returns
        auc_ds  ROC AUC of |d objective| separating different pairs from similar ones.
        auc_bw  on different pairs, d = objective(better) - objective(worse); ROC AUC of
                {d} against the mirrored {-d}.
        cc0     fraction of different pairs with d > 0 (d == 0 counts half).
        pairs, different_pairs, similar_pairs  counts; significance_rule  how pairs were
        split. An AUC with an empty class is NaN, with a `KrasulaWarning`.
    """
    subjective, objective = _check_pair(subjective, objective)
    size = subjective.size
    if (subjective_std is None) != (subjective_n is None):
        raise ValueError("give both subjective_std and subjective_n for the z-test, or neither")
    use_z = subjective_std is not None
    if use_z and dmos_threshold is not None:
        raise ValueError("give either subjective_std/subjective_n (z-test) or dmos_threshold")

    first, second = np.triu_indices(size, k=1)
    dmos = subjective[first] - subjective[second]
    dobj = objective[first] - objective[second]
    if use_z:
        std = _per_stimulus(subjective_std, "subjective_std", size)
        count = _per_stimulus(subjective_n, "subjective_n", size)
        if np.any(std < 0) or np.any(count < 1):
            raise ValueError("subjective_std must be >= 0 and subjective_n >= 1")
        if not z_threshold > 0:
            raise ValueError(f"z_threshold must be positive, got {z_threshold}")
        variance = std ** 2 / count  # squared standard error of each MOS
        denominator = np.sqrt(variance[first] + variance[second])
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(denominator > 0, dmos / denominator,
                         np.where(dmos == 0, 0.0, np.inf))  # no rater spread: any dMOS is real
        different = np.abs(z) > z_threshold
        rule = (f"z-test with per-stimulus std and n: |dMOS| / sqrt(var_a/n_a + var_b/n_b) "
                f"> {z_threshold:g}")
    else:
        threshold = DEFAULT_DMOS_THRESHOLD if dmos_threshold is None else float(dmos_threshold)
        if not (math.isfinite(threshold) and threshold >= 0):
            raise ValueError(f"dmos_threshold must be finite and >= 0, got {dmos_threshold}")
        different = np.abs(dmos) > threshold
        source = ("default for a 1..5 scale, no per-rater data given" if dmos_threshold is None
                  else "given, no per-rater data")
        rule = f"dMOS threshold: |dMOS| > {threshold:g} ({source})"

    magnitude = np.abs(dobj)
    auc_ds = _auc_or_nan(magnitude[different], magnitude[~different], "auc_ds")
    # Orient each significant pair so the subjectively better stimulus comes first.
    oriented = np.sign(dmos[different]) * dobj[different]
    auc_bw = _auc_or_nan(oriented, -oriented, "auc_bw")
    if oriented.size:
        cc0 = float(np.mean(oriented > 0) + 0.5 * np.mean(oriented == 0))
    else:
        cc0 = math.nan
    return {"auc_ds": auc_ds, "auc_bw": auc_bw, "cc0": cc0, "pairs": int(dmos.size),
            "different_pairs": int(different.sum()), "similar_pairs": int((~different).sum()),
            "significance_rule": rule}
