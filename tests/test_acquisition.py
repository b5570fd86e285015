"""The acquisition model against scikit-image radon/iradon implementations of the same physics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tiqa import acquisition, errors, observers, phantom, reference_acquisition

MAX_VIEWS = 180
OUTPUT = 64
SIZE = acquisition.object_size(OUTPUT)


@pytest.fixture(scope="module")
def sample():
    attenuation, _ = phantom.microstructure(5, (SIZE, SIZE), radius_median=7.0)
    # Scale so a central ray is attenuated to about exp(-1.5).
    attenuation = attenuation * (1.5 / (attenuation.mean() * SIZE))
    integrals = acquisition.project(jnp.asarray(attenuation), MAX_VIEWS)
    return attenuation.astype(np.float64), integrals


def _settings(**changes) -> acquisition.Settings:
    return acquisition.ideal()._replace(**{k: jnp.float32(v) for k, v in changes.items()})


def _relative_error(ours, reference) -> float:
    return float(np.linalg.norm(np.asarray(ours) - reference) / np.linalg.norm(reference))


def _reference_row(**changes) -> dict:
    row = {name: acquisition.LEVELS[name][0] for name in acquisition.FACTORS}
    row["views"] = MAX_VIEWS
    row.update(changes)
    return row


def test_line_integrals_equal_skimage_radon(sample):
    attenuation, integrals = sample
    reference = reference_acquisition.project(attenuation, MAX_VIEWS)
    assert _relative_error(integrals, reference) < 1e-5


@pytest.mark.parametrize("changes", [
    {},  # the ideal scan
    {"views": 45}, {"views": 20},
    {"centre_offset": 3.0}, {"centre_offset": -1.5},
    {"detector_blur": 0.7}, {"detector_blur": 3.0},
    {"drift": 4.0},
    {"detector_blur": 1.2, "centre_offset": 2.0, "views": 60},
])
@pytest.mark.slow
def test_deterministic_factors_equal_the_skimage_reference(sample, changes):
    attenuation, integrals = sample
    ours = acquisition.acquire(integrals, _settings(**{"views": MAX_VIEWS, **changes}),
                               jax.random.key(0), OUTPUT)
    row = _reference_row(**changes)
    measured = reference_acquisition.measure(reference_acquisition.project(attenuation, MAX_VIEWS),
                                             row, np.random.default_rng(0))
    reference = reference_acquisition.reconstruct(measured, row["views"], OUTPUT)
    assert ours.shape == (OUTPUT, OUTPUT)
    assert _relative_error(ours, reference) < 2e-4


def test_gain_errors_equal_the_reference_with_the_same_gains(sample):
    attenuation, integrals = sample
    key = jax.random.key(3)
    ours = acquisition.acquire(integrals, _settings(views=MAX_VIEWS, gain_error=0.01), key, OUTPUT)
    # The gains are the first of the four draws `measure` documents.
    gain_key = jax.random.split(key, 4)[0]
    gains = 1.0 + 0.01 * np.asarray(jax.random.normal(gain_key, (SIZE, 1)))[:, 0]
    row = _reference_row(gain_error=0.01)
    measured = reference_acquisition.measure(reference_acquisition.project(attenuation, MAX_VIEWS),
                                             row, np.random.default_rng(0), gains=gains)
    reference = reference_acquisition.reconstruct(measured, MAX_VIEWS, OUTPUT)
    assert _relative_error(ours, reference) < 2e-4
    ideal = reference_acquisition.reconstruct(
        reference_acquisition.measure(reference_acquisition.project(attenuation, MAX_VIEWS),
                                      _reference_row(), np.random.default_rng(0)), MAX_VIEWS, OUTPUT)
    assert _relative_error(ours, ideal) > 1e-2  # the rings are really there


def test_photon_noise_has_the_poisson_variance_of_the_reference(sample):
    attenuation, integrals = sample
    ideal = np.asarray(acquisition.acquire(integrals, _settings(views=MAX_VIEWS), jax.random.key(0),
                                           OUTPUT))
    reference_integrals = reference_acquisition.project(attenuation, MAX_VIEWS)
    spreads = {}
    for photons in (1e4, 1e6):
        ours = [np.std(np.asarray(acquisition.acquire(
            integrals, _settings(views=MAX_VIEWS, photons=photons), jax.random.key(k), OUTPUT))
            - ideal) for k in range(3)]
        rng = np.random.default_rng(7)
        reference = [np.std(reference_acquisition.reconstruct(reference_acquisition.measure(
            reference_integrals, _reference_row(photons=photons), rng), MAX_VIEWS, OUTPUT) - ideal)
            for _ in range(3)]
        assert np.mean(ours) == pytest.approx(np.mean(reference), rel=0.1)
        spreads[photons] = np.mean(ours)
    # Poisson: 100 times the photons, a tenth of the noise.
    assert spreads[1e4] / spreads[1e6] == pytest.approx(10.0, rel=0.1)


def test_zingers_hit_the_given_fraction_of_sinogram_pixels(sample):
    _, integrals = sample
    measured = acquisition.measure(integrals, _settings(views=MAX_VIEWS, zingers=0.01),
                                   jax.random.key(4))
    hit = np.asarray(measured) < np.asarray(integrals) - 1e-3
    expected = 0.01 * hit.size
    assert abs(hit.sum() - expected) < 4 * np.sqrt(expected)
    # A zinger adds 0.5 to 3 I0 counts: the measured line integral drops to -log(e^-p + u).
    low = -np.log(np.exp(-np.asarray(integrals)[hit]) + acquisition.ZINGER_COUNTS[1])
    high = -np.log(np.exp(-np.asarray(integrals)[hit]) + acquisition.ZINGER_COUNTS[0])
    assert np.all((np.asarray(measured)[hit] >= low - 1e-4) & (np.asarray(measured)[hit] <= high + 1e-4))


def test_centre_offset_shifts_lose_their_rigid_translation():
    # A constant offset d over [0, 180) has the least-squares translation part (4 d / pi)
    # sin(theta) (hand-computed: the integrals of sin and sin^2 are 2 and pi / 2), and no
    # cos part; what is left is d (1 - 4 sin(theta) / pi), up to the 180-angle grid's sums
    # (the sum of cos over the half-open grid is 1, not 0: a cos part of d / 90).
    offset = 3.0
    shifts = np.asarray(acquisition.sample_shifts(_settings(centre_offset=offset), MAX_VIEWS))
    theta = np.deg2rad(acquisition.scan_angles(MAX_VIEWS))
    np.testing.assert_allclose(shifts, offset * (1.0 - 4.0 / np.pi * np.sin(theta)), atol=0.05)
    # Drift keeps only what no translation explains either.
    drift = np.asarray(acquisition.sample_shifts(_settings(drift=4.0), MAX_VIEWS))
    assert abs(drift @ np.cos(theta)) < 1e-2 and abs(drift @ np.sin(theta)) < 1e-2
    assert np.abs(drift).max() > 0.5


@pytest.mark.slow
def test_a_centre_offset_smears_without_moving_the_reconstruction(sample):
    from scipy import ndimage
    _, integrals = sample
    ideal = np.asarray(acquisition.acquire(integrals, _settings(views=MAX_VIEWS),
                                           jax.random.key(0), OUTPUT))
    offset = np.asarray(acquisition.acquire(
        integrals, _settings(views=MAX_VIEWS, centre_offset=4.0), jax.random.key(0), OUTPUT))
    inner = (slice(12, -12),) * 2  # away from the square's edges, where shifted data run out

    def misfit(shift):
        moved = ndimage.shift(offset, shift, order=3)
        return float(np.mean((moved[inner] - ideal[inner]) ** 2))

    # The translation that best aligns the offset scan with the ideal one, on a 1 px grid: with
    # the translation left in, it is about 4 x 4 / pi = 5 px.
    grid = [(dy, dx) for dy in range(-6, 7) for dx in range(-6, 7)]
    best = min(grid, key=misfit)
    assert np.hypot(*best) <= 1.0, best
    assert _relative_error(offset, ideal) > 0.05  # the half-circle smear is still there


def _band_amplitudes(image: np.ndarray, edges=(0.125, 0.25, 0.375, 0.5)) -> np.ndarray:
    """Mean Fourier amplitude of a Hann-windowed image in radial bands (cycles per pixel)."""
    size = image.shape[0]
    window = np.outer(np.hanning(size), np.hanning(size))
    amplitude = np.abs(np.fft.fftshift(np.fft.fft2((image - image.mean()) * window)))
    y, x = np.indices(amplitude.shape) - size // 2
    radius = np.hypot(x, y) / size
    return np.array([amplitude[(radius >= low) & (radius < high)].mean()
                     for low, high in zip(edges[:-1], edges[1:])])


@pytest.mark.slow
def test_a_centre_offset_keeps_the_amplitude_spectrum_that_detector_blur_removes(sample):
    # Physics: shifting projection theta by s(theta) multiplies the image's Fourier transform
    # along that direction by exp(-2 pi i f s(theta)), a phase of modulus 1. So an offset axis
    # changes the image (more than detector blur does) yet keeps its amplitude spectrum: a
    # score that reads sharpness or noise power cannot see it, only the doubled edges can.
    _, integrals = sample

    def scan(**changes):
        return np.asarray(acquisition.acquire(integrals, _settings(views=MAX_VIEWS, **changes),
                                              jax.random.key(0), OUTPUT), np.float64)

    ideal = scan()
    ideal_bands = _band_amplitudes(ideal)
    blurred = scan(detector_blur=1.2)
    assert np.all(_band_amplitudes(blurred)[1:] < 0.2 * ideal_bands[1:])
    for offset in (4.0, -3.0):
        moved = scan(centre_offset=offset)
        np.testing.assert_allclose(_band_amplitudes(moved), ideal_bands, rtol=0.1)
        assert _relative_error(moved, ideal) > 2 * _relative_error(blurred, ideal)


@pytest.mark.slow
@pytest.mark.parametrize("factor", acquisition.LADDER_NAMES)
def test_quality_falls_monotonically_along_every_factor(factor):
    size = acquisition.object_size(96)
    attenuation, _ = phantom.microstructure(11, (size, size), radius_median=9.0)
    attenuation = attenuation * (1.5 / (attenuation.mean() * size))
    settings = jax.tree.map(lambda x: x[None], acquisition.ladder(factor))
    ssim = []
    # The random factors are averaged over two draws; views, centre, blur and drift are
    # deterministic (a second draw would repeat the first).
    random = acquisition.ladder_levels(factor)[0] in ("photons", "gain_error", "zingers")
    for seed in range(2 if random else 1):
        keys = jax.random.split(jax.random.key(seed), acquisition.NUM_LEVELS)[None]
        images = acquisition.normalise_percentile(acquisition.simulate(
            jnp.asarray(attenuation)[None], settings, keys, output_size=96)[0])
        ssim.append(np.asarray(observers.ssim(jnp.broadcast_to(images[0], images.shape), images)))
    ssim = np.mean(ssim, axis=0)
    assert ssim[0] == pytest.approx(1.0)
    assert np.all(np.diff(ssim) < 0), (factor, ssim)


def test_extra_ladders_vary_their_factor_alone_from_the_ideal():
    for name, (factor, levels) in acquisition.EXTRA_LADDERS.items():
        settings = acquisition.ladder(name)
        assert levels[0] == acquisition.LEVELS[factor][0], name  # level 0 is the shared ideal
        np.testing.assert_array_equal(getattr(settings, factor), np.float32(levels))
        for other in set(acquisition.FACTORS) - {factor}:
            np.testing.assert_array_equal(getattr(settings, other), acquisition.LEVELS[other][0])
    low = acquisition.EXTRA_LADDERS["low_photons"][1]
    assert low[1] <= acquisition.LEVELS["photons"][-2] and low[-1] < acquisition.LEVELS["photons"][-1]
    with pytest.raises(errors.InputError, match="unknown acquisition ladder 'few_photons'"):
        acquisition.ladder("few_photons")


@pytest.mark.slow
def test_simulate_batches_objects_and_settings_reproducibly(sample):
    _, integrals = sample
    attenuation = jnp.asarray(sample[0], jnp.float32)
    objects = jnp.stack([attenuation, attenuation[::-1]])
    settings = acquisition.Settings(*(jnp.stack([
        jnp.asarray([getattr(acquisition.ideal(), name)] * 3) for _ in range(2)])
        for name in acquisition.FACTORS))._replace(
        photons=jnp.asarray([[1e4, jnp.inf, 1e5]] * 2, jnp.float32),
        views=jnp.full((2, 3), 60.0), detector_blur=jnp.asarray([[0.0, 2.0, 1.0]] * 2))
    keys = jax.random.split(jax.random.key(9), 6).reshape(2, 3)
    batch = acquisition.simulate(objects, settings, keys, output_size=OUTPUT, max_views=MAX_VIEWS)
    assert batch.shape == (2, 3, OUTPUT, OUTPUT)
    # The noise-free acquisition (Poisson draws can flip by a count when lambda differs in its
    # last bit between the batched and the single computation).
    one = acquisition.acquire(integrals, jax.tree.map(lambda x: x[0, 1], settings), keys[0, 1],
                              OUTPUT)
    np.testing.assert_allclose(batch[0, 1], one, rtol=1e-4, atol=1e-6)
    again = acquisition.simulate(objects, settings, keys, output_size=OUTPUT, max_views=MAX_VIEWS)
    np.testing.assert_array_equal(batch, again)
    other = acquisition.simulate(objects, settings, jax.random.split(jax.random.key(10), 6)
                                 .reshape(2, 3), output_size=OUTPUT, max_views=MAX_VIEWS)
    assert not np.allclose(batch[0, 0], other[0, 0])  # fresh photon noise from a fresh key


@pytest.mark.parametrize("changes, message", [
    ({"views": 7.0}, "views"), ({"photons": 0.0}, "photons"), ({"detector_blur": 9.0}, "detector_blur"),
    ({"gain_error": -0.1}, "gain_error"), ({"zingers": 2.0}, "zingers"),
    ({"drift": float("nan")}, "drift"),
])
def test_settings_out_of_range_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        acquisition.check_settings(_settings(**changes))


def test_percentile_normalisation_matches_numpy():
    images = np.random.default_rng(0).normal(size=(2, 3, 20, 30)).astype(np.float32)
    ours = np.asarray(acquisition.normalise_percentile(jnp.asarray(images)))
    low, high = np.percentile(images[1, 2], [0.5, 99.5])
    np.testing.assert_allclose(ours[1, 2], np.clip((images[1, 2] - low) / (high - low), 0, 1),
                               atol=1e-5)


@pytest.mark.slow
def test_acquisition_benchmark_suite_times_both_paths():
    from configs import benchmark as benchmark_config
    from tiqa.phases import benchmark

    config = benchmark_config.get_config()
    config.suite = "acquisition"
    settings = config.acquisition
    settings.objects, settings.output_size, settings.max_views = 2, 32, 90
    settings.factors = ("photons", "detector_blur")
    settings.reference_acquisitions = 2
    result = benchmark.run(config)
    assert result["per_object"] == 11 and result["object_size"] == acquisition.object_size(32)
    assert result["ladder_rate"] > 0 and result["reference_rate"] > 0
    assert result["ratio"] == pytest.approx(result["ladder_rate"] / result["reference_rate"])
