"""Score points taken off for what a no-reference check measures and the network orders
poorly, fitted on training ladders.

The score network orders some acquisition faults poorly on objects unlike its training
slices: faint rings on smooth objects, and sparse views at the scored scale
(docs/acquisition_ladder.md). A check that measures the fault without a reference
(`tiqa.ring_check`'s ring amplitude, `tiqa.view_check`'s angular comb) sets a penalty: `slope`
score points per unit of the measure above a `floor`, counted up to a `cap`. `fit_penalty`
fits it on the ladders of training objects against the observers' labels
(`launch.calibrate`), and the exported model carries it (`model.json`'s `ring_check`,
`view_check` and `centre_check`). A measure that grows more reliable with the square it is
taken on (`tiqa.centre_check`'s offset) can carry one fit per size (`Penalty.larger`, chosen by
`Penalty.at`). `onto_scale` keeps the penalised scores on the 1..5 scale, in order.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from tiqa import acquisition_ladder

__all__ = ["NO_CAP", "SCALE_BOTTOM", "KNEE", "Penalty", "fit_slope", "fit_penalty", "onto_scale",
           "scale_note"]

NO_CAP = 1e9  # a cap no measure reaches (JSON has no infinity)
SCALE_BOTTOM = 1.0  # the worst score of the 1..5 scale
KNEE = 1.25  # scores from here up are left as they are (the network alone rarely scores lower)


@dataclasses.dataclass(frozen=True)
class Penalty:
    """Score points taken off: `slope` x the measure above `floor`, counted up to `cap` (so at
    most slope x (cap - floor)).

    `larger`: (least side in px, penalty) pairs, by side, for a measure taken on squares of at
    least that side, fitted on acquisitions of that size; this penalty's own fields hold below
    the first. `__call__` is this penalty's own; a caller that knows the square's side takes
    `at(side)` first.
    """
    slope: float
    cap: float
    floor: float = 0.0
    larger: tuple[tuple[int, Penalty], ...] = ()

    def __post_init__(self):
        sides = [side for side, _ in self.larger]
        if sides != sorted(set(sides)) or any(penalty.larger for _, penalty in self.larger):
            raise ValueError(f"a penalty's larger squares must be distinct, in order of side and "
                             f"without sizes of their own, got sides {sides}")

    def __call__(self, measures: jax.Array) -> jax.Array:
        return self.slope * _excess(measures, self.cap, self.floor)

    def at(self, side: int) -> Penalty:
        """The penalty of a measure taken on a `side` px square: the fit of the largest size
        not above `side`, else this one's own."""
        found = dataclasses.replace(self, larger=())
        for least, penalty in self.larger:
            if side >= least:
                found = penalty
        return found

    def to_dict(self) -> dict:
        found = {"slope": self.slope, "cap": self.cap, "floor": self.floor}
        if self.larger:
            found["larger"] = [{"side": side, **penalty.to_dict()} for side, penalty in self.larger]
        return found

    @classmethod
    def from_dict(cls, entry: dict) -> Penalty:
        """The penalty `to_dict` wrote (a missing floor is 0: ring checks calibrated before the
        floor existed have none); KeyError, TypeError or ValueError where it is not one (a
        larger fit with sizes of its own is refused by the constructor)."""
        larger = tuple((int(item["side"]), cls.from_dict(item))
                       for item in entry.get("larger", ()))
        return cls(float(entry["slope"]), float(entry["cap"]), float(entry.get("floor", 0.0)),
                   larger)

    def describe(self, unit: str) -> str:
        """The penalty in words, for reports and logs; `unit` names the measure."""
        slope = f"{self.slope:.2f}" if self.slope >= 0.1 else f"{self.slope:.4f}"
        reach = "with no cap" if self.cap >= NO_CAP else f"up to {self.cap:g}"
        said = f"{slope} points per unit of {unit} above {self.floor:g}, {reach}"
        for side, penalty in self.larger:
            said += (f"; measured on {side} px or more, "
                     f"{penalty.describe(unit).replace(f' per unit of {unit}', '')}")
        return said


def _excess(measures, cap: float, floor: float, xp=jnp):
    """The part of each measure between `floor` and `cap` (`xp`: jnp, or np for the fit's
    float64)."""
    return xp.clip(xp.asarray(measures) - floor, 0.0, cap - floor)


def fit_slope(network_scores: np.ndarray, labels: np.ndarray, measures: np.ndarray) -> float:
    """The score points per unit of the measure that bring the network's scores of ladders
    closest to their labels: least squares of label - score = c_m - slope * measure with an
    intercept c_m per object, all arrays (M, L); the slope is at least 0."""
    network_scores, labels, measures = (np.asarray(a, np.float64) for a in
                                        (network_scores, labels, measures))
    if not (network_scores.shape == labels.shape == measures.shape) or network_scores.ndim != 2:
        raise ValueError("fit_slope needs (objects, levels) arrays of one shape, got "
                         f"{network_scores.shape}, {labels.shape}, {measures.shape}")
    residual = labels - network_scores
    residual = residual - residual.mean(axis=1, keepdims=True)
    spread = measures - measures.mean(axis=1, keepdims=True)
    denominator = float(np.sum(spread ** 2))
    if denominator == 0.0 or not math.isfinite(denominator):
        return 0.0
    return max(0.0, float(-np.sum(spread * residual) / denominator))


def fit_penalty(network_scores: np.ndarray, labels: np.ndarray, measures: np.ndarray,
                caps: tuple[float, ...], floors: tuple[float, ...]) -> Penalty:
    """The penalty that best orders ladders (M objects, levels 0..L-1 from the ideal): for each
    floor and each cap above it, the least-squares slope of the measure's excess over the
    floor, up to the cap (`fit_slope`); the pair whose penalised scores order levels 1.. best,
    then the one closest to the labels.

    Why a floor: on fault-free images a measure is not exactly 0, and faint faults the network
    already sees measure a little too; both would cost points the network does not owe.

    Why a cap: past some strength a measure stops following the fault (heavy rings widen the
    range an image is normalised in; the comb of very few views saturates) and wanders; the
    network orders such faults by itself, and a penalty that kept following the measure there
    would reorder them at random.
    """
    network_scores, measures = (np.asarray(a, np.float64) for a in (network_scores, measures))
    best, best_key = None, None
    for floor in floors:
        for cap in (cap for cap in caps if cap > floor):
            excess = _excess(measures, cap, floor, xp=np)
            slope = fit_slope(network_scores, labels, excess)
            penalised = network_scores - slope * excess
            key = (round(acquisition_ladder.mean_within_object_srocc(penalised), 6),
                   -float(np.sqrt(np.mean((penalised - labels) ** 2))))
            if best_key is None or key > best_key:
                best, best_key = Penalty(slope, cap, floor), key
    if best is None:
        raise ValueError(f"fit_penalty found no cap above a floor (caps {caps}, floors {floors})")
    return best


def onto_scale(scores, xp=jnp):
    """Scores kept above the scale's 1, in order: the penalties are linear in what they
    measure, so the worst scans (heavy rings, very few views) would otherwise fall below 1.

    From `KNEE` up a score is left as it is; below, it becomes 1 + w^2 / (1 + 2w - score) with
    w = KNEE - 1, which meets the identity at the knee with the same value and slope and rises
    strictly, so no two scores swap (ranks and SROCC are unchanged). A linear score of 1 reads
    1.125, of 0 reads 1.042, of -8 reads 1.007: a tail that falls like 1 / score, not
    exponentially, keeps even far-off scores apart in float32. `xp`: jnp, or np for float64.
    """
    scores = xp.asarray(scores)
    width = KNEE - SCALE_BOTTOM
    below = SCALE_BOTTOM + width ** 2 / (SCALE_BOTTOM + 2 * width - xp.minimum(scores, KNEE))
    return xp.where(scores >= KNEE, scores, below)


def scale_note(scores) -> str | None:
    """A line for reports where some scores are under `KNEE` (so were pressed by `onto_scale`):
    how many, and how to read them; None where there are none."""
    scores = np.asarray(scores, np.float64)
    low = int(np.sum(scores < KNEE))
    if not low:
        return None
    return (f"{low} of {scores.size} slice(s) score under {KNEE:g}: worse than the worst images "
            f"the network was trained to rank, pressed into {SCALE_BOTTOM:g} to {KNEE:g} in order, "
            "so they still rank against each other (README, Quick start).")
