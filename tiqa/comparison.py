"""TIQA against its peers on the same held-out images (configs/compare.py).

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
import functools
import logging
import pathlib
import time
import warnings
from typing import Callable

import jax
import numpy as np
import scipy.stats
import tqdm

from tiqa import checkpoints, evaluation, io, labels, phantom, scoring
from tiqa.baselines import brisque
from tiqa.train import batches

Metric = Callable[[np.ndarray], np.ndarray]  # (N, H, W) crops in [0, 1] -> (N,) scores

COLUMNS = ("srocc", "krocc", "plcc", "rmse", "auc_ds", "auc_bw", "cc0")
PHANTOM_SET = "phantom acquisitions"


@dataclasses.dataclass(frozen=True)
class Contender:
    name: str
    score: Metric
    higher_is_better: bool = True


def _network(name: str, checkpoint: str, batch_size: int) -> Contender:
    return Contender(name, scoring.make_scorer(checkpoints.load_model(checkpoint), batch_size))


def _brisque_training_set(config) -> tuple[np.ndarray, np.ndarray]:
    """Crops of the training slices distorted at every training kind and level, with the
    labels TIQA's fine-tune learns: the same pool, projection and crop as that phase."""
    training = config.brisque_training
    pool = batches.pool_from_config(training, lambda sources: labels.reference_scores_for(
        sources, {}, training.default_reference_score))
    projection = labels.ProjectionConfig.from_mapping(training.projection)
    make_batch = jax.jit(functools.partial(
        batches.finetune_batch, key=jax.random.key(training.seed), originals_per_batch=1,
        crop=training.crop, projection=projection,
        objects_per_batch=training.acquisition.objects_per_batch))
    steps = training.crops_per_slice * int(pool.images.shape[0])
    features, targets = [], []
    for step in tqdm.trange(steps, desc="BRISQUE features (training)", unit="crop"):
        batch = make_batch(pool, jax.numpy.int32(step))
        features.append(brisque.features_of(np.asarray(batch["images"], np.float64)))
        targets.append(np.asarray(batch["labels"], np.float64))
    return np.concatenate(features), np.concatenate(targets)


def retrained_brisque(config, output: pathlib.Path) -> brisque.RetrainedBrisque:
    """The retrained BRISQUE model: loaded from `config.brisque_model`, or fitted now (and
    saved under output/brisque_retrained)."""
    if config.brisque_model:
        return brisque.RetrainedBrisque.load(config.brisque_model)
    started = time.perf_counter()
    features, targets = _brisque_training_set(config)
    model = brisque.fit_brisque(features, targets)
    model.save(output / "brisque_retrained")
    logging.info("retrained BRISQUE: %d crops, C=%g gamma=%g, CV MSE %.3f, %.0f s",
                 len(targets), model.hyper["C"], model.hyper["gamma"], model.hyper["cv_mse"],
                 time.perf_counter() - started)
    return model


def contenders(config, output: pathlib.Path) -> tuple[list[Contender], list[str]]:
    """The metrics to compare, and notes on any left out."""
    found = [_network("TIQA", config.checkpoint, config.batch_size)]
    notes = []
    if config.rankiqa_checkpoint:
        found.append(_network("RankIQA (VGG16)", config.rankiqa_checkpoint, config.batch_size))
    else:
        notes.append("RankIQA left out: no rankiqa_checkpoint given")
    live = brisque.LiveBrisque()
    found.append(Contender("BRISQUE (LIVE)", live, higher_is_better=False))
    found.append(Contender("BRISQUE (retrained)", retrained_brisque(config, output)))
    return found, notes


def _oriented(contender: Contender, scores: np.ndarray) -> np.ndarray:
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


def _resampled(function, objective, subjective, indices, **options) -> dict:
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


def _rows_for(set_name: str, metric_name: str, point: dict, interval: dict, n: int) -> dict:
    row = {"set": set_name, "metric": metric_name, "n": n}
    for column in COLUMNS:
        row[column] = point[column]
        low, high = interval.get(column, (float("nan"), float("nan")))
        row[f"{column}_low"], row[f"{column}_high"] = low, high
    return row


def heldout_images(config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The held-out crops distorted at every kind and level 1..5: (images, labels, kinds)."""
    projection = labels.ProjectionConfig.from_mapping(config.projection)
    crops, _, reference_scores = scoring.heldout_references(config)
    distort = scoring.distorter(config.distortion_backend, projection, config.seed)
    result = distort(crops, reference_scores, 0)
    images = np.asarray(result.images)[:, :, 1:]  # the references' labels are the prior
    label_values = np.asarray(result.labels)[:, :, 1:]
    kinds = np.broadcast_to(np.asarray(projection.kinds)[None, :, None], label_values.shape)
    return (images.reshape((-1,) + images.shape[-2:]), label_values.reshape(-1),
            kinds.reshape(-1))


def phantom_acquisitions(config) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Centre crops of phantom scans from the worst acquisition to the best: (crops, the
    acquisition's rank per crop (0 = worst), a description of each acquisition)."""
    acquisitions = config.phantom_acquisitions
    crops, order, names = [], [], []
    for rank, (photons, gain_error) in enumerate(zip(acquisitions.photons,
                                                     acquisitions.gain_error_std)):
        reconstruction, _, _ = phantom.phantom_volume(
            acquisitions.seed, n_slices=acquisitions.slices, size=acquisitions.size,
            photons=photons, gain_error_std=gain_error)
        low, high = np.percentile(reconstruction, [0.5, 99.5])
        volume = np.clip((reconstruction - low) / (high - low), 0.0, 1.0)
        for image in volume:
            crops.append(np.asarray(io.preprocess(image, key=None, resize=config.resize,
                                                  crop=config.crop)))
            order.append(rank)
        names.append(f"{photons:g} photons, gain error std {gain_error:g}")
    return np.stack(crops), np.asarray(order, np.float64), names


def run_comparison(config) -> list[dict]:
    """Runs configs/compare.py: scores, tables (CSV and Markdown) and bar charts under output."""
    output = pathlib.Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    images, label_values, kinds = heldout_images(config)
    phantom_crops, phantom_order, acquisitions = phantom_acquisitions(config)
    metrics, notes = contenders(config, output)
    rows, timings, oriented_scores = [], {}, {}
    for contender in metrics:
        started = time.perf_counter()
        held = _oriented(contender, np.asarray(contender.score(images), np.float64))
        oriented_scores[contender.name] = held
        made = _oriented(contender, np.asarray(contender.score(phantom_crops), np.float64))
        timings[contender.name] = time.perf_counter() - started
        for set_name in list(dict.fromkeys(kinds.tolist())) + [evaluation.OVERALL]:
            overall = set_name == evaluation.OVERALL
            chosen = np.ones(len(held), bool) if overall else kinds == set_name
            objective, subjective = held[chosen], label_values[chosen]
            statistic = functools.partial(_resampled, agreement, objective, subjective,
                                          dmos_threshold=config.dmos_threshold)
            rows.append(_rows_for(set_name, contender.name,
                                  agreement(objective, subjective, config.dmos_threshold),
                                  bootstrap_interval(statistic, len(objective), config.bootstrap,
                                                     config.seed), len(objective)))
        statistic = functools.partial(_resampled, rank_agreement, made, phantom_order)
        rows.append(_rows_for(PHANTOM_SET, contender.name, rank_agreement(made, phantom_order),
                              bootstrap_interval(statistic, len(made), config.bootstrap,
                                                 config.seed), len(made)))
    evaluation.write_table(rows, output / "comparison.csv", output / "comparison.md")
    bar_charts(rows, output / "comparison.png")
    summary = _summary(rows)
    first = metrics[0].name
    tests = [(other.name, better_worse_delong(label_values, oriented_scores[first],
                                              oriented_scores[other.name], config.dmos_threshold))
             for other in metrics[1:]]
    if tests:
        summary += (f"\n\nDeLong's test, AUC_BW over all held-out images, {first} against each:\n"
                    + "\n".join(f"- {name}: AUC {t['auc_a']:.3f} vs {t['auc_b']:.3f}, "
                                 f"z = {t['z']:.2f}, p = {t['p_value']:.2g}" for name, t in tests))
    io.write_text(output / "summary.md", "\n".join([
        "# TIQA against its peers", "",
        f"Held-out: {config.input or 'a phantom (no input given)'} "
        f"({len(label_values)} distorted crops, kinds "
        f"{', '.join(dict.fromkeys(kinds.tolist()))}, distortions by {config.distortion_backend}).",
        f"Phantom acquisitions, worst to best: {'; '.join(acquisitions)} "
        f"({config.phantom_acquisitions.slices} slices each).",
        f"Intervals: bootstrap 95% over images, {config.bootstrap} resamples. Krasula pairs "
        f"differ when their labels are more than {config.dmos_threshold} apart.",
        *[f"Note: {note}." for note in notes],
        "Seconds to score both sets: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()),
        "", summary, ""]))
    print(summary)
    for note in notes:
        print(f"note: {note}")
    print(f"\nwritten to {output}: comparison.csv/.md, summary.md, comparison.png")
    return rows


def _summary(rows: list[dict]) -> str:
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
