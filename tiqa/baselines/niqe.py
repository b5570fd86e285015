"""An opinion-unaware peer in the manner of NIQE (Mittal, Soundararajan and Bovik 2013).

NIQE needs no human scores: a multivariate Gaussian (MVG) is fitted to natural-scene
statistics of patches of pristine images, and an image's quality is the distance between
that model and the MVG of its own patches:

    D = sqrt((nu_p - nu_t)^T ((Sigma_p + Sigma_t) / 2)^+ (nu_p - nu_t))     (lower = better)

The statistics are BRISQUE's 36 (the GGD of the MSCN coefficients and the AGGDs of their four
pairwise products, at full and half size; `tiqa.baselines.brisque.brisque_features`), on
non-overlapping square patches, as NIQE's 18 x 2 features are. The pristine model is fitted
by the project on its own clean training references (e.g. the ideal acquisitions of the
training objects), keeping NIQE's sharpness selection of patches, so nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Sequence

import numpy as np
from scipy import ndimage

from tiqa import io
from tiqa.baselines import brisque

PATCH = 56  # px; a 224 crop gives 16 patches (NIQE used 96 on larger photographs)
SHARPNESS_FRACTION = 0.75  # pristine patches at least this fraction of the sharpest (NIQE)


def patches(image: np.ndarray, size: int = PATCH) -> list[np.ndarray]:
    """Non-overlapping size x size patches of a grey image, row by row."""
    height, width = image.shape
    return [image[top:top + size, left:left + size]
            for top in range(0, height - size + 1, size)
            for left in range(0, width - size + 1, size)]


def _sharpness(patch: np.ndarray) -> float:
    """NIQE's patch sharpness: the mean local standard deviation (Gaussian window, 7/6)."""
    mean = ndimage.gaussian_filter(patch, 7 / 6)
    variance = ndimage.gaussian_filter(patch * patch, 7 / 6) - mean * mean
    return float(np.mean(np.sqrt(np.maximum(variance, 0.0))))


def _patch_features(images: Sequence[np.ndarray], select_sharp: bool) -> np.ndarray:
    extractor = brisque._extractor()
    features = []
    for image in images:
        found = patches(np.asarray(image, np.float64))
        if not found:
            raise ValueError(f"NIQE needs images of at least {PATCH}x{PATCH} px, got "
                             f"{np.shape(image)}")
        if select_sharp:
            sharpness = np.asarray([_sharpness(p) for p in found])
            found = [p for p, s in zip(found, sharpness)
                     if s >= SHARPNESS_FRACTION * sharpness.max()]
        features.append(np.stack([brisque.brisque_features(p, extractor) for p in found]))
    return np.concatenate(features)


@dataclasses.dataclass(frozen=True)
class Niqe:
    """A fitted pristine model; `score(images)` is NIQE's distance (lower = better)."""

    mean: np.ndarray  # (36,)
    covariance: np.ndarray  # (36, 36)

    @classmethod
    def fit(cls, pristine: Sequence[np.ndarray]) -> "Niqe":
        """The MVG of the sharp patches of `pristine` grey images in [0, 1]."""
        features = _patch_features(pristine, select_sharp=True)
        if len(features) < 2:
            raise ValueError("NIQE needs at least two pristine patches to fit its model")
        return cls(features.mean(axis=0), np.cov(features, rowvar=False))

    def distance(self, image: np.ndarray) -> float:
        features = _patch_features([image], select_sharp=False)
        covariance = np.cov(features, rowvar=False) if len(features) > 1 else 0.0
        pooled = np.linalg.pinv((self.covariance + covariance) / 2.0)
        difference = self.mean - features.mean(axis=0)
        return float(np.sqrt(max(difference @ pooled @ difference, 0.0)))

    def __call__(self, images) -> np.ndarray:
        return np.asarray([self.distance(image) for image in images])

    score = __call__

    def save(self, folder: str | pathlib.Path) -> None:
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        io.write_json(folder / "niqe.json", {"mean": self.mean.tolist(),
                                             "covariance": self.covariance.tolist(),
                                             "patch": PATCH})

    @classmethod
    def load(cls, folder: str | pathlib.Path) -> "Niqe":
        path = pathlib.Path(folder) / "niqe.json"
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: unreadable NIQE model ({error})") from error
        return cls(np.asarray(stored["mean"]), np.asarray(stored["covariance"]))
