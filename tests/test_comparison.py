"""The comparison phase: agreement columns on cases with known answers, bootstrap intervals,
and a smoke run of the whole comparison writing its tables and chart."""

import csv
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import compare as compare_config
from tests.tiny_models import export_tiny_score_model
from tiqa import checkpoints, comparison, phantom
from tiqa.baselines import brisque
from tiqa.phases import compare, settings
from tiqa.train import batches

import cv2  # noqa: E402,F401  (pinned: the comparison's BRISQUE needs OpenCV; fails if missing)


def test_agreement_of_a_perfect_and_of_a_reversed_metric():
    labels = np.linspace(1.0, 5.0, 12)
    perfect = comparison.agreement(2.0 * labels + 1.0, labels, dmos_threshold=0.5)
    assert perfect["srocc"] == pytest.approx(1.0) and perfect["krocc"] == pytest.approx(1.0)
    assert perfect["plcc"] == pytest.approx(1.0, abs=1e-6) and perfect["rmse"] < 1e-3
    assert perfect["auc_bw"] == pytest.approx(1.0) and perfect["cc0"] == pytest.approx(1.0)
    reversed_ = comparison.agreement(-labels, labels, dmos_threshold=0.5)
    assert reversed_["srocc"] == pytest.approx(-1.0) and reversed_["cc0"] == pytest.approx(0.0)
    assert reversed_["auc_bw"] == pytest.approx(0.0)


def test_rank_agreement_has_only_rank_columns():
    row = comparison.rank_agreement(np.array([0.1, 0.2, 0.15, 0.9]), np.array([0.0, 1.0, 1.0, 2.0]))
    assert row["srocc"] > 0.8 and np.isnan(row["plcc"]) and np.isnan(row["auc_bw"])


def test_bootstrap_interval_brackets_a_known_mean():
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 1.0, 400)
    interval = comparison.bootstrap_interval(lambda idx: {"mean": values[idx].mean()},
                                             len(values), samples=400, seed=0)
    low, high = interval["mean"]
    # The standard error is 0.05: the 95% interval is about mean -+ 0.1.
    assert low < values.mean() < high and 0.15 < high - low < 0.25


def test_bootstrap_interval_of_a_proportion_matches_the_binomial():
    # Ten ones in twenty: a resample's mean is Binomial(20, 1/2) / 20, whose 2.5% and 97.5%
    # points are 6/20 and 14/20.
    values = np.repeat([0.0, 1.0], 10)
    interval = comparison.bootstrap_interval(lambda idx: {"mean": values[idx].mean()},
                                             len(values), samples=4000, seed=1)
    assert interval["mean"] == pytest.approx((0.3, 0.7), abs=0.051)


def test_bootstrap_interval_leaves_out_entries_undefined_on_some_resamples():
    values = np.arange(20.0)
    # About a third of the resamples miss item 0, and the second entry is undefined there.
    interval = comparison.bootstrap_interval(
        lambda idx: {"mean": values[idx].mean(), "odd": 1.0 if 0 in idx else float("nan")},
        len(values), samples=200, seed=0)
    assert set(interval) == {"mean"}


@pytest.mark.slow
def test_comparison_smoke_writes_its_tables_and_chart(tmp_path):
    export_tiny_score_model(tmp_path / "tiny")
    config = compare_config.get_config("smoke")
    config.checkpoint = str(tmp_path / "tiny")
    config.output = str(tmp_path / "compare")
    config.bootstrap = 10
    rows = compare.run(config)
    metrics = {row["metric"] for row in rows}
    assert metrics == {"TIQA", "BRISQUE (LIVE)", "BRISQUE (retrained)"}
    sets = [row["set"] for row in rows if row["metric"] == "TIQA"]
    assert sets == ["blur", "noise", "ring", "overall", comparison.PHANTOM_SET]
    with open(tmp_path / "compare" / "comparison.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    summary = (tmp_path / "compare" / "summary.md").read_text()
    assert "RankIQA left out" in summary and "DeLong" in summary
    assert (tmp_path / "compare" / "comparison.png").stat().st_size > 10_000
    assert (tmp_path / "compare" / "brisque_retrained" / "svm.txt").is_file()
    # The saved retrained model is used as it is on a second run (no new fit).
    config.brisque_model = str(tmp_path / "compare" / "brisque_retrained")
    config.output = str(tmp_path / "again")
    again = compare.run(config)
    assert not (tmp_path / "again" / "brisque_retrained").exists()
    first = [r["srocc"] for r in rows if r["metric"] == "BRISQUE (retrained)"]
    second = [r["srocc"] for r in again if r["metric"] == "BRISQUE (retrained)"]
    np.testing.assert_allclose(first, second)


def test_delong_separates_a_good_metric_from_a_noisy_one():
    rng = np.random.default_rng(1)
    labels = rng.uniform(1, 5, 60)
    good = labels + rng.normal(0, 0.1, 60)
    noisy = labels + rng.normal(0, 2.0, 60)
    result = comparison.better_worse_delong(labels, good, noisy, dmos_threshold=0.5)
    assert result["auc_a"] > result["auc_b"] and result["p_value"] < 0.01
    same = comparison.better_worse_delong(labels, good, good, dmos_threshold=0.5)
    assert same["auc_a"] == pytest.approx(same["auc_b"])


def test_a_lower_is_better_metric_is_read_the_right_way_round(tmp_path, monkeypatch):
    # Stub data: each crop's brightness is its label / 5, and phantom crops brighten with rank.
    rng = np.random.default_rng(0)
    label_values = rng.uniform(1.0, 5.0, 24)
    images = np.broadcast_to((label_values / 5.0)[:, None, None], (24, 8, 8)).copy()
    kinds = np.asarray(["blur", "noise"] * 12)
    order = np.repeat(np.arange(3.0), 4)
    phantom_crops = np.broadcast_to((0.2 + 0.2 * order)[:, None, None], (12, 8, 8)).copy()
    brightness = lambda crops: np.asarray(crops).mean(axis=(1, 2))
    stubs = [comparison.Contender("good", brightness),
             # A distance-like metric: lower is better, so the comparison must negate it.
             comparison.Contender("good, lower is better", lambda c: 10.0 - 3.0 * brightness(c),
                                  higher_is_better=False)]
    monkeypatch.setattr(compare, "heldout_images", lambda *args: (images, label_values, kinds))
    monkeypatch.setattr(compare, "phantom_acquisitions",
                        lambda *args: (phantom_crops, order, ["worst", "middle", "best"]))
    monkeypatch.setattr(compare, "contenders", lambda config, output: (stubs, []))
    config = compare_config.get_config("smoke")
    config.output = str(tmp_path / "compare")
    config.bootstrap = 5
    rows = compare.run(config)
    for row in rows:
        assert row["srocc"] == pytest.approx(1.0), (
            f"{row['metric']} on {row['set']}: SROCC {row['srocc']}; a perfect metric must read "
            "+1 whichever way round it scores")
    flipped = [r for r in rows if r["metric"] == "good, lower is better" and r["set"] == "overall"]
    assert flipped[0]["auc_bw"] == pytest.approx(1.0) and flipped[0]["plcc"] > 0.99


def test_comparison_crops_follow_the_model_view(tmp_path, monkeypatch):
    # A model trained at the scans' own pixels is compared on own-pixel crops (as launch.score
    # and launch.evaluate score for it); one trained on resized slices on resized crops.
    resized = export_tiny_score_model(tmp_path / "resized")
    checkpoints.save_exported(dataclasses.replace(resized, own_pixels=True), tmp_path / "own")
    seen = []
    stub = comparison.Contender("stub", lambda crops: np.asarray(crops).mean(axis=(1, 2)))
    monkeypatch.setattr(compare, "contenders", lambda config, output: ([stub], []))
    images = np.random.default_rng(0).uniform(size=(4, 8, 8))
    monkeypatch.setattr(compare, "heldout_images", lambda source, *args: (
        seen.append(("held-out", source.own_pixels)) or (images, np.arange(4.0), np.asarray(["blur"] * 4))))
    monkeypatch.setattr(compare, "phantom_acquisitions", lambda acquisitions, resize, crop, own: (
        seen.append(("phantom", own)) or (images, np.arange(4.0), ["a", "b", "c", "d"])))
    # (model, config.own_pixels, the view expected); None follows the model, a bool is obeyed.
    for model, asked, expected in (("resized", None, False), ("own", None, True),
                                   ("own", False, False), ("resized", True, True)):
        config = compare_config.get_config("smoke")
        config.checkpoint, config.bootstrap, config.own_pixels = str(tmp_path / model), 5, asked
        config.output = str(tmp_path / f"compare_{model}_{asked}")
        compare.run(config)
        assert seen[-2:] == [("held-out", expected), ("phantom", expected)], (model, asked, seen)
        summary = (tmp_path / f"compare_{model}_{asked}" / "summary.md").read_text()
        assert ("own pixels" in summary) == expected, summary
        # The smoke config fits its BRISQUE on resized crops: a mismatch is said.
        assert ("like-for-like" in summary) == expected, summary


def test_own_pixel_phantom_crops_are_the_scans_centre_crops():
    acquisitions = compare.PhantomAcquisitions(photons=(2e3, 1e5), gain_error_std=(0.008, 0.0),
                                               slices=2, size=96, seed=7)
    crops, order, _ = compare.phantom_acquisitions(acquisitions, resize=80, crop=64, own_pixels=True)
    np.testing.assert_array_equal(order, [0, 0, 1, 1])
    best, _ = phantom.phantom_volume(7, n_slices=2, size=96, photons=1e5, gain_error_std=0.0)
    expected = phantom.to_unit_range(best)[:, 16:80, 16:80]  # centre 64 of 96, not resized
    np.testing.assert_allclose(crops[2:], expected, atol=1e-6)
    resized, _, _ = compare.phantom_acquisitions(acquisitions, resize=80, crop=64)
    assert not np.allclose(resized[2:], expected, atol=1e-3)


def test_retrained_brisque_learns_only_the_ladders_that_train(monkeypatch):
    training = compare.brisque_training(compare_config.get_config("smoke"))
    crop = training.source.crop
    rng = np.random.default_rng(0)
    pool = batches.build_pool([rng.random((crop + 8, crop + 8)).astype(np.float32)], [4.0],
                              resize=0, crop=crop)
    # Two objects with two factors each; object 0's second ladder and object 1's first are
    # left out. Level l of a ladder is filled with 10 + l, so a ladder image is told apart.
    ladders = np.broadcast_to(10.0 + np.arange(6, dtype=np.float32)[None, None, :, None, None],
                              (2, 2, 6, crop, crop))
    pool = pool._replace(ladders=jnp.asarray(ladders), ladder_scores=jnp.full((2,), 4.0),
                         ladder_weights=jnp.asarray([[1.0, 0.0], [0.0, 1.0]]))
    monkeypatch.setattr(settings, "reference_pool", lambda source, scores: pool)
    monkeypatch.setattr(brisque, "features_of",
                        lambda images: images.reshape(len(images), -1).mean(axis=1, keepdims=True))
    source = dataclasses.replace(training.source, ladders=dataclasses.replace(
        training.source.ladders, objects_per_batch=1))
    features, targets = compare._brisque_training_set(dataclasses.replace(training, source=source))
    kinds = len(training.projection.kinds)
    steps = training.crops_per_slice  # one slice in the pool
    # Every step: the original's kinds x 6 levels, and one of its object's two ladders.
    assert len(targets) == steps * (kinds * 6 + 6)
    assert np.sum(features[:, 0] >= 10.0 - 1e-6) == steps * 6


def test_retrained_brisque_draws_its_crops_with_its_seed_and_turns(monkeypatch):
    config = compare_config.get_config("smoke")
    config.brisque_training.seed, config.brisque_training.random_turns = 5, True
    seen = {}

    class Drawn(Exception):
        pass

    def stand_in(pool, step, **kwargs):
        seen.update(kwargs)
        raise Drawn

    monkeypatch.setattr(batches, "finetune_batch", stand_in)
    with pytest.raises(Drawn):
        compare._brisque_training_set(compare.brisque_training(config))
    assert seen["turns"] is True
    np.testing.assert_array_equal(jax.random.key_data(seen["key"]),
                                  jax.random.key_data(jax.random.key(5)))
