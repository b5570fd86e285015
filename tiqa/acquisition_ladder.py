"""The acquisition-ladder benchmark's objects, statistics, tables and figure; the phase is
`tiqa.phases.evaluate_acquisition` (configs/evaluate_acquisition.py).

With `filter_check`, it also asks whether filter selection by score helps: the objects'
noisy acquisitions (`filter_photons`) go through the filter selection (`tiqa.phases.select_filter`)
exactly as a user's volume would, and each candidate's score is compared with the SSIM it
gains or loses against the ideal acquisition.

Held-out objects (grey slices, texture-less label maps, phantoms of unseen seeds) are
scanned along every factor of `tiqa.acquisition` at the ideal and five worse levels. Each
contender scores every acquisition (the same 224 px centre crop, after the scoring path's
resize), and the question is the one a user asks: does the score order the acquisitions of
one object as the physics does? Per object kind and factor: the mean over objects of the
within-object SROCC between score and quality order over levels 1..5, with a bootstrap 95%
interval over objects, and the median score of the best acquisitions (level 1) and of the
ideal ones.

Contenders: TIQA (a checkpoint or the shipped model), BRISQUE with its LIVE model, BRISQUE
retrained on the tomography labels, an opinion-unaware NIQE fitted on the ideal acquisitions
of the training objects (`niqe_pristine`), and an oracle, full-reference SSIM against the ideal
acquisition of the same object: the ceiling a no-reference score can approach.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
from scipy import stats

from tiqa import acquisition, errors, io, objects, observers, preprocessing, segmentation

ORACLE = "SSIM vs ideal (oracle)"
SEGMENTATION = "Segmentation F1 vs ideal (D-LinkNet)"
OBJECT_KINDS = ("grey", "label_map", "phantom", "texture")
LEVELS = np.arange(acquisition.NUM_LEVELS)


@dataclasses.dataclass(frozen=True)
class HeldOutObjects:
    attenuation: np.ndarray  # (M, N, N)
    kinds: tuple[str, ...]  # one of OBJECT_KINDS per object
    names: tuple[str, ...]


def held_out_objects(grey: str, label_maps: str, phantoms: int, phantom_seed: int,
                     output_size: int, seed: int, scale: str = "native",
                     textures: int = 0) -> HeldOutObjects:
    """Objects from comma-separated grey slices and label maps (no texture), phantoms, and
    `textures` stochastic textures (`objects.texture_image`, drawn from `seed`'s generator);
    `scale` as in `objects.collect`."""
    found = objects.collect(grey, label_maps, phantoms, phantom_seed,
                            acquisition.object_size(output_size), seed, label_texture=False,
                            scale=scale, scored_size=output_size, textures=textures)
    if not found.kinds:
        raise errors.InputError("no held-out objects: give grey, label_maps, phantoms or textures")
    names = tuple(f"phantom seed {source}" if kind == "phantom" else pathlib.Path(source).name
                  for kind, source in zip(found.kinds, found.sources))
    return HeldOutObjects(found.attenuation, found.kinds, names)


def within_object_srocc(scores: np.ndarray, levels: np.ndarray) -> float:
    """SROCC of scores with the quality order (level 1 best); a constant score agrees with
    nothing and counts 0."""
    if np.ptp(scores) == 0:
        return 0.0
    return float(stats.spearmanr(scores, -levels).statistic)


def mean_within_object_srocc(scores: np.ndarray) -> float:
    """(M, L) scores of levels 0..L-1 (0 the ideal) -> the mean over objects of
    `within_object_srocc` over levels 1..L-1, as the benchmark reports it."""
    levels = np.arange(np.shape(scores)[1])
    return float(np.mean([within_object_srocc(row[1:], levels[1:]) for row in scores]))


def _bootstrap_mean(values: np.ndarray, samples: int, seed: int) -> tuple[float, float]:
    """Percentile 95% interval of the mean over resampled objects (NaN for fewer than 2)."""
    if len(values) < 2:
        return float("nan"), float("nan")
    # Percentile rather than BCa: BCa is undefined when every object agrees (e.g. the oracle).
    interval = stats.bootstrap((values,), np.mean, n_resamples=samples, method="percentile",
                               rng=np.random.default_rng(seed)).confidence_interval
    return float(interval.low), float(interval.high)


def summarise(scores: np.ndarray, kinds: tuple[str, ...], factors: tuple[str, ...],
              contender: str, bootstrap: int, seed: int) -> list[dict]:
    """Rows per object kind and factor from (M, F, 6) oriented scores (higher = better)."""
    rows = []
    kinds_array = np.asarray(kinds)
    for kind in dict.fromkeys(kinds):
        chosen = scores[kinds_array == kind]
        for index, factor in enumerate(factors):
            per_object = np.asarray([within_object_srocc(s[1:], LEVELS[1:])
                                     for s in chosen[:, index]])
            with_ideal = np.asarray([within_object_srocc(s, LEVELS) for s in chosen[:, index]])
            low, high = _bootstrap_mean(per_object, bootstrap, seed)
            rows.append({"object_kind": kind, "factor": factor, "contender": contender,
                         "objects": len(chosen), "srocc": float(per_object.mean()),
                         "srocc_low": low, "srocc_high": high,
                         "srocc_with_ideal": float(with_ideal.mean()),
                         "worst_object_srocc": float(per_object.min())})
    return rows


def best_acquisition_scores(scores: np.ndarray, kinds: tuple[str, ...],
                            object_scores: np.ndarray | None = None) -> list[dict]:
    """Median raw score of the ideal and of the level-1 acquisitions, per object kind; with
    `object_scores` (M,), also of the objects themselves, unscanned (what the scan costs)."""
    kinds_array = np.asarray(kinds)
    rows = []
    for kind in dict.fromkeys(kinds):
        chosen = kinds_array == kind
        row = {"object_kind": kind}
        if object_scores is not None:
            row["object_median"] = float(np.median(np.asarray(object_scores)[chosen]))
        row["ideal_median"] = float(np.median(scores[chosen][:, :, 0]))
        row["best_level_median"] = float(np.median(scores[chosen][:, :, 1]))
        rows.append(row)
    return rows


def unscanned_crops(attenuation: np.ndarray, output_size: int, resize: int, crop: int,
                    own_pixels: bool = False) -> np.ndarray:
    """The objects themselves as the scoring path sees their acquisitions: the centred
    (output_size)^2 square that is reconstructed, normalised by its percentiles, centre crop."""
    start = attenuation.shape[-1] // 2 - output_size // 2
    square = np.asarray(attenuation)[..., start:start + output_size, start:start + output_size]
    unit = np.asarray(acquisition.normalise_percentile(square))
    return centre_crops(unit, resize, crop, own_pixels)


def centre_crops(images: np.ndarray, resize: int, crop: int, own_pixels: bool = False
                 ) -> np.ndarray:
    """The scoring path's centre crop of every (..., H, W) acquisition (at its own pixels with
    `own_pixels`, as a model trained so scores it: `preprocessing.model_view`)."""
    flat = images.reshape((-1,) + images.shape[-2:])
    crops = np.stack([np.asarray(preprocessing.preprocess(image, key=None, resize=resize, crop=crop,
                                                          own_pixels=own_pixels))
                      for image in flat])
    return crops.reshape(images.shape[:-2] + crops.shape[-2:])


def oracle_ssim(crops: np.ndarray) -> np.ndarray:
    """SSIM of every acquisition's crop against the ideal acquisition's crop: (M, F, 6)."""
    count, factors = crops.shape[:2]
    ideal = crops[:, 0, 0]
    distorted = crops.reshape(count, factors * acquisition.NUM_LEVELS, *crops.shape[-2:])
    values = observers.one_to_many("ssim", ideal, distorted)
    return np.asarray(values).reshape(count, factors, acquisition.NUM_LEVELS)


def agreement_with_ideal(masks: np.ndarray) -> np.ndarray:
    """F1 (Dice) of every acquisition's predicted mask against the mask of its object's ideal
    acquisition (level 0): (M, F, 6, H, W) bool -> (M, F, 6); 1 where both are empty."""
    masks = np.asarray(masks, bool)
    ideal = np.broadcast_to(masks[:, :, :1], masks.shape)
    return np.asarray(segmentation.f1(masks, ideal), np.float64).reshape(masks.shape[:3])


def segmentation_markdown(agreement: np.ndarray, kinds: tuple[str, ...],
                          factors: tuple[str, ...], segmenters: int) -> str:
    """The table of what each level costs the segmentation: per object kind and factor, the
    mean over objects of `agreement_with_ideal` (averaged over `segmenters`) at levels 1..5."""
    kinds_array = np.asarray(kinds)
    lines = [f"Segmentation: F1 of each acquisition's particle mask against the ideal "
             f"acquisition's, mean over {segmenters} D-LinkNet(s) and over objects (1 = the "
             "segmentation is unchanged):", "",
             "| object kind | factor | " + " | ".join(f"level {level}" for level in LEVELS[1:])
             + " |", "|---|---|" + "---:|" * (len(LEVELS) - 1)]
    for kind in dict.fromkeys(kinds):
        mean = agreement[kinds_array == kind].mean(axis=0)
        lines += [f"| {kind} | {factor} | " + " | ".join(f"{value:.4f}" for value in mean[f, 1:])
                  + " |" for f, factor in enumerate(factors)]
    return "\n".join(lines)


def markdown(rows: list[dict], best: list[dict], factors: tuple[str, ...]) -> str:
    lines = ["Mean within-object SROCC with the known order (levels 1..5; 1 = perfect), "
             "[bootstrap 95% interval over objects]:", ""]
    contenders = list(dict.fromkeys(row["contender"] for row in rows))
    for kind in dict.fromkeys(row["object_kind"] for row in rows):
        count = next(row["objects"] for row in rows if row["object_kind"] == kind)
        lines += [f"**{kind}** ({count} objects)", "",
                  "| contender | " + " | ".join(factors) + " |",
                  "|---|" + "---:|" * len(factors)]
        for contender in contenders:
            cells = []
            for factor in factors:
                row = next(r for r in rows if (r["object_kind"], r["factor"], r["contender"])
                           == (kind, factor, contender))
                interval = (f" [{row['srocc_low']:.2f}, {row['srocc_high']:.2f}]"
                            if np.isfinite(row["srocc_low"]) else "")
                cells.append(f"{row['srocc']:.3f}{interval}")
            lines.append(f"| {contender} | " + " | ".join(cells) + " |")
        lines.append("")
    unscanned = bool(best) and "object_median" in best[0]
    lines += ["TIQA's median score (1..5) of the ideal acquisitions and of the best level"
              + (" (and of the objects themselves, unscanned):" if unscanned else ":"), "",
              "| object kind |" + (" object (no scan) |" if unscanned else "")
              + " ideal | level 1 |", "|---|---:|---:|" + ("---:|" if unscanned else "")]
    lines += [f"| {b['object_kind']} |" + (f" {b['object_median']:.2f} |" if unscanned else "")
              + f" {b['ideal_median']:.2f} | {b['best_level_median']:.2f} |" for b in best]
    return "\n".join(lines)


def plot(rows: list[dict], factors: tuple[str, ...], path: pathlib.Path) -> None:
    from matplotlib.figure import Figure  # a bare Figure: no pyplot state, no display

    kinds = list(dict.fromkeys(row["object_kind"] for row in rows))
    contenders = list(dict.fromkeys(row["contender"] for row in rows))
    figure = Figure(figsize=(5 * len(kinds), 4), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(kinds)))
    width = 0.8 / len(contenders)
    for axis, kind in zip(axes, kinds):
        for index, contender in enumerate(contenders):
            found = {r["factor"]: r for r in rows
                     if r["object_kind"] == kind and r["contender"] == contender}
            values = np.asarray([found[f]["srocc"] for f in factors])
            errors = np.nan_to_num(np.stack([
                values - [found[f]["srocc_low"] for f in factors],
                np.asarray([found[f]["srocc_high"] for f in factors]) - values]), nan=0.0).clip(0)
            positions = np.arange(len(factors)) + (index - (len(contenders) - 1) / 2) * width
            axis.bar(positions, values, width, yerr=errors, capsize=2, label=contender)
        axis.set_xticks(np.arange(len(factors)), factors, rotation=20, fontsize=8)
        axis.set_ylim(-1, 1.05)
        axis.axhline(0, color="black", linewidth=0.5)
        axis.set_title(f"{kind}: SROCC with the acquisition order")
    axes[0].legend(fontsize=7, loc="lower left")
    io.save_figure(figure, path, dpi=110)
