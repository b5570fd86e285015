"""Evaluating segmentations of tomography slices against ground truth (SPEC 1.8, paper Figs. 5-7).

A segmentation network (D-LinkNet) gives, per pixel, either one probability (binary: particle vs
rest) or a probability per class, class axis last (3 classes: 0 particle, 1 carbon-binder,
2 pore). This module turns those into masks and label maps, scores them against ground truth,
measures their uncertainty and draws the paper's figures. Every function accepts numpy or JAX
arrays and returns numpy arrays or Python floats; nothing here is jitted (evaluation is cheap
and runs once per image).

Inputs and their shapes
    probability map      float in [0, 1], (..., H, W): the probability of the phase (binary).
    class probabilities  float in [0, 1], (..., H, W, C), class axis last, summing to 1 over C.
    mask                 bool, or integers / floats that are all 0 or 1, (..., H, W).
    label map            integers 0..C-1, (..., H, W).

From probabilities to decisions
    `threshold(p, level)`          mask p > level (a pixel exactly at `level` is not the phase).
    `argmax_labels(probabilities)` label map, the most probable class (ties: the lowest label).

Scores (paper eq. 5; P the predicted set, T the ground truth set)
    `iou(pred, target)`  |P n T| / |P u T|.
    `f1(pred, target)`   2 |P n T| / (|P| + |T|) (equal to the Dice coefficient).
    Both take masks of equal shape: (H, W) gives a float, (N, H, W) (or any (..., H, W)) one
    score per image. When both P and T are empty the prediction is perfect and both are 1.0.
    `per_class_scores(pred_labels, target_labels, C)` scores each class one-vs-rest, pooling
    all pixels given (a batch counts as one large image), and averages over the classes present.

Uncertainty (paper eq. 4), in nats
    `entropy(probabilities)`  H = -sum_c p_c log p_c over the class axis (0 log 0 = 0); a class
                              axis of size 1 holds a binary probability p and is read as the two
                              classes (p, 1 - p).
    `binary_entropy(p)`       the same for a probability map without a class axis, elementwise.
    Maximum: log C (log 2 = 0.693 for binary maps).

Structure
    `two_point_correlation(mask, axis)`  S2(r), the probability that two pixels r apart along
                                         X (axis=1) or Y (axis=0) both belong to the phase.
    `iou_map(pred, target)`              RGB picture of agreement: true positive red, true
                                         negative black, false negative green, false positive
                                         blue (`IOU_MAP_COLOURS`).

Figures (PNG, written whole or not at all through `tiqa.io.atomic_write`)
    `figure_segmentation`  image, ground truth, prediction, IoU map, uncertainty (Figs. 5-6).
    `figure_two_point`     S2(r) curves of ground truth and predictions (Fig. 7).
    `figure_score_vs_f1`   TIQA score against F1 by distortion kind, SROCC/PLCC (Table 1).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from tiqa import evaluation, io

PathLike = Union[str, os.PathLike]

# Colours of `iou_map`, as in the legend of the paper's Figs. 5-6 (false positives, which the
# paper does not name, get the fourth primary).
IOU_MAP_COLOURS: dict[str, tuple[int, int, int]] = {
    "true positive": (255, 0, 0),
    "true negative": (0, 0, 0),
    "false negative": (0, 255, 0),
    "false positive": (0, 0, 255),
}
# Slack allowed outside [0, 1] for probabilities (float round-off of a softmax or sigmoid).
_PROBABILITY_TOLERANCE = 1e-6
_DPI = 110


# --------------------------------------------------------------------------------------------
# Input checks.
# --------------------------------------------------------------------------------------------


def _as_probabilities(values: Any, name: str) -> np.ndarray:
    """`values` as float64 in [0, 1] (round-off beyond it clipped), or a ValueError."""
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or inf values")
    if array.size and (array.min() < -_PROBABILITY_TOLERANCE
                       or array.max() > 1.0 + _PROBABILITY_TOLERANCE):
        raise ValueError(f"{name}: values span [{array.min():g}, {array.max():g}], outside "
                         "[0, 1]; expected probabilities")
    return np.clip(array, 0.0, 1.0)


def _as_mask(values: Any, name: str) -> np.ndarray:
    """`values` as a bool array: bool input as is, numbers only if every one is 0 or 1."""
    array = np.asarray(values)
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind not in "uif":
        raise ValueError(f"{name}: expected a binary mask, got dtype {array.dtype}")
    binary = (array == 0) | (array == 1)
    if not binary.all():
        raise ValueError(f"{name}: expected a binary mask (bool or 0/1), but it holds other "
                         "values; use threshold() for probabilities")
    return array == 1


def _as_labels(values: Any, num_classes: int, name: str) -> np.ndarray:
    """`values` as an int64 label map with every label in 0..num_classes-1, or a ValueError."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise ValueError(f"{name}: labels must be whole numbers")
    elif array.dtype.kind not in "uib":
        raise ValueError(f"{name}: expected integer labels, got dtype {array.dtype}")
    labels = array.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name}: labels span {labels.min()}..{labels.max()}, outside "
                         f"0..{num_classes - 1}")
    return labels


def _pair_of_masks(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """Checked masks of equal shape with at least the two image axes."""
    pred, target = _as_mask(pred, "pred"), _as_mask(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in shape: {pred.shape} vs {target.shape}")
    if pred.ndim < 2:
        raise ValueError(f"expected masks of shape (H, W) or (N, H, W), got {pred.shape}")
    return pred, target


# --------------------------------------------------------------------------------------------
# Decisions.
# --------------------------------------------------------------------------------------------


def threshold(probabilities: Any, level: float = 0.5) -> np.ndarray:
    """The bool mask `probabilities > level` of a binary probability map, shape kept.

    A pixel exactly at `level` is not the phase. A trailing class axis of size 1 is kept:
    squeeze it first if a (..., H, W) mask is wanted.
    """
    return _as_probabilities(probabilities, "probabilities") > level


def argmax_labels(probabilities: Any) -> np.ndarray:
    """The int64 label map (..., H, W) of the most probable class of (..., H, W, C), C >= 2.

    Ties go to the lowest label. A binary map (one probability per pixel) has no class axis to
    take the argmax over: use `threshold`.
    """
    probabilities = _as_probabilities(probabilities, "probabilities")
    if probabilities.ndim < 3 or probabilities.shape[-1] < 2:
        raise ValueError(f"expected class probabilities (..., H, W, C) with C >= 2, got shape "
                         f"{probabilities.shape}; use threshold() for a binary map")
    return np.argmax(probabilities, axis=-1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Scores.
# --------------------------------------------------------------------------------------------


def _counts(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """|P n T|, |P| and |T| per image (over the last two axes), as int64."""
    axes = (-2, -1)
    overlap = np.sum(pred & target, axis=axes, dtype=np.int64)
    return overlap, np.sum(pred, axis=axes, dtype=np.int64), np.sum(target, axis=axes,
                                                                     dtype=np.int64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 1.0 where the denominator is 0 (both sets empty)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 1.0)


def _scalar_or_array(values: np.ndarray) -> Union[float, np.ndarray]:
    return float(values) if values.ndim == 0 else values


def iou(pred: Any, target: Any) -> Union[float, np.ndarray]:
    """Intersection over union |P n T| / |P u T| of two binary masks.

    Args:
        pred: predicted mask, bool or 0/1, (H, W) or batched (N, H, W) (any (..., H, W)).
        target: ground truth mask of the same shape.

    Returns:
        A float for (H, W); a float64 array of the leading shape, one score per image, for a
        batch. 1.0 where both masks are empty (nothing to find, nothing found).

    Raises:
        ValueError: the shapes differ, a mask is not binary, or has fewer than two axes.
    """
    pred, target = _pair_of_masks(pred, target)
    overlap, n_pred, n_target = _counts(pred, target)
    return _scalar_or_array(_ratio(overlap, n_pred + n_target - overlap))


def f1(pred: Any, target: Any) -> Union[float, np.ndarray]:
    """F1 score (Dice) 2 |P n T| / (|P| + |T|) of two binary masks (the paper's eq. 5).

    Shapes, batching, the empty-empty value 1.0 and errors as for `iou`.
    """
    pred, target = _pair_of_masks(pred, target)
    overlap, n_pred, n_target = _counts(pred, target)
    return _scalar_or_array(_ratio(2 * overlap, n_pred + n_target))


def per_class_scores(pred_labels: Any, target_labels: Any, num_classes: int) -> dict[str, Any]:
    """One-vs-rest IoU and F1 of each class of two label maps, and their means.

    All pixels given are pooled: for a batch (N, H, W) the counts are summed over the images
    before dividing (dataset-level scores, not the mean of per-image scores).

    Args:
        pred_labels: predicted labels 0..num_classes-1, any shape.
        target_labels: ground truth labels of the same shape.
        num_classes: the number of classes C.

    Returns:
        {"classes": [{"class": c, "iou": float, "f1": float, "support": int}, ... for c in
        0..C-1], "mean_iou": float, "mean_f1": float}. `support` is the number of ground truth
        pixels of the class. A class absent from both maps scores 1.0 (as in `iou`) but is left
        out of the means, which average over the classes present in either map.

    Raises:
        ValueError: shapes differ, labels are not integers in 0..C-1, or num_classes < 1.
    """
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    pred = _as_labels(pred_labels, num_classes, "pred_labels")
    target = _as_labels(target_labels, num_classes, "target_labels")
    if pred.shape != target.shape:
        raise ValueError(f"pred_labels and target_labels differ in shape: {pred.shape} vs "
                         f"{target.shape}")
    # Confusion matrix, rows = target class, columns = predicted class.
    confusion = np.bincount(target.ravel() * num_classes + pred.ravel(),
                            minlength=num_classes ** 2).reshape(num_classes, num_classes)
    overlap = np.diag(confusion)
    n_target, n_pred = confusion.sum(axis=1), confusion.sum(axis=0)
    ious = _ratio(overlap, n_target + n_pred - overlap)
    f1s = _ratio(2 * overlap, n_target + n_pred)
    present = (n_target + n_pred) > 0
    classes = [{"class": c, "iou": float(ious[c]), "f1": float(f1s[c]),
                "support": int(n_target[c])} for c in range(num_classes)]
    mean_iou = float(ious[present].mean()) if present.any() else 1.0
    mean_f1 = float(f1s[present].mean()) if present.any() else 1.0
    return {"classes": classes, "mean_iou": mean_iou, "mean_f1": mean_f1}


# --------------------------------------------------------------------------------------------
# Uncertainty.
# --------------------------------------------------------------------------------------------


def _plogp(p: np.ndarray) -> np.ndarray:
    """p log p elementwise, with 0 log 0 = 0."""
    safe = np.where(p > 0, p, 1.0)
    return np.where(p > 0, p * np.log(safe), 0.0)


def binary_entropy(probability: Any) -> np.ndarray:
    """Entropy -p log p - (1 - p) log(1 - p) in nats of a binary probability map, elementwise.

    `probability` is the probability of the phase, any shape (no class axis); the result has
    the same shape, in [0, log 2].
    """
    p = _as_probabilities(probability, "probability")
    return -(_plogp(p) + _plogp(1.0 - p))


def entropy(probabilities: Any, axis: int = -1) -> np.ndarray:
    """Per-pixel entropy H = -sum_c p_c log p_c in nats over the class axis (paper eq. 4).

    Args:
        probabilities: class probabilities with the class axis at `axis` (last by default),
            e.g. (H, W, C) or (N, H, W, C). A class axis of size 1 holds a binary probability p
            (a sigmoid output) and is read as the two classes (p, 1 - p). A map without a class
            axis, (H, W) of phase probabilities, goes to `binary_entropy` instead: here its last
            image axis would be taken for classes.
        axis: the class axis.

    Returns:
        float64 entropies with the class axis removed, in [0, log C] (log 2 when C is 1).
    """
    p = _as_probabilities(probabilities, "probabilities")
    if p.ndim == 0:
        raise ValueError("probabilities: expected an array with a class axis, got a scalar; "
                         "use binary_entropy() for one probability")
    if p.shape[axis] == 1:
        return binary_entropy(np.squeeze(p, axis=axis))
    return -np.sum(_plogp(p), axis=axis)


# --------------------------------------------------------------------------------------------
# Structure.
# --------------------------------------------------------------------------------------------


def two_point_correlation(mask: Any, axis: int = 1, max_r: Optional[int] = None) -> np.ndarray:
    """Two-point correlation S2(r) of a phase along one image axis, r = 0..max_r (non-periodic).

    S2(r) is the probability that two pixels r apart along the axis both belong to the phase:
    the mean of mask[i] * mask[i + r] over all pairs with both pixels inside the image (so the
    pairs counted shrink as r grows). S2(0) is the phase fraction; for an uncorrelated phase
    S2(r) tends to its square.

    Args:
        mask: binary mask (bool or 0/1) of the phase, (H, W), or a batch (N, H, W) of images of
            one size, whose pairs are pooled (equal to the mean of the per-image curves, since
            every image has the same number of pairs). For a label map pass `labels == phase`.
        axis: the image axis: 1 (or -1) for X, pairs along a row; 0 (or -2) for Y, pairs along
            a column. For a batch it still names an image axis, not the batch axis.
        max_r: the largest distance, 0 <= max_r < the size along the axis; by default half the
            size (rounded down).

    Returns:
        float64 array of max_r + 1 values.
    """
    m = _as_mask(mask, "mask")
    if m.ndim not in (2, 3):
        raise ValueError(f"mask: expected (H, W) or (N, H, W), got shape {m.shape}")
    if axis not in (0, 1, -1, -2):
        raise ValueError(f"axis must be 0 (Y) or 1 (X), got {axis}")
    image_axis = -1 if axis in (1, -1) else -2
    m = np.moveaxis(m, image_axis, -1).astype(np.float64)
    length = m.shape[-1]
    if length == 0 or m.size == 0:
        raise ValueError(f"mask: empty image of shape {np.shape(mask)}")
    if max_r is None:
        max_r = length // 2
    if int(max_r) != max_r or not 0 <= max_r < length:
        raise ValueError(f"max_r must be an integer in 0..{length - 1}, got {max_r!r}")
    max_r = int(max_r)
    # Autocorrelation by FFT, zero-padded to 2 L so nothing wraps around: O(L log L) per line
    # instead of O(L * max_r). Sums of 0/1 products are whole numbers, so rounding makes the
    # pair counts exact.
    spectrum = np.fft.rfft(m, n=2 * length, axis=-1)
    lagged = np.fft.irfft(spectrum * np.conj(spectrum), n=2 * length, axis=-1)[..., :max_r + 1]
    both = np.rint(lagged.reshape(-1, max_r + 1).sum(axis=0))
    lines = m.size // length
    pairs = (length - np.arange(max_r + 1)) * lines
    return both / pairs


def iou_map(pred: Any, target: Any) -> np.ndarray:
    """RGB picture (..., H, W, 3) uint8 of where a predicted mask agrees with the ground truth.

    True positive red (255, 0, 0), true negative black, false negative green (0, 255, 0),
    false positive blue (0, 0, 255); see `IOU_MAP_COLOURS`. Masks as for `iou`.
    """
    pred, target = _pair_of_masks(pred, target)
    picture = np.zeros(pred.shape + (3,), dtype=np.uint8)
    for name, where in (("true positive", pred & target), ("false negative", ~pred & target),
                        ("false positive", pred & ~target)):
        picture[where] = IOU_MAP_COLOURS[name]
    return picture


# --------------------------------------------------------------------------------------------
# Figures.
# --------------------------------------------------------------------------------------------


def _as_image(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"{name}: expected a non-empty (H, W) image, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or inf values")
    return array


def _uncertainty(values: Any, is_uncertainty: bool,
                 shape: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """The (H, W) uncertainty map to show and the top of its colour scale."""
    if is_uncertainty:
        uncertainty = _as_image(values, "uncertainty")
        if uncertainty.min() < 0:
            raise ValueError("uncertainty: entropies cannot be negative")
        return uncertainty, max(float(uncertainty.max()), 1e-12)
    probabilities = np.asarray(values)
    if probabilities.shape == shape:  # one phase probability per pixel
        return binary_entropy(probabilities), math.log(2)
    if probabilities.shape[:-1] == shape and probabilities.ndim == 3:
        classes = max(probabilities.shape[-1], 2)
        # The fixed top log C keeps the colours comparable between figures of one study.
        return entropy(probabilities), math.log(classes)
    raise ValueError(f"probabilities: shape {probabilities.shape} fits neither the image "
                     f"{shape} nor {shape} + (C,)")


def figure_segmentation(image: Any, target: Any, pred_mask: Any,
                        probabilities_or_uncertainty: Any, path: PathLike,
                        title: Optional[str] = None, *, is_uncertainty: bool = False,
                        phase: Optional[int] = None) -> None:
    """Writes the paper's Figs. 5-6 panel row for one slice as a PNG.

    Panels: the image; the ground truth; the prediction (titled with its F1 and IoU); the IoU
    map with a legend of its four colours; the entropy uncertainty map (white low, red high)
    with a colour bar, scaled 0..log C so figures of one study compare.

    Args:
        image: the slice, (H, W).
        target: ground truth, (H, W): a binary mask, or a label map when `phase` is given.
        pred_mask: prediction, (H, W), of the same kind as `target`.
        probabilities_or_uncertainty: the network output from which the uncertainty is
            computed: (H, W) phase probabilities (binary entropy) or (H, W, C) class
            probabilities (entropy); or, with `is_uncertainty=True`, an (H, W) uncertainty map
            shown as it is (scaled 0..its maximum).
        path: the PNG to write.
        title: a title above the panels, or None.
        is_uncertainty: whether the fourth argument is already an uncertainty map.
        phase: None for binary masks; for label maps, the class scored and shown in the IoU
            map (e.g. 0 for particles).
    """
    picture = _as_image(image, "image")
    shape = picture.shape
    if phase is None:
        shown_target, shown_pred = _as_mask(target, "target"), _as_mask(pred_mask, "pred_mask")
        target_mask, pred = shown_target, shown_pred
        classes = 2
    else:
        shown_target, shown_pred = np.asarray(target), np.asarray(pred_mask)
        classes = int(max(shown_target.max(initial=0), shown_pred.max(initial=0), phase)) + 1
        shown_target = _as_labels(shown_target, classes, "target")
        shown_pred = _as_labels(shown_pred, classes, "pred_mask")
        target_mask, pred = shown_target == phase, shown_pred == phase
    for name, array in (("target", shown_target), ("pred_mask", shown_pred)):
        if array.shape != shape:
            raise ValueError(f"{name}: shape {array.shape} differs from the image's {shape}")
    uncertainty, top = _uncertainty(probabilities_or_uncertainty, is_uncertainty, shape)

    figure = Figure(figsize=(20.0, 4.8), layout="constrained")
    axes = figure.subplots(1, 5)
    label_colours = ListedColormap(matplotlib.colormaps["tab10"].colors[:classes]
                                   if classes > 2 else ["black", "white"])
    axes[0].imshow(picture, cmap="gray")
    axes[0].set_title("image")
    for ax, shown, name in ((axes[1], shown_target, "ground truth"),
                            (axes[2], shown_pred, "")):
        # Integers, so bool masks take the two colours of the listed colour map.
        ax.imshow(shown.astype(np.int64), cmap=label_colours, vmin=-0.5, vmax=classes - 0.5,
                  interpolation="nearest")
        ax.set_title(name)
    which = "" if phase is None else f" class {phase}"
    axes[2].set_title(f"prediction{which} (F1 {f1(pred, target_mask):.3f}, "
                      f"IoU {iou(pred, target_mask):.3f})")
    axes[3].imshow(iou_map(pred, target_mask), interpolation="nearest")
    axes[3].set_title("IoU map" + which)
    handles = [Patch(facecolor=np.array(rgb) / 255, edgecolor="0.5", label=name)
               for name, rgb in IOU_MAP_COLOURS.items()]
    axes[3].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2,
                   fontsize="small", frameon=False)
    shown = axes[4].imshow(uncertainty, cmap="Reds", vmin=0.0, vmax=top)
    axes[4].set_title("uncertainty (entropy)")
    figure.colorbar(shown, ax=axes[4], shrink=0.85, label="entropy (nats)")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        figure.suptitle(title)
    io.save_figure(figure, path, dpi=_DPI)


def figure_two_point(curves: Mapping[str, Any], path: PathLike, title: Optional[str] = None,
                     *, reference: Optional[str] = "ground truth",
                     end_labels: Optional[Mapping[str, Any]] = None) -> None:
    """Writes S2(r) against r for several masks as a PNG (the paper's Fig. 7).

    Args:
        curves: label -> S2 array (from `two_point_correlation`), in the order to draw; the
            curves may differ in length. The others are coloured along a colour map in this
            order, so list distortion levels from mild to severe.
        path: the PNG to write.
        title: the axes title, or None.
        reference: the label of the curve drawn as a thick black line (the ground truth), or
            None; a label not in `curves` is ignored.
        end_labels: label -> text (or number) written at the end of that curve, e.g. the
            image's quality score as in Fig. 7.
    """
    if not curves:
        raise ValueError("curves: nothing to plot")
    checked = {}
    for label, values in curves.items():
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
            raise ValueError(f"curve {label!r}: expected a non-empty finite 1-D array, got "
                             f"shape {array.shape}")
        checked[str(label)] = array
    end_labels = {str(k): v for k, v in (end_labels or {}).items()}

    figure = Figure(figsize=(7.5, 5.0), layout="constrained")
    axes = figure.add_subplot()
    others = [label for label in checked if label != reference]
    colours = matplotlib.colormaps["viridis"]
    for label, values in checked.items():
        if label == reference:
            style = {"color": "black", "linewidth": 2.4, "zorder": 3}
        else:
            position = others.index(label) / max(len(others) - 1, 1)
            style = {"color": colours(0.9 * position), "linewidth": 1.4}
        r = np.arange(values.size)
        axes.plot(r, values, label=label, **style)
        if label in end_labels:
            text = end_labels[label]
            text = f"{text:.2f}" if isinstance(text, (float, np.floating)) else str(text)
            axes.annotate(text, (r[-1], values[-1]), xytext=(4, 0), textcoords="offset points",
                          va="center", fontsize="small", color=style["color"])
    axes.set_xlabel("distance r (pixels)")
    axes.set_ylabel("two-point correlation S2(r)")
    axes.set_ylim(bottom=0.0)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    if title:
        axes.set_title(title)
    io.save_figure(figure, path, dpi=_DPI)


def _correlations(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(SROCC, PLCC), NaN where undefined (too few points or a constant input)."""
    if x.size < evaluation.MIN_POINTS:
        return math.nan, math.nan
    with warnings.catch_warnings():
        # A constant subset is shown as 'n/a'; the warning would say nothing more.
        warnings.simplefilter("ignore", evaluation.ConstantInputWarning)
        return evaluation.srocc(x, y), evaluation.plcc(x, y)


def _format(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def figure_score_vs_f1(scores: Any, f1s: Any, kinds: Sequence[Any], path: PathLike,
                       title: Optional[str] = None) -> None:
    """Writes a scatter of TIQA score (x) against segmentation F1 (y) as a PNG (Table 1).

    Points are coloured by distortion kind, each kind's legend entry giving its n, SROCC and
    PLCC; the title gives them over all points. A correlation of fewer than
    `evaluation.MIN_POINTS` points or of a constant input shows as 'n/a'.

    Args:
        scores: TIQA quality scores, one per image.
        f1s: segmentation F1 scores of the same images.
        kinds: the distortion kind of each image (e.g. 'blur', 'noise', 'ring', 'none').
        path: the PNG to write.
        title: a first title line, or None.
    """
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(f1s, dtype=np.float64)
    kinds = [str(kind) for kind in kinds]
    if x.ndim != 1 or y.ndim != 1 or not x.size == y.size == len(kinds):
        raise ValueError(f"scores, f1s and kinds must be 1-D of one length, got shapes "
                         f"{x.shape}, {y.shape} and {len(kinds)} kinds")
    if x.size == 0:
        raise ValueError("nothing to plot: no scores")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("scores and f1s must be finite")

    figure = Figure(figsize=(7.0, 5.2), layout="constrained")
    axes = figure.add_subplot()
    colours = matplotlib.colormaps["tab10"]
    labels = np.array(kinds)
    for i, kind in enumerate(dict.fromkeys(kinds)):  # kinds in order of first appearance
        chosen = labels == kind
        rho, r = _correlations(x[chosen], y[chosen])
        axes.scatter(x[chosen], y[chosen], color=colours(i % 10), s=36, alpha=0.85,
                     edgecolors="none",
                     label=f"{kind} (n={int(chosen.sum())}, SROCC {_format(rho)}, "
                           f"PLCC {_format(r)})")
    rho, r = _correlations(x, y)
    summary = f"SROCC {_format(rho)}, PLCC {_format(r)} (n={x.size})"
    axes.set_title(f"{title}\n{summary}" if title else f"TIQA score vs segmentation F1: {summary}")
    axes.set_xlabel("TIQA quality score")
    axes.set_ylabel("segmentation F1")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    io.save_figure(figure, path, dpi=_DPI)
