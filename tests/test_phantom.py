"""Synthetic electrode microstructures and their simulated scans."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from tiqa import phantom, tomography
from tests.images import radial_profile

SIZE = 128
N_ANGLES = 120


def _top_peaks(profile: np.ndarray, count: int) -> list[int]:
    """Radii of the `count` highest local maxima of a profile."""
    inner = np.flatnonzero((profile[1:-1] >= profile[:-2]) & (profile[1:-1] >= profile[2:])) + 1
    return sorted(inner[np.argsort(profile[inner])[::-1][:count]].tolist())


@pytest.fixture(scope="module")
def slice_():
    return phantom.microstructure(7, (SIZE, SIZE))


def test_microstructure_is_deterministic(slice_):
    attenuation, labels = phantom.microstructure(7, (SIZE, SIZE))
    np.testing.assert_array_equal(attenuation, slice_[0])
    np.testing.assert_array_equal(labels, slice_[1])
    other, _ = phantom.microstructure(8, (SIZE, SIZE))
    assert not np.array_equal(other, attenuation)


def test_labels_and_attenuation_are_plausible(slice_):
    attenuation, labels = slice_
    assert attenuation.dtype == np.float32 and labels.dtype == np.uint8
    assert attenuation.shape == labels.shape == (SIZE, SIZE)
    assert set(np.unique(labels)) == {phantom.PARTICLE, phantom.BINDER, phantom.PORE}
    fractions = np.bincount(labels.ravel(), minlength=3) / labels.size
    assert 0.4 <= fractions[phantom.PARTICLE] <= 0.6
    assert 0.05 <= fractions[phantom.BINDER] <= 0.35
    assert 0.1 <= fractions[phantom.PORE] <= 0.5
    # Bright particles, grey binder, dark pores, in units of mu_per_pixel.
    mu = phantom.DEFAULT_MU_PER_PIXEL
    means = [attenuation[labels == label].mean() / mu for label in range(3)]
    assert 0.9 < means[phantom.PARTICLE] < 1.1
    assert 0.2 < means[phantom.BINDER] < 0.4
    assert means[phantom.PORE] == 0.0
    assert attenuation.min() >= 0.0


def test_volume_slices_are_consistent_sections():
    attenuation, labels = phantom.microstructure_volume(3, (12, 64, 64), radius_median=8.0)
    assert attenuation.shape == labels.shape == (12, 64, 64)
    particle = labels == phantom.PARTICLE
    assert 0.4 <= particle.mean() <= 0.6
    # Neighbouring slices cut the same particles; distant slices are nearly independent.
    near = np.mean(particle[:-1] == particle[1:])
    far = np.mean(particle[:-10] == particle[10:])
    assert near > 0.85 and near > far + 0.2
    again, _ = phantom.microstructure_volume(3, (12, 64, 64), radius_median=8.0)
    np.testing.assert_array_equal(again, attenuation)


@pytest.mark.slow
def test_acquire_is_deterministic_and_noise_free_option(slice_):
    attenuation = slice_[0]
    first = phantom.acquire(attenuation, 1, photons=1e4, gain_error_std=0.02, n_angles=N_ANGLES)
    second = phantom.acquire(attenuation, 1, photons=1e4, gain_error_std=0.02, n_angles=N_ANGLES)
    assert first.shape == (SIZE, SIZE) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)
    other = phantom.acquire(attenuation, 2, photons=1e4, gain_error_std=0.02, n_angles=N_ANGLES)
    assert not np.array_equal(first, other)
    # Noise-free: photons None and inf agree; the seed then only matters through the gains.
    clean = phantom.acquire(attenuation, 1, photons=None, n_angles=N_ANGLES)
    np.testing.assert_array_equal(clean, phantom.acquire(attenuation, 5, photons=np.inf,
                                                         n_angles=N_ANGLES))
    # A noise-free scan reconstructs the attenuation, blurred only by the discretisation.
    inner = slice(16, -16)
    error = np.abs(np.asarray(clean) - attenuation)[inner, inner].mean()
    assert error < 0.15 * attenuation.mean()


def test_fewer_photons_give_lower_ssim(slice_):
    attenuation = slice_[0]
    clean = np.asarray(phantom.acquire(attenuation, 0, photons=None, n_angles=N_ANGLES))
    data_range = float(clean.max() - clean.min())
    scores = []
    for photons in (1e6, 1e4, 1e3):
        noisy = np.asarray(phantom.acquire(attenuation, 0, photons=photons, n_angles=N_ANGLES))
        scores.append(structural_similarity(clean, noisy, data_range=data_range))
    assert scores[0] > scores[1] > scores[2]
    assert scores[0] > 0.9 and scores[2] < 0.6


def test_gain_errors_make_rings_at_their_detectors_radii(slice_):
    attenuation = slice_[0]
    num_detectors = phantom.scan_detectors(SIZE)
    centre = num_detectors // 2
    gains = np.ones(num_detectors, np.float32)
    planted = {20: 0.7, -37: 1.4, 55: 0.75}  # detector offset -> gain
    for offset, gain in planted.items():
        gains[centre + offset] = gain
    # A little background gain error, well below the planted ones.
    gains *= 1.0 + 0.005 * np.random.default_rng(0).standard_normal(num_detectors)
    with_errors = phantom.acquire(attenuation, 0, photons=None, n_angles=N_ANGLES, gains=gains)
    without = phantom.acquire(attenuation, 0, photons=None, n_angles=N_ANGLES)
    difference = np.asarray(with_errors - without)
    peaks = _top_peaks(radial_profile(difference), len(planted))
    for radius, peak in zip(sorted(abs(o) for o in planted), peaks):
        assert abs(peak - radius) <= 1, (peaks, sorted(planted))

    # FBP is linear: the difference is exactly the ring image of the offsets -log(gain) on
    # the padded scan grid (zero detectors added on both sides change nothing inside the
    # reconstruction circle: the ramp filter's padding makes it a linear convolution).
    padded_size = num_detectors
    half = tomography.min_detectors((padded_size, padded_size)) // 2
    offsets = np.zeros(2 * half + 1, np.float32)
    offsets[half - centre:half - centre + num_detectors] = -np.log(gains)
    rings = tomography.detector_offset_rings(offsets, (padded_size, padded_size),
                                             phantom.scan_angles(N_ANGLES))
    start = padded_size // 2 - SIZE // 2
    rings = np.asarray(rings)[start:start + SIZE, start:start + SIZE]
    np.testing.assert_allclose(difference, rings, atol=2e-5 * np.abs(rings).max() + 1e-6)


@pytest.mark.slow
def test_phantom_volume_shares_the_detector_between_slices():
    recon, labels = phantom.phantom_volume(4, n_slices=2, size=48, photons=None,
                                           gain_error_std=0.05, n_angles=60, radius_median=6.0)
    clean, same_labels = phantom.phantom_volume(4, n_slices=2, size=48, photons=None,
                                                n_angles=60, radius_median=6.0)
    np.testing.assert_array_equal(labels, same_labels)
    assert recon.shape == labels.shape == clean.shape == (2, 48, 48)
    assert recon.dtype == clean.dtype == np.float32 and labels.dtype == np.uint8
    rings = recon - clean
    assert np.abs(rings).max() > 1e-3
    # The same gains in every slice: noise-free ring images are identical.
    np.testing.assert_allclose(rings[0], rings[1], atol=1e-6)
    noisy, _ = phantom.phantom_volume(4, n_slices=2, size=48, photons=1e4,
                                      gain_error_std=0.05, n_angles=60, radius_median=6.0)
    assert not np.allclose(noisy, recon)


def test_to_unit_range_maps_the_outer_percentiles_to_0_and_1():
    values = np.arange(1000, dtype=np.float64).reshape(10, 100)  # percentiles 4.995 and 994.005
    unit = phantom.to_unit_range(values)
    assert unit.min() == 0.0 and unit.max() == 1.0
    assert np.count_nonzero(unit == 0.0) == 5 and np.count_nonzero(unit == 1.0) == 5
    np.testing.assert_allclose(unit.flat[500], (500 - 4.995) / (994.005 - 4.995))
