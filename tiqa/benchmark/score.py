"""Scoring throughput: 224x224 crops through the network, and whole volumes through the
scoring pipeline (area resize, grid crops, network) as `launch.score` runs it."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from tiqa import checkpoints, scoring
from tiqa.models.forward import eval_forward
from tiqa.benchmark import timing


@dataclasses.dataclass(frozen=True)
class ScoreBenchmark:
    """configs/benchmark.py's `score` block."""
    checkpoint: str
    crop_batch: int
    volume_slices: int
    volume_size: int
    batch_size: int
    repeats: int


def run(cfg: ScoreBenchmark, seed: int) -> dict:
    loaded = checkpoints.load_model(cfg.checkpoint)
    crops = jax.random.uniform(jax.random.key(0), (cfg.crop_batch, loaded.crop, loaded.crop))
    crop_seconds = timing.best_seconds(
        lambda: eval_forward(loaded.graphdef, loaded.params, loaded.batch_stats, crops), cfg.repeats)

    # Smooth random slices: the cost does not depend on the content.
    rng = np.random.default_rng(seed)
    base = rng.random((cfg.batch_size, cfg.volume_size, cfg.volume_size)).astype(np.float32)
    score = scoring.make_slice_scorer(loaded, "grid")
    start = time.perf_counter()
    _, _, crops_per_slice = score(base)
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    done = 0
    while done < cfg.volume_slices:
        score(base)  # the slices of a real volume arrive from the host the same way
        done += cfg.batch_size
    volume_seconds = (time.perf_counter() - start) * cfg.volume_slices / done
    return {
        "device": jax.devices()[0].device_kind,
        "crop_images_per_s": cfg.crop_batch / crop_seconds,
        "crop_batch": cfg.crop_batch,
        "volume_seconds": volume_seconds,
        "volume_slices_per_s": cfg.volume_slices / volume_seconds,
        "crops_per_slice": crops_per_slice,
        "compile_s": compile_seconds,
        "backbone": loaded.config.backbone,
    }


def format_result(result: dict, cfg: ScoreBenchmark) -> str:
    return "\n".join([
        f"score benchmark on {result['device']} ({result['backbone']} default model)",
        f"  224x224 crops through the network : {result['crop_images_per_s']:9.1f} crops/s "
        f"(batch {result['crop_batch']})",
        f"  {cfg.volume_slices} slices of {cfg.volume_size}x{cfg.volume_size} "
        f"(resize, {result['crops_per_slice']} grid crops each): {result['volume_seconds']:.2f} s, "
        f"{result['volume_slices_per_s']:.1f} slices/s (compile {result['compile_s']:.1f} s, not counted)",
    ])
