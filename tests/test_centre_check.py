"""The rotation-centre check: scans made with scikit-image's radon and iradon (an implementation
independent of the project's) whose projections are moved along the detector by scipy, the
all-pass filter and the periodic decomposition against hand computation, and the penalty in
the score."""

import dataclasses

import numpy as np
import pytest
from scipy import ndimage
from skimage.transform import iradon, radon

from tiqa import centre_check

SIDE = 128


def _particles(seed: int = 0) -> np.ndarray:
    """Soft-edged particles with a little grain, zero outside the inscribed circle."""
    rng = np.random.default_rng(seed)
    blobs = ndimage.gaussian_filter(rng.random((SIDE, SIDE)), 3.0)
    image = 1.0 / (1.0 + np.exp(-(blobs - blobs.mean()) / (0.25 * blobs.std())))
    image = image + 0.05 * ndimage.gaussian_filter(rng.random((SIDE, SIDE)), 1.0)
    rows, cols = np.mgrid[:SIDE, :SIDE] - (SIDE - 1) / 2.0
    return np.where(np.hypot(rows, cols) < SIDE / 2 - 1, image, 0.0)


def _scan(image: np.ndarray, offset: float, gains: np.ndarray | None = None,
          views: int = 360) -> np.ndarray:
    """A 180-degree parallel-beam scan whose projections all lie `offset` px along the detector
    from where the FBP assumes them (scipy's cubic spline shift), optionally with per-detector
    gain errors (rings), reconstructed by scikit-image's ramp FBP."""
    angles = np.linspace(0.0, 180.0, views, endpoint=False)
    sinogram = radon(image, theta=angles, circle=False)
    sinogram = ndimage.shift(sinogram, (offset, 0.0), order=3, mode="constant")
    if gains is not None:
        sinogram = sinogram + gains[:, None] * sinogram.mean()
    return iradon(sinogram, theta=angles, output_size=SIDE, circle=False,
                  filter_name="ramp").astype(np.float32)


@pytest.fixture(scope="module")
def offsets_found():
    """The estimates of scans of one object with the axis 0, 1, 2, 4 and 6 px off."""
    image = _particles()
    offsets = (0.0, 1.0, 2.0, 4.0, 6.0)
    scans = np.stack([_scan(image, offset) for offset in offsets])
    return offsets, np.asarray(centre_check.centre_offset(scans)), scans


def test_the_offset_of_an_independent_scan_is_found_to_a_fraction_of_a_pixel(offsets_found):
    offsets, found, _ = offsets_found
    np.testing.assert_allclose(np.abs(found), offsets, atol=0.35)
    assert np.all(np.diff(np.abs(found)) > 0.5)  # each step is told apart
    signs = np.sign(found[1:])
    assert np.all(signs == signs[0])  # one direction, as the projections all moved one way


def test_the_other_direction_of_the_first_projection_is_searched_too(offsets_found):
    # A transposed slice: the software's first projection along the other axis.
    offsets, found, scans = offsets_found
    transposed = np.asarray(centre_check.centre_offset(np.swapaxes(scans[[0, 3]], 1, 2)))
    np.testing.assert_allclose(np.abs(transposed), np.abs(found[[0, 3]]), atol=0.1)
    # An offset the other way reads the other sign.
    other_way = float(centre_check.centre_offset(_scan(_particles(), -4.0)[None])[0])
    assert other_way == pytest.approx(-found[3], abs=0.35)


def test_rings_do_not_read_as_an_offset():
    # Strong gain errors: half circles about the axis on a well-centred scan.
    gains = 0.08 * np.random.default_rng(3).standard_normal(radon(
        _particles(), theta=[0.0], circle=False).shape[0])
    ringed = _scan(_particles(), 0.0, gains)
    plain = _scan(_particles(), 0.0)
    assert np.std(ringed - plain) > 0.2 * np.std(plain)  # the rings are strong
    found = np.asarray(centre_check.centre_offset(np.stack([ringed, _scan(_particles(), 3.0,
                                                                          gains)])))
    assert abs(found[0]) < 0.35 and abs(abs(found[1]) - 3.0) < 0.5
    # On a smooth object (particles blurred by 4 px, 256 px square) strong rings are most of
    # the slice's edges; left in, the sparsest result is an offset near the end of the range.
    side = 256
    rng = np.random.default_rng(0)
    blobs = ndimage.gaussian_filter(rng.random((side, side)), 4.0)
    smooth = ndimage.gaussian_filter(1.0 / (1.0 + np.exp(-(blobs - blobs.mean())
                                                          / (0.25 * blobs.std()))), 4.0)
    rows, cols = np.mgrid[:side, :side] - (side - 1) / 2.0
    smooth = np.where(np.hypot(rows, cols) < side / 2 - 1, smooth, 0.0)
    angles = np.linspace(0.0, 180.0, 360, endpoint=False)
    sinogram = radon(smooth, theta=angles, circle=False)
    sinogram = sinogram + 0.1 * np.random.default_rng(3).standard_normal(
        sinogram.shape[0])[:, None] * sinogram.mean()
    ringed = iradon(sinogram, theta=angles, output_size=side, circle=False,
                    filter_name="ramp").astype(np.float32)
    assert abs(float(centre_check.centre_offset(ringed[None])[0])) < 0.5


def test_the_penalty_counts_no_offset_where_the_rings_are_too_heavy():
    # The search finds a 3 px offset through strong rings (above), but heavy rings that
    # remove_rings leaves can also read as an offset on a well-centred scan, so the penalty's
    # offset is no finding where the ring amplitude is above the gate.
    from tiqa import ring_check

    gains = 0.08 * np.random.default_rng(3).standard_normal(radon(
        _particles(), theta=[0.0], circle=False).shape[0])
    scans = np.stack([_scan(_particles(), 3.0, gains), _scan(_particles(), 3.0),
                      _scan(_particles(), 3.0, 0.4 * gains)])
    amplitudes = np.asarray(ring_check.ring_amplitude(scans))  # the whole 128 px square
    assert amplitudes[0] > centre_check.RING_GATE > amplitudes[1]
    assert 0.01 < amplitudes[2] < centre_check.RING_GATE  # rings the gate lets through
    np.testing.assert_array_equal(np.asarray(centre_check.ringed(scans)), [True, False, False])
    found = np.asarray(centre_check.penalty_offset(scans))
    assert found[0] == 0.0
    np.testing.assert_allclose(np.abs(found[1:]), 3.0, atol=0.5)
    # A square too small to measure rings on (70 px) is never gated.
    assert not ring_check.measurable(70, 70)
    assert not bool(np.asarray(centre_check.ringed(scans[:1, :70, :70]))[0])


def test_a_featureless_slice_reads_no_offset():
    # Smooth random fields hold no edge for an offset to double: the sparsity wanders by about
    # 1 % over the search in a 128 px square (2 % counts there), so its least is anywhere (up
    # to 8 px here) and counts as none. Scanned particles vary by 5 % and more.
    fields = np.stack([ndimage.gaussian_filter(np.random.default_rng(seed).random((SIDE, SIDE)),
                                               2.0) for seed in range(4)]).astype(np.float32)
    found, structure = (np.asarray(a) for a in centre_check.search(fields))
    assert centre_check.min_structure(SIDE, SIDE) == pytest.approx(0.02)
    assert np.all(structure < 0.015) and np.abs(found).max() > 5.0
    np.testing.assert_array_equal(np.asarray(centre_check.centre_offset(fields)), 0.0)
    _, particles = (np.asarray(a) for a in centre_check.search(_scan(_particles(), 0.0)[None]))
    assert particles.min() > 0.05


def test_a_real_slice_is_measured_on_up_to_512_px_where_256_px_misses(nanoct_dir):
    # A real nano-CT slice (500 x 572 px, soft particles and grain) given offsets of 1, 2 and
    # 4 px by the offset's phase-only filter, built here by hand: exp(-2 pi i d w) with
    # w = +|k| on the half plane of projection angles [0, 180) and -|k| on the other.
    from tiqa import io, view_check

    image = io.read_slice(nanoct_dir / "images" / "103.tif")
    spectrum = np.fft.fft2(np.asarray(centre_check.periodic_component(image)))
    along_rows = np.fft.fftfreq(image.shape[0])[:, None]
    along_cols = np.fft.fftfreq(image.shape[1])[None, :]
    upper = (along_rows > 0) | ((along_rows == 0) & (along_cols >= 0))
    signed = np.where(upper, 1.0, -1.0) * np.hypot(along_rows, along_cols)
    offsets = np.array([1.0, 2.0, 4.0])
    scans = np.stack([np.real(np.fft.ifft2(spectrum * np.exp(-2j * np.pi * d * signed)))
                      for d in offsets]).astype(np.float32)
    # The penalty measures the whole 500 px square and finds each offset.
    measured = np.abs(np.asarray(centre_check.penalty_offset(scans)))
    np.testing.assert_allclose(measured, offsets, atol=0.25)
    # Its centred 256 px square alone holds too few soft edges to tell them as well.
    small = np.abs(np.asarray(centre_check.centre_offset(view_check.centred_square(scans, 256))))
    assert np.max(np.abs(small - offsets)) > 0.3


def test_remove_rings_takes_out_what_depends_on_the_radius_alone_in_each_quadrant():
    rng = np.random.default_rng(5)
    texture = ndimage.gaussian_filter(rng.random((SIDE, SIDE)), 2.0).astype(np.float32)
    rows, cols = np.mgrid[:SIDE, :SIDE] - (SIDE - 1) / 2.0
    radius = np.hypot(rows, cols)
    # One-pixel rings of random amplitude, one set per half (the detector's two sides).
    upper = rng.standard_normal(SIDE)[np.floor(radius).astype(int)]
    lower = rng.standard_normal(SIDE)[np.floor(radius).astype(int)]
    rings = (0.02 * np.where(rows >= 0, upper, lower)).astype(np.float32)
    def fine(image, inner=6):  # the detail the gradient search sees, away from the centre
        inside = (radius > inner) & (radius < SIDE / 2 - 6)
        return np.std((image - ndimage.gaussian_filter(image, 2.0))[inside])

    # Rings alone: a tenth of their fine detail is left.
    assert fine(np.asarray(centre_check.remove_rings(rings))) < 0.15 * fine(rings)
    # Texture alone loses what the thin annuli of a quadrant average it to (each holds few
    # independent patches of it): a third of its fine detail, no more.
    lost = np.asarray(centre_check.remove_rings(texture)) - texture
    assert fine(lost) < 0.4 * fine(texture)
    # Together, as much as of each alone.
    together = np.asarray(centre_check.remove_rings(texture + rings))
    assert fine(together - texture) < 0.4 * fine(texture) + 0.15 * fine(rings)


def test_the_inverse_filter_is_all_pass_and_undoes_itself():
    rng = np.random.default_rng(1)
    image = rng.random((64, 64)).astype(np.float32)
    spectrum = np.fft.fft2(image)
    _, _, signed = centre_check._frequencies(64, 64, split_rows=True)
    moved = np.asarray(centre_check.undo_offset(spectrum, signed, 2.7))
    np.testing.assert_allclose(np.abs(moved), np.abs(spectrum), rtol=1e-5)
    back = np.asarray(centre_check.undo_offset(moved, signed, -2.7))
    np.testing.assert_allclose(back, spectrum, rtol=1e-4, atol=1e-3)
    # w(-k) = -w(k) off the Nyquist row and column: the filtered image stays real there.
    flipped = np.roll(np.flip(signed, (0, 1)), 1, (0, 1))
    inner = np.ones((64, 64), bool)
    inner[32, :] = inner[:, 32] = False
    np.testing.assert_allclose(flipped[inner], -signed[inner], atol=1e-12)
    # Along the first projection's direction (row frequency 0) the filter is a shift by d.
    along = np.fft.fftfreq(64)
    np.testing.assert_allclose(signed[0], along, atol=1e-12)


def test_the_periodic_component_leaves_the_frame_jumps_to_a_smooth_image():
    # Moisan's decomposition by hand: the smooth part s = u - p has, as periodic discrete
    # Laplacian, the jumps across opposite edges of the frame (0 inside).
    rng = np.random.default_rng(2)
    image = (np.linspace(0, 1, 40)[:, None] * np.linspace(1, 3, 48)[None, :]
             + 0.1 * rng.random((40, 48))).astype(np.float32)
    smooth = image - np.asarray(centre_check.periodic_component(image))
    laplacian = (np.roll(smooth, 1, 0) + np.roll(smooth, -1, 0) + np.roll(smooth, 1, 1)
                 + np.roll(smooth, -1, 1) - 4 * smooth)
    jumps = np.zeros_like(image)
    jumps[0] += image[-1] - image[0]
    jumps[-1] += image[0] - image[-1]
    jumps[:, 0] += image[:, -1] - image[:, 0]
    jumps[:, -1] += image[:, 0] - image[:, -1]
    np.testing.assert_allclose(laplacian, jumps - jumps.mean(), atol=2e-4)
    assert abs(smooth.mean()) < 1e-4


def test_a_slice_too_small_is_refused_naming_its_shape():
    with pytest.raises(ValueError, match="48x80 slice is too small"):
        centre_check.centre_offset(np.zeros((1, 48, 80), np.float32))


@pytest.fixture(scope="module")
def centred_model(tmp_path_factory):
    """The tiny network exported with a centre penalty of 0.3 points per px above 0.25 px."""
    from tests.tiny_models import export_tiny_score_model
    from tiqa import checkpoints, penalties

    folder = tmp_path_factory.mktemp("centred")
    loaded = export_tiny_score_model(tmp_path_factory.mktemp("tiny"))
    checkpoints.save_exported(dataclasses.replace(
        loaded, centre_penalty=penalties.Penalty(0.3, 1e9, 0.25)), folder)
    return folder


def test_the_score_loses_the_centre_penalty_of_the_estimated_offset(centred_model,
                                                                    offsets_found):
    from tiqa import checkpoints, penalties, scoring

    loaded = checkpoints.load_model(centred_model)
    assert loaded.centre_penalty == penalties.Penalty(0.3, 1e9, 0.25)
    assert loaded.ring_penalty is None and loaded.view_penalty is None
    _, found, scans = offsets_found
    slices = (scans - scans.min()) / np.ptp(scans)
    mean, _, _ = scoring.make_slice_scorer(loaded, "center")(slices)
    plain, _, _ = scoring.make_slice_scorer(loaded, "center", with_centre_penalty=False)(slices)
    taken = 0.3 * np.clip(np.abs(found) - 0.25, 0, None)
    assert taken[-1] > 1.5  # 6 px: about 1.7 points
    # Taken off the network's score, then kept on the scale (the tiny network scores low).
    np.testing.assert_allclose(mean, penalties.onto_scale(plain - taken, xp=np), rtol=1e-3,
                               atol=2e-3)
    assert scoring.penalty_notes(True, True, centred_model) == (
        "ring check: none in this model, view penalty: none in this model, centre penalty: on "
        "(0.30 points per unit of centre offset (px) above 0.25, with no cap), noise penalty: none "
        "in this model")
    assert scoring.penalty_notes(True, True, centred_model, False).endswith(
        "centre penalty: off, noise penalty: none in this model")


@pytest.mark.parametrize("least_side, charged", [(SIDE, True), (SIDE + 2, False)])
def test_the_score_takes_the_centre_penalty_fitted_for_the_measured_square(
        tmp_path, offsets_found, least_side, charged):
    from tests.tiny_models import export_tiny_score_model
    from tiqa import checkpoints, penalties, scoring

    # No penalty of its own; 0.3 points per px above 0.25 px for squares of `least_side` px up.
    # The scans are measured whole, on 128 px: charged by that fit only where it starts there.
    loaded = dataclasses.replace(
        export_tiny_score_model(tmp_path / "tiny"),
        centre_penalty=penalties.Penalty(0.0, 1e9, 0.0,
                                         ((least_side, penalties.Penalty(0.3, 1e9, 0.25)),)))
    checkpoints.save_exported(loaded, tmp_path / "sized")
    loaded = checkpoints.load_model(tmp_path / "sized")
    assert loaded.centre_penalty.at(centre_check.measured_side(SIDE, SIDE + 40)).slope == (
        0.3 if charged else 0.0)
    _, found, scans = offsets_found
    slices = (scans - scans.min()) / np.ptp(scans)
    mean, _, _ = scoring.make_slice_scorer(loaded, "center")(slices)
    plain, _, _ = scoring.make_slice_scorer(loaded, "center", with_centre_penalty=False)(slices)
    taken = 0.3 * np.clip(np.abs(found) - 0.25, 0, None) if charged else 0.0
    np.testing.assert_allclose(mean, penalties.onto_scale(plain - taken, xp=np), rtol=1e-3,
                               atol=2e-3)
    assert scoring.penalty_notes(True, True, tmp_path / "sized").endswith(
        "centre penalty: on (0.0000 points per unit of centre offset (px) above 0, with no cap; "
        f"measured on {least_side} px or more, 0.30 points above 0.25, with no cap), "
        "noise penalty: none in this model")


def test_the_score_phase_writes_each_slice_centre_offset(tmp_path, offsets_found):
    from tiqa import io
    from tests.score_runs import part_round_trip, score_folder

    offsets, found, scans = offsets_found
    folder = tmp_path / "slices"
    folder.mkdir()
    for name, index in (("centred", 0), ("off", 3)):
        io.write_tiff(folder / f"{name}.tif", scans[index])
    html, rows = score_folder(folder, tmp_path, centre_check=True)
    assert "rotation centre: 1 of 2 slice(s) read an offset above 1 px (median 3." in html
    assert abs(float(rows["centred"]["centre_offset"])) < 0.35
    assert abs(float(rows["off"]["centre_offset"])) == pytest.approx(4.0, abs=0.35)
    # The column survives the part files that several processes write and process 0 merges.
    records, read_back = part_round_trip(rows, tmp_path, {"centre_offset": float})
    assert read_back == records


def test_the_offset_written_is_the_one_the_penalty_counted_searched_once(
        centred_model, tmp_path, offsets_found, monkeypatch):
    from tiqa import io
    from tests.score_runs import score_folder

    _, found, scans = offsets_found
    folder = tmp_path / "slices"
    folder.mkdir()
    io.write_tiff(folder / "off.tif", scans[3])  # 4 px
    searched = []
    search = centre_check.penalty_offset

    def counted(slices):
        searched.append(tuple(slices.shape))
        return search(slices)

    monkeypatch.setattr(centre_check, "penalty_offset", counted)
    _, rows = score_folder(folder, tmp_path, centre_check=True, checkpoint=str(centred_model))
    # One search serves the penalty and the CSV (it costs 0.1 to 0.4 s a slice on a CPU).
    assert len(searched) == 1
    assert float(rows["off"]["centre_offset"]) == pytest.approx(found[3], abs=0.06)


def test_the_score_phase_takes_the_centre_penalty_its_config_asks_for(centred_model, tmp_path,
                                                                      offsets_found):
    from tiqa import io
    from tests.score_runs import penalty_on_and_off

    _, found, scans = offsets_found
    io.write_tiff(tmp_path / "off.tif", scans[4])  # 6 px
    scores = penalty_on_and_off(tmp_path / "off.tif", centred_model, "centre_penalty", tmp_path)
    # 0.3 x (about 6 - 0.25) points, on the scale.
    assert scores[False][0] > scores[True][0] + 1.0
    assert ("centre penalty: on (0.30 points per unit of centre offset (px) above 0.25"
            in scores[True][1])
    assert "centre penalty: off" in scores[False][1]


def test_the_offset_note_counts_the_slices_above_a_pixel():
    assert centre_check.offset_note([0.2, -3.0, None, 5.0, 1.0]) == (
        "rotation centre: 2 of 4 slice(s) read an offset above 1 px (median 4.0 px). A "
        "misplaced axis doubles edges; heavily blurred slices can read so without one "
        "(tiqa/centre_check.py).")
    assert centre_check.offset_note([0.5, -0.3]) == (
        "rotation centre: no slice of 2 reads an offset above 1 px.")
    assert centre_check.offset_note([None]) == (
        "rotation centre: no slice was large enough to be checked.")
