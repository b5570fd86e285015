"""Area resizing against PIL and exact area means, and crops against array slicing."""

import pathlib

import jax
import numpy as np
import pytest
from PIL import Image

from tiqa import io, preprocessing

RNG = np.random.default_rng(0)


def _nanoct_slice(nanoct_dir: pathlib.Path) -> pathlib.Path:
    return nanoct_dir / "images" / "1.tif"  # group A, 499x601 float32


# --------------------------------------------------------------------------------------------
# Area resizing.
# --------------------------------------------------------------------------------------------


def _pil_box(image: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    pil = Image.fromarray(image.astype(np.float32), mode="F")
    return np.asarray(pil.resize(out_shape[::-1], Image.Resampling.BOX))


def test_area_resize_matches_pil_box_on_real_slices(nanoct_dir, tomobank_png):
    # PIL BOX weighs each input pixel 0 or 1 by its centre, which is the area mean only for
    # integer factors, so the comparison is made at integer factors.
    nanoct = io.read_slice(_nanoct_slice(nanoct_dir))[:498, :600]
    tomobank = io.read_slice(tomobank_png)
    for image, out_shape in [(nanoct, (249, 300)), (nanoct, (166, 200)),
                             (tomobank, (386, 392))]:
        ours = np.asarray(preprocessing.area_resize(image, out_shape))
        assert ours.shape == out_shape
        np.testing.assert_allclose(ours, _pil_box(image, out_shape), atol=1e-5)


def test_area_resize_fractional_factor_is_exact_area_mean(nanoct_dir):
    image = io.read_slice(_nanoct_slice(nanoct_dir))[100:150, 200:261].astype(np.float64)
    out_h, out_w = 23, 29
    # Reference: replicate each pixel out_h (out_w) times, then average blocks of H (W): this
    # is the exact area mean, independent of the weight matrices.
    rows = np.repeat(image, out_h, axis=0).reshape(out_h, image.shape[0], -1).mean(axis=1)
    expected = np.repeat(rows, out_w, axis=1).reshape(out_h, out_w, image.shape[1]).mean(axis=2)
    ours = np.asarray(preprocessing.area_resize(image.astype(np.float32), (out_h, out_w)))
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_area_resize_hand_computed():
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    expected = np.array([[(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4],
                         [(8 + 9 + 12 + 13) / 4, (10 + 11 + 14 + 15) / 4]])
    np.testing.assert_allclose(preprocessing.area_resize(image, (2, 2)), expected, atol=1e-6)
    # 3 -> 2: each output covers 1.5 input pixels.
    np.testing.assert_allclose(preprocessing.area_weights(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    for n_in, n_out in [(499, 255), (7, 19), (5, 5)]:
        np.testing.assert_allclose(preprocessing.area_weights(n_in, n_out).sum(axis=1), 1.0, atol=1e-12)


def test_area_resize_batched_and_jitted():
    images = RNG.random((2, 3, 20, 26)).astype(np.float32)
    resize = jax.jit(preprocessing.area_resize, static_argnums=1)
    batched = np.asarray(resize(images, (9, 11)))
    assert batched.shape == (2, 3, 9, 11)
    np.testing.assert_allclose(batched[1, 2], preprocessing.area_resize(images[1, 2], (9, 11)), atol=1e-6)


def test_resize_short_side_keeps_aspect(nanoct_dir):
    image = io.read_slice(_nanoct_slice(nanoct_dir))
    assert image.shape == (499, 601)
    assert preprocessing.resize_short_side(image).shape == (255, 307)
    assert preprocessing.resize_short_side(image.T).shape == (307, 255)
    assert preprocessing.resize_short_side(np.zeros((300, 300), np.float32)).shape == (255, 255)


# --------------------------------------------------------------------------------------------
# Crops and preprocessing.
# --------------------------------------------------------------------------------------------


def test_random_crop_reproducible_and_in_bounds():
    image = RNG.random((40, 50)).astype(np.float32)
    crop_fn = jax.jit(preprocessing.random_crop, static_argnums=2)
    corners = set()
    for seed in range(12):
        key = jax.random.key(seed)
        crop, (top, left) = crop_fn(key, image, 16)
        again, corner = crop_fn(key, image, 16)
        np.testing.assert_array_equal(crop, again)
        assert (int(top), int(left)) == tuple(int(c) for c in corner)
        top, left = int(top), int(left)
        assert 0 <= top <= 40 - 16 and 0 <= left <= 50 - 16
        np.testing.assert_array_equal(crop, image[top:top + 16, left:left + 16])
        corners.add((top, left))
    assert len(corners) > 1


def test_crops():
    image = np.arange(10 * 12, dtype=np.float32).reshape(10, 12)
    np.testing.assert_array_equal(preprocessing.center_crop(image, 4), image[3:7, 4:8])
    np.testing.assert_array_equal(preprocessing.crop_at(image, 2, 5, 4), image[2:6, 5:9])
    with pytest.raises(io.ImageError, match="10x12.*16x16"):
        preprocessing.center_crop(image, 16)
    with pytest.raises(io.ImageError, match="10x12"):
        preprocessing.random_crop(jax.random.key(0), image, 11)
    with pytest.raises(io.ImageError, match="does not fit"):
        preprocessing.crop_at(image, 8, 0, 4)


def test_preprocess():
    images = RNG.random((2, 300, 340)).astype(np.float32)
    assert preprocessing.preprocess(images).shape == (2, 224, 224)
    assert preprocessing.preprocess(images[0], key=jax.random.key(1)).shape == (224, 224)
    small = preprocessing.preprocess(images[0], resize=None, crop=100)
    np.testing.assert_array_equal(small, images[0, 100:200, 120:220])


def test_model_view_keeps_large_slices_at_their_own_pixels():
    # A model trained at its own pixels crops a slice of at least `resize` as it is (the
    # resize would average away its blur and noise); a smaller one is enlarged as always.
    image = RNG.random((60, 80)).astype(np.float32)
    np.testing.assert_array_equal(preprocessing.model_view(image, 60, own_pixels=True), image)
    resized = np.asarray(preprocessing.model_view(image, 30))  # the default: resized
    np.testing.assert_allclose(resized, image.reshape(30, 2, 40, 2).mean(axis=(1, 3)), atol=1e-6)
    enlarged = preprocessing.model_view(image[:, :60], 120, own_pixels=True)
    np.testing.assert_allclose(enlarged, np.kron(image[:, :60], np.ones((2, 2))), atol=1e-6)
    crop = preprocessing.preprocess(image, resize=40, crop=20, own_pixels=True)
    np.testing.assert_array_equal(crop, image[20:40, 30:50])
