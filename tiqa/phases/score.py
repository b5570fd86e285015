"""The scoring phase (configs/score.py): every selected slice of the inputs scored, a CSV of
scores and optionally the report; with `distributed`, each process scores its share and process
0 merges the parts.
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib
import time
from typing import Any

from tiqa import centre_check, checkpoints, errors, io, penalties, scoring, view_check, volumes
from tiqa.phases import settings
from tiqa.scoring import (csv_fields, cut_batches, plan_slices, report_thumbnails, score_batches,
                          share, write_scores_csv)


@dataclasses.dataclass(frozen=True)
class ScoreSettings:
    """configs/score.py, read once."""
    input: str
    output: str
    report: str
    checkpoint: str
    crops: str
    most_per_side: int  # 0: the whole grid
    own_pixels: bool | None  # None: as the model was trained
    ring_check: bool
    view_penalty: bool
    view_check: bool
    centre_penalty: bool
    noise_penalty: bool
    centre_check: bool
    batch_size: int
    normalisation: str
    tiff_planes: str
    slices: Any  # '' (all), an index or a Python slice, checked by volumes.check_slices
    distributed: bool
    coordinator_address: str
    num_processes: int
    process_id: int
    merge_timeout: float


def read_settings(config) -> ScoreSettings:
    """configs/score.py as frozen settings; a bad key or value is refused here."""
    settings.check_sizes(config, "batch_size")
    return settings.block(ScoreSettings, config)


def _check_config(config: ScoreSettings) -> None:
    """Every check that needs no pixels, before any work."""
    if not config.input:
        raise errors.InputError("config.input is empty: give an image, a folder of slices or a volume")
    errors.check_positive(config.batch_size, "config.batch_size")
    volumes.check_slices(config.slices, "config.slices")
    errors.check_non_negative(config.most_per_side, "config.most_per_side", scoring.WHOLE_GRID)
    if config.distributed:
        if config.num_processes < 0:
            raise errors.InputError(f"config.num_processes must be >= 0 (0: from the "
                                    f"environment), got {config.num_processes}")
        if config.num_processes and not -1 <= config.process_id < config.num_processes:
            raise errors.InputError(f"config.process_id={config.process_id} is not in "
                                    f"0..{config.num_processes - 1} (config.num_processes)")
        if config.merge_timeout <= 0:
            raise errors.InputError(f"config.merge_timeout must be positive, got "
                                    f"{config.merge_timeout}")


def _plan(config: ScoreSettings):
    return plan_slices(config.input, config.slices, config.tiff_planes)


def _score(config: ScoreSettings, loaded, batches, desc: str) -> list[tuple[int, dict]]:
    return score_batches(loaded, batches, crops=config.crops, own_pixels=config.own_pixels,
                         most_per_side=config.most_per_side,
                         batch_size=config.batch_size,
                         normalisation=config.normalisation, tiff_planes=config.tiff_planes,
                         desc=desc, with_ring_check=config.ring_check,
                         with_view_penalty=config.view_penalty, with_view_check=config.view_check,
                         with_centre_penalty=config.centre_penalty,
                         with_centre_check=config.centre_check,
                         with_noise_penalty=config.noise_penalty)


def _thumbnails(config: ScoreSettings, records: list[dict], work) -> dict:
    return report_thumbnails(records, work, normalisation=config.normalisation,
                             tiff_planes=config.tiff_planes)


def score_inputs(config: ScoreSettings, process: int = 0, processes: int = 1,
                 work=None) -> tuple[list[dict], dict]:
    """Scores every selected slice of every input (comma-separated paths, `\\,` for a comma in
    a path) that falls to process `process` of `processes`; returns (records, thumbnails).
    `work`: the plan (`plan_slices`), where the caller has made it already.

    Slices are read a batch at a time (`tiqa.volumes`), so memory is set by the batch, not the
    volume. Thumbnails (only with `config.report`, and only in a single process) are those of
    the slices the report shows."""
    _check_config(config)
    loaded = checkpoints.load_model(config.checkpoint)
    work = _plan(config) if work is None else work
    batches = share(cut_batches(work, config.batch_size), process, processes)
    desc = "scoring" if processes == 1 else f"scoring (process {process} of {processes})"
    records = [record for _, record in
               sorted(_score(config, loaded, batches, desc), key=lambda item: item[0])]
    thumbnails = {}
    if config.report and processes == 1 and records:
        thumbnails = _thumbnails(config, records, work)
    return records, thumbnails


# --- More than one process ----------------------------------------------------------------------


def _join_processes(config: ScoreSettings) -> tuple[int, int]:
    """(this process, number of processes): (0, 1) unless `config.distributed`, when
    jax.distributed is started from the config's keys (those left empty or -1 come from the
    environment jax.distributed reads: Slurm, Open MPI, a TPU pod...)."""
    if not config.distributed:
        return 0, 1
    import jax

    if not jax.distributed.is_initialized():
        arguments = {}
        if config.coordinator_address:
            arguments["coordinator_address"] = config.coordinator_address
        if config.num_processes:
            arguments["num_processes"] = config.num_processes
        if config.process_id >= 0:
            arguments["process_id"] = config.process_id
        jax.distributed.initialize(**arguments, initialization_timeout=int(config.merge_timeout))
    return jax.process_index(), jax.process_count()


def _part_path(output: pathlib.Path, process: int, processes: int) -> pathlib.Path:
    return output.with_name(f".{output.name}.part-{process:05d}-of-{processes:05d}")


def _write_part(path: pathlib.Path, records: list[dict], orders: list[int]) -> None:
    with io.atomic_write(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            fields = ["order", *csv_fields(records)]
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            for order, record in zip(orders, records):
                writer.writerow({"order": order, **{k: ("" if record[k] is None else record[k])
                                                    for k in fields[1:]}})


def _read_part(path: pathlib.Path) -> list[tuple[int, dict]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    # str(float) is the shortest repr that reads back the same number, so nothing is lost.
    return [(int(row["order"]), {"file": row["file"],
                                 "slice": None if row["slice"] == "" else int(row["slice"]),
                                 "volume": row["volume"], "score": float(row["score"]),
                                 "spread": float(row["spread"]), "n_crops": int(row["n_crops"]),
                                 **_view_fields(row), **_centre_fields(row)})
            for row in rows]


def _view_fields(row: dict) -> dict:
    """The angular-sampling columns of a part's row, where the part has them."""
    if "view_comb" not in row:
        return {}
    return {"view_comb": float(row["view_comb"]),
            "views": None if row["views"] == "" else int(row["views"])}


def _centre_fields(row: dict) -> dict:
    """The rotation-centre column of a part's row, where the part has it."""
    if "centre_offset" not in row:
        return {}
    return {"centre_offset": None if row["centre_offset"] == "" else float(row["centre_offset"])}


def _merge_parts(output: pathlib.Path, processes: int, expected: int,
                 timeout: float) -> list[dict]:
    """Process 0, after the barrier: every part (waiting up to `timeout` s for a slow shared
    file system to show them), merged in output order; the parts are then removed."""
    parts = [_part_path(output, p, processes) for p in range(processes)]
    deadline = time.monotonic() + timeout
    while not all(part.exists() for part in parts):
        if time.monotonic() > deadline:
            missing = [str(part) for part in parts if not part.exists()]
            raise errors.InputError(f"config.output={output}: part file(s) {', '.join(missing)} "
                                    f"did not appear within config.merge_timeout={timeout} s; is "
                                    "the output on a file system every host shares?")
        time.sleep(0.5)
    merged = sorted((item for part in parts for item in _read_part(part)), key=lambda x: x[0])
    if [order for order, _ in merged] != list(range(expected)):
        raise RuntimeError(f"{output}: the parts hold {len(merged)} slices, expected {expected}")
    return [record for _, record in merged]


def _score_distributed(config: ScoreSettings, output: pathlib.Path, process: int, processes: int,
                       work) -> list[dict] | None:
    """This process's share scored and written as a part file; after a barrier across all
    processes, process 0 merges the parts into `output` (atomically) and removes them. Returns
    the merged records on process 0, None elsewhere."""
    from jax.experimental import multihost_utils

    _check_config(config)
    loaded = checkpoints.load_model(config.checkpoint)
    batches = share(cut_batches(work, config.batch_size), process, processes)
    scored = sorted(_score(config, loaded, batches,
                           f"scoring (process {process} of {processes})"),
                    key=lambda item: item[0])
    part = _part_path(output, process, processes)
    output.parent.mkdir(parents=True, exist_ok=True)
    _write_part(part, [record for _, record in scored], [order for order, _ in scored])
    multihost_utils.sync_global_devices("tiqa-score-parts-written")
    if process != 0:
        print(f"process {process} of {processes}: {len(scored)} slice(s) scored; process 0 "
              f"writes {output}")
        return None
    records = _merge_parts(output, processes, len(work), config.merge_timeout)
    write_scores_csv(records, output)
    for p in range(processes):
        _part_path(output, p, processes).unlink(missing_ok=True)
    return records


def run(config) -> dict:
    """The scoring phase (configs/score.py): CSV of scores, optionally the report."""
    return score_phase(read_settings(config))


def score_phase(config: ScoreSettings) -> dict:
    """The scoring phase on its settings: CSV of scores, optionally the report."""
    from tiqa import report  # matplotlib is only needed for reports
    # The outputs are checked first, so a bad one fails before the scoring, not after it.
    output = io.check_output(config.output, "config.output")
    if config.report:
        io.check_output(config.report, "config.report", folder=True)
    _check_config(config)
    process, processes = _join_processes(config)
    work = _plan(config)  # from the headers; it serves the scoring, thumbnails and notes
    if processes > 1:
        records = _score_distributed(config, output, process, processes, work)
        if records is None:
            return {"records": None, "process": process, "processes": processes}
        thumbnails = _thumbnails(config, records, work) if config.report else {}
    else:
        records, thumbnails = score_inputs(config, work=work)
        output.parent.mkdir(parents=True, exist_ok=True)
        write_scores_csv(records, output)
    summary = report.summarise(records)
    for row in summary:
        print(f"{row['volume']}: {row['slices']} slice(s), median score {row['median']:.2f} "
              f"(min {row['min']:.2f}, max {row['max']:.2f})")
    print(f"scores written to {output}")
    resize, trained_own_pixels = checkpoints.model_view(config.checkpoint)
    own_pixels = checkpoints.scores_at_own_pixels(trained_own_pixels, config.own_pixels)
    # Said on the console too, as most runs write no report.
    shrunk = None if own_pixels else scoring.resize_note([item.shape for item in work], resize)
    if shrunk:
        print(shrunk)
    elif own_pixels:  # scores of the two paths must not be mixed, so say which this is
        print("slices of at least the model's resize were scored at their own pixels"
              + (" (as the model was trained)" if config.own_pixels is None else ""))
    result = {"records": records, "summary": summary, "csv": output}
    if config.report:
        model = str(config.checkpoint) if config.checkpoint else "the shipped default model"
        said = scoring.penalty_notes(config.ring_check, config.view_penalty, config.checkpoint,
                                     config.centre_penalty, config.noise_penalty)
        at = ", at the slices' own pixels" if own_pixels else ""
        sampled = (f" of at most {config.most_per_side} per side"
                   if config.crops == "grid" and config.most_per_side else "")
        notes = (f"Scored with {model}, crops: {config.crops}{sampled}{at}, {said}.",)
        if config.view_check:
            notes += (view_check.sampling_note([record["views"] for record in records]),)
        if config.centre_check:
            notes += (centre_check.offset_note([record["centre_offset"] for record in records]),)
        low = penalties.scale_note([record["score"] for record in records])
        notes += (low,) if low else ()
        notes += (shrunk,) if shrunk else ()
        index = report.write_report(records, config.report, thumbnails, notes=notes)
        print(f"report: {index}")
        result["report"] = index
    return result
