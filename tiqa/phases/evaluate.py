"""The evaluation phase (configs/evaluate.py): held-out slices distorted at every kind and level
are scored and compared with the projected labels (PLCC, SROCC, KROCC, RMSE per kind and
overall), writing the table as CSV and Markdown, the per-image scores and a scatter plot.
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib

import numpy as np
import tqdm

from tiqa import checkpoints, evaluation, io, labels, preprocessing
from tiqa.phases import settings
from tiqa.scoring import distorter, make_scorer


@dataclasses.dataclass(frozen=True)
class EvaluateSettings:
    """configs/evaluate.py."""
    checkpoint: str  # empty: the shipped default model
    output: str
    seed: int
    distortion_backend: str
    batch_size: int
    projection_batch: int
    source: settings.DataSource  # the held-out slices
    projection: labels.ProjectionConfig


def read_settings(config) -> EvaluateSettings:
    """configs/evaluate.py as frozen settings; a bad key or value is refused here."""
    settings.check_sizes(config, "batch_size", "projection_batch", "resize", "crop")
    return settings.block(EvaluateSettings, config, source=settings.data_source(config),
                          projection=settings.projection(config))


def run(config) -> dict:
    """Runs the evaluation phase described by configs/evaluate.py; returns the table rows."""
    evaluation_settings = read_settings(config)
    output = io.check_output(evaluation_settings.output, "config.output", folder=True)
    output.mkdir(parents=True, exist_ok=True)
    return evaluate(evaluation_settings, output)


def evaluate(setup: EvaluateSettings, output: pathlib.Path) -> dict:
    """The evaluation of `setup.checkpoint` on the held-out slices, written under `output`."""
    loaded = checkpoints.load_model(setup.checkpoint)  # empty: the shipped default model
    score = make_scorer(loaded, setup.batch_size)
    projection = setup.projection
    # A model trained on own-pixel crops sees the slices at their own pixels too.
    crops, sources, reference_scores = heldout_references(
        setup.source, setup.source.own_pixels or loaded.own_pixels)
    distort_and_label = distorter(setup.distortion_backend, projection, setup.seed)
    rows = []
    # A `with` closes the bar however the loop ends, so an error gets a line of its own.
    with tqdm.trange(0, len(crops), setup.projection_batch, desc="evaluate",
                     unit="batch") as progress:
        for start in progress:
            stop = min(start + setup.projection_batch, len(crops))
            result = distort_and_label(crops[start:stop], reference_scores[start:stop], start)
            images = np.asarray(result.images)
            predicted = score(images.reshape((-1,) + images.shape[-2:])).reshape(images.shape[:3])
            for n in range(stop - start):
                for k, kind in enumerate(projection.kinds):
                    for level in range(images.shape[2]):
                        if level == 0 and k > 0:
                            continue  # the reference is one image, listed once
                        rows.append({"source": sources[start + n], "index": start + n,
                                     "kind": "reference" if level == 0 else kind, "level": level,
                                     "label": float(result.labels[n, k, level]),
                                     "score": float(predicted[n, k, level])})
    # The table is over the distorted images (the references' labels are the prior or human
    # scores, constant within a kind); the level table below includes them as level 0.
    distorted = [r for r in rows if r["kind"] != "reference"]
    predicted = np.asarray([r["score"] for r in distorted])
    reference = np.asarray([r["label"] for r in distorted])
    kinds = np.asarray([r["kind"] for r in distorted])
    table = evaluation.correlation_table(predicted, reference, kinds)
    level_rows = _level_correlations(rows, projection.kinds)
    evaluation.write_table(table, output / "correlations.csv", output / "correlations.md")
    evaluation.write_table(level_rows, output / "score_vs_level.csv", output / "score_vs_level.md")
    with io.atomic_write(output / "scores.csv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    evaluation.scatter_plot(predicted, reference, kinds, output / "scatter.png",
                            title=f"TIQA scores against projected labels ({pathlib.Path(setup.checkpoint).name if setup.checkpoint else 'default model'})")
    print("score against projected label\n" + evaluation.format_table(table))
    print("\nscore against distortion level (1 = the score falls with every level)\n"
          + evaluation.format_table(level_rows))
    print(f"\nwritten to {output}: correlations.csv/.md, score_vs_level.csv/.md, scores.csv, scatter.png")
    return {"correlations": table, "levels": level_rows}


def heldout_references(source: settings.DataSource, own_pixels: bool | None = None
                       ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The evaluation's reference crops (the centre crop of each slice after the paper's
    resize, or at its own pixels with `own_pixels`; None: `source.own_pixels`), their sources
    and their reference scores (human, or the documented prior)."""
    own_pixels = source.own_pixels if own_pixels is None else own_pixels
    slices, sources = settings.reference_slices(source)
    reference_scores = settings.annotated_scores(source)(sources)
    crops = np.stack([np.asarray(preprocessing.preprocess(s, key=None, resize=source.resize,
                                                          crop=source.crop, own_pixels=own_pixels))
                      for s in slices])
    return crops, sources, np.asarray(reference_scores, np.float32)


def _level_correlations(rows: list[dict], kinds) -> list[dict]:
    """Rank correlation of score with -level (0..5, the reference as 0) within each kind.

    The sign is turned so that 1 means the score falls with every heavier level.
    """
    by_index = {}
    for row in rows:
        by_index.setdefault(row["index"], {})[(row["kind"], row["level"])] = row["score"]
    out = []
    for kind in kinds:
        scores, levels = [], []
        for per_image in by_index.values():
            for level in range(6):
                key = ("reference", 0) if level == 0 else (kind, level)
                if key in per_image:
                    scores.append(per_image[key])
                    levels.append(level)
        scores, minus_levels = np.asarray(scores), -np.asarray(levels, np.float64)
        # Also within each original: its own series, free of differences between slices.
        within = [evaluation.srocc(np.asarray([per_image[("reference", 0)]] +
                                              [per_image[(kind, level)] for level in range(1, 6)]),
                                   -np.arange(6.0))
                  for per_image in by_index.values()
                  if all((kind, level) in per_image for level in range(1, 6))]
        out.append({"kind": kind, "n": len(scores),
                    "srocc_vs_level": evaluation.srocc(scores, minus_levels),
                    "krocc_vs_level": evaluation.krocc(scores, minus_levels),
                    "srocc_within_image_mean": float(np.mean(within)) if within else float("nan")})
    return out
