"""Objects for simulated acquisitions, ladder banks in training batches, and the
acquisition-ladder benchmark's statistics and phase."""

import csv
import dataclasses
import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import special

from configs import evaluate_acquisition as ladder_config
from configs import finetune as finetune_config
from configs import train_rank as rank_config
from tests.tiny_models import export_tiny_score_model
from tiqa import (acquisition, acquisition_ladder, centre_check, checkpoints, errors, filters,
                  io, labels, objects, penalties, ring_check)
from tiqa.phases import evaluate_acquisition, train_rank
from tiqa.train import batches


# --- Objects ---------------------------------------------------------------------------------

def test_objects_are_scaled_to_their_transmission():
    rng = np.random.default_rng(0)
    grey = rng.random((120, 150))
    for attenuation in (objects.from_grey(grey, 90, rng),
                        objects.from_labels(rng.integers(0, 3, (100, 100)), 90, rng),
                        objects.from_phantom(1, 90, rng)):
        assert attenuation.shape == (90, 90) and attenuation.dtype == np.float32
        assert attenuation.min() >= 0
        mean_ray = attenuation[objects.inside_circle(90)].mean() * 90
        assert objects.TRANSMISSION_RANGE[0] - 1e-4 <= mean_ray <= objects.TRANSMISSION_RANGE[1] + 1e-4


def test_label_objects_keep_phases_apart_and_texture_is_optional():
    rng = np.random.default_rng(3)
    label_map = np.repeat(np.arange(3), 40)[None, :].repeat(120, axis=0)
    flat = objects.from_labels(label_map, 100, rng, texture=False)
    values = np.unique(flat)
    assert 2 <= len(values) <= 3  # a random window may hold two of the three stripes
    assert np.min(np.diff(values)) >= objects.MIN_PHASE_GAP * values.max() - 1e-6
    textured = objects.from_labels(label_map, 100, np.random.default_rng(3), texture=True)
    assert len(np.unique(textured)) > 100


def test_smooth_label_objects_have_soft_edges_and_texture_of_the_drawn_amplitude(monkeypatch):
    # Without texture and grain, the row profile across a two-phase step is the step blurred by
    # a Gaussian: the normal CDF of the distance to the boundary over a sigma in
    # SMOOTH_EDGE_RANGE, between the two phases' values (a sharp label object jumps in a pixel).
    step = np.zeros((64, 200), np.int32)
    step[:, 100:] = 1
    distance = np.arange(200) - 99.5
    monkeypatch.setattr(objects, "SMOOTH_TEXTURE_RANGE", (0.0, 0.0))
    monkeypatch.setattr(objects, "SMOOTH_GRAIN_RANGE", (0.0, 0.0))
    for seed in range(3):
        profile = objects.smooth_from_labels(step, np.random.default_rng(seed)).mean(axis=0)
        low, high = profile[0], profile[-1]
        assert max(low, high) == pytest.approx(1.0) and abs(high - low) >= 0.1
        sigmas = np.linspace(1.0, 12.0, 221)
        errors_by_sigma = [np.abs(low + (high - low) * special.ndtr(distance / sigma) - profile).max()
                           for sigma in sigmas]
        best = int(np.argmin(errors_by_sigma))
        assert errors_by_sigma[best] < 0.01 * abs(high - low)
        assert objects.SMOOTH_EDGE_RANGE[0] - 0.05 <= sigmas[best] <= objects.SMOOTH_EDGE_RANGE[1] + 0.05
    # One phase without grain: texture only, its relative std the drawn amplitude, correlated
    # between neighbours (white grain is not).
    monkeypatch.undo()
    monkeypatch.setattr(objects, "SMOOTH_GRAIN_RANGE", (0.0, 0.0))
    flat = objects.smooth_from_labels(np.zeros((256, 256), np.int32), np.random.default_rng(5))
    assert objects.SMOOTH_TEXTURE_RANGE[0] - 1e-6 <= flat.std() / flat.mean() <= objects.SMOOTH_TEXTURE_RANGE[1] + 1e-6
    assert np.corrcoef(flat[:, :-1].ravel(), flat[:, 1:].ravel())[0, 1] > 0.8


def test_smooth_label_maps_join_the_training_objects_and_the_bank_description(tmp_path, monkeypatch):
    stripes = np.repeat(np.arange(3, dtype=np.uint8) * 100, 50)[None, :].repeat(150, axis=0)
    Image.fromarray(stripes).save(tmp_path / "labels.png")
    found = objects.collect("", str(tmp_path / "labels.png"), 1, 7, 100, 0,
                            smooth_label_maps=str(tmp_path / "labels.png"))
    assert found.kinds == ("label_map", "smooth", "phantom")
    assert found.sources[1] == str(tmp_path / "labels.png")
    # The label map object has three attenuation values; the smooth one a continuum of them.
    assert len(np.unique(found.attenuation[0])) <= 3 < 1000 < len(np.unique(found.attenuation[1]))
    described = {}

    def record(attenuation, factors, key, **kwargs):
        described["objects"] = attenuation.shape[0]
        return np.zeros((attenuation.shape[0], len(factors), 6, 8, 8), np.float32)

    monkeypatch.setattr(acquisition, "ladders", record)
    settings = batches.LadderSettings(objects_per_batch=1, smooth_label_maps=str(tmp_path / "labels.png"),
                                      factors=("photons",), cache=str(tmp_path / "bank.npz"))
    batches.ladder_bank(settings, seed=0)
    assert described["objects"] == 1
    with np.load(tmp_path / "bank.npz") as stored:
        assert list(stored["names"]) == [f"smooth:{tmp_path / 'labels.png'}"]
        assert json.loads(str(stored["description"]))["smooth_label_maps"] == settings.smooth_label_maps
    # The pool weighs each ladder by its object's kind: the smooth object's photon ladder is
    # left out when asked, and with nothing left out the pool carries no weights at all.
    pool = batches.build_pool([np.zeros((8, 8), np.float32)], [4.0], resize=0, crop=8)
    left_out = dataclasses.replace(settings, smooth_factors_left_out=("photons",))
    np.testing.assert_array_equal(batches.with_ladders(pool, left_out, 0, 8, 4.0).ladder_weights, [[0.0]])
    assert batches.with_ladders(pool, settings, 0, 8, 4.0).ladder_weights is None


def test_fractal_textures_have_the_drawn_spectral_slope():
    # The radially averaged power of a 1/f^beta field, measured with numpy's FFT, falls with a
    # log-log slope of -beta between 4 and 100 cycles per side.
    side = 256
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(side), np.fft.fftfreq(side), indexing="ij")) * side
    bins = np.arange(4, 101)
    for beta in (1.0, 1.6, 2.2):
        field = objects.fractal_texture(np.random.default_rng(int(beta * 10)), side, beta)
        assert field.mean() == pytest.approx(0.0, abs=1e-9) and field.std() == pytest.approx(1.0)
        power = np.abs(np.fft.fft2(field)) ** 2
        mean_power = [power[np.round(radius) == b].mean() for b in bins]
        slope = np.polyfit(np.log(bins), np.log(mean_power), 1)[0]
        assert slope == pytest.approx(-beta, abs=0.15)


def test_stone_textures_have_dark_joints_between_brighter_cells():
    # The cells' centres are the generator's first draw; by brute force, pixels all but equally
    # far from their two nearest centres lie on a joint (at least 2 px wide), pixels far from
    # any other centre inside a stone.
    side, cells = 96, 12
    wall = objects.stone_texture(np.random.default_rng(4), side, cells)
    centres = np.random.default_rng(4).uniform(0, side, (cells, 2))
    rows, cols = np.mgrid[0:side, 0:side]
    distances = np.sort(np.hypot(rows[..., None] - centres[:, 0], cols[..., None] - centres[:, 1]), axis=-1)
    gap = distances[..., 1] - distances[..., 0]
    assert wall[gap < 0.5].mean() < 0.3 < 0.4 < wall[gap > 10].mean()


def test_texture_images_are_grey_slices_of_both_kinds(monkeypatch):
    drawn = []
    monkeypatch.setattr(objects, "stone_texture", lambda rng, side, cells: (
        drawn.append("stone"), objects.fractal_texture(rng, side, 1.0))[1])
    for seed in range(60):
        image = objects.texture_image(np.random.default_rng(seed), 64)
        assert image.shape == (64, 64) and image.min() == 0.0 and image.max() == 1.0
    # A third are stone walls (binomial, 60 draws: 20 +- 3.7).
    assert 10 <= len(drawn) <= 30


def test_textures_join_the_training_objects_and_the_bank_description(tmp_path, monkeypatch):
    found = objects.collect("", "", 1, 7, 100, 0, textures=2)
    assert found.kinds == ("phantom", "texture", "texture")
    assert found.sources[1:] == ("texture 0", "texture 1")
    assert not np.array_equal(found.attenuation[1], found.attenuation[2])
    monkeypatch.setattr(acquisition, "ladders", lambda attenuation, factors, key, **kwargs: np.zeros(
        (attenuation.shape[0], len(factors), 6, 8, 8), np.float32))
    settings = batches.LadderSettings(objects_per_batch=1, textures=2, factors=("photons",),
                                      cache=str(tmp_path / "bank.npz"))
    batches.ladder_bank(settings, seed=0)
    with np.load(tmp_path / "bank.npz") as stored:
        assert list(stored["names"]) == ["texture:texture 0", "texture:texture 1"]
        assert json.loads(str(stored["description"]))["textures"] == 2
    # Without textures the description has no such key, so banks made before it stay valid.
    without = dataclasses.replace(settings, textures=0, phantoms=1, cache=str(tmp_path / "old.npz"))
    batches.ladder_bank(without, seed=0)
    with np.load(tmp_path / "old.npz") as stored:
        assert "textures" not in json.loads(str(stored["description"]))
    # The benchmark's held-out textures come from its own seed's generator, and are named.
    held = acquisition_ladder.held_out_objects("", "", 0, 0, 64, 1, textures=2)
    assert held.kinds == ("texture", "texture") and held.names == ("texture 0", "texture 1")
    ladder = ladder_config.get_config("smoke")
    ladder.textures = -2
    with pytest.raises(errors.InputError, match=r"config\.textures must be an integer >= 0"):
        evaluate_acquisition.read_settings(ladder)
    # A phase refuses a negative count before any work, naming the key.
    rank = rank_config.get_config("smoke")
    rank.acquisition.textures = -1
    with pytest.raises(errors.InputError, match=r"config\.acquisition\.textures must be an integer >= 0"):
        train_rank.read_settings(rank)


def test_textures_can_stay_out_of_the_extra_sizes_banks(tmp_path, monkeypatch):
    simulated = []

    def record(attenuation, factors, key, output_size, **kwargs):
        simulated.append((output_size, attenuation.shape[0]))
        return np.zeros((attenuation.shape[0], len(factors), 6, output_size, output_size),
                        np.float32)

    monkeypatch.setattr(acquisition, "ladders", record)
    pool = batches.build_pool([np.zeros((8, 8), np.float32)], [4.0], resize=0, crop=8)
    settings = batches.LadderSettings(objects_per_batch=1, phantoms=1, textures=2,
                                      factors=("photons",), output_size=16,
                                      extra_output_sizes=(12,), cache=str(tmp_path / "bank.npz"))
    # By default both banks hold the phantom and the two textures.
    both = batches.with_ladders(pool, settings, 0, 8, 4.0)
    assert simulated == [(16, 3), (12, 3)]
    np.testing.assert_array_equal(both.ladder_sides, [16, 16, 16, 12, 12, 12])
    # Without them at the extra sizes, the 12 px bank is the phantom alone, cached apart (its
    # description has no textures, as a bank made without the option).
    simulated.clear()
    first_only = dataclasses.replace(settings, textures_at_extra_sizes=False,
                                     cache=str(tmp_path / "first.npz"))
    found = batches.with_ladders(pool, first_only, 0, 8, 4.0)
    assert simulated == [(16, 3), (12, 1)]
    np.testing.assert_array_equal(found.ladder_sides, [16, 16, 16, 12])
    with np.load(tmp_path / "first_12px.npz") as stored:
        assert list(stored["names"]) == ["phantom:100"]
        assert "textures" not in json.loads(str(stored["description"]))
    with np.load(tmp_path / "first.npz") as stored:
        assert list(stored["names"]) == ["phantom:100", "texture:texture 0", "texture:texture 1"]
        assert json.loads(str(stored["description"]))["textures"] == 2


def test_scored_scale_shows_a_large_slice_whole_and_native_a_window_of_it(tmp_path):
    # A 1000 px ramp: at native scale a 100 px window spans at most 100 / 0.75 px of it; at the
    # scored scale of a 50 px reconstruction (1000 px -> 50 px, times 0.75..1.5) the window
    # must cover the whole slice (the zoom is floored at 100 / 1000).
    ramp = np.tile(np.linspace(0.0, 1.0, 1000), (1000, 1))
    assert objects.scale_base(ramp.shape, 50) == pytest.approx(0.05)
    assert objects.scale_base((500, 572), 256) == pytest.approx(0.512)
    native = objects._zoom_and_crop(ramp, 100, np.random.default_rng(0), 1)
    scored = objects._zoom_and_crop(ramp, 100, np.random.default_rng(0), 1,
                                    base=objects.scale_base(ramp.shape, 50))
    assert np.ptp(native) < 100 / 0.75 / 1000 + 0.01
    assert np.ptp(scored) > 0.97
    image = tmp_path / "ramp.tif"
    io.write_tiff(image, ramp.astype(np.float32))
    found = objects.collect(str(image), "", 0, 0, 100, 0, scale="scored", scored_size=50)
    attenuation = found.attenuation[0]
    assert np.ptp(attenuation) > 0.9 * attenuation.max()  # dark to bright across the window
    # Shrinking by 10x averages white noise (its std falls ~10x), as an area resize does.
    noise = np.random.default_rng(1).random((1000, 1000))
    shrunk = objects._zoom_and_crop(noise, 100, np.random.default_rng(0), 1, base=0.05,
                                    antialias=True)
    assert np.std(shrunk) < 0.3 * np.std(noise)
    with pytest.raises(errors.InputError, match="object scale"):
        objects.collect(str(image), "", 0, 0, 100, 0, scale="zoomed")
    # A phase refuses a bad value before any work, naming the key.
    rank = rank_config.get_config("smoke")
    rank.acquisition.object_scale = "zoomed"
    with pytest.raises(errors.InputError, match=r"config\.acquisition\.object_scale"):
        train_rank.read_settings(rank)
    ladder = ladder_config.get_config("smoke")
    ladder.object_scale = "zoomed"
    with pytest.raises(errors.InputError, match=r"config\.object_scale"):
        evaluate_acquisition.read_settings(ladder)


def test_read_label_map_numbers_stored_values_in_order(tmp_path):
    stored = np.array([[0, 85, 170], [170, 85, 0]] * 8, np.uint8).repeat(8, axis=1)
    Image.fromarray(stored).save(tmp_path / "labels.png")
    read = objects.read_label_map((tmp_path / "labels.png", None))
    np.testing.assert_array_equal(read, stored // 85)


# --- Ladders in training batches ----------------------------------------------------------------

def _pool_with_ladders(count=3, factors=2, size=40):
    rng = np.random.default_rng(0)
    # Level l of every ladder is filled with l, so crops reveal which levels came where.
    ladders = np.broadcast_to(np.arange(6, dtype=np.float32)[None, None, :, None, None],
                              (count, factors, 6, size, size)).copy()
    ladders += rng.random((count, 1, 1, size, size)).astype(np.float32) * 0.01
    pool = batches.build_pool([rng.random((40, 40)).astype(np.float32)] * 2, [4.0, 4.0],
                              resize=0, crop=32)
    return pool._replace(ladders=jnp.asarray(ladders / 5.0),
                         ladder_scores=jnp.full((count,), 4.0, jnp.float32))


@pytest.mark.slow
def test_rank_batch_appends_one_group_per_object_and_factor():
    pool = _pool_with_ladders()
    batch = batches.rank_batch(pool, jnp.int32(0), key=jax.random.key(0), originals_per_batch=1,
                               crop=32, kinds=("blur", "noise"), objects_per_batch=2)
    assert batch["images"].shape == (batches.images_per_batch(1, 2, 2, 2), 32, 32)
    ladder_images = np.asarray(batch["images"][12:])
    ladder_levels = np.asarray(batch["levels"][12:])
    # Each crop shows the level it is labelled with (level l was filled with l / 5).
    np.testing.assert_allclose(ladder_images.mean(axis=(1, 2)) * 5, ladder_levels, atol=0.02)
    groups = np.asarray(batch["group_ids"])
    assert set(groups[:12]) == {0, 1} and set(groups[12:]) == {2, 3, 4, 5}
    for group in range(2, 6):
        np.testing.assert_array_equal(ladder_levels[groups[12:] == group], np.arange(6))


def test_ladder_objects_follow_a_permutation_per_epoch():
    pool = _pool_with_ladders(count=4)
    seen = [np.asarray(batches.ladder_crops(pool, jnp.int32(s), jax.random.key(1), 2, 32)[0]
                       [:, 0, 0].mean(axis=(1, 2))) for s in range(2)]
    # Four objects, two per step: one epoch shows each object's own texture exactly once.
    means = np.sort(np.concatenate(seen))
    assert len(np.unique(np.round(means, 6))) == 4


@pytest.mark.slow
def test_finetune_batch_labels_ladders_against_their_ideal_acquisition():
    pool = _pool_with_ladders()
    projection = labels.ProjectionConfig(kinds=("blur",))
    batch = batches.finetune_batch(pool, jnp.int32(1), key=jax.random.key(0),
                                   originals_per_batch=1, crop=32, projection=projection,
                                   objects_per_batch=1)
    ladder_labels = np.asarray(batch["labels"][6:]).reshape(2, 6)
    np.testing.assert_allclose(ladder_labels[:, 0], 4.0)  # the ideal keeps S0
    assert np.all(np.diff(ladder_labels, axis=1) < 0)  # every worse level a lower label
    np.testing.assert_allclose(ladder_labels[:, -1], 1.0, atol=1e-5)  # the worst level: 1
    # The rank term's groups: the original under its kind, then each object under each factor.
    np.testing.assert_array_equal(np.asarray(batch["group_ids"]), np.repeat([0, 1, 2], 6))
    np.testing.assert_array_equal(np.asarray(batch["levels"]), np.tile(np.arange(6), 3))


def test_smooth_objects_ladders_left_out_get_weight_zero_in_batches():
    settings = batches.LadderSettings(factors=("photons", "detector_blur"),
                                      smooth_factors_left_out=("detector_blur",),
                                      denoising_ladder=True)
    weights = batches.ladder_weights(["grey:a.tif", "smooth:b.tif", "phantom:100"], settings)
    np.testing.assert_array_equal(weights, [[1, 1, 1], [1, 0, 1], [1, 1, 1]])
    # The denoising ladder (the last) weighs what acquisition.denoising_weight says.
    lighter = dataclasses.replace(settings, denoising_weight=0.25)
    np.testing.assert_array_equal(batches.ladder_weights(["grey:a.tif", "smooth:b.tif"], lighter),
                                  [[1, 1, 0.25], [1, 0, 0.25]])
    # Every ladder of a texture object weighs acquisition.texture_weight times its own weight.
    textures = dataclasses.replace(lighter, textures=2, texture_weight=0.5)
    np.testing.assert_array_equal(
        batches.ladder_weights(["texture:fractal 1", "grey:a.tif", "texture:stone 2"], textures),
        [[0.5, 0.5, 0.125], [1, 1, 0.25], [0.5, 0.5, 0.125]])
    # acquisition.factor_weights weighs each factor's ladders, in the order of the factors;
    # the smooth objects' left-out ladders stay at 0 and the textures' take their own weight.
    weighed = dataclasses.replace(textures, factor_weights=(3.0, 2.0))
    np.testing.assert_array_equal(
        batches.ladder_weights(["grey:a.tif", "smooth:b.tif", "texture:stone 2"], weighed),
        [[3, 2, 0.25], [3, 0, 0.25], [1.5, 1, 0.125]])
    # In a batch, every image of a ladder carries its weight; the originals weigh 1.
    pool = _pool_with_ladders(count=2)
    # Object m's ladders are offset by 10 m, so a crop tells which object it came from.
    pool = pool._replace(ladders=pool.ladders + 10.0 * jnp.arange(2.0)[:, None, None, None, None],
                         ladder_weights=jnp.asarray([[1.0, 0.0], [0.0, 1.0]]))
    seen = set()
    projection = labels.ProjectionConfig(kinds=("blur",))
    for step in range(2):
        batch = batches.finetune_batch(pool, jnp.int32(step), key=jax.random.key(0),
                                       originals_per_batch=1, crop=32, projection=projection,
                                       objects_per_batch=1)
        ladder_weights = np.asarray(batch["weights"][6:]).reshape(2, 6)
        np.testing.assert_array_equal(np.asarray(batch["weights"][:6]), 1.0)
        which = int(np.asarray(batch["images"][6]).mean() // 10)
        seen.add(which)
        np.testing.assert_array_equal(ladder_weights, np.repeat(
            np.asarray(pool.ladder_weights[which])[:, None], 6, axis=1))
    assert seen == {0, 1}  # one epoch of two steps shows both objects
    rank = rank_config.get_config("smoke")
    rank.acquisition.smooth_factors_left_out = ("centre_offset",)
    with pytest.raises(errors.InputError, match=r"config\.acquisition\.smooth_factors_left_out"):
        train_rank.read_settings(rank)


def test_fixed_ladder_labels_measure_the_damage_not_the_rank():
    # Each level of this ladder adds 0.01 to the ideal: a damage far too small to be labelled 1.
    pool = _pool_with_ladders()
    ladders = pool.ladders[:, :, :1] + 0.01 * jnp.arange(6.0)[None, None, :, None, None]
    pool = pool._replace(ladders=ladders)
    projection = labels.ProjectionConfig(kinds=("blur",), observers=("mse",),
                                         fixed_scales=(("mse", 0.05),))
    batch = batches.finetune_batch(pool, jnp.int32(1), key=jax.random.key(0),
                                   originals_per_batch=1, crop=32, projection=projection,
                                   objects_per_batch=1, ladder_normalisation="fixed")
    images = np.asarray(batch["images"][6:], np.float64).reshape(2, 6, 32, 32)
    # By hand: 1 + (S0 - 1) (1 - MSE / 0.05), the MSE against the ladder's own ideal.
    mse = np.mean((images - images[:, :1]) ** 2, axis=(2, 3))
    expected = 1.0 + 3.0 * (1.0 - mse / 0.05)
    got = np.asarray(batch["labels"][6:]).reshape(2, 6)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert got[:, -1].min() > 3.8  # 0.05 brighter (MSE 0.0025): 3.85, not the worst score 1
    # The paper's kinds keep their own normalisation: the original's level 5 is labelled 1.
    np.testing.assert_allclose(batch["labels"][5], 1.0, atol=1e-5)
    rank = rank_config.get_config("smoke")
    rank.acquisition.label_normalisation = "absolute"
    with pytest.raises(errors.InputError, match=r"config\.acquisition\.label_normalisation"):
        train_rank.read_settings(rank)


@pytest.mark.slow
def test_ladder_bank_is_cached_and_refreshed_when_settings_change(tmp_path, monkeypatch):
    config = batches.LadderSettings(phantoms=1, objects_per_batch=1, output_size=32,
                                    factors=("photons",), max_views=180,
                                    cache=str(tmp_path / "bank.npz"))
    first = batches.ladder_bank(config, seed=0).ladders
    assert first.shape == (1, 1, 6, 32, 32)
    stamp = (tmp_path / "bank.npz").stat().st_mtime_ns
    np.testing.assert_array_equal(batches.ladder_bank(config, seed=0).ladders, first)
    assert (tmp_path / "bank.npz").stat().st_mtime_ns == stamp  # read, not simulated again
    config = dataclasses.replace(config, factors=("gain_error",))
    changed = batches.ladder_bank(config, seed=0).ladders
    assert not np.array_equal(changed, first)
    # A bank of an earlier acquisition model is simulated anew, not read.
    stamp = (tmp_path / "bank.npz").stat().st_mtime_ns
    monkeypatch.setattr(acquisition, "MODEL_VERSION", acquisition.MODEL_VERSION + 1)
    np.testing.assert_array_equal(batches.ladder_bank(config, seed=0).ladders, changed)
    assert (tmp_path / "bank.npz").stat().st_mtime_ns != stamp


def test_banks_of_two_sizes_are_joined_and_cropped_inside_each_objects_side(tmp_path):
    config = batches.LadderSettings(phantoms=1, objects_per_batch=1, output_size=48,
                                    extra_output_sizes=(32,), factors=("photons",),
                                    max_views=180, cache=str(tmp_path / "bank.npz"))
    pool = batches.build_pool([np.zeros((40, 40), np.float32)], [4.0], resize=0, crop=24)
    pool = batches.with_ladders(pool, config, seed=0, crop=24, score=4.0)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bank.npz", "bank_32px.npz"]
    large = batches.ladder_bank(dataclasses.replace(config, extra_output_sizes=()), 0).ladders
    small = batches.ladder_bank(dataclasses.replace(
        config, output_size=32, extra_output_sizes=(), cache=str(tmp_path / "bank_32px.npz")),
        0).ladders  # read from the cache the join wrote, not simulated again
    assert pool.ladders.shape == (2, 1, 6, 48, 48)
    np.testing.assert_array_equal(pool.ladders[0], large[0])
    np.testing.assert_array_equal(pool.ladders[1, :, :, :32, :32], small[0])
    assert not np.any(pool.ladders[1, :, :, 32:]) and not np.any(pool.ladders[1, :, :, :, 32:])
    np.testing.assert_array_equal(pool.ladder_sides, [48, 32])
    # Crops never reach past an object's own side: fill each object's square with ones.
    ones = np.zeros(pool.ladders.shape, np.float32)
    ones[0], ones[1, ..., :32, :32] = 1.0, 1.0
    filled = pool._replace(ladders=jnp.asarray(ones))
    cut = jax.jit(lambda step: batches.ladder_crops(filled, step, jax.random.key(3), 2, 24)[0])
    assert all(float(cut(jnp.int32(step)).min()) == 1.0 for step in range(40))
    with pytest.raises(errors.InputError, match="output_size=16 is smaller than the 24 px crop"):
        batches.with_ladders(pool, dataclasses.replace(config, extra_output_sizes=(16,)), 0, 24, 4.0)


def test_a_scored_bank_draws_the_slices_at_the_scoring_scale_beside_the_native_one(tmp_path):
    # A 160 x 200 grey slice: native objects are 40 px windows of its own pixels, scored ones
    # show the whole slice shrunk to 40 px (scale 40 / 160), so their ideal acquisitions differ.
    slice_path = tmp_path / "slice.png"
    rows, cols = np.mgrid[0:160, 0:200]
    Image.fromarray((127 + 100 * np.sin(rows / 7.0) * np.cos(cols / 11.0)).astype(np.uint8)).save(slice_path)
    config = batches.LadderSettings(grey=str(slice_path), objects_per_batch=1, output_size=40,
                                    scored_output_sizes=(40,), factors=("photons",),
                                    max_views=180, cache=str(tmp_path / "bank.npz"))
    pool = batches.build_pool([np.zeros((40, 40), np.float32)], [4.0], resize=0, crop=24)
    pool = batches.with_ladders(pool, config, seed=0, crop=24, score=4.0)
    assert sorted(path.name for path in tmp_path.glob("bank*")) == ["bank.npz", "bank_40px_scored.npz"]
    native = batches.ladder_bank(dataclasses.replace(config, scored_output_sizes=()), 0)
    scored = batches.ladder_bank(dataclasses.replace(
        config, scored_output_sizes=(), object_scale="scored",
        cache=str(tmp_path / "bank_40px_scored.npz")), 0)  # read from the join's cache
    assert pool.ladders.shape == (2, 1, 6, 40, 40)
    np.testing.assert_array_equal(pool.ladders[0], native.ladders[0])
    np.testing.assert_array_equal(pool.ladders[1], scored.ladders[0])
    assert not np.allclose(native.ladders[0, 0, 0], scored.ladders[0, 0, 0], atol=1e-2)


@pytest.mark.slow
def test_denoising_ladders_extend_a_cached_bank_without_simulating_it_again(tmp_path, monkeypatch):
    config = batches.LadderSettings(phantoms=3, objects_per_batch=1, output_size=32,
                                    factors=("gain_error", "photons"), max_views=180,
                                    cache=str(tmp_path / "bank.npz"))
    physics = batches.ladder_bank(config, seed=0).ladders

    def simulate_again(*args, **kwargs):
        raise AssertionError("the physics of a cached bank was simulated again")

    monkeypatch.setattr(acquisition, "ladders", simulate_again)
    config = dataclasses.replace(config, denoising_ladder=True)
    assert config.num_ladders == 3
    extended = batches.ladder_bank(config, seed=0).ladders
    assert extended.shape == (3, 3, 6, 32, 32)
    np.testing.assert_array_equal(extended[:, :2], physics)
    # Object m's denoising ladder restores its acquisition at photon level 3, 4 or 5.
    for m in range(3):
        np.testing.assert_array_equal(extended[m, 2], filters.denoising_ladder(
            physics[m, 1, 0], physics[m, 1, 3 + m]))
    np.testing.assert_array_equal(batches.ladder_bank(config, seed=0).ladders, extended)  # now cached
    assert batches.images_per_batch(1, 2, 1, config.num_ladders) == 2 * 6 + 3 * 6
    # A denoising weight between 0 and 1 reaches the pool (from the cache), not only a 0.
    pool = batches.build_pool([np.zeros((32, 32), np.float32)], [4.0], resize=0, crop=24)
    lighter = dataclasses.replace(config, denoising_weight=0.5)
    np.testing.assert_array_equal(batches.with_ladders(pool, lighter, 0, 24, 4.0).ladder_weights,
                                  np.tile([1.0, 1.0, 0.5], (3, 1)))
    rank = rank_config.get_config("smoke")
    rank.acquisition.denoising_ladder = True
    rank.acquisition.factors = ("gain_error",)
    with pytest.raises(errors.InputError, match=r"config\.acquisition\.denoising_ladder needs"):
        train_rank.read_settings(rank)
    # A weight for a denoising ladder that is not there, or below 0, names its key.
    rank = rank_config.get_config("smoke")
    rank.acquisition.denoising_weight = 0.5
    with pytest.raises(errors.InputError, match=r"denoising_weight is 0\.5, but .*denoising_ladder is False"):
        train_rank.read_settings(rank)
    rank.acquisition.denoising_ladder = True
    rank.acquisition.denoising_weight = -1.0
    with pytest.raises(errors.InputError, match=r"config\.acquisition\.denoising_weight must be >= 0"):
        train_rank.read_settings(rank)
    # A texture weight without textures, or below 0, names its key.
    rank = rank_config.get_config("smoke")
    rank.acquisition.texture_weight = 0.5
    with pytest.raises(errors.InputError, match=r"texture_weight is 0\.5, but .*textures is 0"):
        train_rank.read_settings(rank)
    rank.acquisition.textures = 2
    rank.acquisition.texture_weight = -0.5
    with pytest.raises(errors.InputError, match=r"config\.acquisition\.texture_weight must be >= 0"):
        train_rank.read_settings(rank)
    # Factor weights that are not one number >= 0 per factor name their key.
    for weights in ((1.0,), (1.0, -1.0), (1.0, "2")):
        rank = rank_config.get_config("smoke")
        rank.acquisition.factors = ("photons", "views")
        rank.acquisition.factor_weights = weights
        with pytest.raises(errors.InputError, match=r"config\.acquisition\.factor_weights must be "
                           r"empty or one weight >= 0 for each of config\.acquisition\.factors"):
            train_rank.read_settings(rank)
    rank.acquisition.factor_weights = (1.0, 2)
    assert train_rank.read_settings(rank).source.ladders.factor_weights == (1.0, 2)
    # A ladder name that is neither a factor nor an extra ladder names its key.
    rank = rank_config.get_config("smoke")
    rank.acquisition.factors = ("photons", "few_photons")
    with pytest.raises(errors.InputError, match=r"config\.acquisition\.factors must name ladders "
                       r"among .*'low_photons'.*, got \('photons', 'few_photons'\)"):
        train_rank.read_settings(rank)
    rank.acquisition.factors = ("photons", "low_photons")
    train_rank.read_settings(rank)


def test_ladder_bank_without_objects_is_refused():
    config = batches.LadderSettings(objects_per_batch=1)
    with pytest.raises(ValueError, match="give no objects"):
        batches.ladder_bank(config, seed=0)


# --- The benchmark -----------------------------------------------------------------------------

def test_within_object_srocc_known_cases():
    levels = np.arange(1, 6)
    assert acquisition_ladder.within_object_srocc(np.array([5.0, 4, 3, 2, 1]), levels) == pytest.approx(1.0)
    assert acquisition_ladder.within_object_srocc(np.array([1.0, 2, 3, 4, 5]), levels) == pytest.approx(-1.0)
    assert acquisition_ladder.within_object_srocc(np.full(5, 3.0), levels) == 0.0
    # One adjacent swap of five: 1 - 6 * 2 / (5 * 24) = 0.9.
    assert acquisition_ladder.within_object_srocc(np.array([5.0, 4, 2, 3, 1]), levels) == \
        pytest.approx(0.9)


def test_summarise_averages_objects_and_orients_rows():
    # Two objects, one factor: a perfect score and one with a swap.
    scores = np.array([[[9.0, 5, 4, 3, 2, 1]], [[9.0, 5, 4, 2, 3, 1]]])
    rows = acquisition_ladder.summarise(scores, ("grey", "grey"), ("photons",), "m", 200, 0)
    assert len(rows) == 1 and rows[0]["objects"] == 2
    assert rows[0]["srocc"] == pytest.approx(0.95)
    assert rows[0]["worst_object_srocc"] == pytest.approx(0.9)
    assert rows[0]["srocc_low"] == pytest.approx(0.9) and rows[0]["srocc_high"] == pytest.approx(1.0)
    best = acquisition_ladder.best_acquisition_scores(scores, ("grey", "grey"))
    assert best == [{"object_kind": "grey", "ideal_median": 9.0, "best_level_median": 5.0}]
    # With the unscanned objects' scores: their median per kind, here of 3 and 5 (grey), 7.
    scores3 = np.concatenate([scores, scores[:1] - 1.0])
    best = acquisition_ladder.best_acquisition_scores(scores3, ("grey", "label_map", "grey"),
                                                      np.array([3.0, 7.0, 5.0]))
    assert best == [{"object_kind": "grey", "object_median": 4.0, "ideal_median": 8.5,
                     "best_level_median": 4.5},
                    {"object_kind": "label_map", "object_median": 7.0, "ideal_median": 9.0,
                     "best_level_median": 5.0}]
    table = acquisition_ladder.markdown(rows, best, ("photons",))
    assert "| grey | 4.00 | 8.50 | 4.50 |" in table and "object (no scan)" in table


def test_unscanned_crops_are_the_reconstructed_square_of_the_object():
    size = acquisition.object_size(16)
    attenuation = np.zeros((1, size, size), np.float32)
    start = size // 2 - 8
    attenuation[0, start:start + 16, start:start + 16] = np.linspace(0, 1, 256).reshape(16, 16)
    crops = acquisition_ladder.unscanned_crops(attenuation, 16, 16, 16)
    # The square's own ramp, stretched by its 0.5/99.5 percentiles (no zeros from outside it).
    expected = np.asarray(acquisition.normalise_percentile(attenuation[:, start:start + 16,
                                                                       start:start + 16]))
    np.testing.assert_allclose(crops, expected, atol=1e-6)


def test_benchmark_crops_follow_the_view_the_model_was_trained_on():
    images = np.random.default_rng(0).random((2, 3, 40, 48)).astype(np.float32)
    own = acquisition_ladder.centre_crops(images, 20, 16, own_pixels=True)
    np.testing.assert_array_equal(own, images[..., 12:28, 16:32])
    halved = images.reshape(2, 3, 20, 2, 24, 2).mean(axis=(3, 5))  # the area resize to 20 px
    np.testing.assert_allclose(acquisition_ladder.centre_crops(images, 20, 16),
                               halved[..., 2:18, 4:20], atol=1e-6)
    # The benchmark crops as the TIQA model was trained unless the config says otherwise.
    config = ladder_config.get_config("smoke")
    for setting, trained, expected in ((None, True, True), (None, False, False),
                                       (False, True, False), (True, False, True)):
        config.own_pixels = setting
        model = types.SimpleNamespace(own_pixels=trained)
        assert evaluate_acquisition.at_own_pixels(evaluate_acquisition.read_settings(config),
                                                  model) is expected


def test_bootstrap_mean_brackets_the_mean_and_narrows_with_more_objects():
    rng = np.random.default_rng(0)
    few, many = rng.normal(0.5, 0.2, 10), rng.normal(0.5, 0.2, 160)
    low, high = acquisition_ladder._bootstrap_mean(few, 500, seed=0)
    assert low < few.mean() < high
    # Sixteen times the objects: about a quarter of the width.
    low_many, high_many = acquisition_ladder._bootstrap_mean(many, 500, seed=0)
    assert low_many < many.mean() < high_many and high_many - low_many < (high - low) / 2
    assert np.isnan(acquisition_ladder._bootstrap_mean(np.array([0.7]), 500, seed=0)).all()


class _Thresholder:
    """A segmenter that calls class 0 where the slice is above `level`, keeping what it saw."""
    def __init__(self, level):
        self.level, self.config, self.seen = level, types.SimpleNamespace(num_classes=2), []

    def probabilities(self, batch):
        self.seen.append(np.asarray(batch))
        above = (np.asarray(batch) > self.level).astype(np.float32)
        return np.stack([above, 1.0 - above], axis=-1)


def test_evaluate_acquisition_tables_an_extra_ladder_at_its_own_levels(tmp_path):
    export_tiny_score_model(tmp_path / "tiny")
    config = ladder_config.get_config("smoke")
    config.checkpoint, config.output = str(tmp_path / "tiny"), str(tmp_path / "ladder")
    config.brisque, config.filter_check = False, False
    config.factors = ("low_photons",)
    evaluate_acquisition.run(config)
    with open(tmp_path / "ladder" / "scores.csv") as handle:
        settings = [float(row["setting"]) for row in csv.DictReader(handle)]
    assert settings == list(acquisition.EXTRA_LADDERS["low_photons"][1]) * (len(settings) // 6)
    assert "low_photons (inf, 10000.0, 5000.0, 3000.0, 2000.0, 1000.0)" in (
        tmp_path / "ladder" / "ladder.md").read_text()


@pytest.mark.slow
def test_evaluate_acquisition_smoke_writes_its_tables(monkeypatch, tmp_path):
    # View and centre penalties with no floor: every acquisition loses 0.05 points per unit of
    # its comb and 0.1 points per px of its estimated centre offset, the centre penalty's fit
    # for squares of 80 px (the acquisitions'), not its own 5 points per px for smaller ones.
    loaded = export_tiny_score_model(tmp_path / "tiny")
    checkpoints.save_exported(dataclasses.replace(
        loaded, view_penalty=penalties.Penalty(0.05, 80.0, 0.0),
        centre_penalty=penalties.Penalty(5.0, 1e9, 0.0, ((80, penalties.Penalty(0.1, 1e9, 0.0)),))),
        tmp_path / "viewed")
    segmenters = {"low": _Thresholder(0.3), "high": _Thresholder(0.6)}
    monkeypatch.setattr(checkpoints, "load_segmenter", lambda path: segmenters[path])
    monkeypatch.setattr(checkpoints, "positive_class", lambda path: 0)
    config = ladder_config.get_config("smoke")
    config.checkpoint = str(tmp_path / "viewed")
    config.output = str(tmp_path / "ladder")
    config.brisque = False
    config.segmenters = "low,high"
    config.batch_size = 7  # batches that straddle objects and factors
    rows = evaluate_acquisition.run(config)
    assert {row["contender"] for row in rows} == {"TIQA", evaluate_acquisition.NETWORK_ONLY,
                                                  acquisition_ladder.ORACLE,
                                                  acquisition_ladder.SEGMENTATION}
    oracle = [row for row in rows if row["contender"] == acquisition_ladder.ORACLE]
    # Full-reference SSIM against the ideal orders the phantom's ladders (the model's ceiling).
    assert all(row["srocc"] >= 0.9 for row in oracle), oracle
    with open(tmp_path / "ladder" / "scores.csv") as handle:
        per_image = list(csv.DictReader(handle))
    assert len(per_image) == 2 * len(config.factors) * acquisition.NUM_LEVELS
    # TIQA is the network less the view penalty of each whole acquisition's comb and the centre
    # penalty of its centre offset (80 px acquisitions, measured whole; none where the rings
    # are above the gate), recorded beside it, then kept above 1 as launch.score does: below
    # 1.25, 1 + 0.0625 / (1.5 - linear).
    linear = []
    whole = acquisition.ladders(acquisition_ladder.held_out_objects(
        "", "", 2, config.phantom_seed, 80, config.seed).attenuation, config.factors,
        jax.random.key(config.seed), output_size=80, max_views=180).reshape(-1, 80, 80)
    ringed = np.asarray(ring_check.ring_amplitude(whole)) > centre_check.RING_GATE
    assert ringed.any() and not ringed.all()  # the gain-error ladders' heavy rings are gated
    offsets = np.where(ringed, 0.0, np.asarray(centre_check.centre_offset(whole)))
    for row, offset in zip(per_image, offsets):
        comb, centre = float(row["view_comb"]), float(row["centre_offset"])
        assert 0.5 < comb < 80.0, row
        assert centre == pytest.approx(offset, abs=0.006)  # rounded to 0.01 px
        linear.append(float(row[evaluate_acquisition.NETWORK_ONLY]) - 0.05 * comb
                      - 0.1 * abs(offset))
        expected = linear[-1] if linear[-1] >= 1.25 else 1 + 0.0625 / (1.5 - linear[-1])
        assert float(row["TIQA"]) == pytest.approx(expected, abs=1e-3)
    assert min(linear) < 1.0 and max(linear) > 1.25  # both sides of the knee were checked
    assert (tmp_path / "ladder" / "ladder.png").stat().st_size > 10_000
    # Each acquisition's mask against its ideal acquisition's, by Dice computed here on what
    # the segmenters saw (every acquisition, whole, in the order of the rows), averaged.
    shape = (2, len(config.factors), acquisition.NUM_LEVELS, 80, 80)
    dice = []
    for segmenter in segmenters.values():
        masks = np.concatenate(segmenter.seen).reshape(shape) > segmenter.level
        ideal = masks[:, :, :1]
        dice.append(2 * (masks & ideal).sum(axis=(-2, -1))
                    / (masks.sum(axis=(-2, -1)) + ideal.sum(axis=(-2, -1))))
    expected = np.mean(dice, axis=0).ravel()
    found = np.asarray([float(row[acquisition_ladder.SEGMENTATION]) for row in per_image])
    np.testing.assert_allclose(found, expected, rtol=1e-6)
    assert expected.min() < 0.99 and np.all(expected.reshape(shape[:3])[:, :, 0] == 1.0)
    assert not np.allclose(dice[0], dice[1])  # the mean, not one segmenter's
    report = (tmp_path / "ladder" / "ladder.md").read_text()
    assert "median score" in report and "Filter selection" in report
    assert "mean over 2 D-LinkNet(s)" in report
    # The photon ladder's level-5 cell of the table is the mean over the objects.
    photons_row = next(line for line in report.splitlines()
                       if line.startswith("| phantom | photons |"))
    assert photons_row.split("|")[-2].strip() == f"{expected.reshape(shape[:3])[:, 0, 5].mean():.4f}"
    assert "| object kind | object (no scan) | ideal | level 1 |" in report
    with open(tmp_path / "ladder" / "filter_check" / "filters_vs_ssim.csv") as handle:
        checked = list(csv.DictReader(handle))
    assert {row["filter"] for row in checked} == {
        "identity", "gaussian(sigma=1.0)", "gaussian(sigma=3.0)", "median(radius=1)"}
    gains = {row["filter"]: float(row["ssim_gain"]) for row in checked}
    assert gains["identity"] == pytest.approx(0.0, abs=1e-6)
    # At 3e3 photons smoothing a little helps and blurring by 3 px costs SSIM.
    assert gains["gaussian(sigma=1.0)"] > 0 > gains["gaussian(sigma=3.0)"]


def test_evaluate_acquisition_names_a_missing_segmenter_and_writes_nothing(tmp_path):
    config = ladder_config.get_config("smoke")
    config.segmenters = str(tmp_path / "missing")
    config.output = str(tmp_path / "ladder")
    with pytest.raises(FileNotFoundError, match="missing: no such model folder"):
        evaluate_acquisition.run(config)
    assert not (tmp_path / "ladder").exists()
