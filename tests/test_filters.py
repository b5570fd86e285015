"""Candidate pre-processing filters: contracts, denoising, ring removal and the grid syntax."""

import numpy as np
import pytest

from tiqa import filters

# The middle parameter of each filter in the default grid.
MIDDLE = {
    "identity": {},
    "median": {"radius": 2},
    "gaussian": {"sigma": 1.0},
    "nl_means": {"h": 0.8},
    "total_variation": {"weight": 0.05},
    "bilateral": {"sigma_color": 0.1},
    "ring_removal": {"radial_window": 15, "sectors": 2},
}


def clean_image(size: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth background with a few bright and dark discs (particles), in [0, 1]."""
    y, x = np.mgrid[:size, :size] / size
    image = 0.5 + 0.2 * np.sin(3 * x + 1) * np.cos(2 * y) + 0.1 * x
    rows, cols = np.mgrid[:size, :size]
    rng = np.random.default_rng(seed)
    for _ in range(4):
        row, col = rng.uniform(0.2 * size, 0.8 * size, 2)
        radius = rng.uniform(0.05, 0.12) * size
        image[(rows - row) ** 2 + (cols - col) ** 2 < radius**2] += rng.choice([-0.2, 0.2])
    return np.clip(image, 0, 1).astype(np.float32)


def ring_pattern(size: int, half: str | None = None, centre: tuple[int, int] | None = None) -> np.ndarray:
    """+-0.05 annuli r <= dist < r + 2 every 9 px around the centre; `half` keeps one side only."""
    rows, cols = np.mgrid[:size, :size]
    centre_row, centre_col = (size // 2, size // 2) if centre is None else centre
    distance = np.hypot(rows - centre_row, cols - centre_col)
    pattern = np.zeros((size, size))
    for index, radius in enumerate(range(8, size // 2, 9)):
        annulus = (distance >= radius) & (distance < radius + 2)
        if half == "bottom":
            annulus &= rows >= centre_row
        elif half == "right":
            annulus &= cols >= centre_col
        pattern[annulus] += 0.05 if index % 2 == 0 else -0.05
    return pattern


def rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)))


def test_registry_and_grid_cover_every_filter():
    assert set(MIDDLE) == set(filters.FILTERS)
    assert {name for name, _ in filters.CANDIDATES} == set(filters.FILTERS)
    assert ("identity", {}) in filters.CANDIDATES


@pytest.mark.parametrize("name", sorted(MIDDLE))
def test_filter_contract_shape_dtype_range_determinism(name):
    rng = np.random.default_rng(1)
    image = np.clip(clean_image(64) + rng.normal(0, 0.05, (64, 64)), 0, 1).astype(np.float32)
    image = image[:, :60]  # not square
    first = filters.apply(name, image, **MIDDLE[name])
    second = filters.apply(name, image.copy(), **MIDDLE[name])
    assert first.shape == image.shape and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    np.testing.assert_array_equal(first, second)
    if name == "identity":
        np.testing.assert_array_equal(first, image)


@pytest.mark.parametrize("name", ["median", "gaussian", "nl_means", "total_variation", "bilateral"])
def test_denoisers_reduce_error_against_clean(name):
    clean = clean_image(128)
    rng = np.random.default_rng(2)
    noisy = np.clip(clean + rng.normal(0, 0.08, clean.shape), 0, 1).astype(np.float32)
    mse_noisy = np.mean((noisy - clean) ** 2)
    mse_filtered = np.mean((filters.apply(name, noisy, **MIDDLE[name]) - clean) ** 2)
    assert mse_filtered < 0.6 * mse_noisy, (name, mse_filtered, mse_noisy)


def test_noise_estimate_matches_known_sigma():
    rng = np.random.default_rng(3)
    y, x = np.mgrid[:256, :256] / 256
    smooth = 0.5 + 0.2 * np.sin(6 * x) * np.cos(4 * y)
    assert filters.estimate_noise_sigma(smooth) < 1e-3
    for sigma in (0.02, 0.08):
        estimate = filters.estimate_noise_sigma(smooth + rng.normal(0, sigma, smooth.shape))
        assert abs(estimate / sigma - 1) < 0.05


def test_noise_estimate_equals_skimage():
    import pywt  # noqa: F401  (pinned: skimage's estimate_sigma needs it; a missing pin fails)
    from skimage.restoration import estimate_sigma
    rng = np.random.default_rng(4)
    image = clean_image(97) + rng.normal(0, 0.05, (97, 97))  # odd size: checks the padding
    assert filters.estimate_noise_sigma(image) == pytest.approx(estimate_sigma(image), rel=1e-6)


@pytest.mark.parametrize("half, params", [
    (None, {"sectors": 1}),
    (None, {"sectors": 2}),
    ("bottom", {"sectors": 2}),  # border along the horizontal line, as 180-degree scans
    ("right", {"sectors": 2, "sector_offset": 90.0}),
])
@pytest.mark.parametrize("radial_window", [9, 21])
def test_ring_removal_reduces_synthetic_rings(half, params, radial_window):
    clean = clean_image(192)
    ringed = np.clip(clean + ring_pattern(192, half), 0, 1).astype(np.float32)
    filtered = filters.apply("ring_removal", ringed, radial_window=radial_window, **params)
    before, after = rms(ringed, clean), rms(filtered, clean)
    assert after < 0.25 * before, (before, after)


@pytest.mark.parametrize("sectors", [1, 2, 4])
def test_ring_removal_leaves_ring_free_images_alone(sectors):
    clean = clean_image(192)
    for radial_window in (5, 9, 21, 31):
        filtered = filters.apply("ring_removal", clean, radial_window=radial_window,
                                 sectors=sectors)
        assert np.mean(np.abs(filtered - clean)) < 1e-3
    # Noise only: the filter must not add error (no fake rings out of noise).
    rng = np.random.default_rng(5)
    noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    filtered = filters.apply("ring_removal", noisy, radial_window=15, sectors=sectors)
    assert rms(filtered, clean) < 1.01 * rms(noisy, clean)
    assert np.mean(np.abs(filtered - noisy)) < 3e-3  # 6% of the noise sigma


def test_ring_removal_uses_the_given_centre():
    clean = clean_image(160)
    centre = (70, 95)
    ringed = np.clip(clean + ring_pattern(160, centre=centre), 0, 1).astype(np.float32)
    before = rms(ringed, clean)
    assert rms(filters.apply("ring_removal", ringed, centre=centre), clean) < 0.25 * before
    assert rms(filters.apply("ring_removal", ringed), clean) > 0.5 * before  # wrong centre


def test_default_candidates_all_run_on_a_small_image():
    image = clean_image(64)
    for name, params in filters.CANDIDATES:
        output = filters.apply(name, image, **params)
        assert output.shape == (64, 64) and output.dtype == np.float32, filters.describe(name, params)


def test_parse_candidates_expands_every_combination():
    spec = "median:radius=1,2;gaussian:sigma=0.5,1;ring_removal:radial_window=9,21:sectors=1,2;identity"
    assert filters.parse_candidates(spec) == [
        ("median", {"radius": 1}), ("median", {"radius": 2}),
        ("gaussian", {"sigma": 0.5}), ("gaussian", {"sigma": 1.0}),
        ("ring_removal", {"radial_window": 9, "sectors": 1}),
        ("ring_removal", {"radial_window": 9, "sectors": 2}),
        ("ring_removal", {"radial_window": 21, "sectors": 1}),
        ("ring_removal", {"radial_window": 21, "sectors": 2}),
        ("identity", {}),
    ]
    # Spaces, a trailing ';', duplicates, 'none' and a ROWxCOL centre.
    assert filters.parse_candidates(" median : radius = 1 ; median:radius=1; "
                                    "ring_removal:centre=none,100x120.5;") == [
        ("median", {"radius": 1}),
        ("ring_removal", {"centre": None}), ("ring_removal", {"centre": (100.0, 120.5)}),
    ]


@pytest.mark.parametrize("spec, message", [
    ("medain:radius=1", "unknown filter 'medain'; known filters: identity, median"),
    ("median:radus=1", "unknown parameter 'radus' for filter 'median'; its parameters: radius"),
    ("identity:radius=1", "unknown parameter 'radius' for filter 'identity'"),
    ("median:radius=0", "median:radius"),
    ("median:radius=1.5", "expected an integer"),
    ("gaussian:sigma=abc", "bad value 'abc'"),
    ("gaussian:sigma=-1", "gaussian:sigma"),
    ("gaussian:sigma=nan", "gaussian:sigma"),
    ("ring_removal:centre=1x2x3", "ring_removal:centre"),
    ("median:radius", "expected param=v1,v2"),
    ("median:radius=1:radius=2", "given twice"),
    (" ; ", "no candidates"),
])
def test_parse_candidates_rejects_bad_specs(spec, message):
    with pytest.raises(ValueError, match=None) as error:
        filters.parse_candidates(spec)
    assert message in str(error.value)


def test_apply_validates_inputs():
    image = clean_image(32)
    with pytest.raises(ValueError, match="known filters: identity, median"):
        filters.apply("sharpen", image)
    with pytest.raises(ValueError, match="unknown parameter 'size'"):
        filters.apply("median", image, size=3)
    with pytest.raises(ValueError, match="2-D"):
        filters.apply("median", np.stack([image, image]))
    with pytest.raises(ValueError, match="floating-point"):
        filters.apply("median", (image * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        filters.apply("median", np.where(image > 0.5, np.nan, image))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        filters.apply("median", image * 100)
    # float64 input is taken, and integral floats count as integers.
    assert filters.apply("median", image.astype(np.float64), radius=2.0).dtype == np.float32


def test_describe():
    assert filters.describe("median", {"radius": 2}) == "median(radius=2)"
    assert filters.describe("identity", {}) == "identity"
    assert (filters.describe("ring_removal", {"radial_window": 9, "sectors": 2, "centre": (10.0, 12.5)})
            == "ring_removal(radial_window=9, sectors=2, centre=10.0x12.5)")


@pytest.mark.parametrize("half, sectors", [(None, 1), ("bottom", 2)])
def test_ring_removal_on_real_nano_ct_crops(nanoct_dir, half, sectors):
    from tests.images import real_crops
    for crop in real_crops(nanoct_dir, count=2):
        ringed = np.clip(crop + ring_pattern(crop.shape[0], half), 0, 1).astype(np.float32)
        filtered = filters.apply("ring_removal", ringed, radial_window=21, sectors=sectors)
        assert rms(filtered, crop) < 0.5 * rms(ringed, crop)
        unchanged = filters.apply("ring_removal", crop, radial_window=21, sectors=sectors)
        assert np.mean(np.abs(unchanged - crop)) < 1.5e-3


def _skimage_ssim(reference: np.ndarray, image: np.ndarray) -> float:
    from skimage.metrics import structural_similarity
    return structural_similarity(reference, image, data_range=1.0, gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False)


def test_denoising_ladder_orders_filter_outputs_by_their_closeness_to_the_ideal():
    ideal = clean_image(64, seed=2)
    noisy = np.clip(ideal + np.random.default_rng(5).normal(0, 0.12, ideal.shape), 0, 1)
    noisy = noisy.astype(np.float32)
    ladder = filters.denoising_ladder(ideal, noisy)
    assert ladder.shape == (6, 64, 64) and ladder.dtype == np.float32
    np.testing.assert_array_equal(ladder[0], ideal)
    # Every level is one candidate's output on the noisy image, and no candidate twice.
    outputs = [filters.apply(name, noisy, **params) for name, params in filters.DENOISERS]
    chosen = [[np.array_equal(level, output) for output in outputs].index(True)
              for level in ladder[1:]]
    assert len(set(chosen)) == 5
    # From closest to farthest by an independent SSIM (scikit-image's, Wang's settings) ...
    similarity = [_skimage_ssim(ideal, level) for level in ladder[1:]]
    assert all(a > b for a, b in zip(similarity, similarity[1:]))
    # ... spanning the candidates: the first is the best of them all, the last the worst (on
    # this heavy noise, the unfiltered image).
    every = [_skimage_ssim(ideal, output) for output in outputs]
    assert similarity[0] == pytest.approx(max(every), abs=1e-5)
    assert similarity[-1] == pytest.approx(min(every), abs=1e-5)
    np.testing.assert_array_equal(ladder[-1], noisy)
    with pytest.raises(ValueError, match="at least 5 candidates"):
        filters.denoising_ladder(ideal, noisy, candidates=filters.DENOISERS[:4])
