"""The demo: everything the project can do so far, end to end on its own phantoms."""

from __future__ import annotations

import json
import pathlib

import numpy as np

from tiqa import generate, io, labels, phantom


def run_demo(config) -> dict:
    """Makes a phantom volume, runs the data phase on it and returns where everything went."""
    workdir = pathlib.Path(config.workdir)
    volume_path = workdir / "phantoms" / "electrode_scan.tif"
    volume_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"[1/2] simulating a scan of a synthetic electrode: {config.phantom.slices} slices of "
          f"{config.phantom.size}x{config.phantom.size}, {config.phantom.photons:g} photons, "
          f"detector gain errors {config.phantom.gain_error_std:g}")
    reconstruction, label_map, _ = phantom.phantom_volume(
        config.seed, config.phantom.slices, config.phantom.size, config.phantom.photons,
        config.phantom.gain_error_std, n_angles=config.phantom.angles)
    io.write_tiff(volume_path, reconstruction.astype(np.float32))
    io.write_tiff(volume_path.with_name("electrode_labels.tif"), label_map)

    generate_config = config.generate
    with generate_config.unlocked():
        generate_config.input = str(volume_path)
        generate_config.output = str(workdir / "dataset")
        generate_config.seed = config.seed
        generate_config.overwrite = True  # the demo owns its work directory
    print("[2/2] data phase: distorting and labelling crops "
          f"({', '.join(generate_config.projection.kinds)}; levels 1-5)")
    output = generate.generate_dataset(generate_config)
    summary = json.loads((output / generate.SUMMARY).read_text())
    table = np.zeros((1, len(summary["mean_label"]), 6), np.float32)
    for index, values in enumerate(summary["mean_label"].values()):
        table[0, index] = [generate_config.default_reference_score] + values
    print(f"\nmean generated label per kind and level (L0 = reference, prior score "
          f"{generate_config.default_reference_score:g}):")
    print(labels.summarise(table, summary["mean_label"].keys()))
    print(f"\nphantom volume : {volume_path}")
    print(f"data set       : {output} ({summary['images']} images in {summary['groups']} groups; "
          f"manifest.csv lists kind, level, label and the five observers' scores)")
    return {"volume": volume_path, "dataset": output, "summary": summary}
