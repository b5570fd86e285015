"""Resizing and cropping images in JAX: jittable, batched over leading axes (..., H, W).

`area_resize` resamples with area weights: each output pixel is the area-weighted mean of the
input pixels it covers (OpenCV INTER_AREA when downscaling). It equals PIL's BOX filter only for
integer factors: PIL weighs each input pixel 0 or 1 by where its centre falls, so the two differ
for fractional factors. `resize_short_side` keeps the aspect ratio; `center_crop`, `random_crop`
and `crop_at` cut square crops; `preprocess` chains them as the paper does (short side 255,
crop 224). Reading and writing files is `tiqa.io`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

from tiqa.io import ImageError


@functools.lru_cache(maxsize=64)
def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) area-weight matrix of a 1-D resize; each row sums to 1.

    Output pixel i covers [i, i + 1) * n_in / n_out of the input; its weight on input pixel j is
    the length of the overlap with [j, j + 1), divided by n_in / n_out. Overlaps are computed in
    integer units of 1 / n_out pixel, so they are exact. The result is read-only (it is cached).
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got n_in={n_in}, n_out={n_out}")
    i = np.arange(n_out)[:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.minimum((j + 1) * n_out, (i + 1) * n_in) - np.maximum(j * n_out, i * n_in)
    weights = np.clip(overlap, 0, None) / n_in
    weights.setflags(write=False)
    return weights


def area_resize(image: Any, out_shape: Sequence[int]) -> jax.Array:
    """Resizes (..., H, W) to (..., h, w) with area weights, as A_h @ image @ A_w.T.

    Each output pixel is the area-weighted mean of the input pixels it covers (OpenCV INTER_AREA
    when downscaling; PIL BOX only for integer factors). Upscaling uses the same weights, i.e.
    pixel replication with blended seams. Jittable with `out_shape` static; integer input is
    cast to float32.
    """
    image = jnp.asarray(image)
    if not jnp.issubdtype(image.dtype, jnp.floating):
        image = image.astype(jnp.float32)
    if image.ndim < 2:
        raise ImageError(f"area_resize needs (..., H, W), got shape {image.shape}")
    height, width = image.shape[-2:]
    out_h, out_w = (int(n) for n in out_shape)
    if (out_h, out_w) == (height, width):
        return image
    a_h = jnp.asarray(area_weights(height, out_h), dtype=image.dtype)
    a_w = jnp.asarray(area_weights(width, out_w), dtype=image.dtype)
    # HIGHEST keeps full float32 on accelerators whose default matmul precision is lower.
    precision = jax.lax.Precision.HIGHEST
    rows = jnp.matmul(a_h, image, precision=precision)
    return jnp.matmul(rows, a_w.T, precision=precision)


def _round_half_up(numerator: int, denominator: int) -> int:
    """round(numerator / denominator), halves up, in exact integer arithmetic."""
    return (2 * numerator + denominator) // (2 * denominator)


def resize_short_side(image: Any, size: int = 255) -> jax.Array:
    """Area-resizes (..., H, W) so that the short side is `size`, keeping the aspect ratio.

    The long side becomes round(long * size / short) (halves rounded up); e.g. 499x601 -> 255x307.
    """
    height, width = jnp.shape(image)[-2:]
    if min(height, width) < 1:
        raise ImageError(f"cannot resize an empty image of {height}x{width}")
    if height <= width:
        out_shape = (size, _round_half_up(width * size, height))
    else:
        out_shape = (_round_half_up(height * size, width), size)
    return area_resize(image, out_shape)


def keeps_own_pixels(height: int, width: int, size: int, own_pixels: bool) -> bool:
    """Whether a score network sees a height x width slice as it is: with `own_pixels` when its
    shorter side is at least `size` (a smaller slice is enlarged to `size` either way)."""
    return own_pixels and min(height, width) >= size


def model_view(image: Any, size: int = 255, own_pixels: bool = False) -> jax.Array:
    """The slice a score network crops from: `resize_short_side(image, size)`, or with
    `own_pixels` the slice as it is when its shorter side is at least `size` (a model trained
    at the scan's own pixels: the resize would average away the blur and noise of a large slice).
    A smaller slice is enlarged to `size` either way (`keeps_own_pixels`)."""
    if keeps_own_pixels(*jnp.shape(image)[-2:], size, own_pixels):
        return jnp.asarray(image)
    return resize_short_side(image, size)


def _check_crop(shape: Sequence[int], size: int) -> None:
    height, width = shape[-2:]
    if height < size or width < size:
        raise ImageError(f"image of {height}x{width} is smaller than the {size}x{size} crop")


def crop_at(image: Any, top: Any, left: Any, size: int) -> jax.Array:
    """The (..., size, size) crop of (..., H, W) whose top-left corner is (top, left).

    `top` and `left` may be traced (jittable through lax.dynamic_slice); Python ints are
    bounds-checked, traced values are clamped into range by dynamic_slice.
    """
    image = jnp.asarray(image)
    _check_crop(image.shape, size)
    height, width = image.shape[-2:]
    for name, start, limit in (("top", top, height), ("left", left, width)):
        if isinstance(start, (int, np.integer)) and not 0 <= start <= limit - size:
            raise ImageError(f"crop {name}={start} of size {size} does not fit in "
                             f"{height}x{width}")
    lead = image.ndim - 2
    starts = (0,) * lead + (top, left)
    return jax.lax.dynamic_slice(image, starts, image.shape[:-2] + (size, size))


def center_crop(image: Any, size: int = 224) -> jax.Array:
    """The centred (..., size, size) crop of (..., H, W) (odd margins: one more below/right)."""
    shape = jnp.shape(image)
    _check_crop(shape, size)
    height, width = shape[-2:]
    return crop_at(image, (height - size) // 2, (width - size) // 2, size)


def random_crop(key: jax.Array, image: Any,
                size: int = 224) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """A uniformly placed (..., size, size) crop of (..., H, W), and its (top, left) corner.

    The same key gives the same crop; all leading axes share the corner. Jittable.
    """
    image = jnp.asarray(image)
    _check_crop(image.shape, size)
    height, width = image.shape[-2:]
    key_top, key_left = jax.random.split(key)
    top = jax.random.randint(key_top, (), 0, height - size + 1)
    left = jax.random.randint(key_left, (), 0, width - size + 1)
    return crop_at(image, top, left, size), (top, left)


def preprocess(image: Any, key: jax.Array | None = None, resize: int | None = 255,
               crop: int = 224, own_pixels: bool = False) -> jax.Array:
    """The paper's input: short side area-resized to `resize`, then a `crop` x `crop` crop.

    Args:
        image: (..., H, W) in [0, 1].
        key: a PRNG key for a random crop (training), or None for the centre crop (evaluation).
        resize: the short side after resizing, or None to crop the image as it is.
        crop: the side of the square crop.
        own_pixels: a slice whose shorter side is at least `resize` is not resized (`model_view`).
    """
    image = jnp.asarray(image) if resize is None else model_view(image, resize, own_pixels)
    if key is None:
        return center_crop(image, crop)
    return random_crop(key, image, crop)[0]


def random_dihedral(keys: tuple[jax.Array, jax.Array, jax.Array], image: jax.Array) -> jax.Array:
    """One of the 8 flips and 90-degree turns of a square (..., S, S) image (or of (H, W)),
    drawn from three keys: the same keys move images together (a slice and its label map, an
    object's acquisitions)."""
    up_down_key, left_right_key, rotate_key = keys
    image = pix.random_flip_up_down(up_down_key, image[..., None])  # dm-pix wants channels
    image = pix.random_flip_left_right(left_right_key, image)
    turns = jax.random.randint(rotate_key, (), 0, 4)
    image = jax.lax.switch(turns, [functools.partial(pix.rot90, k=k) for k in range(4)], image)
    return image[..., 0]
