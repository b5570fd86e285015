"""Ablations: a base pipeline and sweeps of overrides, run trial by trial, resumable.

A trial is the whole pipeline with some overrides: the rank phase (`tiqa.phases.train_rank`), the
fine-tune from its work directory (`tiqa.phases.finetune`; from the model's initial weights when
`rank_pretraining` is False) and the held-out evaluation (`tiqa.phases.evaluate`), which
is the same for every trial so that the numbers compare. The ablation config
(configs/ablate.py) holds the three phase configs as `rank`, `finetune` and `evaluate`, plus
`rank_pretraining`, `workdir`, `sweeps`, `seeds` and `plot_metric`.

Sweeps
    `sweeps` is a sequence of flattened override dicts, one trial each, applied to the base
    pipeline with `ConfigDict.update_from_flattened_dict`: `{"finetune.finetune.originals": 2}`,
    `{"rank.model.backbone": "b0", "finetune.model.backbone": "b0"}`. Keys are dotted keys
    under `rank.` or `finetune.`, or `rank_pretraining`; keys under `evaluate.` are refused (the
    held-out test must not change), as are the keys the ablation sets per trial (work
    directories, checkpoints, training seeds) and keys the base config lacks
    (`update_from_flattened_dict` would add them silently). A value must have the type of the
    key's value in the base (ConfigDict's type check; an int is accepted for a float key).

Trials
    The base trial first, then one trial per override dict, named from its overrides
    (`finetune.originals=2`: a key's repeated phase name is dropped, `finetune.finetune.x` is
    `finetune.x`; several overrides are joined by commas). A dict that only restates base values
    is the base trial. Every trial runs once per seed in `seeds` (the seed of both training
    phases, which also draws their phantom; the evaluation's seed stays fixed).

Work directory
    `workdir/<trial>/seed<k>/` holds `trial.json` (its configuration), `rank/`, `finetune/`,
    `evaluation/` and, once finished, `result.json` (written atomically). A trial whose rank
    phase is the same as an earlier trial's (same rank config and seed, e.g. one that sweeps
    `originals` or `observers`) fine-tunes from that trial's rank run instead of repeating it.
    A phase that finished leaves `phase_done.json`. Running the same command again skips
    finished trials and resumes the others (the phases resume from their latest checkpoint);
    a trial directory made with a different configuration is refused, naming the keys that
    differ. After each trial `results.csv/.md` (one row per trial and seed, a column per swept
    key), `summary.csv/.md` (mean and sample std over seeds) and `sweep_<key>.png`
    (`plot_metric` against the key's values, error bars over seeds) are rewritten.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import logging
import math
import pathlib
import re
import time
from typing import Any

import ml_collections
import numpy as np

from tiqa import checkpoints, errors, evaluation, io
from tiqa.models import EfficientNetConfig, pretrained_variants
from tiqa.phases import evaluate, finetune, train_rank, training

# Set by the ablation for every trial and seed.
MANAGED_KEYS = ("rank.workdir", "rank.seed", "finetune.workdir", "finetune.seed",
                "finetune.rank_checkpoint", "evaluate.checkpoint", "evaluate.output")
_SWEEPABLE_ROOTS = ("rank", "finetune", "rank_pretraining")
_PIPELINE_KEYS = ("rank", "finetune", "evaluate", "rank_pretraining")

TRIAL_FILE = "trial.json"
RESULT_FILE = "result.json"
PHASE_DONE = "phase_done.json"
BASE_TRIAL = "base"
CORRELATION_METRICS = ("plcc", "srocc", "krocc", "rmse")


@dataclasses.dataclass(frozen=True)
class Trial:
    name: str  # its directory: 'base', 'rank.margin=4', 'rank.margin=4,finetune.originals=2'
    overrides: tuple[tuple[str, Any], ...]  # (dotted key, value) as given; the base: none


@dataclasses.dataclass(frozen=True)
class Swept:
    key: str  # a dotted key some trial overrides
    base: Any  # its value in the base config

    @property
    def name(self) -> str:
        return short_name(self.key)


# --- Trials ----------------------------------------------------------------------------------

def _suggestion(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def base_value(config: ml_collections.ConfigDict, key: str) -> Any:
    """The base value of a sweepable dotted key, or a ValueError naming the key and the problem."""
    root = key.split(".")[0]
    if root == "evaluate":
        raise errors.InputError(f"sweep key {key!r}: the held-out evaluation is the same for every "
                                "trial so that the numbers compare; set evaluate.* in the base config")
    if key in MANAGED_KEYS:
        raise errors.InputError(f"sweep key {key!r} is set by the ablation for every trial "
                                "(training seeds come from `seeds`)")
    if root not in _SWEEPABLE_ROOTS:
        raise errors.InputError(f"unknown sweep key {key!r}{_suggestion(root, _SWEEPABLE_ROOTS)}; "
                                "use a dotted key under rank. or finetune., or rank_pretraining")
    node, parts = config, key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            where = ".".join(parts[:depth]) or "the config"
            known = node.keys() if isinstance(node, ml_collections.ConfigDict) else ()
            raise errors.InputError(f"unknown sweep key {key!r}: {where} has no {part!r}"
                                    f"{_suggestion(part, known)}")
        node = node[part]
    if isinstance(node, ml_collections.ConfigDict):
        message = (f"sweep key {key!r} is a block, not a value; name one of its keys "
                   f"({', '.join(sorted(node.keys()))})")
        raise errors.InputError(message)  # noqa: TRY004 (a bad sweep: launch reports InputErrors)
    return node


def short_name(key: str) -> str:
    """A key as trial names show it: a repeated phase name dropped (finetune.finetune.x -> finetune.x)."""
    parts = key.split(".")
    return ".".join(parts[1:]) if len(parts) > 2 and parts[0] == parts[1] else key


def format_value(value: Any) -> str:
    """A value as trial names show it: tuples as a+b, floats as repr without a trailing .0."""
    if isinstance(value, (tuple, list)):
        return "+".join(format_value(item) for item in value)
    if isinstance(value, float):
        return repr(value).removesuffix(".0")
    return str(value)


def _directory_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=,-]", "_", text)


def _same(value: Any, base: Any) -> bool:
    """Equal and both or neither a bool (1 == True, but 1 is a wrong value for a bool key)."""
    return value == base and isinstance(value, bool) == isinstance(base, bool)


def plan_trials(config: ml_collections.ConfigDict) -> tuple[list[Swept], list[Trial]]:
    """The swept keys (with their base values) and the trials: the base, then one per override
    dict of `config.sweeps` that changes something."""
    swept: dict[str, Swept] = {}
    trials = [Trial(BASE_TRIAL, ())]
    for overrides in config.sweeps:
        if not isinstance(overrides, dict) or not all(isinstance(k, str) for k in overrides):
            raise errors.InputError(f"sweep {overrides!r} is not a dict of overrides, e.g. "
                                    '{"finetune.finetune.originals": 2}')
        for key in overrides:
            if key not in swept:
                swept[key] = Swept(key, base_value(config, key))
        if all(_same(value, swept[key].base) for key, value in overrides.items()):
            continue  # the base trial, already planned
        label = ",".join(f"{short_name(k)}={format_value(v)}" for k, v in overrides.items())
        trials.append(Trial(_directory_name(label), tuple(overrides.items())))
    seen: dict[str, Trial] = {}
    for trial in trials:
        if trial.name in seen:
            raise errors.InputError(f"trials {dict(seen[trial.name].overrides)} and "
                                    f"{dict(trial.overrides)} would share the directory {trial.name!r}")
        seen[trial.name] = trial
    return list(swept.values()), trials


# --- One trial -------------------------------------------------------------------------------

def _check_model(phase_config, where: str) -> None:
    model = training.model_config(phase_config)
    if model.backbone != "vgg16":
        EfficientNetConfig.from_name(model.backbone)
    if model.pretrained and model.backbone not in pretrained_variants():
        raise errors.InputError(f"{where}.model: no ImageNet weights ship for {model.backbone!r} (only "
                                f"{', '.join(pretrained_variants())}); override "
                                f"{where}.model.pretrained=False with it")


def _check_pipeline(pipeline: ml_collections.ConfigDict) -> None:
    """Catches bad swept values before any training (the phases would, hours later): each
    phase config goes through the conversion its phase starts with, then the model is checked."""
    train_rank.read_settings(pipeline.rank)
    finetune.read_settings(pipeline.finetune)
    evaluate.read_settings(pipeline.evaluate)
    if pipeline.rank_pretraining:
        _check_model(pipeline.rank, "rank")
    else:
        _check_model(pipeline.finetune, "finetune")


def trial_pipeline(config: ml_collections.ConfigDict, trial: Trial, seed: int,
                   directory: pathlib.Path) -> ml_collections.ConfigDict:
    """The three phase configs of one trial and seed, with its overrides and directories."""
    pipeline = ml_collections.ConfigDict({key: copy.deepcopy(config[key])
                                          for key in _PIPELINE_KEYS})
    for key, value in trial.overrides:  # one at a time, so that an error names its key
        try:
            pipeline.update_from_flattened_dict({key: value})
        except (TypeError, ValueError, KeyError) as error:
            raise errors.InputError(f"trial {trial.name}: sweep key {key!r}: cannot set "
                                    f"{value!r} ({error})") from error
    pipeline.rank.workdir = str(directory / "rank")
    pipeline.rank.seed = pipeline.finetune.seed = seed
    pipeline.finetune.workdir = str(directory / "finetune")
    pipeline.finetune.rank_checkpoint = pipeline.rank.workdir if pipeline.rank_pretraining else ""
    pipeline.evaluate.checkpoint = pipeline.finetune.workdir
    pipeline.evaluate.output = str(directory / "evaluation")
    try:
        _check_pipeline(pipeline)
    except ValueError as error:
        raise errors.InputError(f"trial {trial.name}: {error}") from error
    return pipeline


def _without_paths(pipeline: ml_collections.ConfigDict) -> dict:
    """The pipeline as JSON data, without the per-trial paths (so a moved workdir still matches)."""
    data = json.loads(json.dumps(pipeline.to_dict(), default=str))
    for key in MANAGED_KEYS:
        root, leaf = key.split(".")
        if leaf != "seed":
            data[root].pop(leaf, None)
    return data


def _rank_fingerprint(pipeline: ml_collections.ConfigDict) -> str:
    rank = json.loads(json.dumps(pipeline.rank.to_dict(), default=str))
    rank.pop("workdir")
    return json.dumps(rank, sort_keys=True)


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [difference for key in sorted(set(old) | set(new))
                for difference in _differences(old.get(key), new.get(key),
                                               f"{prefix}.{key}" if prefix else key)]
    return [] if old == new else [prefix]


def _check_directory(directory: pathlib.Path, record: dict) -> bool:
    """Whether trial.json is still to be written; a ValueError if the one there describes
    another configuration."""
    path = directory / TRIAL_FILE
    if not path.exists():
        return True
    differing = _differences(json.loads(path.read_text())["pipeline"], record["pipeline"])
    if differing:
        raise errors.InputError(f"{directory} was made by a different configuration (differing: "
                                f"{', '.join(differing[:8])}); use another workdir or remove it")
    return False


def _run_phase(function, phase_config) -> float:
    """Runs a training phase unless it finished before; its training seconds."""
    marker = pathlib.Path(phase_config.workdir) / PHASE_DONE
    if marker.exists():
        return float(json.loads(marker.read_text())["seconds"])
    start = time.perf_counter()
    function(phase_config)
    seconds = time.perf_counter() - start
    marker.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(marker, {"seconds": seconds})
    return seconds


def _share_rank_runs(pipelines: list[ml_collections.ConfigDict]) -> None:
    """Points trials with the same rank config and seed at one rank run: the first that
    finished, else the first planned."""
    candidates: dict[str, list[str]] = {}
    for pipeline in pipelines:
        if pipeline.rank_pretraining:
            candidates.setdefault(_rank_fingerprint(pipeline), []).append(pipeline.rank.workdir)
    owners = {fingerprint: next((d for d in dirs if (pathlib.Path(d) / PHASE_DONE).exists()),
                                dirs[0])
              for fingerprint, dirs in candidates.items()}
    for pipeline in pipelines:
        if pipeline.rank_pretraining:
            pipeline.rank.workdir = owners[_rank_fingerprint(pipeline)]
            pipeline.finetune.rank_checkpoint = pipeline.rank.workdir


def run_trial(pipeline: ml_collections.ConfigDict, trial: Trial, seed: int,
              directory: pathlib.Path) -> dict:
    """Rank phase (unless off), fine-tune, held-out evaluation; writes and returns result.json."""
    rank_seconds = (_run_phase(train_rank.run, pipeline.rank)
                    if pipeline.rank_pretraining else 0.0)
    finetune_seconds = _run_phase(finetune.run, pipeline.finetune)
    evaluated = evaluate.run(pipeline.evaluate)
    overall = next(row for row in evaluated["correlations"] if row["kind"] == evaluation.OVERALL)
    result = {
        "trial": trial.name, "seed": seed, "overrides": dict(trial.overrides),
        "overall": {metric: overall[metric] for metric in ("n",) + CORRELATION_METRICS},
        "srocc_vs_level": {row["kind"]: row["srocc_vs_level"] for row in evaluated["levels"]},
        "originals": checkpoints.read_run_info(pipeline.finetune.workdir).get("originals"),
        "rank_seconds": rank_seconds, "finetune_seconds": finetune_seconds,
        "rank_workdir": pipeline.rank.workdir if pipeline.rank_pretraining else "",
    }
    io.write_json(directory / RESULT_FILE, result)
    return result


# --- Tables and plots ------------------------------------------------------------------------

def _cell(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return format_value(value)
    return value


def trial_values(trial: Trial, swept: list[Swept]) -> dict[str, Any]:
    """The trial's value of every swept key (the base's where it does not override it), by
    short name."""
    overrides = dict(trial.overrides)
    return {s.name: overrides.get(s.key, s.base) for s in swept}


def result_row(result: dict, trial: Trial, swept: list[Swept]) -> dict:
    row: dict[str, Any] = {"trial": trial.name}
    row.update({name: _cell(value) for name, value in trial_values(trial, swept).items()})
    row["seed"] = result["seed"]
    row.update({metric: float(result["overall"][metric]) for metric in CORRELATION_METRICS})
    row.update({f"srocc_level_{kind}": float(value)
                for kind, value in result["srocc_vs_level"].items()})
    row["originals_used"] = result["originals"] if result["originals"] is not None else -1
    row["train_seconds"] = float(result["rank_seconds"] + result["finetune_seconds"])
    return row


def metric_columns(evaluate_config) -> tuple[str, ...]:
    kinds = tuple(evaluate_config.projection.kinds)
    return CORRELATION_METRICS + tuple(f"srocc_level_{kind}" for kind in kinds) + ("train_seconds",)


def summarise(rows: list[dict], trials: list[Trial], metrics: tuple[str, ...],
              swept: list[Swept]) -> list[dict]:
    """Per trial: mean and sample standard deviation over seeds (NaN for a single seed)."""
    summary = []
    for trial in trials:
        mine = [row for row in rows if row["trial"] == trial.name]
        if not mine:
            continue
        entry: dict[str, Any] = {"trial": trial.name}
        entry.update({name: _cell(value) for name, value in trial_values(trial, swept).items()})
        entry["seeds"] = len(mine)
        for metric in metrics:
            values = np.asarray([row[metric] for row in mine], np.float64)
            entry[f"{metric}_mean"] = float(np.mean(values))
            entry[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        summary.append(entry)
    return summary


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def plot_sweep(swept: Swept, trials: list[Trial], summary: list[dict], metric: str,
               path: pathlib.Path) -> None:
    """`metric` (mean, error bars: std over seeds) against the key's values: the trials that
    override it and the base; one line per setting of the other keys those trials override."""
    from matplotlib.figure import Figure  # evaluation has selected the Agg backend

    by_name = {entry["trial"]: entry for entry in summary}
    lines: dict[tuple, list[tuple[Any, dict]]] = {}
    for trial in trials:
        overrides = dict(trial.overrides)
        entry = by_name.get(trial.name)
        if entry is None or (trial.overrides and swept.key not in overrides):
            continue
        others = tuple((short_name(k), format_value(v)) for k, v in trial.overrides
                       if k != swept.key)
        lines.setdefault(others, []).append((overrides.get(swept.key, swept.base), entry))
    order: list[Any] = []
    for points in lines.values():
        order += [value for value, _ in points if value not in order]
    numeric = all(_is_number(value) for value in order)
    if numeric:
        order = sorted(order)
    figure = Figure(figsize=(5.5, 4.0), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    for others, points in lines.items():
        points.sort(key=lambda point: order.index(point[0]))
        x = [value if numeric else order.index(value) for value, _ in points]
        mean = np.asarray([entry[f"{metric}_mean"] for _, entry in points])
        std = np.asarray([entry[f"{metric}_std"] for _, entry in points])
        label = ", ".join(f"{n}={v}" for n, v in others) or None
        axes.errorbar(x, mean, yerr=None if np.all(np.isnan(std)) else np.nan_to_num(std),
                      marker="o", capsize=4, label=label,
                      linestyle="-" if numeric else "none")  # no line between categories
    if not numeric:
        axes.set_xticks(range(len(order)), [format_value(value) for value in order])
    axes.set_xlabel(f"{swept.name} (base {format_value(swept.base)})")
    axes.set_ylabel(f"{metric} (mean over seeds)")
    axes.set_title(f"{metric} against {swept.name}")
    axes.grid(True, alpha=0.3)
    if len(lines) > 1:
        axes.legend(fontsize="small")
    io.save_figure(figure, path)


def plot_path(workdir: pathlib.Path, swept: Swept) -> pathlib.Path:
    return workdir / f"sweep_{_directory_name(swept.name)}.png"


def write_outputs(workdir: pathlib.Path, swept: list[Swept], trials: list[Trial],
                  rows: list[dict], metrics: tuple[str, ...], plot_metric: str) -> list[dict]:
    order = {trial.name: index for index, trial in enumerate(trials)}
    rows = sorted(rows, key=lambda row: (order[row["trial"]], row["seed"]))
    summary = summarise(rows, trials, metrics, swept)
    evaluation.write_table(rows, workdir / "results.csv", workdir / "results.md")
    evaluation.write_table(summary, workdir / "summary.csv", workdir / "summary.md")
    for key in swept:
        plot_sweep(key, trials, summary, plot_metric, plot_path(workdir, key))
    return summary


# --- The sweep -------------------------------------------------------------------------------

def _seeds(config) -> tuple[int, ...]:
    seeds = tuple(config.seeds)
    if not seeds:
        raise errors.InputError("seeds is empty; give at least one, e.g. (0,)")
    if len(set(seeds)) != len(seeds) or not all(_is_number(s) and int(s) == s for s in seeds):
        raise errors.InputError(f"seeds must be distinct integers, got {seeds}")
    if not config.evaluate.input and config.evaluate.seed in seeds:
        raise errors.InputError(f"evaluate.seed {config.evaluate.seed} is also a training seed: with "
                                "an empty evaluate.input the held-out phantom would be a training one")
    return tuple(int(s) for s in seeds)


def run(config: ml_collections.ConfigDict) -> list[dict]:
    """Runs every trial and seed not finished yet; writes the tables and plots; returns the
    summary rows (one per trial, mean and std over seeds)."""
    workdir = pathlib.Path(config.workdir)
    swept, trials = plan_trials(config)
    seeds = _seeds(config)
    metrics = metric_columns(config.evaluate)
    if config.plot_metric not in metrics:
        raise errors.InputError(f"plot_metric {config.plot_metric!r} is not a result column; "
                                f"known: {', '.join(metrics)}")
    # Every trial is planned and checked before any training, so a bad value fails at once.
    planned = []
    for seed in seeds:
        for trial in trials:
            directory = workdir / trial.name / f"seed{seed}"
            planned.append((trial, seed, directory,
                            trial_pipeline(config, trial, seed, directory)))
    _share_rank_runs([pipeline for *_, pipeline in planned])
    records = [(directory, {"trial": trial.name, "seed": seed, "overrides": dict(trial.overrides),
                            "pipeline": _without_paths(pipeline)})
               for trial, seed, directory, pipeline in planned]
    for directory, record in [(d, r) for d, r in records if _check_directory(d, r)]:
        directory.mkdir(parents=True, exist_ok=True)
        io.write_json(directory / TRIAL_FILE, record)
    rows = []
    for number, (trial, seed, directory, pipeline) in enumerate(planned, start=1):
        result_path = directory / RESULT_FILE
        if result_path.exists():
            logging.info("ablation: %s seed %d finished before; skipped", trial.name, seed)
            rows.append(result_row(json.loads(result_path.read_text()), trial, swept))
            continue
        logging.info("ablation: trial %d of %d: %s, seed %d", number, len(planned),
                     trial.name, seed)
        rows.append(result_row(run_trial(pipeline, trial, seed, directory), trial, swept))
        if number < len(planned):  # rewritten after every trial, to follow a long sweep
            write_outputs(workdir, swept, trials, rows, metrics, config.plot_metric)
    summary = write_outputs(workdir, swept, trials, rows, metrics, config.plot_metric)
    print("ablation summary (mean and std over seeds)\n" + evaluation.format_table(summary))
    print(f"\nwritten to {workdir}: results.csv/.md, summary.csv/.md, "
          + ", ".join(plot_path(workdir, key).name for key in swept))
    return summary
