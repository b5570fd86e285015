"""Ring-check calibration (configs/calibrate_rings.py): the score points a unit of ring
amplitude costs beyond the network, up to a cap (`tiqa.ring_check.fit_penalty`), fitted on the gain-error
ladders of training objects scanned by `tiqa.acquisition` and labelled by the observers
against each object's ideal acquisition, as the training ladders are. Writes the network with
its penalty as an exported model, and the ladders' figures with and without the penalty.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from tiqa import (acquisition, acquisition_ladder, checkpoints, errors, evaluation, io, labels,
                  objects, ring_check, scoring)
from tiqa.phases import settings

FACTOR = "gain_error"


@dataclasses.dataclass(frozen=True)
class CalibrateRingsSettings:
    """configs/calibrate_rings.py, read once."""
    checkpoint: str
    output: str
    grey: str
    phantoms: int
    phantom_seed: int
    output_size: int
    max_views: int
    seed: int
    reference_score: float
    batch_size: int


def read_settings(config) -> CalibrateRingsSettings:
    found = settings.block(CalibrateRingsSettings, config)
    settings.check_sizes(config, "output_size", "max_views", "batch_size")
    if not 1.0 <= found.reference_score <= 5.0:
        raise errors.InputError(f"config.reference_score must be in [1, 5], got "
                                f"{found.reference_score}")
    return found


def run(config) -> dict:
    """Fits the penalty and writes the model; returns the figures it prints."""
    config = read_settings(config)
    loaded = checkpoints.load_model(config.checkpoint)
    found = objects.collect(config.grey, "", config.phantoms, config.phantom_seed,
                            acquisition.object_size(config.output_size), config.seed,
                            scale="native", scored_size=config.output_size)
    if not found.kinds:
        raise errors.InputError("no calibration objects: give config.grey or config.phantoms")
    ladders = acquisition.ladders(found.attenuation, (FACTOR,), jax.random.key(config.seed),
                                  output_size=config.output_size, max_views=config.max_views)
    crops = acquisition_ladder.centre_crops(ladders, loaded.resize, loaded.crop)  # (M, 1, 6, c, c)
    count = crops.shape[0]
    projection = labels.label_images(crops, jnp.full((count,), config.reference_score),
                                     labels.ProjectionConfig())
    ladder_labels = np.asarray(projection.labels)[:, 0]
    flat = crops.reshape((-1,) + crops.shape[-2:])
    network = scoring.make_scorer(loaded, config.batch_size, with_ring_check=False)(flat)
    network = np.asarray(network, np.float64).reshape(count, -1)
    amplitude = np.asarray(ring_check.ring_amplitude(flat), np.float64).reshape(count, -1)
    penalty = ring_check.fit_penalty(network, ladder_labels, amplitude)
    penalised = network - np.asarray(penalty(amplitude))
    result = {"objects": count, **penalty.to_dict(),
              "srocc_network": acquisition_ladder.mean_within_object_srocc(network),
              "srocc_with_rings": acquisition_ladder.mean_within_object_srocc(penalised),
              "rmse_network": float(np.sqrt(np.mean((network - ladder_labels) ** 2))),
              "rmse_with_rings": float(np.sqrt(np.mean((penalised - ladder_labels) ** 2))),
              "ideal_amplitude_max": float(amplitude[:, 0].max())}
    output = pathlib.Path(config.output)
    # The calibrated network keeps its model card, with the calibration added.
    card = dict(checkpoints.read_run_info(checkpoints.model_folder(config.checkpoint))
                .get("card", {}))
    card["ring_check"] = dict(result, factor=FACTOR, levels=list(acquisition.LEVELS[FACTOR]),
                              objects_from=config.grey, phantoms=config.phantoms)
    checkpoints.save_exported(dataclasses.replace(loaded, ring_penalty=penalty), output, card)
    rows = [{"object": source, "level": level, "label": float(ladder_labels[m, level]),
             "network": float(network[m, level]), "ring_amplitude": float(amplitude[m, level]),
             "with_rings": float(penalised[m, level])}
            for m, source in enumerate(found.sources) for level in range(network.shape[1])]
    evaluation.write_table(rows, output / "calibration.csv", output / "calibration.md")
    io.write_json(output / "calibration.json", result)
    logging.info("ring penalty %s from %d objects", penalty, count)
    print(f"ring penalty {penalty.slope:.2f} score points per unit amplitude above "
          f"{penalty.floor:g} up to {penalty.cap:g} ({count} objects); "
          f"within-object SROCC along the gain-error ladders {result['srocc_network']:.3f} "
          f"(network) -> {result['srocc_with_rings']:.3f} (with the ring check); RMSE against "
          f"the labels {result['rmse_network']:.3f} -> {result['rmse_with_rings']:.3f}; written "
          f"to {output}")
    return result
