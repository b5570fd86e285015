"""Human reference scores: reading annotation CSVs and looking up each reference's score.

The survey (`tiqa.annotate`) exports the CSV read here; `tiqa.labels` projects the scores onto
the distorted images.
"""

from __future__ import annotations

import csv
import logging
import pathlib
from typing import Mapping, Sequence

import numpy as np

from tiqa import errors


def read_annotations(path: str | pathlib.Path) -> dict[str, float]:
    """Reads an annotations CSV into {image path: score}.

    Accepted layouts: `path,score[,...]` (the survey export `path,score,std,n,ci95` included),
    or `path,<observer 1>,<observer 2>,...` whose numeric columns are averaged (empty cells are
    skipped). Scores must lie in [1, 5].
    """
    path = pathlib.Path(path)
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise errors.InputError(f"{path}: cannot read annotations: {error}") from error
    if not rows or "path" not in rows[0]:
        raise errors.InputError(f"{path}: annotations CSV needs a header with a 'path' column")
    columns = ["score"] if "score" in rows[0] else [c for c in rows[0] if c != "path"]
    scores = {}
    for line, row in enumerate(rows, start=2):
        values = []
        for column in columns:
            cell = (row.get(column) or "").strip()
            if not cell:
                continue
            try:
                values.append(float(cell))
            except ValueError:
                raise errors.InputError(f"{path}:{line}: column {column!r} is not a number: {cell!r}") from None
        if not values:
            raise errors.InputError(f"{path}:{line}: no score for {row['path']!r}")
        score = float(np.mean(values))
        if not (1.0 <= score <= 5.0) or not np.isfinite(score):
            raise errors.InputError(f"{path}:{line}: score {score} for {row['path']!r} is outside 1..5")
        scores[row["path"]] = score
    return scores


def reference_scores_for(sources: Sequence[str], annotations: Mapping[str, float],
                         default_score: float) -> np.ndarray:
    """Looks each source up by its path as written, then by file name; others get the default.

    The default is a prior, not a measurement: a warning lists the images that fell back on it.
    """
    by_name = {pathlib.Path(p).name: s for p, s in annotations.items()}
    scores, missing = [], []
    for source in sources:
        if source in annotations:
            scores.append(annotations[source])
        elif pathlib.Path(source).name in by_name:
            scores.append(by_name[pathlib.Path(source).name])
        else:
            scores.append(default_score)
            missing.append(source)
    if missing:
        shown = ", ".join(sorted(set(missing))[:5])
        logging.warning("%d image(s) have no human score; using the default %.2f for: %s%s",
                        len(set(missing)), default_score, shown,
                        " ..." if len(set(missing)) > 5 else "")
    return np.asarray(scores, np.float32)
