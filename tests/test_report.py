"""Tests for tiqa.report: the files of a report, their content, escaping and bad inputs."""

import csv
import math
import pathlib

import numpy as np
import pytest
from matplotlib.figure import Figure

from tests import images
from tiqa import report

SCRIPT = "<script>alert(1)</script>"


def _volume(name: str, count: int, centre: float, seed: int) -> list[dict]:
    """Records of one synthetic volume: scores around `centre`, slowly varying along it."""
    rng = np.random.default_rng(seed)
    scores = centre + 0.3 * np.sin(np.arange(count) / 4) + rng.normal(0, 0.15, count)
    return [{"volume": name, "file": f"scans/{name}.tif", "slice": i, "score": float(s),
             "spread": float(0.05 + 0.1 * rng.random()), "n_crops": 9}
            for i, s in enumerate(scores)]


def _thumbnail(seed: int, side: int = 720) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((side, side)).astype(np.float32)


def _leftovers(folder: pathlib.Path) -> list[str]:
    """Temporary files of atomic_write left in `folder`."""
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


@pytest.fixture(scope="module")
def two_volumes(tmp_path_factory):
    """A report on two volumes (30 and 20 slices, the second clearly better), with thumbnails."""
    records = _volume("raw", 30, 2.3, seed=1) + _volume("denoised", 20, 4.2, seed=2)
    thumbnails = {(r["file"], r["slice"]): _thumbnail(r["slice"])
                  for r in records if r["slice"] % 7 == 0}
    output = tmp_path_factory.mktemp("report") / "nested" / "out"  # created by write_report
    index = report.write_report(records, output, thumbnails=thumbnails,
                                notes=["scored by model X"])
    return records, output, index


def test_report_writes_every_file(two_volumes):
    records, output, index = two_volumes
    assert index == output / "index.html"
    names = {"index.html", "scores.csv", "volumes_boxplot.png", "score_along_volume.png",
             "best_worst.png"}
    assert {p.name for p in output.iterdir()} == names
    for name in names:
        if name.endswith(".png"):
            images.check_png(output / name)


def test_index_links_names_and_medians(two_volumes):
    records, output, index = two_volumes
    page = index.read_text(encoding="utf-8")
    for name in ("raw", "denoised", "scored by model X", "TIQA quality report"):
        assert name in page
    for name in ("volumes_boxplot.png", "score_along_volume.png", "best_worst.png"):
        assert f'src="{name}"' in page
    assert 'href="scores.csv"' in page
    assert "<script" not in page and "http" not in page  # self-contained, no JavaScript
    for volume in ("raw", "denoised"):
        median = np.median([r["score"] for r in records if r["volume"] == volume])
        assert f"{median:.2f}" in page
    # Volumes in the table keep the order of first appearance.
    assert page.index(">raw<") < page.index(">denoised<")


def test_summarise_matches_numpy(two_volumes):
    records = two_volumes[0]
    rows = report.summarise(records)
    assert [row["volume"] for row in rows] == ["raw", "denoised"]
    for row in rows:
        mine = [r for r in records if r["volume"] == row["volume"]]
        scores = np.array([r["score"] for r in mine])
        assert row["slices"] == len(mine)
        assert row["median"] == pytest.approx(np.median(scores))
        assert row["mean"] == pytest.approx(scores.mean())
        assert row["std"] == pytest.approx(scores.std())
        assert row["min"] == pytest.approx(scores.min())
        assert row["max"] == pytest.approx(scores.max())
        worst, best = mine[int(scores.argmin())], mine[int(scores.argmax())]
        assert row["worst"] == f"{worst['file']}#{worst['slice']}"
        assert row["best"] == f"{best['file']}#{best['slice']}"
    assert rows[1]["median"] > rows[0]["median"] + 1


def test_csv_reads_back(two_volumes):
    records, output, _ = two_volumes
    with open(output / "scores.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0].keys()) == ["volume", "file", "slice", "score", "spread", "n_crops"]
    assert len(rows) == len(records)
    for row, record in zip(rows, records):
        assert row["volume"] == record["volume"] and row["file"] == record["file"]
        assert int(row["slice"]) == record["slice"] and int(row["n_crops"]) == record["n_crops"]
        assert float(row["score"]) == record["score"]  # full precision
        assert float(row["spread"]) == record["spread"]


def test_names_are_escaped(tmp_path):
    # The last name would be typeset as (broken) mathtext if figures did not escape '$'.
    records = (_volume(SCRIPT, 3, 3.0, seed=3) + _volume("a & b", 2, 4.0, seed=4)
               + _volume(r"cost $\badmacro{$ 5", 2, 2.0, seed=5))
    index = report.write_report(records, tmp_path, title="<b>title</b>", notes=[SCRIPT])
    page = index.read_text(encoding="utf-8")
    assert SCRIPT not in page and "<b>title</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &amp; b" in page and "&lt;b&gt;title&lt;/b&gt;" in page


def test_figure_names_stay_distinct():
    long = [f"acquisition_with_a_long_name_{i}_binning2_filtered" for i in range(3)]
    names = report._volume_names(long)
    assert len(set(names)) == 3 and names[0].startswith("1. ")
    assert all(len(name) <= report._MAX_NAME + 3 for name in names)
    assert report._volume_names(["raw", "a$b$"]) == ["raw", r"a\$b\$"]


def test_single_image_has_no_along_volume_plot(tmp_path):
    # An earlier report in the same folder leaves a plot that this one must not keep.
    report.write_report(_volume("stack", 3, 3.0, seed=5), tmp_path)
    assert (tmp_path / "score_along_volume.png").exists()
    record = {"volume": "195.bmp", "file": "images/195.bmp", "slice": None, "score": 3.7,
              "spread": 0.2, "n_crops": 5}
    index = report.write_report([record], tmp_path,
                                thumbnails={("images/195.bmp", None): _thumbnail(0, 300)})
    page = index.read_text(encoding="utf-8")
    assert not (tmp_path / "score_along_volume.png").exists()
    assert "score_along_volume.png" not in page
    assert "195.bmp" in page and "3.70" in page
    for name in ("volumes_boxplot.png", "best_worst.png"):
        images.check_png(tmp_path / name)
        assert f'src="{name}"' in page
    rows = report.summarise([record])
    assert rows[0]["worst"] == rows[0]["best"] == "images/195.bmp"
    assert rows[0]["std"] == 0.0


def test_bad_records_raise(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        report.write_report([], tmp_path / "empty")
    records = _volume("vol", 5, 3.0, seed=6)
    records[3]["score"] = math.nan
    with pytest.raises(ValueError, match=r"scans/vol\.tif#3"):
        report.write_report(records, tmp_path / "nan")
    with pytest.raises(ValueError, match=r"scans/vol\.tif#3"):
        report.summarise(records)
    # Inputs are checked before anything is written.
    assert not (tmp_path / "empty").exists() and not (tmp_path / "nan").exists()
    del records[0]["spread"]
    with pytest.raises(ValueError, match="spread"):
        report.summarise(records)


def test_failure_while_writing_leaves_no_temporaries(tmp_path, monkeypatch):
    def broken_savefig(self, path, **kwargs):
        pathlib.Path(path).write_bytes(images.PNG_SIGNATURE)  # a partial file, then the failure
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        report.write_report(_volume("vol", 4, 3.0, seed=7), tmp_path)
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "index.html").exists()  # the page is written last
    assert not (tmp_path / "volumes_boxplot.png").exists()
