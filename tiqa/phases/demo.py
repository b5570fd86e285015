"""The demo: two simulated acquisitions of one electrode, scored and compared in a report."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from tiqa import io, phantom
from tiqa.phases import score, settings


@dataclasses.dataclass(frozen=True)
class Acquisition:
    photons: float
    gain_error_std: float


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """configs/demo.py, read once."""
    workdir: str
    seed: int
    slices: int
    size: int
    angles: int
    good: Acquisition
    poor: Acquisition
    score: score.ScoreSettings  # input, output and report are set by the demo


def read_settings(config) -> DemoSettings:
    return settings.block(
        DemoSettings, config,
        good=settings.block(Acquisition, config.good, "config.good"),
        poor=settings.block(Acquisition, config.poor, "config.poor"),
        score=score.read_settings(config.score))


def run(config) -> dict:
    """Simulates a good and a poor scan of the same phantom, scores both with the model and
    writes the report; returns the two medians and the report's path."""
    demo = read_settings(config)
    workdir = pathlib.Path(demo.workdir)
    volumes = workdir / "volumes"
    volumes.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("good", "poor"):
        acquisition = getattr(demo, name)
        print(f"simulating the {name} acquisition: {demo.slices} slices of {demo.size}x"
              f"{demo.size}, {acquisition.photons:g} photons per detector pixel, detector gain "
              f"errors {acquisition.gain_error_std:g}")
        reconstruction, _ = phantom.phantom_volume(
            demo.seed, demo.slices, demo.size, acquisition.photons, acquisition.gain_error_std,
            n_angles=demo.angles)
        paths[name] = volumes / f"{name}_acquisition.tif"
        io.write_tiff(paths[name], reconstruction.astype(np.float32))

    result = score.score_phase(dataclasses.replace(
        demo.score, input=",".join(str(paths[name]) for name in ("good", "poor")),
        output=str(workdir / "scores.csv"), report=str(workdir / "report")))
    medians = {name: next(row["median"] for row in result["summary"]
                          if row["volume"] == str(paths[name])) for name in paths}
    verdict = "as expected" if medians["good"] > medians["poor"] else "UNEXPECTED"
    print(f"\nmedian score: good acquisition {medians['good']:.2f}, poor acquisition "
          f"{medians['poor']:.2f} ({verdict}: the better acquisition should score higher)")
    print(f"open {pathlib.Path(result['report']).resolve()}")
    return {"medians": medians, "report": result["report"]}
