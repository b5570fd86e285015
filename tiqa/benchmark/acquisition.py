"""Acquisition benchmark: batched JAX scans against scikit-image radon + iradon per image.

Both paths simulate the same physics (`tiqa.acquisition`, `tiqa.reference_acquisition`) on
the same phantom objects in the same process; the figure of merit is reconstructed
acquisitions per second. The batched path runs twice: the ladders of each object (its line
integrals are computed once and acquired 1 + 5 F times) and one acquisition per object
(a projection for every reconstruction, as the per-image peer does).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from tiqa import acquisition, objects, reference_acquisition
from tiqa.benchmark import timing


def _objects(count: int, output_size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    size = acquisition.object_size(output_size)
    return np.stack([objects.from_phantom(seed + i, size, rng) for i in range(count)])


@dataclasses.dataclass(frozen=True)
class AcquisitionBenchmark:
    """configs/benchmark.py's `acquisition` block."""
    objects: int
    factors: tuple[str, ...]
    output_size: int
    max_views: int
    repeats: int
    reference_acquisitions: int


def run(settings: AcquisitionBenchmark, seed: int) -> dict:
    factors = tuple(settings.factors)
    attenuation = _objects(settings.objects, settings.output_size, seed)
    ladder = acquisition.ladder_settings(factors, settings.max_views)
    per_object = ladder.photons.shape[0]
    count = attenuation.shape[0]
    key = jax.random.key(seed)

    def batched(settings_per_object):
        width = settings_per_object.photons.shape[0]
        batch = jax.tree.map(lambda x: np.broadcast_to(x, (count, width)), settings_per_object)
        keys = jax.random.split(key, count * width).reshape(count, width)
        return lambda: jax.block_until_ready(acquisition.simulate(
            attenuation, batch, keys, output_size=settings.output_size,
            max_views=settings.max_views))

    # best_seconds warms up (compiles) first.
    ladder_rate = count * per_object / timing.best_seconds(batched(ladder), settings.repeats)
    single = batched(jax.tree.map(lambda x: x[-1:], ladder))  # the worst level of the last factor
    single_rate = count / timing.best_seconds(single, settings.repeats)

    rows = reference_acquisition.ladder_settings(factors[-1], settings.max_views)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for index in range(settings.reference_acquisitions):
        reference_acquisition.simulate(attenuation[index % count].astype(np.float64),
                                       rows[-1], rng, settings.output_size, settings.max_views)
    reference_rate = settings.reference_acquisitions / (time.perf_counter() - start)
    return {"device": str(jax.devices()[0].device_kind), "objects": count,
            "object_size": attenuation.shape[-1], "output_size": settings.output_size,
            "max_views": settings.max_views, "per_object": per_object,
            "ladder_rate": ladder_rate, "single_rate": single_rate,
            "reference_rate": reference_rate,
            "reference_acquisitions": settings.reference_acquisitions,
            "ratio": ladder_rate / reference_rate, "single_ratio": single_rate / reference_rate}


def format_result(result: dict) -> str:
    return "\n".join([
        f"acquisition benchmark on {result['device']}: {result['object_size']}^2 objects, "
        f"{result['max_views']}-angle grid, {result['output_size']}^2 reconstructions",
        f"  batched JAX, ladders        : {result['ladder_rate']:8.2f} acquisitions/s "
        f"({result['objects']} objects x {result['per_object']} per call)",
        f"  batched JAX, one per object : {result['single_rate']:8.2f} acquisitions/s",
        f"  skimage radon+iradon/image  : {result['reference_rate']:8.2f} acquisitions/s "
        f"({result['reference_acquisitions']} acquisitions)",
        f"  ratio (ladders / one each)  : {result['ratio']:8.1f}x / {result['single_ratio']:.1f}x",
    ])
