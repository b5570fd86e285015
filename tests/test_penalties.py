"""Score penalties on what the no-reference checks measure (tiqa.penalties): the fit, its
words, and the calibration phase that fits them and exports the model with them."""

import csv
import dataclasses
import json

import jax
import numpy as np
import pytest

from tests.tiny_models import export_tiny_score_model
from tiqa import centre_check, checkpoints, errors, noise_check, penalties, ring_check, scoring, view_check
from tiqa.models.forward import eval_forward


def test_fit_slope_recovers_the_cost_of_rings():
    rng = np.random.default_rng(0)
    amplitude = np.sort(rng.uniform(0, 0.05, (5, 6)), axis=1)
    network = rng.uniform(2, 4, (5, 6))
    labels = network - 30.0 * amplitude + rng.normal(0, 1, (5, 1))  # an offset per object
    assert penalties.fit_slope(network, labels, amplitude) == pytest.approx(30.0, rel=1e-6)
    # Rings that raise the label are no reason for a negative penalty.
    assert penalties.fit_slope(network, network + 10 * amplitude, amplitude) == 0.0
    with pytest.raises(ValueError, match="one shape"):
        penalties.fit_slope(network, labels[:4], amplitude)


def test_fit_penalty_caps_an_amplitude_that_stops_following_the_rings():
    # Levels 1..3 follow the rings; at 4 and 5 the measure saturates and wanders (0.09 then
    # 0.07), while the network orders them. Without a cap the penalty would swap them.
    amplitude = np.array([[0.0, 0.01, 0.03, 0.05, 0.09, 0.07]] * 3)
    labels = np.array([[4.0, 3.5, 3.0, 2.5, 2.0, 1.0]] * 3)
    network = labels + 30.0 * np.minimum(amplitude, 0.05)  # what the rings should cost
    penalty = penalties.fit_penalty(network, labels, amplitude, ring_check.CAPS,
                                    ring_check.FLOORS)
    assert penalty.cap == 0.05 and penalty.floor == 0.0 and penalty.slope == pytest.approx(30.0)
    penalised = network - np.asarray(penalty(amplitude))
    np.testing.assert_allclose(penalised, labels, atol=1e-9)
    uncapped = penalties.fit_penalty(network, labels, amplitude, (1.0,), ring_check.FLOORS[:1])
    assert uncapped.cap == 1.0 and uncapped.slope > 0


def test_fit_penalty_finds_the_floor_below_which_rings_cost_nothing():
    # Amplitudes up to 0.004 (the measure's noise, faint isolated rings) cost nothing; above
    # it each unit costs 30 points, up to 0.05.
    rng = np.random.default_rng(1)
    amplitude = np.sort(np.concatenate([rng.uniform(0, 0.004, (6, 3)),
                                        rng.uniform(0.006, 0.08, (6, 3))], axis=1), axis=1)
    labels = np.linspace(4.0, 1.5, 6) + rng.normal(0, 0.3, (6, 1))
    cost = 30.0 * np.clip(amplitude - 0.004, 0, 0.046)
    assert cost[:, :3].max() == 0 and cost[:, 3:].min() > 0
    network = labels + cost  # a network that does not see what the rings cost
    penalty = penalties.fit_penalty(network, labels, amplitude, ring_check.CAPS,
                                    ring_check.FLOORS)
    assert (penalty.floor, penalty.cap) == (0.004, 0.05)
    assert penalty.slope == pytest.approx(30.0, rel=1e-6)
    np.testing.assert_allclose(penalty(np.array([0.002, 0.01, 0.1])), [0.0, 0.18, 1.38],
                               rtol=1e-5)


def test_a_penalty_is_said_in_words_with_the_digits_its_slope_needs():
    assert penalties.Penalty(46.78, 0.03, 0.004).describe("ring amplitude") == (
        "46.78 points per unit of ring amplitude above 0.004, up to 0.03")
    assert penalties.Penalty(0.0175, 80.0, 12.0).describe("comb strength") == (
        "0.0175 points per unit of comb strength above 12, up to 80")
    assert penalties.Penalty(0.0144, penalties.NO_CAP, 12.0).describe("comb strength") == (
        "0.0144 points per unit of comb strength above 12, with no cap")


def test_a_penalty_fitted_per_size_is_chosen_by_the_measured_square_and_kept_on_export(
        tmp_path):
    small, large = penalties.Penalty(0.2, 8.0, 1.0), penalties.Penalty(0.5, 4.0, 0.25)
    huge = penalties.Penalty(0.9, 2.0, 0.0)
    sized = dataclasses.replace(small, larger=((512, large), (1024, huge)))
    assert [sized.at(side) for side in (64, 256, 510, 512, 700, 1024, 4096)] == (
        [small] * 3 + [large] * 2 + [huge] * 2)
    # A penalty called without a side is its own fit: 0.2 x (3 - 1) points for 3 px.
    assert float(sized(np.float32(3.0))) == pytest.approx(0.4)
    assert float(sized.at(600)(np.float32(3.0))) == pytest.approx(0.5 * 2.75)
    assert sized.describe("offset (px)") == (
        "0.20 points per unit of offset (px) above 1, up to 8; measured on 512 px or more, 0.50 "
        "points above 0.25, up to 4; measured on 1024 px or more, 0.90 points above 0, up to 2")
    loaded = dataclasses.replace(export_tiny_score_model(tmp_path / "tiny"), centre_penalty=sized)
    checkpoints.save_exported(loaded, tmp_path / "sized")
    assert checkpoints.load_model(tmp_path / "sized").centre_penalty == sized
    with pytest.raises(ValueError, match="in order of side"):
        penalties.Penalty(0.2, 8.0, 1.0, ((1024, huge), (512, large)))
    entry = json.loads((tmp_path / "sized" / "model.json").read_text())
    nested = json.loads(json.dumps(entry))  # a larger fit with sizes of its own
    nested["centre_check"]["larger"][0]["larger"] = [{"side": 2048, **huge.to_dict()}]
    (tmp_path / "sized" / "model.json").write_text(json.dumps(nested))
    with pytest.raises(errors.InputError, match="model.json: centre_check needs a slope"):
        checkpoints.load_model(tmp_path / "sized")
    entry["centre_check"]["larger"][0].pop("side")
    (tmp_path / "sized" / "model.json").write_text(json.dumps(entry))
    with pytest.raises(errors.InputError, match="model.json: centre_check needs a slope"):
        checkpoints.load_model(tmp_path / "sized")


def test_fit_penalty_refuses_a_grid_with_no_cap_above_a_floor():
    scores = np.ones((2, 6))
    with pytest.raises(ValueError, match="no cap above a floor"):
        penalties.fit_penalty(scores, scores, scores, (1.0,), (2.0,))


@pytest.mark.slow
def test_calibration_phase_exports_the_fitted_penalties_and_keeps_the_card(tmp_path, monkeypatch):
    from configs import calibrate as calibrate_config
    from tiqa.phases import calibrate

    source = tmp_path / "network"
    loaded = export_tiny_score_model(tmp_path / "tiny")
    checkpoints.save_exported(dataclasses.replace(loaded, crop=224, resize=255), source,
                              card={"purpose": "tests"})
    config = calibrate_config.get_config("smoke")
    config.checkpoint, config.output = str(source), str(tmp_path / "calibrated")
    config.phantoms, config.output_size = 2, 256  # crops of 224 px hold the ring search
    # The centre penalty at two sizes: its own fit (128 px) and one for squares of 256 px up.
    config.centre_output_sizes = (128, 256)
    config.max_views = 720  # the views ladder's ideal
    config.checks = ("ring_check", "noise_check", "view_check", "centre_check")
    # A network blind to rings, noise, views and the axis (4 for every acquisition), so that
    # their cost is all the penalties' to carry; each fit is asked for the crop penalties but
    # its own (the ring fit without the ring check, the noise fit without the noise check);
    # all fit linear scores, not ones kept above 1.
    asked = []

    def blind(loaded, batch_size, with_ring_check, on_scale, with_noise_check):
        asked.append((with_ring_check, with_noise_check, on_scale))
        return lambda crops: np.full(len(crops), 4.0, np.float32)

    monkeypatch.setattr(scoring, "make_scorer", blind)
    results = calibrate.run(config)
    assert asked == [(False, True, False), (True, False, False)] + [(True, True, False)] * 3
    calibrated = checkpoints.load_model(config.output)
    rings, views, centres = results["ring_check"], results["view_check"], results["centre_check"]
    noise = results["noise_check"]
    assert calibrated.noise_penalty == penalties.Penalty(noise["slope"], noise["cap"], noise["floor"])
    assert noise["cap"] in noise_check.CAPS and noise["floor"] in noise_check.FLOORS
    assert noise["levels"][1:] == [1e4, 5e3, 3e3, 2e3, 1e3]  # the low_photons ladder
    assert calibrated.ring_penalty == penalties.Penalty(rings["slope"], rings["cap"],
                                                        rings["floor"])
    assert calibrated.view_penalty == penalties.Penalty(views["slope"], views["cap"],
                                                        views["floor"])
    assert rings["cap"] in ring_check.CAPS and rings["floor"] in ring_check.FLOORS
    assert views["cap"] in view_check.CAPS and views["floor"] == view_check.THRESHOLD
    [larger] = centres["larger"]
    larger_fit = penalties.Penalty(larger["slope"], larger["cap"], larger["floor"])
    assert calibrated.centre_penalty == penalties.Penalty(centres["slope"], centres["cap"],
                                                          centres["floor"], ((256, larger_fit),))
    # A slice measured on a square under 256 px is charged by the 128 px fit, from 256 px up by
    # the 256 px one (the two fits differ, so the choice shows).
    assert calibrated.centre_penalty.at(254) == penalties.Penalty(
        centres["slope"], centres["cap"], centres["floor"]) != larger_fit
    assert calibrated.centre_penalty.at(256) == calibrated.centre_penalty.at(512) == larger_fit
    assert (centres["output_size"], larger["output_size"], larger["side"]) == (128, 256, 256)
    for result in (centres, larger):
        assert result["cap"] in centre_check.CAPS and result["floor"] in centre_check.FLOORS
    for result in (rings, noise, views, centres, larger):
        assert result["slope"] > 0 and result["objects"] == 2
        assert result["rmse_with_penalty"] < result["rmse_network"]
    # Strict JSON (no Infinity for the unlimited photons of an ideal acquisition): other
    # readers of model.json than Python's json refuse it otherwise.
    card = json.loads((tmp_path / "calibrated" / "model.json").read_text(),
                      parse_constant=lambda name: pytest.fail(f"model.json holds {name}"))["card"]
    assert card["noise_check"]["levels"][0] is None
    assert card["purpose"] == "tests" and card["view_check"]["slope"] == views["slope"]
    assert card["ring_check"]["factor"] == "gain_error" and card["view_check"]["factor"] == "views"
    assert card["centre_check"]["factor"] == "centre_offset"
    assert card["noise_check"]["factor"] == "low_photons"
    assert card["centre_check"]["larger"][0]["slope"] == larger["slope"]
    with open(tmp_path / "calibrated" / "calibration.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["check"], int(r["output_size"]), int(r["level"])) for r in rows] == (
        [("ring_check", 256, level) for level in range(6)] * 2
        + [("noise_check", 256, level) for level in range(6)] * 2
        + [("view_check", 256, level) for level in range(6)] * 2
        + [("centre_check", 128, level) for level in range(6)] * 2
        + [("centre_check", 256, level) for level in range(6)] * 2)
    for row in rows:  # each score loses the penalty of its own measure, fitted at its size
        result = results[row["check"]]
        if row["check"] == "centre_check" and int(row["output_size"]) == 256:
            result = larger
        excess = min(max(float(row["measure"]) - result["floor"], 0.0),
                     result["cap"] - result["floor"])
        expected = float(row["network"]) - result["slope"] * excess
        assert float(row["penalised"]) == pytest.approx(expected, abs=1e-6)
    # The noise measure rises along every low_photons ladder (1e4 down to 1e3 photons), from an
    # ideal acquisition under every floor of the grid.
    measured = np.array([float(r["measure"]) for r in rows if r["check"] == "noise_check"])
    assert np.all(np.diff(measured.reshape(2, 6), axis=1) > 0), measured
    assert measured.reshape(2, 6)[:, 0].max() < min(noise_check.FLOORS)
    # The views ladder's sparse levels (90, 45, 24 views at 256 px) show their comb.
    sparse = [float(r["measure"]) for r in rows if r["check"] == "view_check"
              and int(r["level"]) >= 3]
    assert min(sparse) > view_check.THRESHOLD
    # The centre ladder's offsets (0, 0.5, 1, 2, 4, 8 px) are measured on the phantoms.
    offsets = np.array([float(r["measure"]) for r in rows if r["check"] == "centre_check"
                        and int(r["output_size"]) == 256])
    np.testing.assert_allclose(offsets.reshape(2, 6), [[0, 0.5, 1, 2, 4, 8]] * 2, atol=0.3)


def test_scores_are_kept_above_the_scale_in_order_and_unchanged_from_the_knee():
    scores = np.array([-1000.0, -8.0, -1.0, 0.0, 0.22, 1.0, 1.2, 1.25, 1.3, 3.2, 5.4])
    kept = np.asarray(penalties.onto_scale(scores, xp=np))
    # Hand-computed: 1 + 0.0625 / (1.5 - s) below 1.25.
    np.testing.assert_allclose(kept[:7], [1 + 0.0625 / 1001.5, 1 + 0.0625 / 9.5, 1.025,
                                          1 + 0.0625 / 1.5, 1 + 0.0625 / 1.28, 1.125, 1.208333333],
                               rtol=1e-9)
    np.testing.assert_array_equal(kept[7:], scores[7:])
    fine = np.linspace(-20.0, 3.0, 2301)
    assert (np.diff(np.asarray(penalties.onto_scale(fine, xp=np))) > 0).all()
    # The same value and slope on both sides of the knee.
    step = 1e-5
    slope = (penalties.onto_scale(np.array([1.25]), xp=np) - penalties.onto_scale(
        np.array([1.25 - step]), xp=np)) / step
    assert slope[0] == pytest.approx(1.0, abs=1e-3)
    # float32 (the device path): the same values, and far-off scores still apart.
    kept32 = np.asarray(penalties.onto_scale(scores.astype(np.float32)))
    np.testing.assert_allclose(kept32, kept, rtol=1e-6)
    assert (np.diff(kept32) > 0).all()


def test_calibration_refuses_an_unknown_check_naming_the_key():
    from configs import calibrate as calibrate_config
    from tiqa.phases import calibrate

    config = calibrate_config.get_config("smoke")
    config.checks = ("ring_check", "blur_check")
    with pytest.raises(errors.InputError, match=r"config\.checks must name some of"):
        calibrate.read_settings(config)


def test_the_line_through_the_level_medians_puts_each_level_s_median_score_at_its_label():
    from tiqa.phases import calibrate

    # Two factors, three objects, three levels. The (factor, level) medians over the objects
    # lie on label = 0.5 x + 2 by construction; the objects scatter about them.
    network = np.array([[[4.0, 3.0, 2.0], [4.0, 2.0, 1.0]],
                        [[4.5, 2.5, 2.2], [4.4, 2.6, 0.6]],
                        [[3.5, 3.4, 1.5], [3.9, 1.8, 1.3]]])
    ladder_labels = np.broadcast_to(np.array([[4.0, 3.5, 3.0], [4.0, 3.0, 2.5]]), network.shape)
    slope, intercept = calibrate.line_through(network, ladder_labels, "level_medians")
    assert (slope, intercept) == (pytest.approx(0.5), pytest.approx(2.0))
    # Through every acquisition: least squares from its normal equations, flattened by the
    # scatter (the same labels, noisier scores).
    design = np.stack([network.ravel(), np.ones(network.size)], axis=1)
    expected = np.linalg.solve(design.T @ design, design.T @ ladder_labels.ravel())
    every = calibrate.line_through(network, ladder_labels, "acquisitions")
    np.testing.assert_allclose(every, expected, rtol=1e-9)
    assert every[0] < 0.46


def test_calibration_refuses_an_unknown_output_line_fit_naming_the_key():
    from configs import calibrate as calibrate_config
    from tiqa.phases import calibrate

    config = calibrate_config.get_config("smoke")
    config.output_line_fit = "medians"
    with pytest.raises(errors.InputError, match=r"config\.output_line_fit must be one of"):
        calibrate.read_settings(config)


@pytest.mark.slow
@pytest.mark.parametrize("fit", ["acquisitions", "level_medians"])
def test_the_output_line_is_the_least_squares_line_to_the_fixed_labels_folded_into_the_network(
        tmp_path, fit):
    from configs import calibrate as calibrate_config
    from tiqa.phases import calibrate

    loaded = export_tiny_score_model(tmp_path / "tiny")
    config = calibrate_config.get_config("smoke")
    config.checkpoint, config.output = str(tmp_path / "tiny"), str(tmp_path / "lined")
    config.phantoms, config.checks, config.output_line = 2, ("noise_check",), True
    config.output_line_fit = fit
    config.max_views = 720  # the views ladder's ideal
    results = calibrate.run(config)
    line = results["output_line"]
    rows = list(csv.DictReader(open(tmp_path / "lined" / "output_line.csv")))
    assert len(rows) == 2 * 5 * 6  # objects x factors x levels
    network = np.array([float(row["network"]) for row in rows])
    label = np.array([float(row["label"]) for row in rows])
    level = np.array([int(row["level"]) for row in rows])
    # 'fixed' labels: the ideal keeps the reference score, and the worst levels are not all
    # pinned to 1 as under 'worst_level'.
    np.testing.assert_allclose(label[level == 0], config.reference_score)
    assert np.ptp(label[level == 5]) > 0.01
    # The least-squares line, from the normal equations written out: through every
    # acquisition, or through the (factor, level) medians over the two objects.
    if fit == "level_medians":
        key = [(row["factor"], int(row["level"])) for row in rows]
        cells = sorted(set(key))
        network = np.array([np.median(network[[k == cell for k in key]]) for cell in cells])
        label = np.array([np.median(label[[k == cell for k in key]]) for cell in cells])
        assert len(cells) == 5 * 6
    design = np.stack([network, np.ones_like(network)], axis=1)
    slope, intercept = np.linalg.solve(design.T @ design, design.T @ label)
    assert line["fit"] == fit
    assert line["slope"] == pytest.approx(slope, rel=1e-6)
    assert line["intercept"] == pytest.approx(intercept, rel=1e-6, abs=1e-6)
    if fit == "acquisitions":  # the least-squares line is the best line through them all
        assert line["rmse_lined"] <= line["rmse_network"]
    # Folded into the exported network: its raw score is the line of the start's.
    lined = checkpoints.load_model(tmp_path / "lined")
    images = jax.random.uniform(jax.random.key(3), (4, 64, 64))
    before = np.asarray(eval_forward(loaded.graphdef, loaded.params, loaded.batch_stats, images))
    after = np.asarray(eval_forward(lined.graphdef, lined.params, lined.batch_stats, images))
    np.testing.assert_allclose(after, slope * before + intercept, rtol=1e-4, atol=1e-4)
    assert lined.noise_penalty is not None and "output_line" in checkpoints.read_run_info(
        tmp_path / "lined")["card"]


def test_calibration_objects_at_both_scales_are_each_scale_s_objects_with_the_phantoms_once(
        tmp_path):
    import tifffile
    from configs import calibrate as calibrate_config
    from tiqa import acquisition, objects
    from tiqa.phases import calibrate

    # A slice much larger than the acquisition: its native window and its whole shrunk view differ.
    rows, cols = np.mgrid[0:400, 0:400]
    tifffile.imwrite(tmp_path / "slice.tif", (np.sin(rows / 7.0) * np.cos(cols / 11.0) + 2)
                     .astype(np.float32))
    config = calibrate_config.get_config("smoke")
    config.grey, config.phantoms, config.object_scale = str(tmp_path / "slice.tif"), 1, "both"
    settings = calibrate.read_settings(config)
    size = 64
    both = calibrate.calibration_objects(settings, size)
    side = acquisition.object_size(size)
    native = objects.collect(config.grey, "", 1, config.phantom_seed, side, config.seed,
                             scale="native", scored_size=size)
    scored = objects.collect(config.grey, "", 0, config.phantom_seed, side, config.seed,
                             scale="scored", scored_size=size)
    assert both.kinds == ("grey", "phantom", "grey")
    assert both.sources == (native.sources + tuple(f"{s} (scored)" for s in scored.sources))
    np.testing.assert_array_equal(both.attenuation[:2], native.attenuation)
    np.testing.assert_array_equal(both.attenuation[2:], scored.attenuation)
    assert not np.allclose(both.attenuation[0], both.attenuation[2])
    # One scale alone is that scale's objects, phantoms included.
    config.object_scale = "scored"
    alone = calibrate.calibration_objects(calibrate.read_settings(config), size)
    assert alone.kinds == ("grey", "phantom") and alone.sources[0] == native.sources[0]
    np.testing.assert_array_equal(alone.attenuation[0], scored.attenuation[0])
    config.object_scale = "zoomed"
    with pytest.raises(errors.InputError, match=r"config\.object_scale must be one of"):
        calibrate.read_settings(config)
    config.object_scale, config.grey, config.phantoms = "both", "", 0
    with pytest.raises(errors.InputError, match="no calibration objects"):
        calibrate.calibration_objects(calibrate.read_settings(config), size)
