"""The acquisition-ladder benchmark (configs/evaluate_acquisition.py).

With `filter_check`, it also asks whether filter selection by score helps: the objects'
noisy acquisitions (`filter_photons`) go through `select_filter.rank_filters` exactly as a
user's volume would, and each candidate's score is compared with the SSIM it gains or loses
against the ideal acquisition.

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
import logging
import pathlib
import time

import jax
import ml_collections
import numpy as np
from scipy import stats

from tiqa import (acquisition, checkpoints, comparison, errors, evaluation, filters, io, objects,
                  observers, scoring, select_filter)
from tiqa.baselines import brisque, niqe

ORACLE = "SSIM vs ideal (oracle)"
OBJECT_KINDS = ("grey", "label_map", "phantom")
LEVELS = np.arange(acquisition.NUM_LEVELS)


@dataclasses.dataclass(frozen=True)
class HeldOutObjects:
    attenuation: np.ndarray  # (M, N, N)
    kinds: tuple[str, ...]  # one of OBJECT_KINDS per object
    names: tuple[str, ...]


def held_out_objects(grey: str, label_maps: str, phantoms: int, phantom_seed: int,
                     output_size: int, seed: int) -> HeldOutObjects:
    """Objects from comma-separated grey slices and label maps (no texture), and phantoms."""
    found = objects.collect(grey, label_maps, phantoms, phantom_seed,
                            acquisition.object_size(output_size), seed, label_texture=False)
    if not found.kinds:
        raise errors.InputError("no held-out objects: give grey, label_maps or phantoms")
    names = tuple(f"phantom seed {source}" if kind == "phantom" else pathlib.Path(source).name
                  for kind, source in zip(found.kinds, found.sources))
    return HeldOutObjects(found.attenuation, found.kinds, names)


def within_object_srocc(scores: np.ndarray, levels: np.ndarray) -> float:
    """SROCC of scores with the quality order (level 1 best); a constant score agrees with
    nothing and counts 0."""
    if np.ptp(scores) == 0:
        return 0.0
    return float(stats.spearmanr(scores, -levels).statistic)


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


def best_acquisition_scores(scores: np.ndarray, kinds: tuple[str, ...]) -> list[dict]:
    """Median raw score of the ideal and of the level-1 acquisitions, per object kind."""
    kinds_array = np.asarray(kinds)
    return [{"object_kind": kind,
             "ideal_median": float(np.median(scores[kinds_array == kind][:, :, 0])),
             "best_level_median": float(np.median(scores[kinds_array == kind][:, :, 1]))}
            for kind in dict.fromkeys(kinds)]


def _contenders(config, output: pathlib.Path) -> list[comparison.Contender]:
    found = [comparison.Contender("TIQA", scoring.make_scorer(
        checkpoints.load_model(config.checkpoint), config.batch_size))]
    if config.brisque:
        found.append(comparison.Contender("BRISQUE (LIVE)", brisque.LiveBrisque(),
                                          higher_is_better=False))
        found.append(comparison.Contender("BRISQUE (retrained)",
                                          comparison.retrained_brisque(config, output)))
    if config.niqe_pristine:
        found.append(comparison.Contender("NIQE (fitted here)", pristine_niqe(config, output),
                                          higher_is_better=False))
    return found


def pristine_niqe(config, output: pathlib.Path) -> niqe.Niqe:
    """NIQE's pristine model fitted on the ideal acquisitions of a training ladder bank (the
    `acquisition.cache` .npz of the training phases), centre crops as scored."""
    with np.load(config.niqe_pristine) as stored:
        ideal = stored["ladders"][:, 0, 0]
    model = niqe.Niqe.fit(_crops(ideal, config.resize, config.crop))
    model.save(output / "niqe")
    return model


def _crops(images: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """The scoring path's centre crop of every (..., H, W) acquisition."""
    flat = images.reshape((-1,) + images.shape[-2:])
    crops = np.stack([np.asarray(io.preprocess(image, key=None, resize=resize, crop=crop))
                      for image in flat])
    return crops.reshape(images.shape[:-2] + crops.shape[-2:])


def _oracle(crops: np.ndarray) -> np.ndarray:
    """SSIM of every acquisition's crop against the ideal acquisition's crop: (M, F, 6)."""
    count, factors = crops.shape[:2]
    ideal = crops[:, 0, 0]
    distorted = crops.reshape(count, factors * acquisition.NUM_LEVELS, *crops.shape[-2:])
    values = observers.one_to_many("ssim", ideal, distorted)
    return np.asarray(values).reshape(count, factors, acquisition.NUM_LEVELS)


def _markdown(rows: list[dict], best: list[dict], factors: tuple[str, ...]) -> str:
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
    lines += ["TIQA's median score (1..5) of the ideal acquisitions and of the best level:", "",
              "| object kind | ideal | level 1 |", "|---|---:|---:|"]
    lines += [f"| {b['object_kind']} | {b['ideal_median']:.2f} | {b['best_level_median']:.2f} |"
              for b in best]
    return "\n".join(lines)


def _plot(rows: list[dict], factors: tuple[str, ...], path: pathlib.Path) -> None:
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


def filter_check(config, images: np.ndarray, output: pathlib.Path) -> dict:
    """Filter selection on noisy acquisitions of the held-out objects, against the truth.

    `images` is (M, F, 6, S, S) with photons as factor 0. Writes the noisy and ideal stacks
    as TIFF volumes and runs the filter selection on the noisy one; returns the rank
    correlation between the candidates' median scores and their mean SSIM gain, and the
    gain of the candidate ranked first.
    """
    level = acquisition.LEVELS["photons"].index(config.filter_photons)
    noisy, ideal = images[:, 0, level], images[:, 0, 0]
    folder = output / "filter_check"
    folder.mkdir(parents=True, exist_ok=True)
    io.write_tiff(folder / "noisy.tif", noisy)
    io.write_tiff(folder / "ideal.tif", ideal)
    selection = select_filter.rank_filters(_selection_config(config, folder))
    read = io.read_volume(folder / "noisy.tif")  # what the selection saw
    reference = io.read_volume(folder / "ideal.tif")
    before = np.asarray(observers.ssim(reference, read))
    chosen = config.filter_selection.candidates
    candidates = filters.parse_candidates(chosen) if chosen else list(filters.CANDIDATES)
    gains = {}
    for name, params in candidates:
        filtered = np.stack([filters.apply(name, image, **params) for image in read])
        gains[filters.describe(name, params)] = float(np.mean(
            np.asarray(observers.ssim(reference, filtered)) - before))
    scores = np.asarray([row["median"] for row in selection])
    gain = np.asarray([gains[row["filter"]] for row in selection])
    result = {"photons": config.filter_photons, "candidates": len(selection),
              "srocc_score_gain": float(stats.spearmanr(scores, gain).statistic),
              "first": selection[0]["filter"], "first_ssim_gain": gain[0],
              "best_by_ssim": max(gains, key=gains.get), "best_ssim_gain": max(gains.values())}
    rows = [{**row, "ssim_gain": gains[row["filter"]]} for row in selection]
    evaluation.write_table(rows, folder / "filters_vs_ssim.csv", folder / "filters_vs_ssim.md")
    return result


def _selection_config(config, folder: pathlib.Path) -> ml_collections.ConfigDict:
    """The `filter_selection` block (configs/select_filter.py) pointed at the noisy volume."""
    selection = ml_collections.ConfigDict(config.filter_selection.to_dict())
    selection.input = str(folder / "noisy.tif")
    selection.output = str(folder / "selection")
    selection.checkpoint = config.checkpoint
    return selection


def run(config) -> list[dict]:
    """Runs the benchmark; writes ladder.csv/.md, scores.csv/.md and ladder.png under output."""
    output = pathlib.Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    factors = tuple(config.factors)
    held_out = held_out_objects(config.grey, config.label_maps, config.phantoms,
                                config.phantom_seed, config.output_size, config.seed)
    started = time.perf_counter()
    images = acquisition.ladders(held_out.attenuation, factors, jax.random.key(config.seed),
                                 output_size=config.output_size, max_views=config.max_views)
    logging.info("%d acquisitions of %d objects simulated in %.0f s",
                 images.shape[0] * (1 + 5 * len(factors)), images.shape[0],
                 time.perf_counter() - started)
    crops = _crops(images, config.resize, config.crop)
    scored = {}
    for contender in _contenders(config, output):
        raw = np.asarray(contender.score(crops.reshape((-1,) + crops.shape[-2:])), np.float64)
        scored[contender.name] = (raw.reshape(crops.shape[:3]), contender.higher_is_better)
    scored[ORACLE] = (_oracle(crops), True)
    rows = []
    for name, (raw, higher_is_better) in scored.items():
        rows += summarise(raw if higher_is_better else -raw, held_out.kinds, factors, name,
                          config.bootstrap, config.seed)
    best = best_acquisition_scores(scored["TIQA"][0], held_out.kinds)
    evaluation.write_table(rows, output / "ladder.csv", output / "ladder_rows.md")
    per_image = [{"object": held_out.names[m], "object_kind": held_out.kinds[m],
                  "factor": factor, "level": level,
                  "setting": acquisition.LEVELS[factor][level],
                  **{name: float(raw[m, f, level]) for name, (raw, _) in scored.items()}}
                 for m in range(len(held_out.names)) for f, factor in enumerate(factors)
                 for level in LEVELS]
    evaluation.write_table(per_image, output / "scores.csv", output / "scores.md")
    summary = _markdown(rows, best, factors)
    _plot(rows, factors, output / "ladder.png")
    if config.filter_check:
        if factors[0] != "photons":
            raise errors.InputError("filter_check needs 'photons' as the first of config.factors")
        check = filter_check(config, images, output)
        summary += (f"\n\nFilter selection on the {len(images)} objects' acquisitions at "
                    f"{check['photons']:g} photons ({check['candidates']} candidates): SROCC "
                    f"between score and SSIM gain {check['srocc_score_gain']:.3f}; ranked first "
                    f"{check['first']} (SSIM gain {check['first_ssim_gain']:+.4f}); best by SSIM "
                    f"{check['best_by_ssim']} ({check['best_ssim_gain']:+.4f}).")
        io.write_json(output / "filter_check.json", check)
    io.write_text(output / "ladder.md", "# Acquisition-ladder benchmark\n\nObjects: "
                  + ", ".join(f"{n} ({k})" for n, k in zip(held_out.names, held_out.kinds))
                  + f".\nFactors and levels 0..5: "
                  + "; ".join(f"{f} {acquisition.LEVELS[f]}" for f in factors)
                  + ".\n\n" + summary + "\n")
    print(summary)
    print(f"\nwritten to {output}: ladder.csv, ladder.md, scores.csv, ladder.png")
    return rows
