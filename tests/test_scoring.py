"""Scoring slices and volumes: crops, the device pipeline against a step-by-step reference,
exported models, the CSV and the report, bad input."""

import csv
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import score as score_config
from tiqa import checkpoints, errors, io, penalties, phantom, preprocessing, scoring
from tiqa.phases import score
from tests.tiny_models import TINY, export_tiny_score_model

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small random network exported as a model folder (crop 64 after resizing to 72)."""
    folder = tmp_path_factory.mktemp("model")
    return folder, export_tiny_score_model(folder)


def test_crop_positions_cover_the_image():
    assert scoring.crop_positions(255, 307, 224, "center") == [(15, 41)]
    grid = scoring.crop_positions(255, 307, 224, "grid")
    assert grid == [(0, 0), (0, 83), (31, 0), (31, 83)]
    covered = np.zeros((255, 307), bool)
    for top, left in grid:
        covered[top:top + 224, left:left + 224] = True
    assert covered.all()
    with pytest.raises(io.ImageError, match="smaller than the 224 px crop"):
        scoring.crop_positions(200, 300, 224, "grid")
    with pytest.raises(ValueError, match="crops must be one of"):
        scoring.crop_positions(255, 255, 224, "random")


def test_a_sampled_grid_spreads_at_most_its_crops_per_side_over_the_slice():
    # 1000 x 700 px: the whole grid is 5 x 4 crops of 224. At most 3 a side: the first and last
    # at the edges and one halfway (776 / 2, 476 / 2), by hand.
    assert len(scoring.crop_positions(1000, 700, 224, "grid")) == 20
    assert scoring.crop_positions(1000, 700, 224, "grid", 3) == [
        (r, c) for r in (0, 388, 776) for c in (0, 238, 476)]
    # A limit above the grid's own count changes nothing; one a side is the centre crop.
    assert (scoring.crop_positions(1000, 700, 224, "grid", 9)
            == scoring.crop_positions(1000, 700, 224, "grid"))
    assert (scoring.crop_positions(1000, 700, 224, "grid", 1)
            == scoring.crop_positions(1000, 700, 224, "center") == [(388, 238)])
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(errors.InputError, match="most_per_side must be an integer >= 0"):
            scoring.crop_positions(1000, 700, 224, "grid", bad)


def test_exported_model_round_trip(tiny_model):
    folder, loaded = tiny_model
    assert (folder / checkpoints.EXPORTED_PARAMS).stat().st_size < 25e6
    again = checkpoints.load_model(folder)
    for a, b in zip(jax.tree.leaves((loaded.params, loaded.batch_stats)),
                    jax.tree.leaves((again.params, again.batch_stats))):
        np.testing.assert_array_equal(a, b)
    assert again.crop == 64 and again.resize == 72 and again.config == TINY
    assert not again.own_pixels  # a model trained on resized slices (model.json without the key)
    own = checkpoints.save_exported(dataclasses.replace(loaded, own_pixels=True), folder / "own")
    assert checkpoints.load_model(own).own_pixels
    assert checkpoints.model_view(own) == (72, True) and checkpoints.model_view(folder) == (72, False)
    with pytest.raises(FileNotFoundError, match="no such model"):
        checkpoints.load_model(folder / "missing")


def test_averaged_model_is_the_weighted_mean_of_its_sources(tiny_model, tmp_path):
    folder, loaded = tiny_model
    # A second network of the same architecture: every parameter and statistic plus 1.
    shifted = dataclasses.replace(loaded, params=jax.tree.map(lambda x: x + 1.0, loaded.params),
                                  batch_stats=jax.tree.map(lambda x: x + 1.0, loaded.batch_stats))
    checkpoints.save_exported(shifted, tmp_path / "shifted")
    checkpoints.average_models([folder, tmp_path / "shifted"], [1.0, 3.0], tmp_path / "soup")
    soup = checkpoints.load_model(tmp_path / "soup")
    for a, b in zip(jax.tree.leaves((loaded.params, loaded.batch_stats)),
                    jax.tree.leaves((soup.params, soup.batch_stats))):
        np.testing.assert_allclose(b, np.asarray(a) + 0.75, rtol=1e-6, atol=1e-6)
    assert soup.crop == loaded.crop and soup.config == loaded.config
    with pytest.raises(errors.InputError, match="one weight per model"):
        checkpoints.average_models([folder], [1.0, 1.0], tmp_path / "bad")
    with pytest.raises(errors.InputError, match="positive sum"):
        checkpoints.average_models([folder, folder], [1.0, -1.0], tmp_path / "bad")
    for field, value in (("crop", 32), ("own_pixels", True)):
        checkpoints.save_exported(dataclasses.replace(loaded, **{field: value}), tmp_path / field)
        with pytest.raises(errors.InputError, match="only one architecture"):
            checkpoints.average_models([folder, tmp_path / field], [1.0, 1.0], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_slice_scores_equal_a_step_by_step_reference(tiny_model):
    folder, loaded = tiny_model
    slices = np.random.default_rng(1).random((3, 90, 110)).astype(np.float32)
    means, spreads, count = scoring.make_slice_scorer(checkpoints.load_model(folder), "grid")(slices)
    assert count == 4  # 72x88 after resizing: 2 x 2 crops of 64
    # The model applied to a batch of crops, on its own (jitted: eager ops compile one by one).
    model = jax.jit(lambda crops: nnx.merge(loaded.graphdef, loaded.params, loaded.batch_stats)(
        crops, train=False))
    for n, image in enumerate(slices):
        resized = np.asarray(preprocessing.resize_short_side(image, 72))
        assert resized.shape == (72, 88)
        crops = np.stack([resized[t:t + 64, l:l + 64]
                          for t, l in scoring.crop_positions(72, 88, 64, "grid")])
        expected = np.asarray(model(jnp.asarray(crops)))
        # The comparison can fail: scores of order one that differ from crop to crop.
        assert 0.1 < np.abs(expected).mean() < 100 and expected.std() > 0.05, expected
        np.testing.assert_allclose(means[n], expected.mean(), rtol=1e-4,
                                   err_msg="a slice's score must be the mean over its crops")
        np.testing.assert_allclose(spreads[n], expected.std(), rtol=1e-3,
                                   err_msg="the spread must be the crops' standard deviation")


def _haar_sigma(crop: np.ndarray, level: int = 1) -> float:
    """The noise estimate written out with PyWavelets (an independent reference): the median
    |diagonal detail| of a Haar transform at `level` (1 the finest), / 0.6745."""
    import pywt
    details = pywt.wavedec2(np.asarray(crop, np.float64), "haar", level=2)
    return float(np.median(np.abs(details[-level][2])) / 0.6745)


def _correlated_noise(crop: np.ndarray) -> float:
    """The gated measure by hand: the finest level's sigma, in full where it is at most 0.78 of
    the next level's, not at all from 0.90, linearly between."""
    crop = np.asarray(crop)[:crop.shape[0] // 4 * 4, :crop.shape[1] // 4 * 4]
    finest = _haar_sigma(crop)
    weight = min(max((0.90 - finest / _haar_sigma(crop, 2)) / 0.12, 0.0), 1.0)
    return finest * weight


def _correlated(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Gaussian noise that neighbouring pixels share, as a reconstruction's photon noise: white
    noise smoothed by a Gaussian of 1 px, scaled back to `sigma`."""
    from scipy import ndimage
    smooth = ndimage.gaussian_filter(rng.normal(0, 1, shape), 1.0)
    return (smooth * sigma / smooth.std()).astype(np.float32)


def test_the_noise_penalty_takes_off_the_cost_of_each_crops_correlated_noise(tiny_model):
    folder, _ = tiny_model
    loaded = checkpoints.load_model(folder)
    noise = penalties.Penalty(slope=5.0, cap=penalties.NO_CAP, floor=0.02)
    penalised = dataclasses.replace(loaded, noise_penalty=noise)
    rng = np.random.default_rng(3)
    # Smooth crops with correlated noise of sigma 0.3 (charged), with white noise of the same
    # sigma (the paper's noise kind: free), and with correlated noise of 0.03 (under the floor).
    ramp = np.linspace(0.2, 0.8, 64, dtype=np.float32)[None, :] * np.ones((64, 1), np.float32)
    crops = np.stack([ramp + _correlated(rng, (64, 64), 0.3),
                      ramp + rng.normal(0, 0.3, (64, 64)).astype(np.float32),
                      ramp + _correlated(rng, (64, 64), 0.03)])
    network = scoring.make_scorer(loaded, 3, on_scale=False)(crops)
    measured = np.array([_correlated_noise(crop) for crop in crops])
    assert measured[0] > 0.05 and measured[1] == 0.0 and measured[2] < 0.02, measured
    expected = network - 5.0 * np.maximum(measured - 0.02, 0.0)
    np.testing.assert_allclose(scoring.make_scorer(penalised, 3, on_scale=False)(crops), expected,
                               atol=1e-4)
    np.testing.assert_allclose(scoring.make_scorer(penalised, 3, on_scale=False,
                                                   with_noise_check=False)(crops), network, atol=1e-6)
    # Whole slices: the mean over the grid's crops of each crop's penalty, measured after the
    # resize (which averages some of the noise away).
    slices = (np.tile(ramp, (2, 2))[:90, :110] + _correlated(rng, (90, 110), 0.4))[None]
    plain, _, _ = scoring.make_slice_scorer(loaded, "grid")(slices)
    charged, _, _ = scoring.make_slice_scorer(penalised, "grid")(slices)
    resized = np.asarray(preprocessing.resize_short_side(slices[0], 72))
    cost = np.mean([5.0 * max(_correlated_noise(resized[t:t + 64, l:l + 64]) - 0.02, 0.0)
                    for t, l in scoring.crop_positions(72, 88, 64, "grid")])
    assert cost > 0.05
    np.testing.assert_allclose(plain - charged, cost, atol=1e-4)
    unpenalised, _, _ = scoring.make_slice_scorer(penalised, "grid", with_noise_check=False)(slices)
    np.testing.assert_allclose(unpenalised, plain, atol=1e-6)


def test_the_score_phase_takes_the_noise_penalty_its_config_asks_for(tiny_model, tmp_path):
    from tests.score_runs import penalty_on_and_off

    folder, loaded = tiny_model
    checkpoints.save_exported(dataclasses.replace(
        loaded, noise_penalty=penalties.Penalty(40.0, penalties.NO_CAP, 0.02)), tmp_path / "noisy")
    rng = np.random.default_rng(5)
    io.write_tiff(tmp_path / "scan.tif", 0.5 + _correlated(rng, (90, 110), 0.3))
    scores = penalty_on_and_off(tmp_path / "scan.tif", tmp_path / "noisy", "noise_penalty", tmp_path)
    assert scores[False][0] > scores[True][0] + 0.5
    assert "noise penalty: on (40.00 points per unit of correlated noise sigma" in scores[True][1]
    assert "noise penalty: off" in scores[False][1]


def test_noise_sigma_equals_pywavelets_haar_estimate():
    from tiqa import noise_check
    rng = np.random.default_rng(4)
    images = rng.random((3, 41, 36)).astype(np.float32) * 0.3 + rng.normal(0, 0.07, (3, 41, 36)).astype(np.float32)
    found = np.asarray(noise_check.noise_sigma(images))
    np.testing.assert_allclose(found, [_haar_sigma(image[:40, :36]) for image in images], rtol=1e-5)
    # Gaussian noise on a smooth image reads its sigma; the smooth image alone reads about 0.
    smooth = np.outer(np.linspace(0, 1, 128), np.linspace(0, 1, 128)).astype(np.float32)
    assert float(noise_check.noise_sigma(smooth)) < 1e-3
    noisy = smooth + rng.normal(0, 0.05, smooth.shape).astype(np.float32)
    assert float(noise_check.noise_sigma(noisy)) == pytest.approx(0.05, rel=0.08)


def test_the_noise_measure_charges_correlated_noise_and_not_white_noise():
    from tiqa import noise_check
    rng = np.random.default_rng(6)
    smooth = np.outer(np.linspace(0, 1, 128), np.linspace(0, 1, 128)).astype(np.float32)
    images = np.stack([smooth + rng.normal(0, 0.1, smooth.shape).astype(np.float32),
                       smooth + _correlated(rng, smooth.shape, 0.1),
                       smooth + _correlated(rng, smooth.shape, 0.03)
                       + rng.normal(0, 0.04, smooth.shape).astype(np.float32)])
    ratios = np.asarray(noise_check.level_ratio(images))
    np.testing.assert_allclose(ratios, [_haar_sigma(image) / _haar_sigma(image, 2)
                                        for image in images], rtol=1e-4)
    # White noise keeps its sigma at the next level; shared noise loses most of it at the finest.
    assert ratios[0] == pytest.approx(1.0, abs=0.1) and ratios[1] < 0.6
    found = np.asarray(noise_check.correlated_noise(images))
    np.testing.assert_allclose(found, [_correlated_noise(image) for image in images], atol=1e-6)
    assert found[0] == 0.0 and found[1] == pytest.approx(_haar_sigma(images[1]), rel=1e-5)
    # Part white, part shared: between the gate's thresholds, so partly charged.
    assert 0.78 < ratios[2] < 0.90 and 0.0 < found[2] < 0.9 * _haar_sigma(images[2])


def test_the_papers_noise_kind_is_not_charged_from_its_second_level():
    """The paper's noise kind is image-domain white noise, which the network scores on its
    labels: from level 2 on (sigma of 0.07 and more) the measure gates it out entirely, on a
    phantom slice whose grey levels (0.25 to 0.75) leave the noise unclipped, as a nano-CT
    slice's do. (Clipped at 0 and 1, or on dense edges a few px apart, white noise can read
    partly correlated: docs/comparison.md.)"""
    from tiqa import distortions, noise_check
    attenuation, _ = phantom.microstructure(2, (256, 256))
    image = 0.25 + 0.5 * (attenuation - attenuation.min()) / (attenuation.max() - attenuation.min())
    noisy = jnp.stack([distortions.apply("noise", image, level, jax.random.key(level))
                       for level in range(2, 6)])
    assert np.all(np.asarray(noise_check.noise_sigma(noisy)) > min(noise_check.FLOORS))
    np.testing.assert_array_equal(np.asarray(noise_check.correlated_noise(noisy)), 0.0)


def _config(tiny_model, inputs, tmp_path, **overrides):
    config = score_config.get_config()
    config.input = inputs
    config.checkpoint = str(tiny_model[0])
    config.output = str(tmp_path / "results.csv")
    config.batch_size = 4
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def test_score_volume_and_folder_with_report(tiny_model, tmp_path):
    volume, _ = phantom.phantom_volume(0, n_slices=5, size=96, photons=2e4)
    io.write_tiff(tmp_path / "scan.tif", volume)
    folder = tmp_path / "slices"
    folder.mkdir()
    for index in range(3):
        io.write_png(folder / f"slice_{index}.png", np.clip(volume[index] / volume.max(), 0, 1))
    config = _config(tiny_model, f"{tmp_path / 'scan.tif'},{folder}", tmp_path,
                     report=str(tmp_path / "report"))
    result = score.run(config)
    with open(tmp_path / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    assert [r["slice"] for r in rows[:5]] == ["0", "1", "2", "3", "4"]
    assert {r["volume"] for r in rows} == {str(tmp_path / "scan.tif"), str(folder)}
    assert all(np.isfinite(float(r["score"])) and int(r["n_crops"]) == 4 for r in rows)
    html = (tmp_path / "report" / "index.html").read_text()
    assert "scan.tif" in html and "volumes_boxplot.png" in html
    assert "ring check: none in this model" in html  # asked for, but the tiny model has none
    assert [row["slices"] for row in result["summary"]] == [5, 3]


def test_the_report_says_how_many_slices_score_under_the_knee(tiny_model, tmp_path, monkeypatch):
    volume, _ = phantom.phantom_volume(0, n_slices=3, size=96, photons=2e4)
    io.write_tiff(tmp_path / "scan.tif", volume)

    def fixed_scorer(loaded, crops, *flags, **options):  # the scores a heavily penalised scan would get
        def score(slices):
            assert len(slices) == 3
            return np.array([3.2, 1.1, 1.2], np.float32), np.zeros(3, np.float32), 4
        return score

    monkeypatch.setattr(scoring, "make_slice_scorer", fixed_scorer)
    score.run(_config(tiny_model, str(tmp_path / "scan.tif"), tmp_path,
                      report=str(tmp_path / "report")))
    html = (tmp_path / "report" / "index.html").read_text()
    assert "2 of 3 slice(s) score under 1.25" in html
    assert "shrunk" not in html  # 96 px slices are enlarged, not shrunk
    assert penalties.scale_note([1.25, 3.0]) is None
    assert penalties.scale_note([1.2499]).startswith("1 of 1 slice(s) score under 1.25: ")


def test_the_report_says_which_slices_the_resize_shrinks_so_far_that_fine_blur_is_unseen(
        tiny_model, tmp_path, monkeypatch, capsys):
    # Shorter sides 3 and 2 times the model's resize are shrunk 3.0 and 2.0 times (the note's
    # threshold, inclusive); one pixel less than twice is not counted.
    resize = checkpoints.load_model(tiny_model[0]).resize
    for name, shape in (("a", (3 * resize, 3 * resize + 40)), ("b", (2 * resize + 10, 2 * resize)),
                        ("c", (2 * resize - 1, 3 * resize))):
        io.write_png(tmp_path / f"{name}.png", np.indices(shape).sum(0) % 2 * 0.5 + 0.25)

    asked = []

    def fixed_scorer(loaded, crops, *flags, **options):  # the network is not what is tested
        asked.append(options["own_pixels"])

        def score(slices):
            return np.full(len(slices), 3.0, np.float32), np.zeros(len(slices), np.float32), 4
        return score

    monkeypatch.setattr(scoring, "make_slice_scorer", fixed_scorer)
    inputs = ",".join(str(tmp_path / f"{name}.png") for name in "abc")
    score.run(_config(tiny_model, inputs, tmp_path, report=str(tmp_path / "report")))
    html = (tmp_path / "report" / "index.html").read_text()
    said = f"2 of 3 slice(s) are shrunk 2.0 to 3.0 times (shorter side to {resize} px)"
    printed = capsys.readouterr().out
    assert said in html and said in printed  # the console says it too
    assert "scored at their own pixels" not in printed
    assert scoring.resize_note([(255, 300), (509, 509)], 255) is None
    # Scored at their own pixels, nothing is shrunk: no note, and the grid covers each slice.
    score.run(_config(tiny_model, inputs, tmp_path, report=str(tmp_path / "own"),
                      output=str(tmp_path / "own.csv"), own_pixels=True))
    html = (tmp_path / "own" / "index.html").read_text()
    assert "shrunk" not in html and "own pixels" in html
    printed = capsys.readouterr().out
    assert "shrunk" not in printed and "scored at their own pixels\n" in printed
    # A model trained at its own pixels scores so by default (None): no note either.
    own_model = checkpoints.save_exported(dataclasses.replace(
        checkpoints.load_model(tiny_model[0]), own_pixels=True), tmp_path / "own_model")
    score.run(_config((own_model,), inputs, tmp_path, report=str(tmp_path / "own_default"),
                      output=str(tmp_path / "own_default.csv")))
    html = (tmp_path / "own_default" / "index.html").read_text()
    assert "shrunk" not in html and "own pixels" in html
    printed = capsys.readouterr().out
    assert "shrunk" not in printed and "own pixels (as the model was trained)" in printed
    assert asked == [None, True, None]  # the setting reaches the slice scorer
    assert scoring.resize_note([(2048, 2048)], 255).startswith(
        "1 of 1 slice(s) are shrunk 8.0 times (shorter side to 255 px) before the network ")


@pytest.mark.slow
def test_centre_crop_mode_and_bad_input(tiny_model, tmp_path):
    image = tmp_path / "one.png"
    io.write_png(image, np.random.default_rng(0).random((80, 80)))
    score.run(_config(tiny_model, str(image), tmp_path, crops="center"))
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == 1 and rows[0]["n_crops"] == "1" and rows[0]["slice"] == ""
    empty = tmp_path / "empty"
    empty.mkdir()
    output = tmp_path / "never.csv"
    with pytest.raises(io.ImageError, match="empty"):
        score.run(_config(tiny_model, str(empty), tmp_path, output=str(output)))
    assert not output.exists()
    small = tmp_path / "small.png"
    io.write_png(small, np.random.default_rng(0).random((20, 20)))
    # 20 px slices resize to 72 and are scored (upscaled); an unreadable file is named.
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00garbage")
    with pytest.raises(io.ImageError, match="broken.tif"):
        score.run(_config(tiny_model, str(broken), tmp_path, output=str(output)))
    assert not output.exists()


@pytest.mark.slow
def test_select_filter_ranks_candidates(tiny_model, tmp_path, capsys):
    from configs import select_filter as select_config
    from tiqa.phases import select_filter

    assert select_filter.sample_indices(10, 3) == [0, 4, 9]
    assert select_filter.sample_indices(2, 8) == [0, 1]
    volume, _ = phantom.phantom_volume(0, n_slices=4, size=96, photons=5e3, gain_error_std=0.004)
    io.write_tiff(tmp_path / "scan.tif", volume)
    config = select_config.get_config()
    config.input = str(tmp_path / "scan.tif")
    config.output = str(tmp_path / "filters")
    config.checkpoint = str(tiny_model[0])
    config.samples = 2
    config.candidates = "median:radius=1,2;ring_removal:radial_window=9:sectors=2;identity"
    rows = select_filter.run(config)
    assert [row["rank"] for row in rows] == [1, 2, 3, 4]
    assert {row["filter"] for row in rows} == {"median(radius=1)", "median(radius=2)",
                                               "ring_removal(radial_window=9, sectors=2)", "identity"}
    medians = [row["median"] for row in rows]
    assert medians == sorted(medians, reverse=True) and all(row["slices"] == 2 for row in rows)
    for name in ("filters.csv", "filters.md", "filters.png"):
        assert (tmp_path / "filters" / name).stat().st_size > 0
    # 180 views of 96 px slices cannot be told from full sampling: nothing is flagged.
    assert ("angular sampling: no slice of 2 looks made from too few views."
            in (tmp_path / "filters" / "filters.md").read_text())
    # A scan of 24 views is flagged, with its views, in the output and the table's Markdown.
    sparse, _ = phantom.phantom_volume(0, n_slices=2, size=96, photons=5e3, n_angles=24)
    io.write_tiff(tmp_path / "sparse.tif", sparse)
    config.input, config.output = str(tmp_path / "sparse.tif"), str(tmp_path / "sparse")
    config.candidates = "identity;median:radius=1"
    capsys.readouterr()
    select_filter.run(config)
    flagged = "2 of 2 slice(s) look made from too few views; views found (slices): 24 (2)."
    assert flagged in capsys.readouterr().out
    assert flagged in (tmp_path / "sparse" / "filters.md").read_text()
    config.view_check = False
    config.output = str(tmp_path / "unchecked")
    select_filter.run(config)
    assert "angular sampling" not in capsys.readouterr().out
    assert "angular sampling" not in (tmp_path / "unchecked" / "filters.md").read_text()
    config.candidates = "sharpen:amount=2"
    with pytest.raises(ValueError, match="sharpen"):
        select_filter.run(config)


def _never_score(*args, **kwargs):
    raise AssertionError("the inputs were scored before the output was checked")


def test_output_is_checked_before_scoring(tiny_model, tmp_path, monkeypatch):
    image = tmp_path / "one.png"
    io.write_png(image, np.random.default_rng(0).random((80, 80)))
    monkeypatch.setattr(score, "score_inputs", _never_score)
    folder = tmp_path / "existing_folder"
    folder.mkdir()
    with pytest.raises(errors.InputError, match=f"config.output={folder} is a folder"):
        score.run(_config(tiny_model, str(image), tmp_path, output=str(folder)))
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("a file, not a folder")
    with pytest.raises(errors.InputError, match="config.output=.*notes.txt/results.csv"):
        score.run(_config(tiny_model, str(image), tmp_path,
                                    output=str(not_a_folder / "results.csv")))
    with pytest.raises(errors.InputError, match=f"config.report={not_a_folder} is a file"):
        score.run(_config(tiny_model, str(image), tmp_path,
                                    report=str(not_a_folder)))


@pytest.mark.parametrize("size", [0, -4])
def test_batch_size_is_validated_by_name(tiny_model, tmp_path, size):
    image = tmp_path / "one.png"
    io.write_png(image, np.random.default_rng(0).random((80, 80)))
    with pytest.raises(errors.InputError, match="config.batch_size must be a positive whole"):
        score.run(_config(tiny_model, str(image), tmp_path, batch_size=size))
    assert not (tmp_path / "results.csv").exists()


def test_a_sampled_grid_is_scored_and_its_limit_validated_by_name(tiny_model, tmp_path):
    image = tmp_path / "one.png"
    io.write_png(image, np.random.default_rng(0).random((150, 150)))  # 72 px resized: 2 x 2
    with pytest.raises(errors.InputError, match="config.most_per_side must be an integer"):
        score.run(_config(tiny_model, str(image), tmp_path, most_per_side=-1))
    assert not (tmp_path / "results.csv").exists()
    score.run(_config(tiny_model, str(image), tmp_path, most_per_side=1))
    with open(tmp_path / "results.csv") as handle:
        assert [row["n_crops"] for row in csv.DictReader(handle)] == ["1"]


def test_fixed_batches_never_pad_past_the_input():
    seen = []

    def function(chunk):
        seen.append(len(chunk))
        return chunk.sum(axis=(1, 2))

    images = np.arange(3 * 4 * 4, dtype=np.float32).reshape(3, 4, 4)
    out = scoring.in_fixed_batches(function, images, 1000)
    assert seen == [3]  # one batch of the three inputs, not 1000
    np.testing.assert_array_equal(out, images.sum(axis=(1, 2)))
    seen.clear()
    out = scoring.in_fixed_batches(function, images, 2)
    assert seen == [2, 2]  # the fixed shape stays when there are more inputs than a batch
    np.testing.assert_array_equal(out, images.sum(axis=(1, 2)))


def test_a_path_with_a_comma_is_given_escaped(tiny_model, tmp_path):
    image = tmp_path / "scan,1.png"
    io.write_png(image, np.random.default_rng(0).random((80, 80)))
    other = tmp_path / "scan2.png"
    io.write_png(other, np.random.default_rng(1).random((80, 80)))
    escaped = str(image).replace(",", "\\,")
    score.run(_config(tiny_model, f"{escaped}, {other}", tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [r["file"] for r in rows] == [str(image), str(other)]


def test_select_filter_checks_sizes_and_output_first(tiny_model, tmp_path):
    from configs import select_filter as select_config
    from tiqa.phases import select_filter

    io.write_png(tmp_path / "one.png", np.random.default_rng(0).random((80, 80)))
    config = select_config.get_config()
    config.input = str(tmp_path / "one.png")
    config.checkpoint = str(tiny_model[0])
    config.output = str(tmp_path / "filters")
    config.candidates = "identity"
    config.batch_size = 0
    with pytest.raises(errors.InputError, match="config.batch_size"):
        select_filter.run(config)
    config.batch_size = 2
    (tmp_path / "taken").write_text("a file")
    config.output = str(tmp_path / "taken")
    with pytest.raises(errors.InputError, match=f"config.output={tmp_path / 'taken'} is a file"):
        select_filter.run(config)


@pytest.mark.slow
def test_a_three_page_stack_in_tifffile_defaults_is_scored_as_three_slices(tiny_model, tmp_path):
    import tifffile

    volume, _ = phantom.phantom_volume(0, n_slices=3, size=96, photons=2e4)
    path = tmp_path / "three.tif"
    with pytest.warns(DeprecationWarning):  # one page of planar samples, photometric RGB
        tifffile.imwrite(path, (np.clip(volume / volume.max(), 0, 1) * 65535).astype(np.uint16))
    result = score.run(_config(tiny_model, str(path), tmp_path))
    assert [r["slice"] for r in result["records"]] == [0, 1, 2]
    result = score.run(_config(tiny_model, str(path), tmp_path, tiff_planes="colour"))
    assert [r["slice"] for r in result["records"]] == [None]


def _roughness_scorer(calls):
    """A stub slice scorer with a known ranking: smoother slices score higher (minus the mean
    absolute difference of horizontal neighbours); it records what it was given."""
    def score(slices):
        slices = np.asarray(slices, np.float64)
        calls.append(slices.copy())
        values = -np.abs(np.diff(slices, axis=-1)).mean(axis=(1, 2))
        return values, np.zeros_like(values), 1
    return score


def test_select_filter_ranks_by_a_known_scorer(tmp_path, monkeypatch):
    from configs import select_filter as select_config
    from tiqa import filters
    from tiqa.phases import select_filter

    calls = []
    monkeypatch.setattr(checkpoints, "load_model", lambda path: None)
    monkeypatch.setattr(scoring, "make_slice_scorer",
                        lambda loaded, crops, own_pixels: _roughness_scorer(calls))
    # White noise: a median filter smooths it, the wider one more.
    data = np.random.default_rng(3).integers(1000, 60000, (3, 48, 48)).astype(np.uint16)
    io.write_tiff(tmp_path / "noise.tif", data)
    config = select_config.get_config()
    config.input = str(tmp_path / "noise.tif")
    config.output = str(tmp_path / "filters")
    config.samples = 0
    config.candidates = "identity;median:radius=1,2"
    rows = select_filter.run(config)
    assert [row["filter"] for row in rows] == ["median(radius=2)", "median(radius=1)", "identity"], \
        f"candidates must be ranked by the score of their filtered slices: {rows}"
    # The known answers: numpy's whole-volume normalisation, each filter, the stub's score.
    x = data.astype(np.float64)
    low, high = np.percentile(x, [0.5, 99.5])
    slices = np.clip((x - low) / (high - low), 0, 1).astype(np.float32)
    for row, (name, params) in zip(rows, [("median", {"radius": 2}), ("median", {"radius": 1}),
                                          ("identity", {})]):
        filtered = np.stack([filters.apply(name, s, **params) for s in slices])
        expected = -np.abs(np.diff(filtered.astype(np.float64), axis=-1)).mean(axis=(1, 2))
        assert row["median"] == pytest.approx(np.median(expected), rel=1e-5), row
        assert row["slices"] == 3


@pytest.mark.parametrize("count, expected", [(1, (1, 1)), (9, (1, 9)), (64, (1, 64)),
                                             (65, (2, 33)), (121, (2, 61)), (144, (3, 48))])
def test_own_pixel_crops_run_in_even_chunks_of_at_most_the_chunk_size(count, expected):
    # One crop runs alone (not padded to a full chunk of 64), and a grid runs in as few
    # chunks as the chunk size allows, padded by fewer crops than there are chunks.
    assert scoring.own_pixel_chunks(count) == expected
    chunks, size = expected
    assert size <= scoring.OWN_PIXEL_CHUNK and 0 <= chunks * size - count < chunks


def test_own_pixels_scores_a_large_slice_on_crops_at_its_own_pixels(tiny_model, monkeypatch):
    loaded = checkpoints.load_model(tiny_model[0])
    resize, crop = loaded.resize, loaded.crop
    rng = np.random.default_rng(0)
    network = scoring.make_scorer(loaded, with_ring_check=False, on_scale=False)

    def slice_scorer(crops="grid", **options):
        return scoring.make_slice_scorer(loaded, crops, with_ring_check=False,
                                         with_view_penalty=False, with_centre_penalty=False,
                                         **options)

    # Chunks of 5 crops: 2 slices of 12 crops run as 5 chunks, the last padded.
    monkeypatch.setattr(scoring, "OWN_PIXEL_CHUNK", 5)
    large = rng.random((2, 2 * resize + 7, 3 * resize)).astype(np.float32)
    mean, _, count = slice_scorer(own_pixels=True)(large)
    positions = scoring.crop_positions(*large.shape[-2:], crop, "grid")
    assert count == len(positions) == -(-large.shape[1] // crop) * -(-large.shape[2] // crop)
    crops = np.stack([large[:, top:top + crop, left:left + crop] for top, left in positions], 1)
    expected = network(crops.reshape((-1, crop, crop))).reshape(2, -1).mean(axis=1)
    np.testing.assert_allclose(mean, penalties.onto_scale(expected, np), rtol=1e-5, atol=1e-5)
    # A grid of at most 2 crops a side: the corner crops alone (by hand), averaged.
    sampled, _, sampled_count = slice_scorer(own_pixels=True, most_per_side=2)(large)
    height, width = large.shape[-2:]
    corners = np.stack([large[:, top:top + crop, left:left + crop]
                        for top in (0, height - crop) for left in (0, width - crop)], 1)
    assert sampled_count == 4
    np.testing.assert_allclose(
        sampled, penalties.onto_scale(network(corners.reshape((-1, crop, crop))).reshape(
            2, -1).mean(axis=1), np), rtol=1e-5, atol=1e-5)
    # Without it the same slices are resized first, which changes what the network sees.
    resized = np.stack([np.asarray(preprocessing.preprocess(image, key=None, resize=resize,
                                                            crop=crop)) for image in large])
    default, _, _ = slice_scorer("center")(large)
    np.testing.assert_allclose(default, penalties.onto_scale(network(resized), np), rtol=1e-5,
                               atol=1e-5)
    own = slice_scorer("center", own_pixels=True)(large)[0]
    assert not np.allclose(default, own, atol=1e-3)
    # A model trained at its own pixels scores at them unless told otherwise.
    own_model = dataclasses.replace(loaded, own_pixels=True)
    unset = lambda **options: scoring.make_slice_scorer(
        own_model, "center", with_ring_check=False, with_view_penalty=False,
        with_centre_penalty=False, **options)(large)[0]
    np.testing.assert_array_equal(unset(), own)
    np.testing.assert_array_equal(unset(own_pixels=False), default)
    # A slice smaller than the resize is enlarged to it either way.
    small = rng.random((2, resize - 5, resize + 3)).astype(np.float32)
    np.testing.assert_array_equal(slice_scorer(own_pixels=True)(small)[0],
                                  slice_scorer()(small)[0])
