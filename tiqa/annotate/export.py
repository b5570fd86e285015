"""From ratings to annotations: observer screening, mean opinion scores and the CSV export.

Scores
    Each observer gives an image one score: the mean of their active ratings of it (two for a
    repeated image), so a repeat does not give an observer a second vote. Over the observers
    kept by the screening, an image gets
        score = mean (the mean opinion score, on 1..5),
        std   = the sample standard deviation (ddof=1; empty when n = 1),
        n     = the number of observers,
        ci95  = t(0.975, n - 1) * std / sqrt(n), the half-width of the 95% confidence interval
                of the mean from Student's t distribution (not 1.96, which is too narrow for
                the 15 or so observers of a survey; empty when n = 1).
    The CSV `path,score,std,n,ci95` is what `tiqa.annotations.read_annotations` reads.

Screening (`ScreeningSettings.rule`)
    'bt500'        ITU-R BT.500 (Annex 2, 2.3.1): for every image rated by at least
                   `bt500_min_observers` observers, with mean u, standard deviation S (ddof=1)
                   and kurtosis b2 = m4 / m2^2, an observer's score counts in P if it is >= u + k S
                   and in Q if it is <= u - k S, where k = 2 when 2 <= b2 <= 4 (close to normal)
                   and sqrt(20) otherwise; images on which everyone agrees (S = 0) count for
                   nobody. An observer is rejected if (P + Q) / J > 0.05 and
                   |P - Q| / (P + Q) < 0.3, J being the number of those images they rated.
    'correlation'  an observer is rejected if the Pearson correlation of their scores with the
                   mean of the other observers' scores, over at least `min_common_images`
                   shared images, is below `min_correlation`. Applied iteratively: the worst
                   such observer is dropped and the others' means recomputed, until all pass or
                   two remain. An observer who gives one score to everything carries no
                   ranking and counts as r = 0.
    'both'         both rules; an observer rejected by either is dropped.
    'auto'         'both' when at least `bt500_min_observers` observers each rated at least
                   `min_common_images` images that that many observers rated (BT.500 alone can
                   miss an observer who answers at random: their own scores widen the S they are
                   measured against); 'correlation' alone with 3 or fewer observers that
                   qualify; no screening with fewer than 3 observers.
    'none'         everyone is kept.
    If a rule would drop every observer, all are kept and the report says so.

Consistency
    On the images an observer saw twice: the number of pairs, the mean absolute difference of
    the two ratings, the share of identical ratings and of ratings within one step.
"""

from __future__ import annotations

import csv
import dataclasses
import io as text_io
import math
import pathlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Union

import numpy as np
from scipy import stats

from tiqa import errors, io
from tiqa.annotate import store as store_lib

RULES = ("auto", "bt500", "correlation", "both", "none")
CSV_HEADER = ("path", "score", "std", "n", "ci95")


@dataclasses.dataclass(frozen=True)
class ScreeningSettings:
    """How observers are screened (see the module docstring)."""

    rule: str = "auto"
    min_correlation: float = 0.5
    bt500_min_observers: int = 4
    min_common_images: int = 5

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise errors.InputError(f"screening rule must be one of {RULES}, got {self.rule!r}")
        if self.bt500_min_observers < 4:
            raise errors.InputError("bt500_min_observers must be at least 4 (the kurtosis of fewer "
                                    f"scores means little), got {self.bt500_min_observers}")


@dataclasses.dataclass(frozen=True)
class ScoreMatrix:
    """Per-observer scores: `scores[o, i]` of observer o for image i (NaN where not rated)."""

    observers: tuple[str, ...]
    image_ids: tuple[str, ...]
    paths: tuple[str, ...]
    scores: np.ndarray


@dataclasses.dataclass
class Screening:
    """What the screening did."""

    rules: tuple[str, ...]
    dropped: dict[str, str]  # observer -> reason
    correlations: dict[str, float]  # observer -> r with the others' mean (judged ones only)
    bt500_counts: dict[str, tuple[int, int, int]]  # observer -> (P, Q, images counted)
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Consistency:
    """One observer's agreement with themselves on repeated images."""

    pairs: int
    mean_abs_difference: float
    identical: float  # share of pairs with the same score
    within_one: float  # share of pairs at most one step apart


@dataclasses.dataclass(frozen=True)
class Annotation:
    """One row of the export."""

    path: str
    score: float
    std: float  # NaN when n == 1
    n: int
    ci95: float  # NaN when n == 1


def score_matrix(ratings: Sequence[store_lib.Rating],
                 paths: Union[Mapping[str, str], None] = None) -> ScoreMatrix:
    """Observers x images, each cell the mean of that observer's ratings of that image.

    `paths` gives each image's current path (default: the path recorded with its last rating).
    """
    sums: dict[tuple[str, str], list[float]] = defaultdict(list)
    image_paths: dict[str, str] = {}
    for rating in ratings:
        if rating.withdrawn is not None:
            continue
        sums[(rating.observer, rating.image_id)].append(float(rating.score))
        image_paths[rating.image_id] = rating.path
    if paths:
        image_paths.update({k: v for k, v in paths.items() if k in image_paths})
    observers = tuple(sorted({o for o, _ in sums}))
    image_ids = tuple(sorted(image_paths, key=lambda i: (image_paths[i], i)))
    row = {o: k for k, o in enumerate(observers)}
    column = {i: k for k, i in enumerate(image_ids)}
    scores = np.full((len(observers), len(image_ids)), np.nan)
    for (observer, image_id), values in sums.items():
        scores[row[observer], column[image_id]] = np.mean(values)
    return ScoreMatrix(observers, image_ids, tuple(image_paths[i] for i in image_ids), scores)


def bt500_counts(scores: np.ndarray, min_observers: int = 4) -> np.ndarray:
    """(P, Q, J) per observer of the ITU-R BT.500 rejection test, as an (O, 3) integer array."""
    counts = np.zeros((scores.shape[0], 3), dtype=int)
    for column in scores.T:
        rated = ~np.isnan(column)
        values = column[rated]
        if len(values) < min_observers:
            continue
        counts[rated, 2] += 1
        deviation = values - values.mean()
        s = values.std(ddof=1)
        if s == 0:
            continue  # full agreement: nobody lies outside
        m2, m4 = np.mean(deviation**2), np.mean(deviation**4)
        k = 2.0 if 2.0 <= m4 / m2**2 <= 4.0 else math.sqrt(20.0)
        # A small slack so that a score exactly on the boundary counts despite round-off.
        counts[rated, 0] += deviation >= k * s - 1e-9
        counts[rated, 1] += deviation <= -k * s + 1e-9
    return counts


def bt500_rejected(p: int, q: int, j: int) -> bool:
    """BT.500's rule: (P + Q) / J > 0.05 and |P - Q| / (P + Q) < 0.3."""
    return j > 0 and p + q > 0 and (p + q) / j > 0.05 and abs(p - q) / (p + q) < 0.3


def correlations_with_others(scores: np.ndarray, min_common: int = 5) -> np.ndarray:
    """Pearson r of each observer with the mean of the others (NaN where it cannot be judged)."""
    result = np.full(scores.shape[0], np.nan)
    for o in range(scores.shape[0]):
        others = np.delete(scores, o, axis=0)
        has_other = (~np.isnan(others)).any(axis=0)
        common = ~np.isnan(scores[o]) & has_other
        if common.sum() < min_common:
            continue
        own = scores[o, common]
        mean = np.nanmean(others[:, common], axis=0)
        if np.ptp(mean) == 0:
            continue  # the others do not vary: no ranking to agree with
        result[o] = 0.0 if np.ptp(own) == 0 else float(np.corrcoef(own, mean)[0, 1])
    return result


def _correlation_screen(scores: np.ndarray, observers: Sequence[str],
                        settings: ScreeningSettings) -> tuple[dict[str, float], dict[str, float]]:
    """Iterative correlation rule: ({observer: r}, {dropped observer: r when dropped}).

    The worst observer below the threshold is dropped and the others' means recomputed without
    them, until everyone left passes or only two remain: a random observer among three would
    otherwise drag the others' mean, and with it the good observers' r, down with it.
    """
    kept = list(range(len(observers)))
    low: dict[str, float] = {}
    while True:
        r = correlations_with_others(scores[kept], settings.min_common_images)
        judged = [k for k in range(len(kept)) if not np.isnan(r[k])]
        worst = min(judged, key=lambda k: r[k], default=None)
        if worst is None or r[worst] >= settings.min_correlation or len(kept) < 3:
            break
        low[observers[kept[worst]]] = float(r[worst])
        del kept[worst]
    correlations = {observers[i]: float(r[k]) for k, i in enumerate(kept) if not np.isnan(r[k])}
    return {**correlations, **low}, low


def _qualified_observers(scores: np.ndarray, settings: ScreeningSettings) -> int:
    """Observers with at least min_common_images images that enough observers rated."""
    shared = (~np.isnan(scores)).sum(axis=0) >= settings.bt500_min_observers
    per_observer = (~np.isnan(scores[:, shared])).sum(axis=1)
    return int((per_observer >= settings.min_common_images).sum())


def screen(matrix: ScoreMatrix, settings: ScreeningSettings = ScreeningSettings()) -> Screening:
    """Which observers to drop, and why (see the module docstring for the rules)."""
    scores, observers = matrix.scores, matrix.observers
    rule = settings.rule
    note = ""
    if rule == "auto":
        qualified = _qualified_observers(scores, settings)
        if qualified >= settings.bt500_min_observers:
            rule = "both"
        elif len(observers) >= 3:
            rule = "correlation"
            note = (f"too few observers for ITU-R BT.500: {qualified} rated "
                    f"{settings.min_common_images}+ images that "
                    f"{settings.bt500_min_observers}+ observers rated, it needs "
                    f"{settings.bt500_min_observers}")
        else:
            rule = "none"
            note = f"{len(observers)} observer(s): too few to screen"
    rules = {"both": ("bt500", "correlation"), "none": ()}.get(rule, (rule,))
    dropped: dict[str, str] = {}
    counts = bt500_counts(scores, settings.bt500_min_observers)
    bt500 = {o: tuple(int(c) for c in counts[k]) for k, o in enumerate(observers)}
    if "bt500" in rules:
        for o, (p, q, j) in bt500.items():
            if bt500_rejected(p, q, j):
                dropped[o] = (f"ITU-R BT.500: P={p}, Q={q} of {j} images "
                              f"((P+Q)/J={(p + q) / j:.3f} > 0.05, |P-Q|/(P+Q)="
                              f"{abs(p - q) / (p + q):.2f} < 0.3)")
    correlations, low = _correlation_screen(scores, observers, settings)
    if "correlation" in rules:
        for o, value in low.items():
            reason = (f"correlation with the others' mean r={value:.2f} < "
                      f"{settings.min_correlation}")
            dropped[o] = f"{dropped[o]}; {reason}" if o in dropped else reason
    if dropped and len(dropped) == len(observers):
        note = (note + "; " if note else "") + (
            f"the screening would drop all {len(observers)} observers; all are kept")
        dropped = {}
    return Screening(rules, dropped, correlations, bt500, note)


def consistency(ratings: Sequence[store_lib.Rating]) -> dict[str, Consistency]:
    """Agreement of each observer with themselves on the images they rated twice."""
    by_image: dict[tuple[str, str], list[store_lib.Rating]] = defaultdict(list)
    for rating in ratings:
        if rating.withdrawn is None:
            by_image[(rating.observer, rating.image_id)].append(rating)
    differences: dict[str, list[int]] = defaultdict(list)
    for (observer, _), seen in by_image.items():
        if len(seen) >= 2:
            seen = sorted(seen, key=lambda r: r.position)
            differences[observer].append(abs(seen[0].score - seen[1].score))
    result = {}
    for observer in sorted({o for o, _ in by_image}):
        d = np.asarray(differences.get(observer, []), dtype=float)
        if d.size == 0:
            result[observer] = Consistency(0, math.nan, math.nan, math.nan)
        else:
            result[observer] = Consistency(int(d.size), float(d.mean()), float((d == 0).mean()),
                                           float((d <= 1).mean()))
    return result


def mean_opinion_scores(matrix: ScoreMatrix, dropped: Sequence[str] = ()) -> list[Annotation]:
    """Score, std, n and ci95 of every image that a kept observer rated, by path."""
    keep = np.array([o not in set(dropped) for o in matrix.observers], dtype=bool)
    rows = []
    for column, path in zip(matrix.scores[keep].T, matrix.paths):
        values = column[~np.isnan(column)]
        n = len(values)
        if n == 0:
            continue
        std = float(values.std(ddof=1)) if n > 1 else math.nan
        ci95 = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
        rows.append(Annotation(path, float(values.mean()), std, n, ci95))
    return rows


def annotations_csv(rows: Sequence[Annotation]) -> str:
    """The export's text: `path,score,std,n,ci95`, empty std and ci95 where n == 1."""
    buffer = text_io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in rows:
        spread = ["" if math.isnan(v) else f"{v:.4f}" for v in (row.std, row.ci95)]
        writer.writerow([row.path, f"{row.score:.4f}", spread[0], row.n, spread[1]])
    return buffer.getvalue()


@dataclasses.dataclass
class ExportResult:
    rows: list[Annotation]
    screening: Screening
    consistency: dict[str, Consistency]
    report: str


def _report(matrix: ScoreMatrix, screening: Screening, rows: Sequence[Annotation],
            agreement: Mapping[str, Consistency], output: pathlib.Path) -> str:
    names = {"bt500": "ITU-R BT.500 (kurtosis, P/Q)",
             "correlation": "correlation with the others' mean"}
    ruled = " + ".join(names[r] for r in screening.rules) or "none"
    lines = [f"{len(matrix.observers)} observer(s), {len(matrix.image_ids)} image(s) rated",
             f"screening: {ruled}" + (f" ({screening.note})" if screening.note else "")]
    if screening.dropped:
        lines += [f"  dropped {o}: {why}" for o, why in sorted(screening.dropped.items())]
    elif screening.rules:
        lines.append("  nobody dropped")
    lines.append("observer consistency on repeated images (pairs, mean |difference|, "
                 "identical, within one step; r with the others' mean):")
    for observer in matrix.observers:
        c = agreement.get(observer, Consistency(0, math.nan, math.nan, math.nan))
        r = screening.correlations.get(observer)
        r_text = "r n/a" if r is None else f"r={r:.2f}"
        if c.pairs:
            lines.append(f"  {observer}: {c.pairs} pair(s), {c.mean_abs_difference:.2f}, "
                         f"{c.identical:.0%}, {c.within_one:.0%}; {r_text}")
        else:
            lines.append(f"  {observer}: no repeated image rated yet; {r_text}")
    lost = len(matrix.image_ids) - len(rows)
    lines.append(f"{len(rows)} annotation(s) written to {output}"
                 + (f" ({lost} image(s) rated only by dropped observers left out)" if lost else ""))
    return "\n".join(lines)


def export_annotations(store_path: Union[str, pathlib.Path], output: Union[str, pathlib.Path],
                       settings: ScreeningSettings) -> ExportResult:
    """The export: the ratings of `store_path` screened by `settings`, their annotations CSV
    written to `output`, and the report."""
    store_path = pathlib.Path(store_path)
    if not store_path.is_file():
        raise FileNotFoundError(f"{store_path}: no such ratings store")
    output = pathlib.Path(output)
    if not output.parent.is_dir():
        raise FileNotFoundError(f"{output}: the folder {output.parent} does not exist")
    # Read-only: the export never changes the store, and reads one it may not write.
    with store_lib.RatingStore(store_path, read_only=True) as store:
        ratings = store.ratings()
        paths = store.image_paths()
    if not ratings:
        raise errors.InputError(f"{store_path}: holds no ratings yet")
    matrix = score_matrix(ratings, paths)
    screening = screen(matrix, settings)
    rows = mean_opinion_scores(matrix, tuple(screening.dropped))
    io.write_text(output, annotations_csv(rows))
    agreement = consistency(ratings)
    report = _report(matrix, screening, rows, agreement, output)
    print(report)
    return ExportResult(rows, screening, agreement, report)
