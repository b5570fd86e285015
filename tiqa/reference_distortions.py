"""The distortions as the original scripts made them: one image at a time, numpy and scikit-image.

They are the peer of the batched JAX distortions in the data-generation benchmark, and a way to
distort held-out evaluation images independently of the code under test. Same models and
level tables as `tiqa.distortions` (every ring kept); the random numbers differ.
"""

from __future__ import annotations

import numpy as np
from skimage import draw, filters, util

from tiqa import distortions

KINDS = ("blur", "noise", "ring")


def ring_artifact(image: np.ndarray, rng: np.random.Generator, coefficient: float) -> np.ndarray:
    """The image-domain ring model, one annulus at a time as the reference code draws it."""
    height, width = image.shape
    result = image.copy()
    radius = distortions.RING_FIRST_RADIUS
    low, high = distortions.RING_STEP_RANGE
    for index in range(distortions.RING_MAX_COUNT):
        outer = draw.disk((height // 2, width // 2), radius + distortions.RING_WIDTH, shape=image.shape)
        annulus = np.zeros(image.shape, bool)
        annulus[outer] = True
        annulus[draw.disk((height // 2, width // 2), radius, shape=image.shape)] = False
        result[annulus] += (1 if index % 2 else -1) * coefficient * image[annulus]
        radius += int(rng.integers(low, high + 1))
        if radius > distortions.RING_MAX_RADIUS:
            break
    return np.clip(result, 0, 1)


def distort(kind: str, image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """`kind` at `level` (1..5) with scikit-image (blur, noise) or the numpy ring loop."""
    if kind not in KINDS:
        raise ValueError(f"no per-image reference for kind {kind!r}; available: {KINDS}")
    parameter = distortions.LEVEL_TABLES[kind][level]
    if kind == "blur":
        return filters.gaussian(image, sigma=parameter)
    if kind == "noise":
        return util.random_noise(image, mode="gaussian", var=parameter, rng=rng)
    return ring_artifact(image, rng, parameter)
