"""TIQA against its peers on the same held-out images: the statistics and tables of the
comparison phase (`tiqa.phases.compare`, configs/compare.py).

The metrics compared:
- TIQA: a score-network checkpoint, or the shipped default model.
- RankIQA: the same rank and fine-tune phases with a VGG16 trunk (`model.backbone=vgg16`,
  random initialisation: no ImageNet VGG16 weights can be had without a download). Left out,
  with a note, when no checkpoint is given.
- BRISQUE with the LIVE model shipped in the `brisque` wheel (natural images, lower = better).
- BRISQUE retrained: its 36 features with an SVR fitted to the same tomography labels as TIQA
  (group A slices and phantom, the training kinds), or a saved model.

Two test sets:
- the held-out slices distorted with scikit-image at every kind and level (as the evaluation
  phase), against their projected labels: SROCC, KROCC, PLCC and RMSE after the VQEG logistic
  mapping, and Krasula's AUC_DS, AUC_BW and CC0 (a pair differs when its labels are more
  than `dmos_threshold` apart), each with a bootstrap 95% interval over images;
- phantom scans whose acquisition quality is known by construction (fewer photons, larger
  detector gain errors = worse): SROCC and KROCC of each metric's slice scores with that order.

Scores of metrics for which lower is better are negated first, so every correlation reads
"1 = agrees".
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import warnings
from typing import Callable

import numpy as np
import scipy.stats

from tiqa import evaluation, io

Metric = Callable[[np.ndarray], np.ndarray]  # (N, H, W) crops in [0, 1] -> (N,) scores

COLUMNS = ("srocc", "krocc", "plcc", "rmse", "auc_ds", "auc_bw", "cc0")
PHANTOM_SET = "phantom acquisitions"


@dataclasses.dataclass(frozen=True)
class Contender:
    name: str
    score: Metric
    higher_is_better: bool = True


def oriented(contender: Contender, scores: np.ndarray) -> np.ndarray:
    return scores if contender.higher_is_better else -scores


def agreement(objective: np.ndarray, subjective: np.ndarray, dmos_threshold: float) -> dict:
    """Every column of COLUMNS for one metric on one set (scores oriented: higher = better)."""
    mapped = evaluation.logistic(objective, evaluation.fit_logistic(objective, subjective))
    pairs = evaluation.krasula(subjective, objective, dmos_threshold=dmos_threshold)
    return {"srocc": evaluation.srocc(objective, subjective),
            "krocc": evaluation.krocc(objective, subjective),
            "plcc": evaluation.plcc(mapped, subjective),
            "rmse": evaluation.rmse(mapped, subjective),
            "auc_ds": pairs["auc_ds"], "auc_bw": pairs["auc_bw"], "cc0": pairs["cc0"]}


def better_worse_delong(subjective: np.ndarray, objective_a: np.ndarray,
                        objective_b: np.ndarray, dmos_threshold: float) -> dict:
    """DeLong's test of metric A's AUC_BW against metric B's on the same pairs (Krasula's
    comparison of two metrics): each significantly different pair's score difference,
    oriented better minus worse, against its mirror. Pairs that share an image are not
    independent, so the p-value is a guide rather than exact (as in Krasula et al.)."""
    first, second = np.triu_indices(len(subjective), k=1)
    dmos = subjective[first] - subjective[second]
    different = np.abs(dmos) > dmos_threshold
    sign = np.sign(dmos[different])
    oriented_a = sign * (objective_a[first] - objective_a[second])[different]
    oriented_b = sign * (objective_b[first] - objective_b[second])[different]
    return evaluation.delong_test(oriented_a, -oriented_a, oriented_b, -oriented_b)


def rank_agreement(objective: np.ndarray, known_order: np.ndarray) -> dict:
    """SROCC and KROCC with a known order; the label-scale columns do not apply (NaN)."""
    row = dict.fromkeys(COLUMNS, float("nan"))
    row.update(srocc=evaluation.srocc(objective, known_order),
               krocc=evaluation.krocc(objective, known_order))
    return row


def resampled(function, objective, subjective, indices, **options) -> dict:
    return function(objective[indices], subjective[indices], **options)


def bootstrap_interval(statistic: Callable[[np.ndarray], dict], size: int, samples: int,
                       seed: int) -> dict[str, tuple[float, float]]:
    """Percentile 95% interval (scipy.stats.bootstrap) of each entry of `statistic(indices)`
    over `samples` resamples of `size` items. An entry undefined on some resample (e.g. a
    constant one) gets no interval rather than one conditioned on the lucky resamples."""
    keys = tuple(statistic(np.arange(size)))

    def entries(indices: np.ndarray) -> np.ndarray:
        values = statistic(indices.astype(np.intp))
        return np.asarray([values[key] for key in keys], np.float64)

    with np.errstate(all="ignore"), _quiet():
        # Resampling indices pairs the two score arrays, as paired=True would.
        result = scipy.stats.bootstrap((np.arange(size),), entries, n_resamples=samples,
                                       vectorized=False, method="percentile",
                                       rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return {key: (float(a), float(b)) for key, a, b in zip(keys, low, high)
            if np.isfinite(a) and np.isfinite(b)}


@contextlib.contextmanager
def _quiet():
    """Resamples with ties or constant subsets warn by design, as does an interval left
    undefined by them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def table_row(set_name: str, metric_name: str, point: dict, interval: dict, n: int) -> dict:
    row = {"set": set_name, "metric": metric_name, "n": n}
    for column in COLUMNS:
        row[column] = point[column]
        low, high = interval.get(column, (float("nan"), float("nan")))
        row[f"{column}_low"], row[f"{column}_high"] = low, high
    return row


def summary_table(rows: list[dict]) -> str:
    """Markdown: point estimate [95% interval] per metric and set."""
    lines = ["| set | metric | n | " + " | ".join(COLUMNS) + " |",
             "|---|---|---:|" + "---:|" * len(COLUMNS)]
    for row in rows:
        cells = []
        for column in COLUMNS:
            value = row[column]
            if not np.isfinite(value):
                cells.append("")
                continue
            low, high = row[f"{column}_low"], row[f"{column}_high"]
            interval = f" [{low:.2f}, {high:.2f}]" if np.isfinite(low) else ""
            cells.append(f"{value:.3f}{interval}")
        lines.append(f"| {row['set']} | {row['metric']} | {row['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_charts(rows: list[dict], path: pathlib.Path) -> None:
    """The paper's Fig. 4c-f style: per column, grouped bars (set x metric) with intervals."""
    from matplotlib.figure import Figure  # a bare Figure: no pyplot state, no display

    sets = list(dict.fromkeys(row["set"] for row in rows))
    names = list(dict.fromkeys(row["metric"] for row in rows))
    columns = [c for c in COLUMNS if c != "rmse"]
    figure = Figure(figsize=(15, 8), layout="constrained")
    axes = figure.subplots(2, 3)
    width = 0.8 / len(names)
    for axis, column in zip(axes.ravel(), columns):
        for index, name in enumerate(names):
            found = {row["set"]: row for row in rows if row["metric"] == name}
            values = np.asarray([found[s][column] for s in sets], np.float64)
            low = np.asarray([found[s][f"{column}_low"] for s in sets], np.float64)
            high = np.asarray([found[s][f"{column}_high"] for s in sets], np.float64)
            errors = np.nan_to_num(np.stack([values - low, high - values]), nan=0.0).clip(0)
            positions = np.arange(len(sets)) + (index - (len(names) - 1) / 2) * width
            axis.bar(positions, np.nan_to_num(values), width, yerr=errors, capsize=2, label=name)
        axis.set_xticks(np.arange(len(sets)), sets, rotation=20, fontsize=8)
        axis.set_title(column.upper())
        axis.axhline(0, color="black", linewidth=0.5)
    axes.ravel()[0].legend(fontsize=8)
    io.save_figure(figure, path, dpi=110)
