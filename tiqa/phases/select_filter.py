"""Choosing a pre-processing filter by score: what the paper says the score is for.

Every candidate filter (tiqa.filters: median, Gaussian, non-local means, total variation, ring
removal, ... each with a few parameters) is applied to slices sampled evenly through the
volume (or through the `slices` it selects; only the sampled slices are read); each result is scored with the quality network; candidates are ranked by their median
score, in a table (CSV, Markdown) and a figure. The sampled slices' angular sampling is checked
first (tiqa.view_check): the score orders scans made from too few views poorly, and the output
says so when the slices look like such scans.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import numpy as np
import tqdm

from tiqa import checkpoints, errors, evaluation, filters, io, scoring, view_check, volumes
from tiqa.phases import settings


def sample_indices(count: int, samples: int) -> list[int]:
    """`samples` slice indices spread evenly through `count` slices (all of them if fewer)."""
    if samples <= 0 or samples >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, samples)})


def _read_slices(path: str, samples: int, normalisation: str, selection: str = "",
                 tiff_planes: str = "volume") -> tuple[np.ndarray, list]:
    """The sampled slices (of those `selection` picks), read one at a time: a volume's
    shared normalisation comes from its bounded sample (tiqa.volumes), not a whole read."""
    items = io.list_inputs(path, tiff_planes=tiff_planes)
    if len(items) > 1:
        items = [items[i] for i in volumes.parse_slices(selection, len(items), "config.slices",
                                                        str(path))]
    chosen = [items[i] for i in sample_indices(len(items), samples)]
    by_source: dict = {}
    for position, (source, index) in enumerate(chosen):
        if index is not None or volumes.is_container(source):
            by_source.setdefault(source, []).append(position)
    slices: list = [None] * len(chosen)
    for source, positions in by_source.items():
        with volumes.streamed(source, normalisation, tiff_planes) as volume:
            images = volume.read([chosen[p][1] or 0 for p in positions])
        for position, image in zip(positions, images):
            slices[position] = image
    for position, (source, index) in enumerate(chosen):
        if slices[position] is None:
            slices[position] = io.read_slice(source, normalisation=normalisation,
                                             tiff_planes=tiff_planes)
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise io.ImageError(f"{path}: sampled slices have different shapes {sorted(shapes)}")
    return np.stack(slices), chosen


@dataclasses.dataclass(frozen=True)
class SelectFilterSettings:
    """configs/select_filter.py, read once."""
    input: str
    output: str
    samples: int
    slices: Any  # as configs/score.py's
    candidates: str
    checkpoint: str
    crops: str
    own_pixels: bool | None  # None: as the model was trained
    batch_size: int
    normalisation: str
    tiff_planes: str
    view_check: bool


def read_settings(config) -> SelectFilterSettings:
    """configs/select_filter.py as frozen settings; a bad key or value is refused here."""
    if not config.input:
        raise errors.InputError("config.input is empty: give a volume, a folder of slices or a slice")
    settings.check_sizes(config, "batch_size")
    if isinstance(config.samples, bool) or not isinstance(config.samples, int) or config.samples < 0:
        raise errors.InputError(f"config.samples must be 0 (all) or a positive whole number, "
                                f"got {config.samples!r}")
    volumes.check_slices(config.slices, "config.slices")
    return settings.block(SelectFilterSettings, config)


def run(config) -> list[dict]:
    """Runs the selection described by configs/select_filter.py; returns the ranked rows."""
    return select(read_settings(config))


def select(selection: SelectFilterSettings) -> list[dict]:
    """Ranks the candidate filters on the sampled slices of `selection.input`; writes the
    table and figure under `selection.output` and returns the ranked rows."""
    output = io.check_output(selection.output, "config.output", folder=True)
    candidates = (filters.parse_candidates(selection.candidates) if selection.candidates
                  else list(filters.CANDIDATES))
    slices, chosen = _read_slices(selection.input, selection.samples, selection.normalisation,
                                  selection.slices, selection.tiff_planes)
    sampling = _sampling_note(slices) if selection.view_check else None
    score = scoring.make_slice_scorer(checkpoints.load_model(selection.checkpoint), selection.crops,
                                      own_pixels=selection.own_pixels)
    output.mkdir(parents=True, exist_ok=True)

    def score_all(images: np.ndarray) -> np.ndarray:
        return scoring.in_fixed_batches(lambda chunk: score(chunk)[0], images, selection.batch_size)

    rows, examples = [], {}
    # A `with` closes the bar however the loop ends, so an error gets a line of its own.
    with tqdm.tqdm(candidates, desc="filters", unit="filter") as progress:
        for name, params in progress:
            filtered = np.stack([filters.apply(name, image, **params) for image in slices])
            scores = score_all(filtered)
            label = filters.describe(name, params)
            rows.append({"filter": label, "median": float(np.median(scores)),
                         "mean": float(np.mean(scores)), "min": float(np.min(scores)),
                         "max": float(np.max(scores)), "slices": len(scores)})
            examples[label] = (filtered[len(filtered) // 2], scores)
    rows.sort(key=lambda row: -row["median"])
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    rows = [{"rank": r["rank"], **{k: v for k, v in r.items() if k != "rank"}} for r in rows]
    notes = [sampling] if sampling else []
    evaluation.write_table(rows, output / "filters.csv", output / "filters.md", notes)
    _figure(rows, examples, slices[len(slices) // 2], output / "filters.png")
    print(evaluation.format_table(rows))
    for note in notes:
        print(note)
    baseline = next((r for r in rows if r["filter"] == filters.describe("identity", {})), None)
    best = rows[0]
    if baseline is not None:
        print(f"best: {best['filter']} (median {best['median']:.2f}) against no filter "
              f"(median {baseline['median']:.2f}), over {best['slices']} sampled slice(s)")
    print(f"written to {output}: filters.csv, filters.md, filters.png")
    return rows


def _sampling_note(slices: np.ndarray) -> str:
    """The angular sampling of the sampled (unfiltered) slices, in a line, with what it means
    for the ranking when some look made from too few views."""
    if not view_check.measurable(*slices.shape[1:]):
        return (f"angular sampling: not checked (slices under {view_check.MIN_SIDE} px a "
                "side).")
    views = [scoring.view_record(image)["views"] for image in slices]
    note = view_check.sampling_note(views)
    if any(count is not None for count in views):
        note += " This ranking rests on that score: check its first choice by eye."
    return note


def _figure(rows: list[dict], examples: dict, original: np.ndarray, path: pathlib.Path) -> None:
    """Scores per candidate (box per filter, best first) and the best three filtered slices."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(8.0, 0.45 * len(rows) + 3), 9.0))
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2, 4, height_ratios=(1.3, 1.0))
    axis = figure.add_subplot(grid[0, :])
    axis.boxplot([examples[r["filter"]][1] for r in rows], showfliers=False)
    axis.set_xticks(range(1, len(rows) + 1))
    axis.set_xticklabels([r["filter"] for r in rows], rotation=60, ha="right", fontsize=8)
    axis.set_ylabel("TIQA score (1 terrible .. 5 excellent)")
    axis.set_title("Candidate filters ranked by median score over the sampled slices")
    axis.grid(axis="y", alpha=0.3)
    panels = [("no filter", original)] + [(r["filter"], examples[r["filter"]][0]) for r in rows[:3]]
    for column, (title, image) in enumerate(panels):
        ax = figure.add_subplot(grid[1, column])
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    figure.tight_layout()
    io.save_figure(figure, path, dpi=110)
