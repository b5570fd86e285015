"""The ablation runner: override sweeps, trial plans, the pipeline wiring, resume, a smoke sweep."""

import csv
import json
import logging
import pathlib

import numpy as np
import pytest

from configs import ablate as ablate_config
from configs import finetune as finetune_config
from tiqa import checkpoints, evaluation, io, phantom
from tiqa.phases import ablate as ablation, evaluate, finetune, settings, train_rank
from tiqa.train import batches


def _smoke(tmp_path, *sweeps, **top):
    config = ablate_config.get_config("smoke")
    config.workdir = str(tmp_path / "ablation")
    config.sweeps = tuple(sweeps)  # override dicts
    for key, value in top.items():
        config[key] = value
    return config


MARGIN, ORIGINALS = "rank.rank.margin", "finetune.finetune.originals"


def test_sweeps_are_override_dicts_checked_against_the_base(tmp_path):
    config = _smoke(tmp_path, {MARGIN: 2.0}, {"rank.rank.learning_rate": 3e-5},
                    {"rank.rank.kinds": ("blur", "noise"), "finetune.projection.kinds": ("blur", "noise")},
                    {"finetune.projection.observers": ("ssim", "gmsd")},
                    {"rank.model.backbone": "lite0", "finetune.model.backbone": "lite0"},
                    {"rank_pretraining": False}, {ORIGINALS: 2}, {"finetune.model.hidden": (32, 8)})
    swept, trials = ablation.plan_trials(config)
    assert {s.key: s.base for s in swept}[MARGIN] == 6.0
    assert {s.key: s.base for s in swept}["rank_pretraining"] is True
    assert [t.name for t in trials] == [
        "base", "rank.margin=2", "rank.learning_rate=3e-05",
        "rank.kinds=blur+noise,finetune.projection.kinds=blur+noise",
        "finetune.projection.observers=ssim+gmsd",
        "rank.model.backbone=lite0,finetune.model.backbone=lite0", "rank_pretraining=False",
        "finetune.originals=2", "finetune.model.hidden=32+8"]
    # Training only: the evaluation keeps its kinds.
    pipeline = ablation.trial_pipeline(config, trials[3], 0, tmp_path / "t")
    assert tuple(pipeline.rank.rank.kinds) == ("blur", "noise")
    assert tuple(pipeline.evaluate.projection.kinds) == tuple(config.evaluate.projection.kinds)
    assert ablation.trial_pipeline(config, trials[1], 0, tmp_path / "t").rank.rank.margin == 2.0


@pytest.mark.parametrize("sweep, message", [
    ({"marginn": 2}, "unknown sweep key 'marginn'"),
    ({"rank.rank.margn": 2}, "rank.rank has no 'margn'; did you mean 'margin'"),
    ({"finetune.nothing.x": 1}, "finetune has no 'nothing'"),
    ({"evaluate.projection.kinds": ("blur",)}, "same for every trial"),
    ({"finetune.rank_checkpoint": "x"}, "set by the ablation"),
    ({"rank.rank": 1}, "is a block"),
    ("margin=2", "is not a dict of overrides"),
])
def test_bad_sweeps_name_the_key_and_the_problem(tmp_path, sweep, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        ablation.plan_trials(_smoke(tmp_path, sweep))


@pytest.mark.parametrize("sweeps, message", [
    (({MARGIN: "big"},), "'rank.rank.margin': cannot set 'big'"),
    (({ORIGINALS: 2.5},), "'finetune.finetune.originals': cannot set 2.5"),
    (({"rank_pretraining": 1},), "'rank_pretraining': cannot set 1"),
    (({"finetune.projection.observers": 3},), "'finetune.projection.observers': cannot set 3"),
    (({MARGIN: 2.0}, {MARGIN: 2.0}), "would share the directory"),
])
def test_bad_values_name_the_key(tmp_path, monkeypatch, sweeps, message):
    monkeypatch.setattr(train_rank, "run", _fail)
    with pytest.raises(ValueError, match=message):
        ablation.run(_smoke(tmp_path, *sweeps))


def test_bad_values_are_caught_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setattr(train_rank, "run", _fail)
    for sweep, message in (
            ({"finetune.projection.observers": ("ssim", "colour")},
             "trial finetune.projection.observers=ssim\\+colour: observers"),
            ({"rank.model.backbone": "b2"}, "no ImageNet weights ship for 'b2'"),
            ({"rank.model.trunk_overrides.width": "wide"}, "trunk_overrides.width")):
        config = _smoke(tmp_path, sweep)
        if "rank.model.backbone" in sweep:  # the base has ImageNet weights, the swept b2 has none
            config.rank.model.backbone, config.rank.model.pretrained = "lite0", True
        with pytest.raises(ValueError, match=message):
            ablation.run(config)
    with pytest.raises(ValueError, match="seeds"):
        ablation.run(_smoke(tmp_path, seeds=()))
    with pytest.raises(ValueError, match="plot_metric"):
        ablation.run(_smoke(tmp_path, plot_metric="accuracy"))


def test_base_first_and_combined_overrides(tmp_path):
    config = _smoke(tmp_path, *({MARGIN: m} for m in (2.0, 4.0, 6.0, 10.0)),
                    {"rank_pretraining": False})
    swept, trials = ablation.plan_trials(config)
    # The base (margin 6, with rank pre-training) once, then each override that differs from it.
    assert [t.name for t in trials] == ["base", "rank.margin=2", "rank.margin=4",
                                        "rank.margin=10", "rank_pretraining=False"]
    assert ablation.trial_values(trials[4], swept) == {"rank.margin": 6.0,
                                                       "rank_pretraining": False}
    # A grid is the list of every combination.
    grid = [{MARGIN: m, "rank_pretraining": p} for m in (2.0, 4.0, 6.0, 10.0) for p in (True, False)]
    _, trials = ablation.plan_trials(_smoke(tmp_path, *grid))
    assert len(trials) == 8 and trials[0].name == "base"
    assert trials[1].name == "rank.margin=2,rank_pretraining=True"


def _fail(config):
    raise AssertionError(f"a finished phase ran again: {config.workdir}")


@pytest.mark.slow
def test_originals_keeps_the_first_slices_input_first(tmp_path, caplog):
    image = np.tile(np.linspace(0.0, 1.0, 100, dtype=np.float32), (100, 1))  # a ramp
    io.write_png(tmp_path / "input.png", image)
    config = finetune_config.get_config("smoke")
    config.input = str(tmp_path / "input.png")
    config.phantom.mix_with_input = True  # two phantom slices after the input's one
    slices, sources = phantom.load_reference_slices(
        config.input, settings.data_source(config).phantom, config.seed)
    pool = batches.build_pool(slices, [4.0, 3.0, 3.0], config.resize, config.crop)
    first = batches.first_originals(pool, 1)
    assert first.images.shape[0] == 1 and float(first.scores[0]) == 4.0
    assert sources[0].endswith("input.png") and sources[1].startswith("phantom")
    np.testing.assert_array_equal(first.images, pool.images[:1])
    ramp = np.asarray(first.images[0, :80, :80])
    assert np.all(np.diff(ramp, axis=1) > 0) and np.ptp(ramp, axis=0).max() < 1e-6
    assert batches.first_originals(pool, 0).images.shape[0] == 3
    with caplog.at_level(logging.WARNING):
        assert batches.first_originals(pool, 5).images.shape[0] == 3
    assert "the pool has 3 slices" in caplog.text
    with pytest.raises(ValueError, match="originals"):
        batches.first_originals(pool, -1)


class _FakePhases:
    """Stand-ins for the phases that record what they were given (the wiring, not training)."""

    def __init__(self, monkeypatch):
        self.rank, self.finetune, self.evaluate = [], [], []
        monkeypatch.setattr(train_rank, "run", self.train_rank)
        monkeypatch.setattr(finetune, "run", self.train_finetune)
        monkeypatch.setattr(evaluate, "run", self.evaluate_checkpoint)

    def train_rank(self, config):
        self.rank.append(config)
        checkpoints.write_run_info(pathlib.Path(config.workdir), {"phase": "rank"})

    def train_finetune(self, config):
        self.finetune.append(config)
        checkpoints.write_run_info(pathlib.Path(config.workdir),
                            {"phase": "finetune", "originals": config.finetune.originals or 2})

    def evaluate_checkpoint(self, config):
        self.evaluate.append(config)
        value = 0.5 + 0.01 * len(self.evaluate)
        rows = [{"kind": k, "n": 5, "plcc": value, "srocc": value, "krocc": value, "rmse": 1.0}
                for k in tuple(config.projection.kinds) + (evaluation.OVERALL,)]
        levels = [{"kind": k, "srocc_vs_level": value} for k in config.projection.kinds]
        return {"correlations": rows, "levels": levels}


@pytest.mark.slow
def test_wiring_rank_sharing_resume_and_changed_config(tmp_path, monkeypatch):
    fake = _FakePhases(monkeypatch)
    config = _smoke(tmp_path, {"rank_pretraining": True}, {"rank_pretraining": False},
                    {ORIGINALS: 1}, {ORIGINALS: 2}, {MARGIN: 4.0}, seeds=(0, 1))
    summary = ablation.run(config)
    workdir = pathlib.Path(config.workdir)
    names = ["base", "rank_pretraining=False", "finetune.originals=1", "finetune.originals=2",
             "rank.margin=4"]
    assert [row["trial"] for row in summary] == names and all(r["seeds"] == 2 for r in summary)
    # One rank run per rank config and seed: the originals trials fine-tune from the base's.
    assert sorted(c.workdir for c in fake.rank) == sorted(
        str(workdir / name / f"seed{s}" / "rank") for name in ("base", "rank.margin=4") for s in (0, 1))
    assert [c.seed for c in fake.rank] == [0, 0, 1, 1]
    assert [c.rank.margin for c in fake.rank] == [6.0, 4.0, 6.0, 4.0]
    by_dir = {pathlib.Path(c.workdir).parent.relative_to(workdir).as_posix(): c
              for c in fake.finetune}
    assert len(by_dir) == 10
    assert by_dir["finetune.originals=1/seed1"].rank_checkpoint == str(workdir / "base/seed1/rank")
    assert by_dir["finetune.originals=1/seed1"].finetune.originals == 1
    assert by_dir["base/seed0"].finetune.originals == 0 and by_dir["base/seed0"].seed == 0
    assert by_dir["rank_pretraining=False/seed1"].rank_checkpoint == ""
    assert {c.seed for c in fake.evaluate} == {config.evaluate.seed}  # the same test for all
    assert {c.checkpoint for c in fake.evaluate} == {c.workdir for c in fake.finetune}
    with open(workdir / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and rows[0]["trial"] == "base" and rows[0]["seed"] == "0"
    assert {"plcc", "srocc", "krocc", "rmse", "srocc_level_blur", "train_seconds",
            "originals_used"} <= set(rows[0])
    assert [r["originals_used"] for r in rows if r["trial"] == "finetune.originals=1"] == ["1", "1"]
    for name in ("results.md", "summary.csv", "summary.md", "sweep_rank_pretraining.png",
                 "sweep_finetune.originals.png", "sweep_rank.margin.png"):
        assert (workdir / name).stat().st_size > 0

    # A rerun trains and evaluates nothing; an unfinished trial resumes where it stopped.
    counts = (len(fake.rank), len(fake.finetune), len(fake.evaluate))
    finished = workdir / "rank.margin=4" / "seed1" / ablation.RESULT_FILE
    before = finished.stat().st_mtime_ns
    (workdir / "finetune.originals=2" / "seed0" / ablation.RESULT_FILE).unlink()
    (workdir / "finetune.originals=2" / "seed0" / "finetune" / ablation.PHASE_DONE).unlink()
    ablation.run(config)
    assert (len(fake.rank), len(fake.finetune), len(fake.evaluate)) == (
        counts[0], counts[1] + 1, counts[2] + 1)
    assert finished.stat().st_mtime_ns == before

    # The same work directory with another base configuration is refused before any work.
    config.finetune.finetune.learning_rate = 0.5
    with pytest.raises(ValueError, match="finetune.finetune.learning_rate"):
        ablation.run(config)
    assert len(fake.finetune) == counts[1] + 1


@pytest.mark.slow
def test_smoke_sweep_end_to_end(tmp_path, monkeypatch):
    # Without rank pre-training and BatchNorm measuring, so the real phases stay within the
    # test's time: the rank wiring is tested above, the phases themselves in test_train.
    config = _smoke(tmp_path, {ORIGINALS: 1}, {ORIGINALS: 2}, {"finetune.finetune.epochs": 1},
                    rank_pretraining=False)
    config.finetune.finetune.originals = 2  # the smoke phantom's two slices
    config.finetune.finetune.batch_norm = "batch"
    summary = ablation.run(config)
    workdir = pathlib.Path(config.workdir)
    assert [row["trial"] for row in summary] == ["base", "finetune.originals=1"]
    with open(workdir / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["trial"], r["finetune.originals"], r["originals_used"]) for r in rows] == [
        ("base", "2", "2"), ("finetune.originals=1", "1", "1")]
    assert all(np.isfinite(float(r["rmse"])) and -1 <= float(r["srocc"]) <= 1 for r in rows)
    assert (workdir / "results.md").read_text().startswith("| trial | finetune.originals |")
    for name in ("sweep_finetune.originals.png", "sweep_finetune.epochs.png"):
        assert (workdir / name).read_bytes()[:4] == b"\x89PNG"
    for trial in ("base", "finetune.originals=1"):
        directory = workdir / trial / "seed0"
        assert not (directory / "rank").exists()
        assert (directory / "evaluation" / "correlations.csv").exists()
        assert json.loads((directory / ablation.RESULT_FILE).read_text())["trial"] == trial
    before = (workdir / "base" / "seed0" / ablation.RESULT_FILE).stat().st_mtime_ns
    monkeypatch.setattr(finetune, "run", _fail)
    monkeypatch.setattr(evaluate, "run", _fail)
    assert str(ablation.run(config)) == str(summary)  # NaN std: compared as text
    assert (workdir / "base" / "seed0" / ablation.RESULT_FILE).stat().st_mtime_ns == before


class _KnownEvaluations(_FakePhases):
    """Fake evaluations whose SROCC is a known value per seed (and trial), the rest fixed."""

    SROCC = {0: 0.2, 1: 0.5, 2: 0.9}

    def evaluate_checkpoint(self, config):
        self.evaluate.append(config)
        seed = int(pathlib.Path(config.checkpoint).parent.name.removeprefix("seed"))
        shift = 0.05 if "rank.margin=4" in config.checkpoint else 0.0
        value = self.SROCC[seed] + shift
        rows = [{"kind": k, "n": 5, "plcc": 0.7, "srocc": value, "krocc": 0.4, "rmse": 1.0}
                for k in tuple(config.projection.kinds) + (evaluation.OVERALL,)]
        levels = [{"kind": k, "srocc_vs_level": value} for k in config.projection.kinds]
        return {"correlations": rows, "levels": levels}


def test_summary_is_the_mean_and_sample_std_over_seeds(tmp_path, monkeypatch):
    _KnownEvaluations(monkeypatch)
    config = _smoke(tmp_path, {MARGIN: 4.0}, seeds=(0, 1, 2))
    summary = {row["trial"]: row for row in ablation.run(config)}
    # Seeds give 0.2, 0.5, 0.9: mean 1.6 / 3; deviations -1/3, -1/30, 11/30, so the sample
    # variance (ddof 1) is (100 + 1 + 121) / 900 / 2 = 111 / 900.
    for trial, shift in (("base", 0.0), ("rank.margin=4", 0.05)):
        row = summary[trial]
        assert row["seeds"] == 3
        assert row["srocc_mean"] == pytest.approx(1.6 / 3 + shift), \
            f"{trial}: srocc_mean must be the mean over seeds"
        assert row["srocc_std"] == pytest.approx(np.sqrt(111 / 900)), \
            f"{trial}: srocc_std must be the sample standard deviation (ddof 1) over seeds"
        assert row["plcc_mean"] == pytest.approx(0.7) and row["plcc_std"] == pytest.approx(0.0)
    with open(pathlib.Path(config.workdir) / "summary.csv") as handle:
        written = {row["trial"]: row for row in csv.DictReader(handle)}
    assert float(written["base"]["srocc_mean"]) == pytest.approx(1.6 / 3)
