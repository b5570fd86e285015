"""Penalty calibration (configs/calibrate.py): the score points that a unit of what a
no-reference check measures costs beyond the network (`tiqa.penalties.fit_penalty`), for the
ring check (`tiqa.ring_check`, on gain-error ladders), the noise penalty (`tiqa.noise_check`,
on the `low_photons` ladders, which reach past the network's floor), the view penalty
(`tiqa.view_check`, on views ladders) and the centre penalty (`tiqa.centre_check`, on
centre-offset ladders).
Each is fitted on the ladders of training objects scanned by
`tiqa.acquisition` and labelled by the observers against each object's ideal acquisition, as
the training ladders are. The centre penalty can be fitted at several acquisition sizes
(`centre_output_sizes`): its estimate grows more reliable with the square it is measured on,
so a slice is charged by the fit for its measured square's size (`penalties.Penalty.at`).
Writes the network with its penalties as an exported model (a penalty not asked for is kept
as the model has it), and the ladders' figures with and without each penalty.

With `output_line`, the network's own scale is fitted first: a least-squares line from its
score to the labels of the same objects' ladders of the five training factors, labelled as the
fine-tune labels them ('fixed' normalisation), through every acquisition or through the level
medians (`output_line_fit`), folded into the output layer, so the scale is
the physics labels' and not the compromise a fine-tune strikes with the paper's kinds
(docs/acquisition_ladder.md, "The network's line fitted on the ladders: round 88").
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pathlib
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from tiqa import (acquisition, acquisition_ladder, centre_check, checkpoints, errors, evaluation,
                  io, labels, noise_check, objects, penalties, ring_check, scoring, view_check)
from tiqa.models.iqa import with_output_line
from tiqa.phases import settings


@dataclasses.dataclass(frozen=True)
class Check:
    """A penalty to fit: the acquisition factor whose ladders it is fitted on, its measure of
    (whole acquisitions (N, S, S), their scored centre crops (N, c, c)), and its grid."""
    factor: str
    unit: str
    measure: Callable[[np.ndarray, np.ndarray], np.ndarray]
    caps: tuple[float, ...]
    floors: tuple[float, ...]


def _ring_amplitude(whole, crops):
    del whole  # rings are measured on the crops the network scores, about their centre
    return ring_check.ring_amplitude(crops)


def _noise(whole, crops):
    del whole  # noise is measured on the crops the network scores, as the scorers measure it
    return noise_check.correlated_noise(crops)


def _comb(whole, crops):
    del crops  # the comb on the whole slice's centred square, as the slice scorer measures it
    return view_check.penalty_comb(whole)


def _centre_offset(whole, crops):
    del crops  # on the whole slice's centred square, as the slice scorer measures it
    return np.abs(np.asarray(centre_check.penalty_offset(whole)))


# model.json's penalty keys (checkpoints.PENALTY_FIELDS), in the order they are fitted: each is
# fitted on scores that already have the crop penalties fitted before it (the ring check, then
# the noise penalty).
CHECKS = {"ring_check": Check("gain_error", ring_check.UNIT, _ring_amplitude, ring_check.CAPS,
                              ring_check.FLOORS),
          "noise_check": Check("low_photons", noise_check.UNIT, _noise, noise_check.CAPS,
                               noise_check.FLOORS),
          "view_check": Check("views", view_check.UNIT, _comb, view_check.CAPS,
                              view_check.FLOORS),
          "centre_check": Check("centre_offset", centre_check.UNIT, _centre_offset,
                                centre_check.CAPS, centre_check.FLOORS)}


@dataclasses.dataclass(frozen=True)
class CalibrateSettings:
    """configs/calibrate.py, read once."""
    checkpoint: str
    output: str
    checks: tuple[str, ...]
    grey: str
    phantoms: int
    phantom_seed: int
    object_scale: str
    output_size: int
    centre_output_sizes: tuple[int, ...]
    max_views: int
    seed: int
    reference_score: float
    batch_size: int
    output_line: bool
    output_line_fit: str


# The calibration objects' scales by config.object_scale: one of objects.SCALES, or "both", the
# objects drawn at the native scale and again as whole slices shrunk to the reconstruction
# (phantoms once: they have no scale), so a penalty is fitted where crops of large slices and
# whole small slices are both scored (docs/acquisition_ladder.md, "Penalties fitted at both
# scales").
OBJECT_SCALES = {"native": ("native",), "scored": ("scored",), "both": ("native", "scored")}

# How the output line is fitted (config.output_line_fit): through every acquisition's (network,
# label), the least-squares predictor of an acquisition's label, whose slope the network's
# scatter across objects flattens, so the best levels read under their labels and the worst
# above; or through the (factor, level) medians over the objects, so each level's median score
# reads as its median label (docs/acquisition_ladder.md, "The line through the level medians").
OUTPUT_LINE_FITS = ("acquisitions", "level_medians")


def read_settings(config) -> CalibrateSettings:
    found = settings.block(CalibrateSettings, config)
    settings.check_sizes(config, "output_size", "max_views", "batch_size")
    if not 1.0 <= found.reference_score <= 5.0:
        raise errors.InputError(f"config.reference_score must be in [1, 5], got "
                                f"{found.reference_score}")
    unknown = [check for check in found.checks if check not in CHECKS]
    if unknown or not found.checks:
        raise errors.InputError(f"config.checks must name some of {tuple(CHECKS)}, got "
                                f"{found.checks!r}")
    objects.check_scale(found.object_scale, "config.object_scale", tuple(OBJECT_SCALES))
    if found.output_line_fit not in OUTPUT_LINE_FITS:
        raise errors.InputError(f"config.output_line_fit must be one of {OUTPUT_LINE_FITS}, got "
                                f"{found.output_line_fit!r}")
    sizes = found.centre_output_sizes
    if (not sizes or any(isinstance(size, bool) or not isinstance(size, int) for size in sizes)
            or list(sizes) != sorted(set(sizes)) or sizes[0] < centre_check.MIN_SIDE
            or sizes[-1] > centre_check.PENALTY_SIDE):
        raise errors.InputError(
            "config.centre_output_sizes must be whole numbers of px in increasing order, from "
            f"{centre_check.MIN_SIDE} to {centre_check.PENALTY_SIDE} (the largest square the "
            f"centre penalty measures), got {sizes!r}")
    return found


def fit_check(name: str, loaded: checkpoints.LoadedModel, attenuation: np.ndarray,
              config: CalibrateSettings, output_size: int) -> tuple[penalties.Penalty, dict, dict]:
    """The penalty of check `name` fitted on the objects' ladders of its factor, acquisitions of
    `output_size` px: (penalty, figures, per-acquisition arrays (M, 6): label, network,
    measure, penalised)."""
    check = CHECKS[name]
    ladders = acquisition.ladders(attenuation, (check.factor,), jax.random.key(config.seed),
                                  output_size=output_size, max_views=config.max_views)
    crops = acquisition_ladder.centre_crops(ladders, loaded.resize, loaded.crop,  # (M, 1, 6, c, c)
                                            loaded.own_pixels)
    count = crops.shape[0]
    projection = labels.label_images(crops, jnp.full((count,), config.reference_score),
                                     labels.ProjectionConfig())
    ladder_labels = np.asarray(projection.labels)[:, 0]
    flat = crops.reshape((-1,) + crops.shape[-2:])
    # The score the penalty adds to: the network, with the crop penalties other than this one
    # (the ring check when fitting the views); linear (the fit is least squares on the
    # penalty's linear part, before onto_scale).
    network = scoring.make_scorer(loaded, config.batch_size, on_scale=False,
                                  with_ring_check=name != "ring_check",
                                  with_noise_check=name != "noise_check")(flat)
    network = np.asarray(network, np.float64).reshape(count, -1)
    whole = np.asarray(ladders, np.float32).reshape((-1,) + ladders.shape[-2:])
    measure = np.asarray(check.measure(whole, flat), np.float64).reshape(count, -1)
    penalty = penalties.fit_penalty(network, ladder_labels, measure, check.caps, check.floors)
    penalised = network - np.asarray(penalty(measure))
    figures = {"objects": count, **penalty.to_dict(),
               "srocc_network": acquisition_ladder.mean_within_object_srocc(network),
               "srocc_with_penalty": acquisition_ladder.mean_within_object_srocc(penalised),
               "rmse_network": evaluation.rmse(network.ravel(), ladder_labels.ravel()),
               "rmse_with_penalty": evaluation.rmse(penalised.ravel(), ladder_labels.ravel()),
               "ideal_measure_max": float(measure[:, 0].max()),
               "factor": check.factor,
               # JSON has no infinity: the ideal acquisition's unlimited photons are null.
               "levels": [float(level) if math.isfinite(level) else None
                          for level in acquisition.ladder_levels(check.factor)[1]],
               "output_size": output_size}
    return penalty, figures, {"label": ladder_labels, "network": network, "measure": measure,
                              "penalised": penalised}


def line_through(network: np.ndarray, ladder_labels: np.ndarray, fit: str) -> tuple[float, float]:
    """(slope, intercept) of label ~ slope * network + intercept for ladders' scores and labels
    (M objects, F factors, levels), least squares through every acquisition or through the
    (factor, level) medians over the objects (OUTPUT_LINE_FITS)."""
    if fit == "level_medians":
        network, ladder_labels = np.median(network, axis=0), np.median(ladder_labels, axis=0)
    slope, intercept = np.polyfit(np.ravel(network), np.ravel(ladder_labels), 1)
    return float(slope), float(intercept)


def fit_output_line(loaded: checkpoints.LoadedModel, attenuation: np.ndarray,
                    config: CalibrateSettings) -> tuple[tuple[float, float], dict, dict]:
    """The line label ~ slope * network + intercept on the objects' ladders of the training
    factors (centre crops at the model's view, labels as the fine-tune's 'fixed' ones), fitted
    as config.output_line_fit says (`line_through`), with its figures and per-acquisition
    arrays (M, F, 6): label, network, lined."""
    ladders = acquisition.ladders(attenuation, acquisition.LADDER_FACTORS,
                                  jax.random.key(config.seed), output_size=config.output_size,
                                  max_views=config.max_views)
    crops = acquisition_ladder.centre_crops(ladders, loaded.resize, loaded.crop,  # (M, F, 6, c, c)
                                            loaded.own_pixels)
    count = crops.shape[0]
    projection = labels.label_images(crops, jnp.full((count,), config.reference_score),
                                     labels.ProjectionConfig(normalisation="fixed"))
    ladder_labels = np.asarray(projection.labels, np.float64)
    network = scoring.make_scorer(loaded, config.batch_size, on_scale=False,
                                  with_ring_check=False, with_noise_check=False)(
        crops.reshape((-1,) + crops.shape[-2:]))
    network = np.asarray(network, np.float64).reshape(ladder_labels.shape)
    slope, intercept = line_through(network, ladder_labels, config.output_line_fit)
    if not slope > 0:
        raise errors.InputError(f"config.output_line: the network's scores do not rise with the "
                                f"ladders' labels (slope {slope:.3g}); its line is not fitted")
    lined = slope * network + intercept
    figures = {"objects": count, "fit": config.output_line_fit, "slope": slope,
               "intercept": intercept, "factors": list(acquisition.LADDER_FACTORS),
               "output_size": config.output_size,
               "rmse_network": evaluation.rmse(network.ravel(), ladder_labels.ravel()),
               "rmse_lined": evaluation.rmse(lined.ravel(), ladder_labels.ravel()),
               "ideal_median_network": float(np.median(network[:, :, 0])),
               "ideal_median_lined": float(np.median(lined[:, :, 0])),
               "level1_median_network": float(np.median(network[:, :, 1])),
               "level1_median_lined": float(np.median(lined[:, :, 1])),
               "level1_median_label": float(np.median(ladder_labels[:, :, 1]))}
    return (slope, intercept), figures, {"label": ladder_labels, "network": network,
                                         "lined": lined}


def calibration_objects(config: CalibrateSettings, size: int) -> objects.Collection:
    """The calibration objects for acquisitions of `size` px, at each of the config's scales
    (OBJECT_SCALES) in turn; the phantoms with the first scale only, and the sources of a
    later scale marked with it."""
    parts = []
    for index, scale in enumerate(OBJECT_SCALES[config.object_scale]):
        found = objects.collect(config.grey, "", config.phantoms if index == 0 else 0,
                                config.phantom_seed, acquisition.object_size(size), config.seed,
                                scale=scale, scored_size=size)
        marked = found.sources if index == 0 else tuple(f"{source} ({scale})"
                                                        for source in found.sources)
        parts.append(found._replace(sources=marked))
    if not any(part.kinds for part in parts):
        raise errors.InputError("no calibration objects: give config.grey or config.phantoms")
    return objects.Collection(np.concatenate([part.attenuation for part in parts]),
                              sum((part.kinds for part in parts), ()),
                              sum((part.sources for part in parts), ()))


def output_sizes(name: str, config: CalibrateSettings) -> tuple[int, ...]:
    """The acquisition sizes check `name` is fitted at: the first fit is the penalty's own, the
    others its `larger` ones."""
    return config.centre_output_sizes if name == "centre_check" else (config.output_size,)


def run(config) -> dict:
    """Fits the penalties asked for and writes the model; returns their figures by check (for a
    penalty fitted at several sizes, the first size's, with the others' as `larger`)."""
    config = read_settings(config)
    loaded = checkpoints.load_model(config.checkpoint)
    found_by_size = {}

    def objects_at(size: int) -> objects.Collection:
        # The object holds an acquisition of its size (acquisition.object_size), so each size
        # has its own objects, from the same sources.
        if size not in found_by_size:
            found_by_size[size] = calibration_objects(config, size)
        return found_by_size[size]

    output = pathlib.Path(config.output)
    # The calibrated network keeps its model card, with the calibration added.
    card = dict(checkpoints.read_run_info(checkpoints.model_folder(config.checkpoint))
                .get("card", {}))
    results, rows, line_rows = {}, [], []
    if config.output_line:  # first: the penalties are fitted on the lined network
        found = objects_at(config.output_size)
        line, figures, arrays = fit_output_line(loaded, found.attenuation, config)
        loaded = dataclasses.replace(loaded, params=with_output_line(loaded.params, *line))
        line_rows = [{"object": source, "factor": factor, "level": level,
                      **{column: float(values[m, f, level]) for column, values in arrays.items()}}
                     for m, source in enumerate(found.sources)
                     for f, factor in enumerate(acquisition.LADDER_FACTORS)
                     for level in range(acquisition.NUM_LEVELS)]
        print(f"output_line: label = {line[0]:.4f} x network + {line[1]:.4f} "
              f"({figures['objects']} objects, {len(acquisition.LADDER_FACTORS)} factors, fitted "
              f"through the {figures['fit'].replace('_', ' ')}); RMSE against the labels "
              f"{figures['rmse_network']:.3f} -> {figures['rmse_lined']:.3f}; ideal acquisitions' "
              f"median {figures['ideal_median_network']:.2f} -> {figures['ideal_median_lined']:.2f}, "
              f"level 1 {figures['level1_median_network']:.2f} -> "
              f"{figures['level1_median_lined']:.2f} "
              f"(labels {figures['level1_median_label']:.2f})")
        results["output_line"] = figures
        card["output_line"] = dict(figures, objects_from=config.grey, phantoms=config.phantoms,
                                   object_scale=config.object_scale)
    for name in (name for name in CHECKS if name in config.checks):
        sizes = output_sizes(name, config)
        fits = []
        for size in sizes:
            found = objects_at(size)
            penalty, figures, arrays = fit_check(name, loaded, found.attenuation, config, size)
            fits.append((size, penalty, figures))
            rows += [{"check": name, "output_size": size, "object": source, "level": level,
                      **{column: float(values[m, level]) for column, values in arrays.items()}}
                     for m, source in enumerate(found.sources)
                     for level in range(acquisition.NUM_LEVELS)]
            logging.info("%s penalty %s from %d objects of %d px", name, penalty,
                         figures["objects"], size)
            at_size = f" ({size} px acquisitions)" if len(sizes) > 1 else ""
            print(f"{name}{at_size}: {penalty.describe(CHECKS[name].unit)} "
                  f"({figures['objects']} objects); within-object SROCC along the "
                  f"{CHECKS[name].factor} ladders {figures['srocc_network']:.3f} -> "
                  f"{figures['srocc_with_penalty']:.3f} with the penalty; RMSE against the "
                  f"labels {figures['rmse_network']:.3f} -> {figures['rmse_with_penalty']:.3f}")
        (_, penalty, figures), larger = fits[0], fits[1:]
        penalty = dataclasses.replace(penalty, larger=tuple((size, fit) for size, fit, _ in larger))
        loaded = dataclasses.replace(loaded, **{checkpoints.PENALTY_FIELDS[name]: penalty})
        if larger:
            figures = dict(figures, larger=[dict(more, side=size) for size, _, more in larger])
        results[name] = figures
        card[name] = dict(figures, objects_from=config.grey, phantoms=config.phantoms,
                          object_scale=config.object_scale)
    checkpoints.save_exported(loaded, output, card)
    evaluation.write_table(rows, output / "calibration.csv", output / "calibration.md")
    if line_rows:
        evaluation.write_table(line_rows, output / "output_line.csv", output / "output_line.md")
    io.write_json(output / "calibration.json", results)
    print(f"written to {output}")
    return results
