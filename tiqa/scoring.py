"""A trained score network as a function, and the evaluation phase built on it.

`load_scorer(workdir)` rebuilds the network from a training work directory (its `model.json`
and latest checkpoint) and returns a jitted `score(images) -> (N,)` for (N, H, W) crops in
[0, 1]. `evaluate_checkpoint(config)` scores held-out slices distorted at every kind and level
and compares the scores with the projected labels (PLCC, SROCC, KROCC, RMSE per kind and
overall), writing the table as CSV and Markdown, the per-image scores and a scatter plot.
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from flax import nnx

from tiqa import evaluation, io, labels, reference_distortions
from tiqa.models.iqa import IQAConfig
from tiqa.train import batches, loop, phases

Scorer = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    graphdef: nnx.GraphDef
    params: nnx.State
    batch_stats: nnx.State
    config: IQAConfig
    crop: int
    resize: int


def load_model(workdir: str | pathlib.Path) -> LoadedModel:
    """The network of a training work directory (rank or fine-tune), at its latest checkpoint."""
    info = loop.read_run_info(workdir)
    model_cfg = IQAConfig.from_mapping(info[phases.MODEL_INFO_KEY])
    model = phases.abstract_model(model_cfg)
    # Adam's state has the same structure in every phase, so any phase's checkpoint fits.
    graphdef, state = loop.init_state(model, loop.adam(optax.constant_schedule(0.0)))
    state = loop.restore_model_state(workdir, state)
    return LoadedModel(graphdef, state.params, state.batch_stats, model_cfg,
                       int(info.get("crop", 224)), int(info.get("resize", 255)))


def make_scorer(loaded: LoadedModel, batch_size: int = 64) -> Scorer:
    """A function (N, H, W) crops in [0, 1] -> (N,) scores, run in fixed-size jitted batches."""

    @jax.jit
    def forward(params, batch_stats, images):
        model = nnx.merge(loaded.graphdef, params, batch_stats)
        return model(images, train=False)

    def score(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        outputs = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            pad = batch_size - len(chunk)  # one shape, one compilation
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            outputs.append(np.asarray(forward(loaded.params, loaded.batch_stats, chunk))[:batch_size - pad])
        return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)

    return score


def load_scorer(workdir: str | pathlib.Path, batch_size: int = 64) -> Scorer:
    return make_scorer(load_model(workdir), batch_size)


def evaluate_checkpoint(config) -> dict:
    """Runs the evaluation phase described by configs/evaluate.py; returns the table rows."""
    if not config.checkpoint:
        raise ValueError("config.checkpoint is empty: give a training work directory")
    output = pathlib.Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    loaded = load_model(config.checkpoint)
    score = make_scorer(loaded, config.batch_size)
    projection = labels.ProjectionConfig.from_mapping(config.projection)
    slices, sources = batches.load_reference_slices(config)
    annotations = labels.read_annotations(config.annotations) if config.annotations else {}
    reference_scores = labels.reference_scores_for(sources, annotations,
                                                   config.default_reference_score)
    crops = np.stack([np.asarray(io.preprocess(s, key=None, resize=config.resize, crop=config.crop))
                      for s in slices])
    distort_and_label = _distorter(config.distortion_backend, projection, config.seed)
    rows = []
    for start in tqdm.trange(0, len(crops), config.projection_batch, desc="evaluate", unit="batch"):
        stop = min(start + config.projection_batch, len(crops))
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
                            title=f"TIQA scores against projected labels ({pathlib.Path(config.checkpoint).name})")
    print("score against projected label\n" + evaluation.format_table(table))
    print("\nscore against distortion level (1 = the score falls with every level)\n"
          + evaluation.format_table(level_rows))
    print(f"\nwritten to {output}: correlations.csv/.md, score_vs_level.csv/.md, scores.csv, scatter.png")
    return {"correlations": table, "levels": level_rows}


def _distorter(backend: str, projection: labels.ProjectionConfig, seed: int):
    """(crops, scores, first index) -> labels.Projection, with the JAX or the scikit-image path.

    'skimage' distorts each crop with scikit-image and the numpy ring loop
    (`tiqa.reference_distortions`), independently of the JAX distortions under test.
    """
    if backend == "jax":
        project = jax.jit(labels.project, static_argnums=3)
        base_key = jax.random.key(seed)

        def jax_path(crops, scores, first):
            keys = jnp.stack([jax.random.fold_in(base_key, first + i) for i in range(len(crops))])
            return project(crops, scores, keys, projection)
        return jax_path
    if backend == "skimage":
        unknown = set(projection.kinds) - set(reference_distortions.KINDS)
        if unknown:
            raise ValueError(f"distortion_backend='skimage' has no {sorted(unknown)}; "
                             f"use kinds from {reference_distortions.KINDS}")

        def skimage_path(crops, scores, first):
            images = np.empty((len(crops), len(projection.kinds), 6) + crops.shape[1:], np.float32)
            for n, crop in enumerate(crops.astype(np.float64)):
                rng = np.random.default_rng([seed, first + n])
                for k, kind in enumerate(projection.kinds):
                    images[n, k, 0] = crop
                    for level in range(1, 6):
                        images[n, k, level] = reference_distortions.distort(kind, crop, level, rng)
            return labels.label_images(images, scores, projection)
        return skimage_path
    raise ValueError(f"distortion_backend must be 'jax' or 'skimage', got {backend!r}")


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
        out.append({"kind": kind, "n": len(scores),
                    "srocc_vs_level": evaluation.srocc(scores, minus_levels),
                    "krocc_vs_level": evaluation.krocc(scores, minus_levels)})
    return out
