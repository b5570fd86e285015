"""Data-generation benchmark: the batched JAX generator against the per-image reference path.

The reference approach (the original TIQA scripts, SPEC.md section 7) works one image at a time
in numpy and scikit-image: for each original, 15 distortions (3 kinds x 5 levels) and 5
observers each. Both paths run here on the same originals in the same process, and the
figure of merit is labelled (distorted) images per second.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from skimage import metrics

from tiqa import distortions, labels, reference_distortions
from tiqa.benchmark import reference_numpy


def _numpy_observers(reference: np.ndarray, distorted: np.ndarray) -> list[float]:
    return [
        metrics.mean_squared_error(reference, distorted),
        metrics.peak_signal_noise_ratio(reference, distorted, data_range=1.0),
        metrics.structural_similarity(reference, distorted, data_range=1.0, gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False),
        reference_numpy.gmsd_numpy(reference, distorted, data_range=1.0),
        reference_numpy.mdsi_numpy(reference, distorted, data_range=1.0, combination="sum"),
    ]


def label_per_image(originals: np.ndarray, kinds, seed: int = 0) -> int:
    """The reference path; returns how many distorted images it labelled."""
    rng = np.random.default_rng(seed)
    count = 0
    for original in originals.astype(np.float64):
        for kind in kinds:
            for level in range(1, distortions.NUM_LEVELS):
                distorted = reference_distortions.distort(kind, original, level, rng)
                _numpy_observers(original, distorted)
                count += 1
    return count


def run(originals: np.ndarray, reference_originals: int, repeats: int, kinds, seed: int = 0) -> dict:
    """Times both paths on `originals` (N, H, W); returns the figures it prints."""
    config = labels.ProjectionConfig(kinds=tuple(kinds))
    project = jax.jit(labels.project, static_argnums=3)
    scores = np.full((len(originals),), 4.0, np.float32)
    key = jax.random.key(seed)

    start = time.perf_counter()
    jax.block_until_ready(project(originals, scores, key, config))
    compile_seconds = time.perf_counter() - start
    timings = []
    for repeat in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(project(originals, scores, jax.random.fold_in(key, repeat), config))
        timings.append(time.perf_counter() - start)
    per_call = min(timings)
    labelled = len(originals) * len(kinds) * (distortions.NUM_LEVELS - 1)
    batched_rate = labelled / per_call

    subset = originals[:reference_originals]
    start = time.perf_counter()
    reference_count = label_per_image(subset, kinds, seed)
    reference_rate = reference_count / (time.perf_counter() - start)

    return {
        "device": str(jax.devices()[0].device_kind),
        "originals": len(originals),
        "image_shape": tuple(originals.shape[1:]),
        "batched_images_per_s": batched_rate,
        "batched_compile_s": compile_seconds,
        "reference_images_per_s": reference_rate,
        "reference_originals": len(subset),
        "ratio": batched_rate / reference_rate,
    }


def format_result(result: dict) -> str:
    height, width = result["image_shape"]
    return "\n".join([
        f"datagen benchmark on {result['device']}, {width}x{height} crops, "
        f"15 distortions x 5 observers per original",
        f"  batched JAX generator : {result['batched_images_per_s']:10.1f} labelled images/s "
        f"({result['originals']} originals per call; compile {result['batched_compile_s']:.1f} s)",
        f"  per-image numpy/skimage: {result['reference_images_per_s']:10.1f} labelled images/s "
        f"({result['reference_originals']} originals)",
        f"  ratio                  : {result['ratio']:10.1f}x",
    ])
