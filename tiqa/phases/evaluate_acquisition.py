"""The acquisition-ladder benchmark (configs/evaluate_acquisition.py): does the score order
simulated scans of held-out objects as the physics does? The objects, statistics, tables and
figure are `tiqa.acquisition_ladder`'s; with `filter_check`, the filter selection runs on the
objects' noisy acquisitions and is checked against the SSIM each candidate gains.
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

from tiqa import (acquisition, acquisition_ladder, centre_check, checkpoints, comparison, errors,
                  evaluation, filters, io, objects, observers, penalties, scoring, view_check)
from tiqa.baselines import brisque, niqe
from tiqa.phases import compare, select_filter, settings
from tiqa.phases.evaluate_segmentation import positive_mask

NETWORK_ONLY = "TIQA network alone (no penalties)"


@dataclasses.dataclass(frozen=True)
class EvaluateAcquisitionSettings:
    """configs/evaluate_acquisition.py, read once."""
    checkpoint: str
    output: str
    grey: str
    label_maps: str
    phantoms: int
    phantom_seed: int
    textures: int
    object_scale: str
    factors: tuple[str, ...]
    output_size: int
    max_views: int
    resize: int
    own_pixels: bool | None  # None: as the model was trained
    crop: int
    seed: int
    batch_size: int
    bootstrap: int
    brisque: bool
    niqe_pristine: str
    segmenters: str
    segmentation_threshold: float
    filter_check: bool
    filter_photons: float
    brisque_training: compare.BrisqueTraining
    filter_selection: select_filter.SelectFilterSettings | None  # None without filter_check


def read_settings(config) -> EvaluateAcquisitionSettings:
    """configs/evaluate_acquisition.py as frozen settings; a bad key or value is refused here."""
    selection = None
    if config.filter_check:
        selection = select_filter.read_settings(
            _selection_config(config, pathlib.Path(config.output) / "filter_check"))
    objects.check_scale(config.object_scale, "config.object_scale")
    errors.check_non_negative(config.textures, "config.textures", "none")
    return settings.block(EvaluateAcquisitionSettings, config,
                          brisque_training=compare.brisque_training(config),
                          filter_selection=selection)


def at_own_pixels(config: EvaluateAcquisitionSettings,
                  loaded: checkpoints.LoadedModel) -> bool:
    """Whether the acquisitions are cropped at their own pixels: `config.own_pixels`, or as the
    TIQA model was trained when it is None."""
    return checkpoints.scores_at_own_pixels(loaded.own_pixels, config.own_pixels)


def _contenders(config: EvaluateAcquisitionSettings, loaded: checkpoints.LoadedModel,
                output: pathlib.Path, own_pixels: bool) -> list[comparison.Contender]:
    """TIQA on the centre crops (with the ring and noise checks; the view and centre penalties
    are the caller's, on whole acquisitions), the network alone where the model has penalties,
    and the peers."""
    found = [comparison.Contender("TIQA", scoring.make_scorer(loaded, config.batch_size,
                                                              on_scale=False))]
    if any(penalty is not None for penalty in (loaded.ring_penalty, loaded.view_penalty,
                                                loaded.centre_penalty, loaded.noise_penalty)):
        found.append(comparison.Contender(NETWORK_ONLY, scoring.make_scorer(  # shown apart
            loaded, config.batch_size, with_ring_check=False, on_scale=False,
            with_noise_check=False)))
    if config.brisque:
        found.append(comparison.Contender("BRISQUE (LIVE)", brisque.LiveBrisque(),
                                          higher_is_better=False))
        found.append(comparison.Contender("BRISQUE (retrained)",
                                          compare.retrained_brisque(config.brisque_training,
                                                                    output)))
    if config.niqe_pristine:
        pristine = pristine_niqe(config, output, own_pixels)  # fitted on crops as scored
        found.append(comparison.Contender("NIQE (fitted here)", pristine, higher_is_better=False))
    return found


def pristine_niqe(config: EvaluateAcquisitionSettings, output: pathlib.Path,
                  own_pixels: bool = False) -> niqe.Niqe:
    """NIQE's pristine model fitted on the ideal acquisitions of a training ladder bank (the
    `acquisition.cache` .npz of the training phases), centre crops as scored."""
    with np.load(config.niqe_pristine) as stored:
        ideal = stored["ladders"][:, 0, 0]
    model = niqe.Niqe.fit(acquisition_ladder.centre_crops(ideal, config.resize, config.crop,
                                                          own_pixels))
    model.save(output / "niqe")
    return model


def segmentation_agreement(segmenters: list, images: np.ndarray, threshold: float,
                           batch_size: int) -> np.ndarray:
    """(M, F, 6) F1 of each whole acquisition's particle mask against its ideal acquisition's,
    the mean over `segmenters` ((D-LinkNet, positive class) pairs)."""
    flat = images.reshape((-1,) + images.shape[-2:])
    agreement = []
    for segmenter, positive in segmenters:
        masks = np.concatenate([
            positive_mask(np.asarray(segmenter.probabilities(flat[start:start + batch_size])),
                          segmenter.config.num_classes, positive, threshold)
            for start in range(0, len(flat), batch_size)])
        agreement.append(acquisition_ladder.agreement_with_ideal(
            masks.reshape(images.shape[:3] + masks.shape[-2:])))
    return np.mean(agreement, axis=0)


def filter_check(config: EvaluateAcquisitionSettings, images: np.ndarray, output: pathlib.Path) -> dict:
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
    selection = select_filter.select(config.filter_selection)
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
    """Runs the benchmark (configs/evaluate_acquisition.py); writes ladder.csv/.md, scores.csv/.md and ladder.png under output."""
    config = read_settings(config)
    segmenters = [(checkpoints.load_segmenter(path), checkpoints.positive_class(path))
                  for path in io.split_paths(config.segmenters)]  # before anything is written
    output = pathlib.Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    factors = tuple(config.factors)
    held_out = acquisition_ladder.held_out_objects(config.grey, config.label_maps, config.phantoms,
                                config.phantom_seed, config.output_size, config.seed,
                                config.object_scale, config.textures)
    started = time.perf_counter()
    images = acquisition.ladders(held_out.attenuation, factors, jax.random.key(config.seed),
                                 output_size=config.output_size, max_views=config.max_views)
    logging.info("%d acquisitions of %d objects simulated in %.0f s",
                 images.shape[0] * (1 + 5 * len(factors)), images.shape[0],
                 time.perf_counter() - started)
    loaded = checkpoints.load_model(config.checkpoint)
    own_pixels = at_own_pixels(config, loaded)
    crops = acquisition_ladder.centre_crops(images, config.resize, config.crop, own_pixels)
    scored = {}
    contenders = _contenders(config, loaded, output, own_pixels)
    for contender in contenders:
        raw = np.asarray(contender.score(crops.reshape((-1,) + crops.shape[-2:])), np.float64)
        scored[contender.name] = (raw.reshape(crops.shape[:3]), contender.higher_is_better)
    # The comb of sparse views on each whole acquisition, as launch.score measures a slice
    # (its centred square of up to view_check.PENALTY_SIDE px); TIQA loses the view penalty.
    whole = images.reshape((-1,) + images.shape[-2:])
    comb = np.asarray(view_check.penalty_comb(whole)).reshape(crops.shape[:3])
    # The rotation-centre offset of each whole acquisition, as launch.score measures it; TIQA
    # loses the centre penalty.
    centre = np.asarray(centre_check.penalty_offset(whole)).reshape(crops.shape[:3])
    tiqa = scored["TIQA"][0]
    if loaded.view_penalty is not None:
        tiqa = tiqa - np.asarray(loaded.view_penalty(comb))
    if loaded.centre_penalty is not None:
        fit = loaded.centre_penalty.at(centre_check.measured_side(*whole.shape[-2:]))
        tiqa = tiqa - np.asarray(fit(np.abs(centre)))
    scored["TIQA"] = (penalties.onto_scale(tiqa, xp=np), True)  # as launch.score gives it
    # The objects unscanned: how much of a low score is the object, how much the scan (no
    # views, so no view penalty).
    object_scores = np.asarray(contenders[0].score(acquisition_ladder.unscanned_crops(
        held_out.attenuation, config.output_size, config.resize, config.crop, own_pixels)),
        np.float64)
    scored[acquisition_ladder.ORACLE] = (acquisition_ladder.oracle_ssim(crops), True)
    if segmenters:
        scored[acquisition_ladder.SEGMENTATION] = (segmentation_agreement(
            segmenters, images, config.segmentation_threshold, config.batch_size), True)
    rows = []
    for name, (raw, higher_is_better) in scored.items():
        rows += acquisition_ladder.summarise(raw if higher_is_better else -raw, held_out.kinds, factors, name,
                          config.bootstrap, config.seed)
    best = acquisition_ladder.best_acquisition_scores(scored["TIQA"][0], held_out.kinds,
                                                      object_scores)
    evaluation.write_table(rows, output / "ladder.csv", output / "ladder_rows.md")
    per_image = [{"object": held_out.names[m], "object_kind": held_out.kinds[m],
                  "factor": factor, "level": level,
                  "setting": acquisition.ladder_levels(factor)[1][level],
                  **{name: float(raw[m, f, level]) for name, (raw, _) in scored.items()},
                  "view_comb": round(float(comb[m, f, level]), 2),
                  "centre_offset": round(float(centre[m, f, level]), 2)}
                 for m in range(len(held_out.names)) for f, factor in enumerate(factors)
                 for level in acquisition_ladder.LEVELS]
    evaluation.write_table(per_image, output / "scores.csv", output / "scores.md")
    summary = acquisition_ladder.markdown(rows, best, factors)
    acquisition_ladder.plot(rows, factors, output / "ladder.png")
    if segmenters:
        summary += "\n\n" + acquisition_ladder.segmentation_markdown(
            scored[acquisition_ladder.SEGMENTATION][0], held_out.kinds, factors, len(segmenters))
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
                  + "; ".join(f"{f} {acquisition.ladder_levels(f)[1]}" for f in factors)
                  + ".\n\n" + summary + "\n")
    print(summary)
    print(f"\nwritten to {output}: ladder.csv, ladder.md, scores.csv, ladder.png")
    return rows
