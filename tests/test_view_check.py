"""The angular-sampling check: sparse-view reconstructions from scikit-image's radon and iradon
(an implementation independent of the project's), against fully sampled ones and texture."""

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.transform import iradon, radon

from tiqa import view_check

SIDE = 128


def _texture(seed: int = 0, sigma: float = 1.5) -> np.ndarray:
    """Smooth random texture with edges: blobs thresholded softly, plus fine grain."""
    rng = np.random.default_rng(seed)
    blobs = ndimage.gaussian_filter(rng.random((SIDE, SIDE)), 4.0)
    particles = 1.0 / (1.0 + np.exp(-(blobs - blobs.mean()) / (0.2 * blobs.std())))
    return (particles + 0.1 * ndimage.gaussian_filter(rng.random((SIDE, SIDE)), sigma)).astype(
        np.float32)


def _fbp(image: np.ndarray, views: int) -> np.ndarray:
    """Parallel-beam scan of `views` views over 180 degrees and its ramp-filtered FBP."""
    angles = np.linspace(0.0, 180.0, views, endpoint=False)
    sinogram = radon(image, theta=angles, circle=False)
    return iradon(sinogram, theta=angles, output_size=image.shape[0], circle=False,
                  filter_name="ramp").astype(np.float32)


def _reference_strength(image: np.ndarray, views: int) -> float:
    """The module's definition, written out in numpy with a loop over annuli: the square's log
    power spectrum through a radial Tukey window (flat to half the inscribed radius, a cosine
    taper to 0 at it), z-normalised in half-bin annuli, and the magnitude of its
    harmonic 2V in angle, summed inside the inscribed circle from radius 4 and from the radius
    where the V lines are 1.5 bins apart, over the square root of the number of terms."""
    side = image.shape[0]
    radius = np.hypot(*np.meshgrid(np.arange(side) - (side - 1) / 2,
                                   np.arange(side) - (side - 1) / 2, indexing="ij")) / (side / 2)
    window = np.zeros((side, side))
    for (row, col), r in np.ndenumerate(radius):  # as written in the docstring, pixel by pixel
        if r <= 0.5:
            window[row, col] = 1.0
        elif r < 1.0:
            window[row, col] = 0.5 * (1.0 + math.cos(math.pi * (r - 0.5) / 0.5))
    mean = np.sum(image * window) / np.sum(window)
    log_power = np.log(np.abs(np.fft.fft2((image - mean) * window)) ** 2 + 1e-12)
    ky, kx = np.meshgrid(np.fft.fftfreq(side) * side, np.fft.fftfreq(side) * side, indexing="ij")
    radius, angle = np.hypot(ky, kx), np.arctan2(ky, kx)
    z = np.empty_like(log_power)
    for ring in np.unique(np.floor(radius / 0.5)):
        members = np.floor(radius / 0.5) == ring
        values = log_power[members]
        z[members] = (values - values.mean()) / max(values.std(), 1e-6)
    used = (radius <= side / 2) & (radius >= 4) & (radius >= 1.5 * views / math.pi)
    return float(np.abs(np.sum(z[used] * np.exp(2j * views * angle[used]))) / np.sqrt(used.sum()))


def test_comb_strengths_follow_their_definition():
    image = _fbp(_texture(7), 30)[:96, :96]
    strengths = np.asarray(view_check.comb_strengths(image))
    candidates = view_check.candidate_views(96)
    for views in (16, 30, 45, 60, candidates[-1]):
        index = int(np.flatnonzero(candidates == views)[0])
        assert strengths[index] == pytest.approx(_reference_strength(image, views), rel=2e-3)


@pytest.mark.parametrize("views", [24, 40, 64])
def test_a_sparse_view_reconstruction_is_flagged_with_its_number_of_views(views):
    strength, found = view_check.view_comb(_fbp(_texture(1), views))
    assert view_check.undersampled(strength), strength
    assert found == views


def test_fully_sampled_reconstructions_and_texture_are_not_flagged():
    # 400 views over 180 degrees sample a 128 px slice fully (pi / 2 x 128 = 201 are enough).
    for image in (_fbp(_texture(2), 400), _texture(3), _texture(4, sigma=0.5)):
        strength, _ = view_check.view_comb(image)
        assert strength < view_check.THRESHOLD / 2, strength


def test_the_comb_is_found_in_the_centred_square_of_a_wide_slice():
    wide = np.pad(_fbp(_texture(5), 32), ((0, 0), (40, 40)), mode="reflect")
    strength, found = view_check.view_comb(wide)
    assert view_check.undersampled(strength) and found == 32


def test_resolvable_views_follow_the_square():
    assert view_check.square_side(300, 701) == 300 and view_check.square_side(999, 2048) == 512
    assert view_check.max_views(128) == math.floor(math.pi * 64 / 1.5)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="one \\(H, W\\) slice"):
        view_check.view_comb(np.zeros((2, 64, 64)))
    with pytest.raises(ValueError, match="at least"):
        view_check.view_comb(np.zeros((16, 300)))


def test_the_score_phase_writes_the_angular_sampling_of_each_slice(tmp_path):
    from tiqa import io
    from tests.score_runs import part_round_trip, score_folder

    folder = tmp_path / "slices"
    folder.mkdir()
    for name, views in (("sparse", 24), ("full", 400)):
        image = _fbp(_texture(6), views)
        io.write_png(folder / f"{name}.png", (image - image.min()) / np.ptp(image))
    html, rows = score_folder(folder, tmp_path, view_check=True)
    assert "angular sampling: 1 of 2 slice(s) look made from too few views" in html
    assert "views found (slices): 24 (1)" in html
    assert rows["sparse"]["views"] == "24" and float(rows["sparse"]["view_comb"]) > 20
    assert rows["full"]["views"] == "" and float(rows["full"]["view_comb"]) < 6
    # The columns survive the part files that several processes write and process 0 merges.
    records, read_back = part_round_trip(rows, tmp_path, {
        "view_comb": float, "views": lambda views: None if views == "" else int(views)})
    assert read_back == records


@pytest.fixture(scope="module")
def viewed_model(tmp_path_factory):
    """The tiny network exported with a view penalty of 0.02 points per unit of comb above 12,
    up to 80 (the tests' slices, which it scores 3.6 to 10, stay above the scale's knee)."""
    import dataclasses

    from tests.tiny_models import export_tiny_score_model
    from tiqa import checkpoints, penalties

    folder = tmp_path_factory.mktemp("viewed")
    loaded = export_tiny_score_model(tmp_path_factory.mktemp("tiny"))
    checkpoints.save_exported(dataclasses.replace(
        loaded, view_penalty=penalties.Penalty(0.02, 80.0, 12.0)), folder)
    return folder


def _wide_sparse_slice(views: int) -> np.ndarray:
    """A 272 x 300 FBP of `views` views: wider than the penalty's 256 px square, narrower than
    the diagnostic's 512, so the two measures differ."""
    rng = np.random.default_rng(8)
    blobs = ndimage.gaussian_filter(rng.random((300, 300)), 4.0)
    image = 1.0 / (1.0 + np.exp(-(blobs - blobs.mean()) / (0.2 * blobs.std())))
    angles = np.linspace(0.0, 180.0, views, endpoint=False)
    scan = iradon(radon(image, theta=angles, circle=False), theta=angles, output_size=300,
                  circle=False, filter_name="ramp")[14:286]
    return ((scan - scan.min()) / np.ptp(scan)).astype(np.float32)


def test_the_score_loses_the_view_penalty_of_the_slice_centred_square(viewed_model):
    from tiqa import checkpoints, penalties, scoring

    loaded = checkpoints.load_model(viewed_model)
    assert loaded.view_penalty == penalties.Penalty(0.02, 80.0, 12.0)
    assert loaded.ring_penalty is None
    # 120 views: a comb between the floor and the test's cap in both squares (49.8 and 57.2).
    slices = np.stack([_wide_sparse_slice(120), _wide_sparse_slice(600)])
    mean, _, _ = scoring.make_slice_scorer(loaded, "center")(slices)
    plain, _, _ = scoring.make_slice_scorer(loaded, "center", with_view_penalty=False)(slices)
    square = [view_check.view_comb(image, max_side=view_check.PENALTY_SIDE)[0] for image in slices]
    whole = view_check.view_comb(slices[0])[0]  # the diagnostic's 272 px square
    assert 20 < square[0] < 70 and square[1] < view_check.THRESHOLD and abs(whole - square[0]) > 4
    np.testing.assert_allclose(plain - mean, 0.02 * np.clip(np.array(square) - 12.0, 0, 68.0),
                               rtol=1e-4, atol=1e-4)
    assert scoring.penalty_notes(True, True, viewed_model) == (
        "ring check: none in this model, view penalty: on (0.0200 points per unit of comb "
        "strength above 12, up to 80), centre penalty: none in this model, noise penalty: none in "
        "this model")
    assert "view penalty: off, " in scoring.penalty_notes(True, False, viewed_model)


def test_a_score_the_penalty_takes_below_the_scale_is_kept_above_1_in_order(tmp_path):
    # A penalty of 0.1 points per unit of comb takes the 120- and 90-view slices 3.8 and 5.7
    # points below the network (3.7 and 3.8 here): linear scores under 1 that have an order.
    import dataclasses

    from tests.tiny_models import export_tiny_score_model
    from tiqa import checkpoints, penalties, scoring

    loaded = export_tiny_score_model(tmp_path / "tiny")
    loaded = dataclasses.replace(loaded, view_penalty=penalties.Penalty(0.1, 80.0, 12.0))
    slices = np.stack([_wide_sparse_slice(views) for views in (600, 150, 120, 90)])
    mean, _, _ = scoring.make_slice_scorer(loaded, "center")(slices)
    plain, _, _ = scoring.make_slice_scorer(loaded, "center", with_view_penalty=False)(slices)
    square = np.array([view_check.view_comb(image, max_side=view_check.PENALTY_SIDE)[0]
                       for image in slices])
    linear = plain - 0.1 * np.clip(square - 12.0, 0, 68.0)
    assert linear[0] > 1.25 and linear[-1] < linear[-2] < 1.0 and plain.min() > 1.25
    # By hand: the identity from 1.25 up, 1 + 0.0625 / (1.5 - linear) below.
    expected = np.where(linear >= 1.25, linear, 1 + 0.0625 / (1.5 - np.minimum(linear, 1.25)))
    np.testing.assert_allclose(mean, expected, rtol=1e-4, atol=1e-6)
    assert (mean > 1.0).all() and (np.argsort(mean) == np.argsort(linear)).all()


def test_a_view_check_without_its_cap_is_refused_naming_the_file(viewed_model, tmp_path):
    import json
    import shutil

    from tiqa import checkpoints, errors

    folder = tmp_path / "broken"
    shutil.copytree(viewed_model, folder)
    info = json.loads((folder / "model.json").read_text())
    info["view_check"] = {"slope": "steep", "cap": 80.0}
    (folder / "model.json").write_text(json.dumps(info))
    with pytest.raises(errors.InputError, match=r"broken/model\.json: view_check needs a slope "
                                                r"and a cap"):
        checkpoints.load_model(folder)


def test_the_score_phase_takes_the_view_penalty_its_config_asks_for(viewed_model, tmp_path):
    from tiqa import io
    from tests.score_runs import penalty_on_and_off

    image = _wide_sparse_slice(40)
    io.write_png(tmp_path / "sparse.png", image)
    found = penalty_on_and_off(tmp_path / "sparse.png", viewed_model, "view_penalty", tmp_path)
    comb = view_check.view_comb(image, max_side=view_check.PENALTY_SIDE)[0]  # before 8 bits
    assert found[False][0] - found[True][0] == pytest.approx(0.02 * min(comb - 12.0, 68.0),
                                                             rel=0.02)
    assert ("view penalty: on (0.0200 points per unit of comb strength above 12, up to 80)"
            in found[True][1])
    assert "view penalty: off" in found[False][1]


def test_heavy_blur_is_not_taken_for_sparse_views():
    # Blurred far beyond any scan (the paper's blur levels 3 and 4), a slice keeps almost
    # nothing but its lowest frequencies. Through a separable window their leakage along the
    # axes measured 12 to 20, "16 to 20 views"; through the radial window it stays low.
    from scipy.ndimage import gaussian_filter

    slice_ = _fbp(_texture(9), 600)
    for sigma in (6.5, 15.2):
        strength, _ = view_check.view_comb(gaussian_filter(slice_, sigma, truncate=8.0))
        assert strength < view_check.THRESHOLD * 0.75, (sigma, strength)
