"""The segmentation evaluation: a trained D-LinkNet on held-out labelled slices: F1 and IoU
(per class for a multi-class model), the entropy uncertainty, the paper's Fig. 5/6 panels and
the two-point correlation of the particle phase (Fig. 7), as CSV, Markdown and PNG.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import tqdm

from tiqa import checkpoints, errors, evaluation, io, segmentation
from tiqa.phases import settings
from tiqa.train import segmentation as segmentation_training


@dataclasses.dataclass(frozen=True)
class EvaluateSegmentationSettings:
    """configs/evaluate_segmentation.py, read once."""
    checkpoint: str
    output: str
    images: str
    labels: str
    label_suffix: str
    threshold: float


def read_settings(config) -> EvaluateSegmentationSettings:
    return settings.block(EvaluateSegmentationSettings, config)


def held_out(images: str, labels: str,
             label_suffix: str) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """The held-out slices `images` (comma-separated) and their label maps under `labels`."""
    paths = io.split_paths(images)
    if not paths:
        raise errors.InputError("config.images is empty: give the held-out slices (comma-separated)")
    images, label_maps = segmentation_training.read_labelled_slices(paths, labels, label_suffix)
    return paths, images, label_maps


def binary_prediction(probabilities: np.ndarray, level: float) -> np.ndarray:
    return segmentation.threshold(probabilities[..., 1], level)


def positive_mask(probabilities: np.ndarray, num_classes: int, positive: int,
                  threshold: float) -> np.ndarray:
    """The predicted mask of the positive class from a segmenter's (..., H, W, C)
    probabilities: the argmax for several classes, the threshold for a binary segmenter."""
    if num_classes > 1:
        return segmentation.argmax_labels(probabilities) == positive
    return binary_prediction(probabilities, threshold)


def run(config) -> dict:
    """Runs the evaluation described by configs/evaluate_segmentation.py."""
    config = read_settings(config)
    output = pathlib.Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    segmenter = checkpoints.load_segmenter(config.checkpoint)
    multi_class = segmenter.config.num_classes > 1
    positive = checkpoints.positive_class(config.checkpoint)
    paths, images, label_maps = held_out(config.images, config.labels, config.label_suffix)
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
            mask, target = binary_prediction(probabilities, config.threshold), labels == positive
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
