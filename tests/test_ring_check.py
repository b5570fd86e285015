"""The no-reference ring measure (tiqa.ring_check), its calibration and its place in the score."""

import dataclasses

import jax
import numpy as np
import pytest
from scipy import ndimage

from tests.tiny_models import export_tiny_score_model
from tiqa import acquisition, checkpoints, penalties, ring_check, scoring

SIZE = 160


def _radius(centre, size=SIZE):
    rows, cols = np.mgrid[:size, :size]
    return np.hypot(rows - centre[0], cols - centre[1])


def _rings(amplitude, centre, size=SIZE, seed=0):
    """A one-pixel ring at every radius, of normal amplitudes with standard deviation
    `amplitude` (what gain errors across a detector make)."""
    rng = np.random.default_rng(seed)
    radius = _radius(centre, size)
    image = np.zeros((size, size))
    for r in range(4, size // 2 + 2):
        image[np.abs(radius - r) < 0.5] += amplitude * rng.normal()
    return image


def _isolated_rings(amplitude, centre, size=SIZE, seed=0):
    """One-pixel rings of +-amplitude at 14 random radii (a few defective detector pixels)."""
    rng = np.random.default_rng(seed)
    radius = _radius(centre, size)
    image = np.zeros((size, size))
    for r in rng.choice(np.arange(12, 55), 14, replace=False):
        image[np.abs(radius - r) < 0.5] += amplitude * rng.choice([-1.0, 1.0])
    return image


def _texture(size=SIZE, seed=1):
    smooth = ndimage.gaussian_filter(np.random.default_rng(seed).random((size, size)), 2.0)
    return 0.5 + 2.0 * (smooth - smooth.mean())


MIDDLE = ring_check.image_centre(SIZE, SIZE)


def _numpy_ring_power(image, centre, reach):
    """The measure's definition, independently in numpy: sector profiles in half-pixel annuli,
    their detail against a 9-bin running median, the median over radii of the mean product
    over sector pairs."""
    size = image.shape[0]
    rows, cols = np.mgrid[:size, :size].astype(np.float32)
    dy, dx = rows - np.float32(centre[0]), cols - np.float32(centre[1])
    bins = int((size / 2 - 1 - reach - 8.0) / 0.5)
    radius_bin = np.floor((np.hypot(dy, dx) - 8.0) / 0.5).astype(int)
    sector = np.minimum(np.floor((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * 8).astype(int), 7)
    inside = (radius_bin >= 0) & (radius_bin < bins)
    total, count = np.zeros((8, bins)), np.zeros((8, bins))
    np.add.at(total, (sector[inside], radius_bin[inside]), image[inside])
    np.add.at(count, (sector[inside], radius_bin[inside]), 1)
    profiles = total / np.maximum(count, 1)
    median = np.stack([np.median(profiles[:, i - 4:i + 5], axis=1) for i in range(4, bins - 4)], 1)
    detail = profiles[:, 4:bins - 4] - median
    products = [detail[i] * detail[j] for i in range(8) for j in range(i + 1, 8)]
    return np.median(np.mean(products, axis=0))


def test_ring_power_follows_its_definition():
    image = _texture() + _rings(0.05, (MIDDLE[0] + 0.5, MIDDLE[1]))
    # Centres where no pixel lies exactly on an annulus' edge (there, float rounding of the
    # distance decides the bin, differently in numpy and XLA).
    for centre in (MIDDLE, (MIDDLE[0] + 0.45, MIDDLE[1] + 0.05), (70.3, 85.1)):
        ours = float(ring_check.ring_power(image, centre, 11.0))
        assert ours == pytest.approx(_numpy_ring_power(image.astype(np.float32), centre, 11.0),
                                     rel=1e-3, abs=1e-9)


def test_rings_about_the_axis_are_measured_and_texture_is_not():
    texture = _texture()
    alone = _rings(0.04, MIDDLE)
    amplitudes = np.asarray(ring_check.ring_amplitude(np.stack([
        texture, texture + alone, texture + 2 * alone, alone, 2 * alone,
        # The same rings about a point 6 px from the axis: not rings of this reconstruction.
        texture + _rings(0.04, (MIDDLE[0] + 6, MIDDLE[1] - 2))]).astype(np.float32)))
    # Texture alone measures nothing; twice the rings measure twice as much, on texture or
    # not. Texture hides some of the rings (what the search finds beside the axis is taken
    # off), but not most.
    assert amplitudes[0] < 0.002
    assert amplitudes[1] > 0.008 and amplitudes[3] > 0.008
    assert amplitudes[4] == pytest.approx(2 * amplitudes[3], rel=0.02)
    assert amplitudes[2] == pytest.approx(2 * amplitudes[1], rel=0.15)
    assert 0.6 * amplitudes[3] < amplitudes[1] <= amplitudes[3]
    assert amplitudes[5] < 0.25 * amplitudes[1]
    # Layers across the image (an electrode's stack): sectors mirrored about the layers see
    # the same profile about any centre, so the axis shows as much as the points beside it
    # (without taking those off, about 0.01).
    rng = np.random.default_rng(4)
    rows = ndimage.gaussian_filter1d(rng.random(SIZE), 1.5)
    layers = (0.5 + 3 * (rows - rows.mean()))[:, None] + 0.02 * rng.normal(size=(SIZE, SIZE))
    assert float(ring_check.ring_amplitude(layers[None].astype(np.float32))[0]) < 0.002


def test_a_cylindrical_sample_edge_is_not_a_ring():
    # A disc about the axis (a sample's edge, the field of view's edge) is concentric, but a
    # step in every radial profile, which the running median leaves out of the detail.
    disc = np.where(_radius(MIDDLE) < 40.3, 0.8, 0.2) + 0.02 * _texture(seed=3)
    # The wound layers of a cylindrical cell: concentric shells 5 px thick, a step at many
    # radii (against a running mean they would measure about 0.09).
    radius = _radius(MIDDLE)
    shells = np.where((np.floor((radius - 10) / 5) % 2 == 0) & (radius >= 10) & (radius < 76),
                      0.7, 0.3) + 0.02 * _texture(seed=3)
    amplitudes = ring_check.ring_amplitude(np.stack([disc, shells]).astype(np.float32))
    assert float(np.max(amplitudes)) < 0.002, amplitudes


def test_ring_amplitude_follows_the_detector_gain_errors():
    # The acquisition model's gain-error ladder of one phantom-like object.
    rng = np.random.default_rng(0)
    blobs = ndimage.gaussian_filter(rng.random((232, 232)), 3.0)
    attenuation = np.where(blobs > np.median(blobs), 0.02, 0.005).astype(np.float32)
    images = acquisition.ladders(attenuation[None], ("gain_error",), jax.random.key(0),
                                 output_size=160, max_views=360)[0, 0]
    amplitudes = np.asarray(ring_check.ring_amplitude(images))
    # Nothing on the ideal acquisition; never less for larger gain errors; the faint rings
    # (0.2 to 2 %) hide in this high-contrast binary texture, 4 % stands out.
    assert amplitudes[0] == 0.0
    assert np.all(np.diff(amplitudes) >= 0), amplitudes
    assert amplitudes[5] > 0.01, amplitudes


def test_a_few_isolated_rings_are_left_to_the_network():
    # The paper's image-domain rings (a ring every 5 to 25 px) and a few defective detector
    # pixels lie at few radii: outliers of the median over radii, unlike gain errors across
    # the detector, which draw a ring at every radius.
    from tiqa import distortions

    texture = np.clip(_texture(), 0, 1).astype(np.float32)
    paper = np.asarray(distortions.apply("ring", texture, 5, jax.random.key(0)))
    isolated = _isolated_rings(0.04, MIDDLE)
    amplitudes = np.asarray(ring_check.ring_amplitude(np.stack([
        paper, isolated, texture + _rings(0.02, MIDDLE)]).astype(np.float32)))
    assert np.abs(paper - texture).max() > 0.1  # rings of 0.1 and more, 2 px wide
    # Dense rings of a fifth of that amplitude measure more than twice as much.
    assert amplitudes[2] > 0.005 and amplitudes[2] > 2 * amplitudes[0], amplitudes
    assert amplitudes[1] < 0.001, amplitudes


@pytest.fixture(scope="module")
def ringed_model(tmp_path_factory):
    """The tiny network at the shipped crop and resize, exported with a ring penalty of 20
    points per unit amplitude above 0.005, up to 0.05."""
    folder = tmp_path_factory.mktemp("ringed")
    loaded = export_tiny_score_model(tmp_path_factory.mktemp("tiny"))
    checkpoints.save_exported(dataclasses.replace(
        loaded, crop=224, resize=255, ring_penalty=penalties.Penalty(20.0, 0.05, 0.005)), folder)
    return folder


def test_the_score_loses_the_ring_penalty(ringed_model):
    loaded = checkpoints.load_model(ringed_model)
    assert loaded.ring_penalty == penalties.Penalty(20.0, 0.05, 0.005)
    size = 224
    middle = ring_check.image_centre(size, size)
    texture = _texture(size)
    crops = np.clip(np.stack([texture, texture + _rings(0.05, middle, size),
                              texture + _rings(0.3, middle, size)]), 0, 1).astype(np.float32)
    with_rings = scoring.make_scorer(loaded, batch_size=3)(crops)
    network = scoring.make_scorer(loaded, batch_size=3, with_ring_check=False)(crops)
    amplitude = np.asarray(ring_check.ring_amplitude(crops))
    assert 0.01 < amplitude[1] < 0.05 < amplitude[2] and amplitude[0] < 0.005
    np.testing.assert_allclose(network - with_rings, 20.0 * np.clip(amplitude - 0.005, 0, 0.045),
                               rtol=1e-4, atol=1e-5)
    # Ten times the penalty takes the faintly ringed crop below 1: kept above it.
    steep = scoring.make_scorer(dataclasses.replace(
        loaded, ring_penalty=penalties.Penalty(200.0, 0.05, 0.005)), batch_size=3)(crops)
    linear = network - 200.0 * np.clip(amplitude - 0.005, 0, 0.045)
    assert linear[0] > 1.25 and linear[1] < 1.0
    np.testing.assert_allclose(steep, np.where(linear >= 1.25, linear,
                                               1 + 0.0625 / (1.5 - np.minimum(linear, 1.25))),
                               rtol=1e-4, atol=1e-5)
    # Whole slices: the rings are measured at the slice's own pixels, on its centred
    # crop-sized square (the scoring path's resize would average one-pixel rings away).
    height, width = 240, 250
    slice_middle = ring_check.image_centre(height, width)
    slices = np.clip(np.stack([_texture(250)[:height] + _rings(0.05, slice_middle, 250)[:height],
                               _texture(250)[:height]]), 0, 1).astype(np.float32)
    mean, _, _ = scoring.make_slice_scorer(loaded, "center")(slices)
    plain, _, _ = scoring.make_slice_scorer(loaded, "center", with_ring_check=False)(slices)
    square = np.asarray(ring_check.ring_amplitude(slices[:, 8:232, 13:237]))
    assert square[0] > 0.01
    np.testing.assert_allclose(plain - mean, 20.0 * np.clip(square - 0.005, 0, 0.045),
                               rtol=1e-4, atol=1e-5)


def test_the_exported_penalty_is_read_without_the_weights_and_said_in_words(ringed_model):
    # What the score report prints (launch.score --config.report=...): "ring check: on (...)".
    found = checkpoints.model_penalties(ringed_model)
    penalty, views = found["ring_check"], found["view_check"]
    assert penalty == penalties.Penalty(20.0, 0.05, 0.005) and views is None
    assert penalty.describe(ring_check.UNIT) == ("20.00 points per unit of ring amplitude above "
                                                 "0.005, up to 0.05")


def test_a_ring_check_without_its_cap_is_refused_naming_the_file(ringed_model, tmp_path):
    import json
    import shutil

    from tiqa import errors

    folder = tmp_path / "broken"
    shutil.copytree(ringed_model, folder)
    info = json.loads((folder / "model.json").read_text())
    info["ring_check"] = {"slope": 20.0}
    (folder / "model.json").write_text(json.dumps(info))
    with pytest.raises(errors.InputError, match=r"broken/model\.json: ring_check needs a slope "
                                                r"and a cap \(and optionally a floor\)"):
        checkpoints.load_model(folder)
