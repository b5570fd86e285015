"""The demo: two simulated acquisitions of one electrode, scored and compared in a report."""

from __future__ import annotations

import pathlib

import numpy as np

from tiqa import io, phantom
from tiqa.phases import score


def run(config) -> dict:
    """Simulates a good and a poor scan of the same phantom, scores both with the model and
    writes the report; returns the two medians and the report's path."""
    workdir = pathlib.Path(config.workdir)
    volumes = workdir / "volumes"
    volumes.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("good", "poor"):
        settings = config[name]
        print(f"simulating the {name} acquisition: {config.slices} slices of {config.size}x"
              f"{config.size}, {settings.photons:g} photons per detector pixel, detector gain "
              f"errors {settings.gain_error_std:g}")
        reconstruction, _, _ = phantom.phantom_volume(
            config.seed, config.slices, config.size, settings.photons, settings.gain_error_std,
            n_angles=config.angles)
        paths[name] = volumes / f"{name}_acquisition.tif"
        io.write_tiff(paths[name], reconstruction.astype(np.float32))

    scoring_config = config.score
    with scoring_config.unlocked():
        scoring_config.input = ",".join(str(paths[name]) for name in ("good", "poor"))
        scoring_config.output = str(workdir / "scores.csv")
        scoring_config.report = str(workdir / "report")
    result = score.run(scoring_config)
    medians = {name: next(row["median"] for row in result["summary"]
                          if row["volume"] == str(paths[name])) for name in paths}
    verdict = "as expected" if medians["good"] > medians["poor"] else "UNEXPECTED"
    print(f"\nmedian score: good acquisition {medians['good']:.2f}, poor acquisition "
          f"{medians['poor']:.2f} ({verdict}: the better acquisition should score higher)")
    print(f"open {pathlib.Path(result['report']).resolve()}")
    return {"medians": medians, "report": result["report"]}
