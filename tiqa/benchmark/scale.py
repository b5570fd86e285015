"""Memory against volume size: synthetic uint16 TIFF volumes of a few sizes, each scored by
`launch.score` in a child process; slices/s and the child's peak resident memory per size.

Scoring streams a volume a batch at a time (tiqa.volumes), so the peak should stay flat as
the volume grows. Each child is run under a small wrapper process that reports its
children's peak RSS (`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`), so every size is
measured on its own. The volumes are written slice by slice (one uncompressed, contiguous
series, as scanners write them) into a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import tifffile

from tiqa import errors

# Runs the scorer as its child and prints its peak RSS in KiB (Linux's ru_maxrss unit).
_WRAPPER = ("import json, resource, subprocess, sys, time; start = time.perf_counter(); "
            "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
            "stderr=subprocess.PIPE, text=True); "
            "print(json.dumps({'rc': done.returncode, 'seconds': time.perf_counter() - start, "
            "'peak_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
            "'stderr': done.stderr[-2000:]}))")
_REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


def _slices(depth: int, size: int, seed: int):
    """Pages of a smooth gradient with noise, one at a time (never the whole volume)."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.linspace(0, 20000, size), np.linspace(0, 20000, size))
    for index in range(depth):
        noise = rng.normal(0.0, 3000.0, (size, size))
        yield np.clip(ramp + 10000 + 50 * index + noise, 0, 65535).astype(np.uint16)


def write_volume(path: pathlib.Path, depth: int, size: int, seed: int = 0) -> None:
    """A (depth, size, size) uint16 TIFF written page by page, contiguous and uncompressed."""
    tifffile.imwrite(path, _slices(depth, size, seed), shape=(depth, size, size),
                     dtype=np.uint16, photometric="minisblack", bigtiff=True)


def depth_for(gigabytes: float, size: int) -> int:
    return max(1, round(gigabytes * 2**30 / (size * size * 2)))


@dataclasses.dataclass(frozen=True)
class ScaleBenchmark:
    """configs/benchmark.py's `scale` block."""
    sizes_gb: tuple[float, ...]
    slice_size: int
    batch_size: int
    crops: str
    checkpoint: str
    folder: str


def _score_in_child(volume: pathlib.Path, output: pathlib.Path, cfg: ScaleBenchmark) -> dict:
    command = [sys.executable, "-m", "launch.score", f"--config.input={volume}",
               f"--config.output={output}", f"--config.batch_size={cfg.batch_size}",
               f"--config.crops={cfg.crops}", f"--config.checkpoint={cfg.checkpoint}"]
    done = subprocess.run([sys.executable, "-c", _WRAPPER] + command, cwd=_REPOSITORY,
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"scoring {volume} failed ({result['rc']}): {result['stderr']}")
    return result


def run(cfg: ScaleBenchmark, seed: int) -> dict:
    sizes = tuple(float(s) for s in cfg.sizes_gb)
    if not sizes or min(sizes) <= 0:
        raise errors.InputError(f"config.scale.sizes_gb must be positive sizes, got {cfg.sizes_gb}")
    for key in ("slice_size", "batch_size"):
        errors.check_positive(getattr(cfg, key), f"config.scale.{key}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="tiqa-scale-", dir=cfg.folder or None) as folder:
        folder = pathlib.Path(folder)
        for gigabytes in sizes:
            depth = depth_for(gigabytes, cfg.slice_size)
            volume = folder / f"volume_{depth}x{cfg.slice_size}x{cfg.slice_size}.tif"
            start = time.perf_counter()
            write_volume(volume, depth, cfg.slice_size, seed)
            write_seconds = time.perf_counter() - start
            output = folder / f"scores_{depth}.csv"
            child = _score_in_child(volume, output, cfg)
            scored = len(output.read_text().splitlines()) - 1
            if scored != depth:
                raise RuntimeError(f"{output}: {scored} slices scored, expected {depth}")
            rows.append({"gigabytes": volume.stat().st_size / 2**30, "slices": depth,
                         "seconds": child["seconds"], "slices_per_s": depth / child["seconds"],
                         "peak_rss_gib": child["peak_kib"] / 2**20,
                         "write_seconds": write_seconds})
            volume.unlink()  # the next, larger one needs the room
    return {"rows": rows, "slice_size": cfg.slice_size, "batch_size": cfg.batch_size,
            "crops": cfg.crops}


def format_result(result: dict) -> str:
    lines = [f"scale benchmark: uint16 TIFF volumes of {result['slice_size']}x"
             f"{result['slice_size']} slices, scored by launch.score in a child process "
             f"(batch {result['batch_size']}, {result['crops']} crops; seconds include start-up "
             "and compilation)",
             f"  {'volume GB':>9} {'slices':>7} {'seconds':>8} {'slices/s':>9} {'peak RSS GiB':>13}"]
    for row in result["rows"]:
        lines.append(f"  {row['gigabytes']:9.2f} {row['slices']:7d} {row['seconds']:8.1f} "
                     f"{row['slices_per_s']:9.2f} {row['peak_rss_gib']:13.2f}")
    return "\n".join(lines)
