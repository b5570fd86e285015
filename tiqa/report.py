"""A quality report on scored slices: figures, a summary table and a CSV, as one HTML page.

`write_report(records, output_dir)` turns the per-slice scores of one or more volumes (a
multi-page TIFF, a folder of slices, or a single image each) into a folder a person would rather
look at than read:

    index.html              title, notes, a summary table per volume, the figures with one-line
                            captions and a link to the CSV; self-contained (inline CSS, relative
                            links, no JavaScript, no external resources).
    volumes_boxplot.png     one box per volume with its slice scores as jittered points and its
                            median written beside it: the figure that compares acquisitions or
                            pre-processings (like Fig. 4a of the paper).
    score_along_volume.png  score against slice index per volume, shaded +-spread; only when
                            some volume has more than one slice.
    best_worst.png          thumbnails of the lowest- and highest-scoring slices (up to 4 each);
                            only when thumbnails are given.
    scores.csv              the records (volume, file, slice, score, spread, n_crops).

A record is a mapping with keys `volume` (name of the volume, folder or image), `file` (path of
the slice's file), `slice` (page index in the file, or None for a 2-D image), `score` (the
quality score, 1 terrible .. 5 excellent), `spread` (std of the score over the crops of the
slice) and `n_crops`. Volumes keep the order in which they first appear in the records.

Along a volume a slice is placed at its `slice` index when every slice of that volume has a
distinct index (pages of a TIFF stack), and at its position in the records otherwise (a folder
of 2-D images, whose slices have index None).

Every file is written through `tiqa.io.atomic_write` (whole or not at all) and index.html last,
so it never links to a figure that is not there; an optional figure that a run skips is removed
if an earlier report left one in the folder, so the folder never shows a stale plot.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io as _stdio
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import matplotlib

matplotlib.use("Agg")  # no display: figures are only ever written to files

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from tiqa import io  # noqa: E402

PathLike = Union[str, os.PathLike]
Thumbnails = Mapping[tuple[str, Optional[int]], Any]

INDEX = "index.html"
CSV = "scores.csv"
ALONG_VOLUME = "score_along_volume.png"
BOXPLOT = "volumes_boxplot.png"
BEST_WORST = "best_worst.png"
CSV_COLUMNS = ("volume", "file", "slice", "score", "spread", "n_crops")
# The quality levels of the 1..5 scale, lowest first.
LEVELS = ("terrible", "bad", "average", "good", "excellent")
# Thumbnails shown per row (best and worst) and their longest side in pixels.
MAX_THUMBNAILS = 4
THUMBNAIL_SIDE = 240
# Longest volume name drawn in a figure (the HTML table shows names in full).
_MAX_NAME = 28
_DPI = 110


@dataclasses.dataclass(frozen=True)
class _Record:
    """One checked record."""

    volume: str
    file: str
    slice: Optional[int]
    score: float
    spread: float
    n_crops: int

    @property
    def label(self) -> str:
        """'file#slice', or just the file for a 2-D image."""
        return self.file if self.slice is None else f"{self.file}#{self.slice}"

    @property
    def short_label(self) -> str:
        """The label with the file's name only, for figures and table cells."""
        name = pathlib.PurePath(self.file).name or self.file
        return name if self.slice is None else f"{name}#{self.slice}"


# --------------------------------------------------------------------------------------------
# Checking and summarising.
# --------------------------------------------------------------------------------------------


def _finite_float(value: Any, what: str, where: str) -> float:
    """`value` as a float, or a ValueError naming the record if it is not a finite number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {what} {value!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"{where}: {what} is {value!r}, not a finite number")
    return number


def _check_records(records: Sequence[Mapping[str, Any]]) -> list[_Record]:
    """The records checked and converted, or a ValueError naming the first bad one."""
    if isinstance(records, Mapping) or not isinstance(records, Sequence):
        raise TypeError(f"records must be a list of dicts, got {type(records).__name__}")
    if len(records) == 0:
        raise ValueError("no records to report: nothing was scored")
    checked = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(f"record {i} is a {type(record).__name__}, not a dict")
        missing = [key for key in CSV_COLUMNS if key not in record]
        if missing:
            raise ValueError(f"record {i} lacks the key(s) {missing}; each record needs "
                             f"{list(CSV_COLUMNS)}")
        index = record["slice"]
        if index is not None and (isinstance(index, bool)
                                  or not isinstance(index, (int, np.integer))):
            raise ValueError(f"record {i} ({record['file']}): slice {index!r} is not an integer "
                             "or None")
        file = os.fspath(record["file"])
        where = f"record {i} ({file if index is None else f'{file}#{index}'})"
        spread = _finite_float(record["spread"], "spread", where)
        if spread < 0:
            raise ValueError(f"{where}: spread {spread} is negative")
        n_crops = record["n_crops"]
        if isinstance(n_crops, bool) or not isinstance(n_crops, (int, np.integer)) or n_crops < 0:
            raise ValueError(f"{where}: n_crops {n_crops!r} is not a non-negative integer")
        checked.append(_Record(volume=str(record["volume"]), file=file,
                               slice=None if index is None else int(index),
                               score=_finite_float(record["score"], "score", where),
                               spread=spread, n_crops=int(n_crops)))
    return checked


def _by_volume(records: Sequence[_Record]) -> dict[str, list[_Record]]:
    """Records grouped by volume; dicts keep insertion order, so volumes stay as first seen."""
    groups: dict[str, list[_Record]] = {}
    for record in records:
        groups.setdefault(record.volume, []).append(record)
    return groups


def _summary_rows(groups: Mapping[str, Sequence[_Record]]) -> list[dict]:
    rows = []
    for volume, members in groups.items():
        scores = np.array([r.score for r in members])
        # argmin/argmax take the first of equal scores, i.e. the earliest slice.
        worst, best = members[int(np.argmin(scores))], members[int(np.argmax(scores))]
        rows.append({"volume": volume, "slices": len(members),
                     "median": float(np.median(scores)), "mean": float(scores.mean()),
                     "std": float(scores.std()), "min": float(scores.min()),
                     "max": float(scores.max()), "worst": worst.label, "best": best.label})
    return rows


def summarise(records: Sequence[Mapping[str, Any]]) -> list[dict]:
    """One summary row per volume, in the order the volumes first appear in `records`.

    Returns:
        Dicts with keys volume, slices (count), median, mean, std (population, ddof=0), min,
        max (floats) and worst, best ('file#slice', or the file for a 2-D image; the first
        slice when several share the lowest or highest score).

    Raises:
        ValueError: for empty records, a record lacking a key, or a score that is NaN or inf.
    """
    return _summary_rows(_by_volume(_check_records(records)))


def level_name(score: float) -> str:
    """The name of the quality level nearest `score` (scores beyond 1..5 take the end names)."""
    level = min(max(math.floor(score + 0.5), 1), len(LEVELS))
    return LEVELS[level - 1]


# --------------------------------------------------------------------------------------------
# Thumbnails.
# --------------------------------------------------------------------------------------------


def _downscale(image: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """Area-downscales so the longest side is at most `side` (PIL BOX on float32)."""
    height, width = image.shape
    factor = side / max(height, width)
    if factor >= 1:
        return image
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    small = Image.fromarray(image.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX)
    return np.asarray(small)


def _check_thumbnails(thumbnails: Optional[Thumbnails],
                      records: Sequence[_Record]) -> dict[tuple[str, Optional[int]], np.ndarray]:
    """Downscaled thumbnails of the records that have one; entries for no record are ignored."""
    if thumbnails is None:
        return {}
    if not isinstance(thumbnails, Mapping):
        raise TypeError(f"thumbnails must map (file, slice) to an image, got "
                        f"{type(thumbnails).__name__}")
    # Keys may hold paths or numpy integers; compare them as the records are stored.
    given = {(os.fspath(file), None if index is None else int(index)): image
             for (file, index), image in thumbnails.items()}
    small = {}
    for record in records:
        key = (record.file, record.slice)
        if key not in given or key in small:
            continue
        image = np.asarray(given[key], dtype=np.float64)
        if image.ndim != 2 or image.size == 0:
            raise ValueError(f"thumbnail of {record.label}: expected a non-empty 2-D image, got "
                             f"shape {image.shape}")
        if not np.isfinite(image).all():
            raise ValueError(f"thumbnail of {record.label}: holds NaN or inf values")
        # Values are meant to lie in [0, 1]; clipping keeps round-off from shifting the grey scale.
        small[key] = np.clip(_downscale(image), 0.0, 1.0)
    return small


# --------------------------------------------------------------------------------------------
# Figures.
# --------------------------------------------------------------------------------------------


def _plain(text: str, limit: int = _MAX_NAME) -> str:
    """`text` shortened to `limit` characters and with '$' escaped, so matplotlib draws it as is
    rather than as mathtext (a name like 'a$b$' would otherwise be typeset, or fail to parse).

    The middle is cut, not the end: names of a series often differ only in their endings.
    """
    if len(text) > limit:
        head = (limit - 1) // 2
        text = text[:head] + "\u2026" + text[len(text) - (limit - 1 - head):]
    return text.replace("$", r"\$")


def _distinct_tails(volumes: Sequence[str]) -> list[str]:
    """The shortest trailing parts of the paths that still tell the volumes apart (often the
    file name alone), since the folders they share say nothing about which is which."""
    parts = [pathlib.PurePath(volume).parts or (volume,) for volume in volumes]
    for depth in range(1, max(len(p) for p in parts) + 1):
        tails = ["/".join(p[-depth:]) for p in parts]
        if len(set(tails)) == len(tails):
            return tails
    return list(volumes)


def _volume_names(volumes: Sequence[str]) -> list[str]:
    """Names of the volumes for figures; numbered in table order if shortening made two equal."""
    names = [_plain(volume) for volume in _distinct_tails(volumes)]
    if len(set(names)) < len(names):
        names = [f"{i}. {name}" for i, name in enumerate(names, start=1)]
    return names


def _score_limits(scores: np.ndarray) -> tuple[float, float]:
    """The y range: the whole 1..5 scale, widened for scores beyond it."""
    return min(1.0, float(scores.min())) - 0.25, max(5.0, float(scores.max())) + 0.25


def _score_axis(axes: Any, scores: np.ndarray) -> None:
    """A y axis for scores: 1..5 with the level names on the right, grid at each level."""
    axes.set_ylim(*_score_limits(scores))
    axes.set_yticks(range(1, len(LEVELS) + 1))
    axes.set_ylabel("quality score")
    axes.grid(True, axis="y", alpha=0.3)
    names = axes.secondary_yaxis("right")
    names.set_yticks(range(1, len(LEVELS) + 1), labels=LEVELS)
    names.tick_params(length=0)


def _positions(members: Sequence[_Record]) -> np.ndarray:
    """x of each slice along its volume: its index if all are distinct integers, else its order."""
    indices = [r.slice for r in members]
    if None not in indices and len(set(indices)) == len(indices):
        return np.array(indices, dtype=np.float64)
    return np.arange(len(members), dtype=np.float64)


def _along_volume_figure(groups: Mapping[str, Sequence[_Record]]) -> Figure:
    figure = Figure(figsize=(8.0, 4.6), layout="constrained")
    axes = figure.add_subplot()
    colours = matplotlib.colormaps["tab10"]
    by_position = False
    names = _volume_names(list(groups))
    for i, (members, name) in enumerate(zip(groups.values(), names)):
        x = _positions(members)
        by_position |= any(r.slice is None for r in members) or len(members) > len(set(x))
        order = np.argsort(x, kind="stable")
        x = x[order]
        score = np.array([members[j].score for j in order])
        spread = np.array([members[j].spread for j in order])
        colour = colours(i % 10)
        axes.fill_between(x, score - spread, score + spread, color=colour, alpha=0.2, linewidth=0)
        axes.plot(x, score, color=colour, marker="o", markersize=3 if len(x) <= 200 else 0,
                  linewidth=1.2, label=f"{name} ({len(x)})")
    all_scores = np.array([r.score for members in groups.values() for r in members])
    _score_axis(axes, all_scores)
    axes.set_xlabel("slice index" + (" (or position in the folder)" if by_position else ""))
    axes.set_title("Score along each volume (band: \u00b1 spread over the crops)")
    # As many columns as fit the figure's width (about 90 characters of small text).
    longest = max(len(name) for name in names) + 6
    figure.legend(loc="outside lower center", ncols=max(1, min(len(groups), 4, 90 // longest)),
                  fontsize="small", frameon=False)
    return figure


def _boxplot_figure(groups: Mapping[str, Sequence[_Record]]) -> Figure:
    count = len(groups)
    names = _volume_names(list(groups))
    slanted = count > 4 or max(len(n) for n in names) > 12
    figure = Figure(figsize=(max(5.0, 1.3 * count + 2.5), 4.8), layout="constrained")
    axes = figure.add_subplot()
    scores = [np.array([r.score for r in members]) for members in groups.values()]
    positions = np.arange(1, count + 1)
    # Fliers are off: every slice is drawn as a point already.
    axes.boxplot(scores, positions=positions, widths=0.5, showfliers=False, patch_artist=True,
                 boxprops={"facecolor": "#dbe7f3", "edgecolor": "#3b6ea5"},
                 medianprops={"color": "#c0392b", "linewidth": 2},
                 whiskerprops={"color": "#3b6ea5"}, capprops={"color": "#3b6ea5"})
    # A fixed seed keeps the jitter, and so the figure, the same from run to run.
    rng = np.random.default_rng(0)
    for position, values in zip(positions, scores):
        jitter = rng.uniform(-0.13, 0.13, size=values.size)
        axes.scatter(position + jitter, values, s=12, color="0.2", alpha=0.55, zorder=3,
                     linewidths=0)
        median = float(np.median(values))
        axes.annotate(f"{median:.2f}", (position + 0.27, median), xytext=(3, 0),
                      textcoords="offset points", va="center", fontsize="small",
                      color="#c0392b", fontweight="bold")
    axes.set_xticks(positions, labels=names, rotation=25 if slanted else 0,
                    ha="right" if slanted else "center")
    axes.set_xlim(0.4, count + 0.8)
    _score_axis(axes, np.concatenate(scores))
    axes.set_title("Slice scores per volume (red line and number: median)")
    return figure


def _best_worst_figure(records: Sequence[_Record],
                       small: Mapping[tuple[str, Optional[int]], np.ndarray]) -> Figure:
    shown = sorted((r for r in records if (r.file, r.slice) in small), key=lambda r: r.score)
    # No slice is shown twice: with fewer than 2 * MAX_THUMBNAILS, each row gets half.
    per_row = min(MAX_THUMBNAILS, len(shown) // 2)
    if per_row == 0:
        rows = [("Scored slice", shown)]
    else:
        rows = [("Lowest scores", shown[:per_row]), ("Highest scores", shown[::-1][:per_row])]
    columns = max(len(members) for _, members in rows)
    # A lone slice is drawn larger: there is room, and nothing to compare it with.
    side = 2.3 if per_row else 3.6
    figure = Figure(figsize=(side * columns + 0.3, (side + 0.6) * len(rows) + 0.2),
                    layout="constrained")
    subfigures = figure.subfigures(len(rows), 1, squeeze=False)[:, 0]
    for subfigure, (heading, members) in zip(subfigures, rows):
        subfigure.suptitle(heading, fontweight="bold")
        for k, axes in enumerate(subfigure.subplots(1, columns, squeeze=False)[0]):
            axes.set_axis_off()
            if k >= len(members):
                continue
            record = members[k]
            axes.imshow(small[(record.file, record.slice)], cmap="gray", vmin=0.0, vmax=1.0,
                        interpolation="antialiased")
            axes.set_title(f"{record.score:.2f} \u00b1 {record.spread:.2f} "
                           f"({level_name(record.score)})\n{_plain(record.short_label)}",
                           fontsize="small")
    return figure


# --------------------------------------------------------------------------------------------
# Tables and the page.
# --------------------------------------------------------------------------------------------


def _csv_text(records: Sequence[_Record]) -> str:
    """The records as CSV; floats in full precision so they read back exactly."""
    buffer = _stdio.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        writer.writerow([r.volume, r.file, "" if r.slice is None else r.slice, repr(r.score),
                         repr(r.spread), r.n_crops])
    return buffer.getvalue()


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; }
.note { color: #555; margin: 0.1em 0; }
.scale { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.95em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; }
th { background: #f3f5f8; }
td.name, th.name { text-align: left; overflow-wrap: anywhere; max-width: 20em; }
.level { color: #777; font-size: 0.85em; }
.bar { display: inline-block; height: 0.6em; background: #3b6ea5; margin-left: 0.4em; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.92em; margin-top: 0.3em; }
"""

_CAPTIONS = {
    BOXPLOT: ("One box per volume: the box spans the middle half of its slice scores, the red "
              "line and number give the median, whiskers reach the most extreme slices within "
              "1.5 box heights, and each dot is one slice. Higher is better; boxes that do not "
              "overlap point to a clear difference in quality."),
    ALONG_VOLUME: ("Score of each slice against its position in the volume, one line per "
                   "volume; the shaded band is \u00b1 the spread of the score over the crops of "
                   "that slice. Dips point to slices or regions of lower quality."),
    BEST_WORST: ("The lowest- and highest-scoring slices that have a thumbnail, each with its "
                 "score \u00b1 spread, its quality level and its file#slice."),
}


def _summary_table(rows: Sequence[Mapping[str, Any]]) -> str:
    # The row number matches the numbering that figures use when shortened names collide.
    head = ("<tr><th>#</th><th class=\"name\">volume</th><th>slices</th><th>median</th>"
            "<th>mean</th>"
            "<th>std</th><th>min</th><th>max</th><th class=\"name\">worst slice</th>"
            "<th class=\"name\">best slice</th></tr>")
    lines = ["<table>", head]
    for number, row in enumerate(rows, start=1):
        # The bar shows where the median sits on the 1..5 scale, at a glance.
        width = 1.5 * min(max(row["median"] - 1.0, 0.0), 4.0)
        cells = [f"<td>{number}</td>", f"<td class=\"name\">{_escape(row['volume'])}</td>",
                 f"<td>{row['slices']}</td>",
                 f"<td>{row['median']:.2f} <span class=\"level\">{level_name(row['median'])}"
                 f"</span><span class=\"bar\" style=\"width: {width:.1f}em\"></span></td>"]
        cells += [f"<td>{row[key]:.2f}</td>" for key in ("mean", "std", "min", "max")]
        for key in ("worst", "best"):
            # The file's name is shown; the full path is in the tooltip.
            short = pathlib.PurePath(row[key]).name or row[key]
            cells.append(f"<td class=\"name\" title=\"{_escape(row[key])}\">{_escape(short)}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _page(title: str, notes: Sequence[str], rows: Sequence[Mapping[str, Any]],
          figures: Sequence[str], n_records: int) -> str:
    scale = " \u00b7 ".join(f"{i} {name}" for i, name in enumerate(LEVELS, start=1))
    parts = ["<!DOCTYPE html>", "<html lang=\"en\">", "<head>", "<meta charset=\"utf-8\">",
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
             f"<title>{_escape(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
             f"<h1>{_escape(title)}</h1>"]
    parts += [f"<p class=\"note\">{_escape(note)}</p>" for note in notes]
    parts += [f"<p class=\"scale\">{n_records} slice{'s' if n_records != 1 else ''} in "
              f"{len(rows)} volume{'s' if len(rows) != 1 else ''}. Quality scale: {scale}.</p>",
              "<h2>Summary per volume</h2>", _summary_table(rows),
              f"<p>All scores: <a href=\"{CSV}\">{CSV}</a> (one row per slice).</p>"]
    if figures:
        parts.append("<h2>Figures</h2>")
    for name in figures:
        parts += ["<figure>", f"<a href=\"{name}\"><img src=\"{name}\" alt=\"{name}\"></a>",
                  f"<figcaption>{_escape(_CAPTIONS[name])}</figcaption>", "</figure>"]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_report(records: Sequence[Mapping[str, Any]], output_dir: PathLike,
                 thumbnails: Optional[Thumbnails] = None, title: str = "TIQA quality report",
                 notes: Sequence[str] = ()) -> pathlib.Path:
    """Writes the quality report of scored slices into `output_dir` (see the module docstring).

    Args:
        records: one dict per scored slice (keys volume, file, slice, score, spread, n_crops).
        output_dir: the report's folder, created if missing.
        thumbnails: optional map (file, slice) -> 2-D slice image in [0, 1], of any size (it is
            downscaled); only slices with one appear in best_worst.png.
        title: the page's title.
        notes: lines shown under the title (e.g. which model scored the slices).

    Returns:
        The path of index.html.

    Raises:
        ValueError: for empty records, a record lacking a key, a NaN or inf score (the message
            names the file and slice), or a thumbnail that is not a finite 2-D image. Inputs are
            checked before anything is written.
    """
    checked = _check_records(records)
    small = _check_thumbnails(thumbnails, checked)
    notes = (notes,) if isinstance(notes, str) else tuple(str(note) for note in notes)
    groups = _by_volume(checked)
    rows = _summary_rows(groups)

    output = pathlib.Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    io.write_text(output / CSV, _csv_text(checked))
    figures = [BOXPLOT]
    io.save_figure(_boxplot_figure(groups), output / BOXPLOT, dpi=_DPI)
    if any(len(members) > 1 for members in groups.values()):
        figures.append(ALONG_VOLUME)
        io.save_figure(_along_volume_figure(groups), output / ALONG_VOLUME, dpi=_DPI)
    if small:
        figures.append(BEST_WORST)
        io.save_figure(_best_worst_figure(checked, small), output / BEST_WORST, dpi=_DPI)
    # A figure this run skips would otherwise linger from an earlier report in the same folder.
    for name in (ALONG_VOLUME, BEST_WORST):
        if name not in figures:
            (output / name).unlink(missing_ok=True)
    index = output / INDEX
    io.write_text(index, _page(str(title), notes, rows, figures, len(checked)))
    return index
