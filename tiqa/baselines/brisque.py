"""BRISQUE (Mittal et al. 2012) through the `brisque` package, in two forms.

- `LiveBrisque`: the package's shipped model (a libsvm epsilon-SVR trained on the LIVE
  database of natural images); nothing is downloaded. Its score falls as quality rises
  (about 0..100), the opposite of TIQA's.
- `RetrainedBrisque`: the same 36 features with an epsilon-SVR (RBF kernel, libsvm, as the
  package's trainer) fitted to the tomography labels that TIQA is fine-tuned on. It predicts
  on the label scale (1..5, higher is better). `fit_brisque` chooses C and gamma by k-fold
  cross-validation.

The features are the package's own code (`BRISQUE.calculate_brisque_features` at full and
half size, the half-size image by OpenCV's bicubic resize, as `BRISQUE.score` does). Two
things of the package are worked around here rather than pinned back:
- `brisque` 0.2.0 turns each feature into a number with `float()` on one-element arrays,
  which numpy 2 refuses (TypeError); the features are flattened here instead.
- its `score` wants an RGB image (it calls `rgb2gray`); a tomography slice is grey already,
  so the features are computed on the slice in [0, 1] directly, which is what `rgb2gray`
  would give for a grey image stored as RGB.
OpenCV is needed at import by the package (`opencv-python-headless` in requirements.txt).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io as stdlib_io
import json
import pathlib
import pickle
from typing import Sequence

import numpy as np

from tiqa import errors, io

FEATURES = 36


def _package():
    """The `brisque` package's BRISQUE class (imported late: it needs OpenCV and libsvm)."""
    try:
        import scipy
        if not hasattr(scipy, "ndarray"):  # libsvm checks isinstance(x, scipy.ndarray)
            scipy.ndarray = np.ndarray
        from brisque import BRISQUE
        from brisque.models import MODEL_PATH
    except ImportError as error:
        raise ImportError(f"BRISQUE needs the `brisque` package with OpenCV and libsvm "
                          f"(see requirements.txt): {error}") from error
    return BRISQUE, pathlib.Path(MODEL_PATH)


def _svmutil():
    _package()
    from libsvm import svmutil
    return svmutil


def _number(value) -> float:
    """One feature as a float: the package yields numpy scalars and one-element arrays."""
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size != 1:
        raise ValueError(f"BRISQUE feature with {array.size} values, expected one")
    return float(array[0])


def _extractor():
    """The package's BRISQUE object without its model: its feature methods need none."""
    BRISQUE, _ = _package()
    return BRISQUE.__new__(BRISQUE)


def brisque_features(image: np.ndarray, extractor=None) -> np.ndarray:
    """The 36 BRISQUE features (18 at full size, 18 at half size) of a grey image in [0, 1]."""
    import cv2

    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"BRISQUE features need a 2-D grey image, got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise ValueError("BRISQUE features: the image has NaN or infinite values")
    if min(image.shape) < 16:
        raise ValueError(f"BRISQUE features need at least 16x16 pixels, got {image.shape}")
    extractor = extractor or _extractor()
    full = extractor.calculate_brisque_features(image, kernel_size=7, sigma=7 / 6)
    half_image = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    half = extractor.calculate_brisque_features(half_image, kernel_size=7, sigma=7 / 6)
    features = np.asarray([_number(v) for v in list(full) + list(half)])
    if features.shape != (FEATURES,):
        raise ValueError(f"BRISQUE gave {features.shape[0]} features, expected {FEATURES}")
    return features


def features_of(images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """(N, 36) features of N grey images in [0, 1]."""
    extractor = _extractor()
    return np.stack([brisque_features(image, extractor) for image in images]) if len(images) \
        else np.zeros((0, FEATURES))


def _scale(features: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The package's scaling of each feature to [-1, 1] by the training set's range."""
    span = np.where(high - low == 0, 1.0, high - low)
    return -1.0 + 2.0 * (features - low) / span


def _predict(model, scaled: np.ndarray) -> np.ndarray:
    """libsvm regression outputs, one per row, as the package's `svm_predict_probability`."""
    svmutil = _svmutil()
    out = np.empty(len(scaled))
    estimates = (svmutil.c_double * 1)()
    for row, values in enumerate(scaled):
        nodes, _ = svmutil.gen_svm_nodearray([float(v) for v in values], isKernel=False)
        out[row] = svmutil.libsvm.svm_predict_probability(model, nodes, estimates)
    return out


class LiveBrisque:
    """The `brisque` package's LIVE-trained model: lower score = better image."""

    higher_is_better = False
    name = "BRISQUE (LIVE model)"

    def __init__(self):
        _, model_path = _package()
        svmutil = _svmutil()
        self._model = svmutil.svm_load_model(str(model_path / "svm.txt"))
        with open(model_path / "normalize.pickle", "rb") as handle:
            params = pickle.load(handle)
        self._low = np.asarray([_number(v) for v in params["min_"]])
        self._high = np.asarray([_number(v) for v in params["max_"]])

    def score_features(self, features: np.ndarray) -> np.ndarray:
        return _predict(self._model, _scale(np.atleast_2d(features), self._low, self._high))

    def __call__(self, images) -> np.ndarray:
        return self.score_features(features_of(images))


@dataclasses.dataclass
class RetrainedBrisque:
    """BRISQUE features + an epsilon-SVR fitted to tomography labels: higher = better."""

    model: object  # libsvm svm_model
    low: np.ndarray
    high: np.ndarray
    hyper: dict

    higher_is_better = True
    name = "BRISQUE (retrained on tomography labels)"

    def score_features(self, features: np.ndarray) -> np.ndarray:
        return _predict(self.model, _scale(np.atleast_2d(features), self.low, self.high))

    def __call__(self, images) -> np.ndarray:
        return self.score_features(features_of(images))

    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        """Writes `svm.txt` (libsvm's format) and `scaling.json`; each complete or absent."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        svmutil = _svmutil()
        with io.atomic_write(directory / "svm.txt") as tmp:
            svmutil.svm_save_model(str(tmp), self.model)
        io.write_json(directory / "scaling.json",
                      {"min": self.low.tolist(), "max": self.high.tolist(), "hyper": self.hyper})
        return directory

    @classmethod
    def load(cls, directory: str | pathlib.Path) -> "RetrainedBrisque":
        directory = pathlib.Path(directory)
        for name in ("svm.txt", "scaling.json"):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"{directory / name}: missing (not a retrained BRISQUE model directory; "
                    "make one with tiqa.baselines.brisque.fit_brisque)")
        info = json.loads((directory / "scaling.json").read_text())
        model = _svmutil().svm_load_model(str(directory / "svm.txt"))
        if model is None:
            raise errors.InputError(f"{directory / 'svm.txt'}: libsvm could not read the model")
        return cls(model, np.asarray(info["min"]), np.asarray(info["max"]), info.get("hyper", {}))


def fit_brisque(features: np.ndarray, targets: np.ndarray, *,
                c_values: Sequence[float] = (1.0, 4.0, 16.0, 64.0),
                gamma_values: Sequence[float] = (0.01, 0.03, 0.1, 0.3),
                epsilon: float = 0.1, folds: int = 5) -> RetrainedBrisque:
    """Epsilon-SVR (RBF) on the 36 features, C and gamma by `folds`-fold cross-validated MSE."""
    features = np.asarray(features, np.float64)
    targets = np.asarray(targets, np.float64)
    if features.ndim != 2 or features.shape[1] != FEATURES or len(features) != len(targets):
        raise ValueError(f"fit_brisque: need (N, {FEATURES}) features and N targets, got "
                         f"{features.shape} and {targets.shape}")
    if len(features) < max(folds, 2) or not np.all(np.isfinite(features)):
        raise ValueError(f"fit_brisque: need at least {max(folds, 2)} finite feature rows")
    svmutil = _svmutil()
    low, high = features.min(0), features.max(0)
    scaled = _scale(features, low, high).tolist()
    problem = svmutil.svm_problem(targets.tolist(), scaled)
    best = None
    for c in c_values:
        for gamma in gamma_values:
            # With -v, svm_train returns the cross-validated mean squared error (and prints
            # it, even with -q: kept off the user's terminal).
            with contextlib.redirect_stdout(stdlib_io.StringIO()):
                mse = svmutil.svm_train(problem, svmutil.svm_parameter(
                    f"-s 3 -t 2 -c {c} -g {gamma} -p {epsilon} -v {folds} -q"))
            if best is None or mse < best[0]:
                best = (mse, c, gamma)
    mse, c, gamma = best
    model = svmutil.svm_train(problem, svmutil.svm_parameter(
        f"-s 3 -t 2 -c {c} -g {gamma} -p {epsilon} -q"))
    return RetrainedBrisque(model, low, high, {"C": c, "gamma": gamma, "epsilon": epsilon,
                                               "cv_mse": float(mse), "samples": len(targets)})
