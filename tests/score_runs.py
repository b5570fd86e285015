"""launch.score run as a user runs it, for the tests of what its flags add to the CSV and the
report."""

import csv
import pathlib

from configs import score as score_config
from tests import tiny_models
from tiqa.phases import score


def score_folder(folder: pathlib.Path, tmp_path: pathlib.Path, **flags) -> tuple[str, dict]:
    """launch.score on `folder` with the tiny model, a report and `flags` set on its config:
    (the report's HTML, the CSV's rows by file stem)."""
    config = score_config.get_config()
    config.input, config.output = str(folder), str(tmp_path / "scores.csv")
    tiny_models.export_tiny_score_model(tmp_path / "model")
    config.checkpoint = str(tmp_path / "model")
    config.report = str(tmp_path / "report")
    for key, value in flags.items():
        setattr(config, key, value)
    score.run(config)
    with open(tmp_path / "scores.csv", newline="") as handle:
        rows = {pathlib.Path(row["file"]).stem: row for row in csv.DictReader(handle)}
    return (tmp_path / "report" / "index.html").read_text(), rows


def part_round_trip(rows: dict, tmp_path: pathlib.Path, columns: dict) -> tuple[list, list]:
    """The score CSV's `rows` as records (`columns`: each optional column's parser), and the
    same records written to a multi-process part file and read back."""
    records = [{**row, "slice": None, "score": float(row["score"]),
                "spread": float(row["spread"]), "n_crops": int(row["n_crops"]),
                **{name: parse(row[name]) for name, parse in columns.items()}}
               for row in rows.values()]
    part = tmp_path / "part.csv"
    score._write_part(part, records, [0, 1])
    return records, [record for _, record in score._read_part(part)]


def penalty_on_and_off(path: pathlib.Path, model: pathlib.Path, key: str,
                       tmp_path: pathlib.Path) -> dict:
    """launch.score on one slice with `model`, its config's `key` True then False: {asked:
    (the slice's score, the report's HTML)}."""
    config = score_config.get_config()
    config.input, config.checkpoint = str(path), str(model)
    found = {}
    for asked in (True, False):
        setattr(config, key, asked)
        config.output = str(tmp_path / f"scores_{asked}.csv")
        config.report = str(tmp_path / f"report_{asked}")
        record = score.run(config)["records"][0]
        found[asked] = (record["score"], (tmp_path / f"report_{asked}" / "index.html").read_text())
    return found
