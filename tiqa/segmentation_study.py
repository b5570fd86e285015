"""The segmentation evaluation and the study that ties the TIQA score to segmentation accuracy.

- `evaluate_segmentation(config)`: a trained D-LinkNet on held-out labelled slices: F1 and IoU
  (per class for a multi-class model), the entropy uncertainty, the paper's Fig. 5/6 panels
  and the two-point correlation of the particle phase (Fig. 7), as CSV, Markdown and PNG.
- `study_segmentation(config)`: every held-out slice at every distortion kind and level is
  scored by the quality network and segmented; the table of SROCC and PLCC between score and
  F1, per kind and overall, is the paper's Table 1.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import tqdm

from tiqa import checkpoints, distortions, errors, evaluation, io, scoring, segmentation
from tiqa.train import segmentation as segmentation_training


def _held_out(config) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    paths = io.split_paths(config.images)
    if not paths:
        raise errors.InputError("config.images is empty: give the held-out slices (comma-separated)")
    images, label_maps = segmentation_training.read_labelled_slices(
        paths, config.labels, config.label_suffix)
    return paths, images, label_maps


def _binary_prediction(probabilities: np.ndarray, level: float) -> np.ndarray:
    return segmentation.threshold(probabilities[..., 1], level)


def evaluate_segmentation(config) -> dict:
    """Runs the evaluation described by configs/evaluate_segmentation.py."""
    output = pathlib.Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    segmenter = checkpoints.load_segmenter(config.checkpoint)
    multi_class = segmenter.config.num_classes > 1
    positive = checkpoints.positive_class(config.checkpoint)
    paths, images, label_maps = _held_out(config)
    rows, predictions, targets, curves = [], [], [], {}
    for path, image, labels in tqdm.tqdm(list(zip(paths, images, label_maps)), desc="segmenting"):
        probabilities = segmenter.probabilities(image[None])[0]
        uncertainty = segmentation.entropy(probabilities)
        name = pathlib.Path(path).stem
        if multi_class:
            predicted = segmentation.argmax_labels(probabilities)
            scores = segmentation.per_class_scores(predicted, labels, segmenter.config.num_classes)
            row = {"slice": name, "mean_iou": scores["mean_iou"], "mean_f1": scores["mean_f1"]}
            row.update({f"f1_class{c['class']}": c["f1"] for c in scores["classes"]})
            row.update({f"iou_class{c['class']}": c["iou"] for c in scores["classes"]})
            mask, target = predicted == positive, labels == positive
            segmentation.figure_segmentation(image, labels, predicted, probabilities,
                                             output / f"segmentation_{name}.png",
                                             title=f"{name}: three classes", phase=positive)
        else:
            mask, target = _binary_prediction(probabilities, config.threshold), labels == positive
            row = {"slice": name}
            segmentation.figure_segmentation(image, target, mask, probabilities[..., 1],
                                             output / f"segmentation_{name}.png",
                                             title=f"{name}: particle against the rest")
        row.update({"f1": segmentation.f1(mask, target), "iou": segmentation.iou(mask, target),
                    "uncertainty_mean": float(uncertainty.mean())})
        rows.append(row)
        predictions.append(predicted if multi_class else mask)
        targets.append(labels if multi_class else target)
        curves[f"{name} ground truth"] = segmentation.two_point_correlation(target, axis=1)
        curves[f"{name} prediction"] = segmentation.two_point_correlation(mask, axis=1)
    # Pooled over every held-out pixel (slices of one shape group may differ; pool by list).
    pooled = {"slice": "all (pooled)",
              "f1": float(_pooled(segmentation.f1, predictions, targets, multi_class, positive)),
              "iou": float(_pooled(segmentation.iou, predictions, targets, multi_class, positive)),
              "uncertainty_mean": float(np.mean([r["uncertainty_mean"] for r in rows]))}
    if multi_class:
        scores = segmentation.per_class_scores(
            np.concatenate([p.ravel() for p in predictions]),
            np.concatenate([t.ravel() for t in targets]), segmenter.config.num_classes)
        pooled.update({"mean_iou": scores["mean_iou"], "mean_f1": scores["mean_f1"]})
        pooled.update({f"f1_class{c['class']}": c["f1"] for c in scores["classes"]})
        pooled.update({f"iou_class{c['class']}": c["iou"] for c in scores["classes"]})
    rows.append({key: pooled.get(key, float("nan")) for key in rows[0]} | pooled)
    evaluation.write_table(rows, output / "segmentation.csv", output / "segmentation.md")
    first = pathlib.Path(paths[0]).stem
    segmentation.figure_two_point(
        {"ground truth": curves[f"{first} ground truth"], "prediction": curves[f"{first} prediction"]},
        output / "two_point.png", title=f"S2 of the particle phase along X, {first}")
    print(evaluation.format_table(rows))
    print(f"written to {output}: segmentation.csv/.md, segmentation_<slice>.png, two_point.png")
    return {"rows": rows, "pooled": pooled}


def _pooled(metric, predictions, targets, multi_class, positive):
    """The metric over every held-out pixel at once (slices may differ in shape)."""
    flat_pred = np.concatenate([(p == positive if multi_class else p).ravel() for p in predictions])
    flat_true = np.concatenate([(t == positive if multi_class else t).ravel() for t in targets])
    return metric(flat_pred.reshape(1, -1), flat_true.reshape(1, -1))


def table_one(rows: list[dict], kinds) -> list[dict]:
    """The paper's Table 1 from the study's rows: per kind (its distorted slices and the
    originals, which belong to every kind's series) and overall, n and the SROCC and PLCC
    between score and F1."""
    table = []
    for kind in list(kinds) + ["overall"]:
        chosen = [r for r in rows if r["kind"] in (kind, "original") or kind == "overall"]
        scores = np.asarray([r["score"] for r in chosen])
        f1s = np.asarray([r["f1"] for r in chosen])
        table.append({"kind": kind, "n": len(chosen), "srocc": evaluation.srocc(scores, f1s),
                      "plcc": evaluation.plcc(scores, f1s),
                      "mean_f1": float(f1s.mean()), "mean_score": float(scores.mean())})
    return table


def study_segmentation(config) -> dict:
    """Runs the study described by configs/study_segmentation.py: the paper's Table 1."""
    output = pathlib.Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    segmenter = checkpoints.load_segmenter(config.segmentation_checkpoint)
    positive = checkpoints.positive_class(config.segmentation_checkpoint)
    score = scoring.make_slice_scorer(checkpoints.load_model(config.score_checkpoint), config.crops)
    paths, images, label_maps = _held_out(config)
    base_key = jax.random.key(config.seed)
    rows, curves, examples = [], {}, {}
    work = [(n, kind, level) for n in range(len(images)) for kind in config.kinds
            for level in range(distortions.NUM_LEVELS)]
    for n, kind, level in tqdm.tqdm(work, desc="study", unit="image"):
        if level == 0 and kind != config.kinds[0]:
            continue  # the undistorted slice is one image, shared by every kind
        key = jax.random.fold_in(jax.random.fold_in(base_key, n), config.kinds.index(kind))
        distorted = np.asarray(distortions.apply(kind, images[n], level, key))
        tiqa_score = float(score(distorted[None])[0][0])
        probabilities = segmenter.probabilities(distorted[None])[0]
        if segmenter.config.num_classes > 1:
            mask = segmentation.argmax_labels(probabilities) == positive
        else:
            mask = _binary_prediction(probabilities, config.threshold)
        target = label_maps[n] == positive
        rows.append({"slice": pathlib.Path(paths[n]).stem, "kind": kind if level else "original",
                     "level": level, "score": tiqa_score,
                     "f1": segmentation.f1(mask, target), "iou": segmentation.iou(mask, target),
                     "uncertainty_mean": float(segmentation.entropy(probabilities).mean())})
        if n == 0 and kind == config.figure_kind:
            curves[f"level {level}"] = segmentation.two_point_correlation(mask, axis=1)
            curves.setdefault("ground truth", segmentation.two_point_correlation(target, axis=1))
            if level in (0, 3, 5):
                examples[level] = (distorted, target, mask, probabilities)
    table = table_one(rows, config.kinds)
    evaluation.write_table(table, output / "table1.csv", output / "table1.md")
    evaluation.write_table(rows, output / "study.csv", output / "study.md")
    segmentation.figure_score_vs_f1([r["score"] for r in rows], [r["f1"] for r in rows],
                                    [r["kind"] for r in rows], output / "score_vs_f1.png")
    segmentation.figure_two_point(curves, output / "two_point_levels.png",
                                  title=f"S2 along X, {config.figure_kind} levels, "
                                        f"{pathlib.Path(paths[0]).stem}")
    for level, (image, target, mask, probabilities) in examples.items():
        segmentation.figure_segmentation(image, target, mask, probabilities[..., 1]
                                         if probabilities.shape[-1] == 2 else probabilities,
                                         output / f"segmentation_{config.figure_kind}_level{level}.png",
                                         title=f"{config.figure_kind} level {level}")
    print("TIQA score against segmentation F1 (the paper's Table 1)")
    print(evaluation.format_table(table))
    print(f"written to {output}: table1.csv/.md, study.csv/.md, score_vs_f1.png, two_point_levels.png")
    return {"table": table, "rows": rows}
