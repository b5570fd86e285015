"""The comparison phase (configs/compare.py): TIQA against BRISQUE (LIVE and retrained) and
RankIQA on held-out slices and phantom scans; the statistics are `tiqa.comparison`'s.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
import time

import jax
import numpy as np
import tqdm

from tiqa import annotations, checkpoints, comparison, errors, evaluation, io, labels, phantom, preprocessing, scoring
from tiqa.baselines import brisque
from tiqa.phases import evaluate, settings
from tiqa.train import batches


def _network(name: str, checkpoint: str, batch_size: int) -> comparison.Contender:
    return comparison.Contender(name, scoring.make_scorer(checkpoints.load_model(checkpoint), batch_size))


@dataclasses.dataclass(frozen=True)
class BrisqueTraining:
    """What the retrained BRISQUE learns from (configs/common.add_brisque_training)."""
    model: str  # a saved model to load instead (`brisque_model`); empty: fit one
    source: settings.DataSource
    projection: labels.ProjectionConfig
    crops_per_slice: int


def brisque_training(config) -> BrisqueTraining:
    """The `brisque_model` and `brisque_training` keys of a phase config."""
    where = "config.brisque_training"
    training = config.brisque_training
    try:
        crops_per_slice = errors.check_positive(training.crops_per_slice,
                                                f"{where}.crops_per_slice")
    except (KeyError, AttributeError) as error:
        raise errors.InputError(f"{where}.crops_per_slice is missing") from error
    return BrisqueTraining(str(config.brisque_model), settings.data_source(training, where),
                           settings.projection(training, where), crops_per_slice)


@dataclasses.dataclass(frozen=True)
class PhantomAcquisitions:
    """Phantom scans from the worst acquisition to the best (configs/compare.py)."""
    photons: tuple[float, ...]
    gain_error_std: tuple[float, ...]
    slices: int
    size: int
    seed: int


@dataclasses.dataclass(frozen=True)
class CompareSettings:
    """configs/compare.py, read once."""
    checkpoint: str
    rankiqa_checkpoint: str
    output: str
    distortion_backend: str
    seed: int
    batch_size: int
    bootstrap: int
    dmos_threshold: float
    source: settings.DataSource  # the held-out slices
    projection: labels.ProjectionConfig
    phantom_acquisitions: PhantomAcquisitions
    brisque_training: BrisqueTraining


def read_settings(config) -> CompareSettings:
    """configs/compare.py as frozen settings; a bad key or value is refused here."""
    return settings.block(
        CompareSettings, config, source=settings.data_source(config),
        projection=settings.projection(config),
        phantom_acquisitions=settings.block(PhantomAcquisitions, config.phantom_acquisitions,
                                            "config.phantom_acquisitions"),
        brisque_training=brisque_training(config))


def _brisque_training_set(training: BrisqueTraining) -> tuple[np.ndarray, np.ndarray]:
    """Crops of the training slices distorted at every training kind and level, with the
    labels TIQA's fine-tune learns: the same pool, projection and crop as that phase."""
    source, projection = training.source, training.projection
    pool = settings.reference_pool(source, lambda sources: annotations.reference_scores_for(
        sources, {}, source.default_reference_score))
    make_batch = jax.jit(functools.partial(
        batches.finetune_batch, key=jax.random.key(source.seed), originals_per_batch=1,
        crop=source.crop, projection=projection,
        objects_per_batch=source.ladders.objects_per_batch, turns=source.random_turns))
    steps = int(training.crops_per_slice) * int(pool.images.shape[0])
    features, targets = [], []
    for step in tqdm.trange(steps, desc="BRISQUE features (training)", unit="crop"):
        batch = make_batch(pool, jax.numpy.int32(step))
        # Ladders left out of TIQA's losses are left out of BRISQUE's training too.
        kept = batches.trained_images(batch)
        features.append(brisque.features_of(np.asarray(batch["images"], np.float64)[kept]))
        targets.append(np.asarray(batch["labels"], np.float64)[kept])
    return np.concatenate(features), np.concatenate(targets)


def retrained_brisque(training: BrisqueTraining, output: pathlib.Path) -> brisque.RetrainedBrisque:
    """The retrained BRISQUE model: loaded from `training.model`, or fitted now (and saved
    under output/brisque_retrained)."""
    if training.model:
        return brisque.RetrainedBrisque.load(training.model)
    started = time.perf_counter()
    features, targets = _brisque_training_set(training)
    model = brisque.fit_brisque(features, targets)
    model.save(output / "brisque_retrained")
    logging.info("retrained BRISQUE: %d crops, C=%g gamma=%g, CV MSE %.3f, %.0f s",
                 len(targets), model.hyper["C"], model.hyper["gamma"], model.hyper["cv_mse"],
                 time.perf_counter() - started)
    return model


def contenders(config: CompareSettings, output: pathlib.Path) -> tuple[list[comparison.Contender], list[str]]:
    """The metrics to compare, and notes on any left out."""
    found = [_network("TIQA", config.checkpoint, config.batch_size)]
    notes = []
    if config.rankiqa_checkpoint:
        found.append(_network("RankIQA (VGG16)", config.rankiqa_checkpoint, config.batch_size))
    else:
        notes.append("RankIQA left out: no rankiqa_checkpoint given")
    live = brisque.LiveBrisque()
    found.append(comparison.Contender("BRISQUE (LIVE)", live, higher_is_better=False))
    found.append(comparison.Contender("BRISQUE (retrained)", retrained_brisque(config.brisque_training, output)))
    return found, notes


def heldout_images(source: settings.DataSource, projection: labels.ProjectionConfig,
                   distortion_backend: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The held-out crops distorted at every kind and level 1..5: (images, labels, kinds)."""
    crops, _, reference_scores = evaluate.heldout_references(source)
    distort = scoring.distorter(distortion_backend, projection, seed)
    result = distort(crops, reference_scores, 0)
    images = np.asarray(result.images)[:, :, 1:]  # the references' labels are the prior
    label_values = np.asarray(result.labels)[:, :, 1:]
    kinds = np.broadcast_to(np.asarray(projection.kinds)[None, :, None], label_values.shape)
    return (images.reshape((-1,) + images.shape[-2:]), label_values.reshape(-1),
            kinds.reshape(-1))


def phantom_acquisitions(acquisitions: PhantomAcquisitions, resize: int, crop: int,
                         own_pixels: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Centre crops of phantom scans from the worst acquisition to the best (at their own
    pixels with `own_pixels`): (crops, the acquisition's rank per crop (0 = worst), a
    description of each acquisition)."""
    crops, order, names = [], [], []
    for rank, (photons, gain_error) in enumerate(zip(acquisitions.photons,
                                                     acquisitions.gain_error_std)):
        reconstruction, _ = phantom.phantom_volume(
            acquisitions.seed, n_slices=acquisitions.slices, size=acquisitions.size,
            photons=photons, gain_error_std=gain_error)
        for image in phantom.to_unit_range(reconstruction):
            crops.append(np.asarray(preprocessing.preprocess(image, key=None, resize=resize,
                                                             crop=crop, own_pixels=own_pixels)))
            order.append(rank)
        names.append(f"{photons:g} photons, gain error std {gain_error:g}")
    return np.stack(crops), np.asarray(order, np.float64), names


def run(config) -> list[dict]:
    """Runs configs/compare.py: scores, tables (CSV and Markdown) and bar charts under output."""
    config = read_settings(config)
    output = pathlib.Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    own_pixels = checkpoints.scores_at_own_pixels(checkpoints.model_view(config.checkpoint)[1],
                                                  config.source.own_pixels)
    source = dataclasses.replace(config.source, own_pixels=own_pixels)
    images, label_values, kinds = heldout_images(
        source, config.projection, config.distortion_backend, config.seed)
    phantom_crops, phantom_order, acquisitions = phantom_acquisitions(
        config.phantom_acquisitions, source.resize, source.crop, own_pixels)
    crops_view = (f"{source.crop} px at the slices' own pixels (slices of at least {source.resize} px "
                  "are not resized)" if own_pixels else
                  f"{source.crop} px from slices resized to {source.resize} px (the paper's protocol)")
    view_reason = ("as the TIQA model was trained" if config.source.own_pixels is None
                   else "as config.own_pixels asks")
    metrics, notes = contenders(config, output)
    training_view = config.brisque_training.source.own_pixels
    if not config.brisque_training.model and bool(training_view) != own_pixels:
        notes.append("the retrained BRISQUE was fitted on crops " + (
            "at the slices' own pixels" if training_view else "of resized slices")
            + " but scores the other view; set config.brisque_training.own_pixels="
            + f"{own_pixels} for a like-for-like peer")
    rows, timings, oriented_scores = [], {}, {}
    for contender in metrics:
        started = time.perf_counter()
        held = comparison.oriented(contender, np.asarray(contender.score(images), np.float64))
        oriented_scores[contender.name] = held
        made = comparison.oriented(contender, np.asarray(contender.score(phantom_crops), np.float64))
        timings[contender.name] = time.perf_counter() - started
        for set_name in list(dict.fromkeys(kinds.tolist())) + [evaluation.OVERALL]:
            overall = set_name == evaluation.OVERALL
            chosen = np.ones(len(held), bool) if overall else kinds == set_name
            objective, subjective = held[chosen], label_values[chosen]
            statistic = functools.partial(comparison.resampled, comparison.agreement, objective, subjective,
                                          dmos_threshold=config.dmos_threshold)
            rows.append(comparison.table_row(set_name, contender.name,
                                  comparison.agreement(objective, subjective, config.dmos_threshold),
                                  comparison.bootstrap_interval(statistic, len(objective), config.bootstrap,
                                                     config.seed), len(objective)))
        statistic = functools.partial(comparison.resampled, comparison.rank_agreement, made, phantom_order)
        rows.append(comparison.table_row(comparison.PHANTOM_SET, contender.name, comparison.rank_agreement(made, phantom_order),
                              comparison.bootstrap_interval(statistic, len(made), config.bootstrap,
                                                 config.seed), len(made)))
    evaluation.write_table(rows, output / "comparison.csv", output / "comparison.md")
    comparison.bar_charts(rows, output / "comparison.png")
    summary = comparison.summary_table(rows)
    first = metrics[0].name
    tests = [(other.name, comparison.better_worse_delong(label_values, oriented_scores[first],
                                              oriented_scores[other.name], config.dmos_threshold))
             for other in metrics[1:]]
    if tests:
        summary += (f"\n\nDeLong's test, AUC_BW over all held-out images, {first} against each:\n"
                    + "\n".join(f"- {name}: AUC {t['auc_a']:.3f} vs {t['auc_b']:.3f}, "
                                 f"z = {t['z']:.2f}, p = {t['p_value']:.2g}" for name, t in tests))
    io.write_text(output / "summary.md", "\n".join([
        "# TIQA against its peers", "",
        f"Held-out: {config.source.input or 'a phantom (no input given)'} "
        f"({len(label_values)} distorted crops, kinds "
        f"{', '.join(dict.fromkeys(kinds.tolist()))}, distortions by {config.distortion_backend}).",
        f"Phantom acquisitions, worst to best: {'; '.join(acquisitions)} "
        f"({config.phantom_acquisitions.slices} slices each).",
        f"Crops: {crops_view}, {view_reason}; every contender scores the same crops.",
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
