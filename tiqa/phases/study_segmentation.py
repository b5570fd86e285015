"""The study that ties the TIQA score to segmentation accuracy: every held-out slice at every
distortion kind and level is scored by the quality network and segmented; the table of SROCC
and PLCC between score and F1, per kind and overall, is the paper's Table 1.

Table 1 moves more between two trainings of the segmenter than between two score models, so
the study takes several D-LinkNet checkpoints: each image is scored once and segmented by each,
and the table is given against each image's F1 averaged over the segmenters, with the mean and
spread of every segmenter's own table beside it.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np
import tqdm

from tiqa import checkpoints, distortions, errors, evaluation, io, scoring, segmentation
from tiqa.phases import settings
from tiqa.phases.evaluate_segmentation import held_out, positive_mask


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


def table_over_segmenters(rows: list[dict], kinds, segmenters: int) -> list[dict]:
    """Table 1 for rows scored against `segmenters` D-LinkNets: SROCC and PLCC against each
    row's mean F1 ("f1"), and the mean and sample SD over the segmenters of each one's own
    SROCC and PLCC (against "f1_seg1", "f1_seg2", ...)."""
    pooled = table_one(rows, kinds)
    own = [table_one([{**row, "f1": row[f"f1_seg{i + 1}"]} for row in rows], kinds)
           for i in range(segmenters)]
    table = []
    for index, row in enumerate(pooled):
        spread = {}
        for measure in ("srocc", "plcc"):
            values = np.asarray([tables[index][measure] for tables in own])
            spread[f"{measure}_mean_over_segmenters"] = float(values.mean())
            spread[f"{measure}_sd_over_segmenters"] = float(values.std(ddof=1))
        table.append({**row, **spread})
    return table


@dataclasses.dataclass(frozen=True)
class StudySegmentationSettings:
    """configs/study_segmentation.py, read once."""
    score_checkpoint: str
    ring_check: bool
    view_penalty: bool
    centre_penalty: bool
    noise_penalty: bool
    segmentation_checkpoint: str
    output: str
    images: str
    labels: str
    label_suffix: str
    threshold: float
    kinds: tuple[str, ...]
    crops: str
    own_pixels: bool | None  # None: as the model was trained
    seed: int
    figure_kind: str


def read_settings(config) -> StudySegmentationSettings:
    found = settings.block(StudySegmentationSettings, config)
    if not io.split_paths(found.segmentation_checkpoint):
        raise errors.InputError("config.segmentation_checkpoint is empty: give one or more "
                                "D-LinkNet checkpoints (comma-separated)")
    return found


def _segment(segmenter, positive: int, threshold: float, image: np.ndarray,
             labels: np.ndarray):
    """(predicted mask, target mask, class probabilities) of the positive class in one slice."""
    probabilities = segmenter.probabilities(image[None])[0]
    mask = positive_mask(probabilities, segmenter.config.num_classes, positive, threshold)
    return mask, labels == positive, probabilities


def run(config) -> dict:
    """Runs the study described by configs/study_segmentation.py: the paper's Table 1."""
    study = read_settings(config)
    segmenter_paths = io.split_paths(study.segmentation_checkpoint)
    segmenters = [(checkpoints.load_segmenter(path), checkpoints.positive_class(path))
                  for path in segmenter_paths]
    score_model = checkpoints.load_model(study.score_checkpoint)
    score = scoring.make_slice_scorer(score_model, study.crops, with_ring_check=study.ring_check,
                                      with_view_penalty=study.view_penalty,
                                      with_centre_penalty=study.centre_penalty,
                                      own_pixels=study.own_pixels,
                                      with_noise_check=study.noise_penalty)
    paths, images, label_maps = held_out(study.images, study.labels, study.label_suffix)
    output = pathlib.Path(study.output)
    output.mkdir(parents=True, exist_ok=True)  # once every model and slice has loaded
    base_key = jax.random.key(study.seed)
    rows, curves, examples = [], {}, {}
    work = [(n, kind, level) for n in range(len(images)) for kind in study.kinds
            for level in range(distortions.NUM_LEVELS)]
    for n, kind, level in tqdm.tqdm(work, desc="study", unit="image"):
        if level == 0 and kind != study.kinds[0]:
            continue  # the undistorted slice is one image, shared by every kind
        key = jax.random.fold_in(jax.random.fold_in(base_key, n), study.kinds.index(kind))
        distorted = np.asarray(distortions.apply(kind, images[n], level, key))
        tiqa_score = float(score(distorted[None])[0][0])
        segmented = [_segment(segmenter, positive, study.threshold, distorted, label_maps[n])
                     for segmenter, positive in segmenters]
        f1s = [segmentation.f1(mask, target) for mask, target, _ in segmented]
        # f1, iou and the uncertainty are means over the segmenters (each one's F1 kept beside)
        row = {"slice": pathlib.Path(paths[n]).stem, "kind": kind if level else "original",
               "level": level, "score": tiqa_score, "f1": float(np.mean(f1s)),
               "iou": float(np.mean([segmentation.iou(mask, target)
                                     for mask, target, _ in segmented])),
               "uncertainty_mean": float(np.mean([segmentation.entropy(probabilities).mean()
                                                  for _, _, probabilities in segmented]))}
        if len(segmenters) > 1:
            row.update({f"f1_seg{i + 1}": value for i, value in enumerate(f1s)})
        rows.append(row)
        mask, target, probabilities = segmented[0]  # the figures show the first segmenter's
        if n == 0 and kind == study.figure_kind:
            curves[f"level {level}"] = segmentation.two_point_correlation(mask, axis=1)
            curves.setdefault("ground truth", segmentation.two_point_correlation(target, axis=1))
            if level in (0, 3, 5):
                examples[level] = (distorted, target, mask, probabilities)
    if len(segmenters) == 1:
        table, notes = table_one(rows, study.kinds), ()
    else:
        table = table_over_segmenters(rows, study.kinds, len(segmenters))
        notes = ("srocc, plcc: against each image's F1 averaged over the segmenters; "
                 "*_over_segmenters: the mean and sample SD of each segmenter's own figure. "
                 "Segmenters: " + ", ".join(f"seg{i + 1} = {path}"
                                            for i, path in enumerate(segmenter_paths)),)
    evaluation.write_table(table, output / "table1.csv", output / "table1.md", notes)
    evaluation.write_table(rows, output / "study.csv", output / "study.md")
    segmentation.figure_score_vs_f1([r["score"] for r in rows], [r["f1"] for r in rows],
                                    [r["kind"] for r in rows], output / "score_vs_f1.png")
    segmentation.figure_two_point(curves, output / "two_point_levels.png",
                                  title=f"S2 along X, {study.figure_kind} levels, "
                                        f"{pathlib.Path(paths[0]).stem}")
    for level, (image, target, mask, probabilities) in examples.items():
        segmentation.figure_segmentation(image, target, mask, probabilities[..., 1]
                                         if probabilities.shape[-1] == 2 else probabilities,
                                         output / f"segmentation_{study.figure_kind}_level{level}.png",
                                         title=f"{study.figure_kind} level {level}")
    said = scoring.penalty_notes(study.ring_check, study.view_penalty, study.score_checkpoint,
                                 study.centre_penalty, study.noise_penalty)
    print(f"TIQA score ({said}) against segmentation F1 (the paper's Table 1)"
          + (f", F1 averaged over {len(segmenters)} segmenters" if len(segmenters) > 1 else ""))
    print(evaluation.format_table(table))
    print(f"written to {output}: table1.csv/.md, study.csv/.md, score_vs_f1.png, two_point_levels.png")
    return {"table": table, "rows": rows}
