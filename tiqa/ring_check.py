"""A no-reference measure of ring artefacts about the rotation axis, and the score penalty it
sets.

Rings come from detectors whose gain the flat field does not correct: each adds a circle of
one radius, centred on the rotation axis, to every slice. So a ring is the part of the image
that depends on the distance from the axis only, the same in every direction. The measure
splits the slice into angular sectors about the axis, takes each sector's radial profile
(the mean in annuli of half a pixel), keeps its fine radial detail (the profile less its
running median) and, at each radius, averages the product of the detail between every pair of
sectors. A ring appears in every sector, so it adds its power to every pair; the object's own
texture differs from sector to sector and adds nothing on average. The measure is the median
of that product over radii: gain errors across the detector draw a ring at almost every
radius, while a few isolated rings (one defective pixel, or the paper's image-domain ring
distortion, which the network learnt) are outliers that leave the median alone. The
amplitude is the square root
of that power, in the image's [0, 1] units, maximised over axis positions within
`search` px of the image's centre (reconstructions place the axis at N / 2 or (N - 1) / 2,
and the scoring path resizes): a ring about the wrong centre is smeared out of the profile.
What the same search finds about points beside the axis is taken off, so texture alone
measures 0.

The score network sees rings too, but orders faint ones poorly on smooth objects; the
shipped model's `ring_check` penalty (`tiqa.penalties`, fitted on training objects'
gain-error ladders by `launch.calibrate`) says how many score points a unit of ring amplitude
costs beyond what the network takes off, above a floor and up to a cap.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

SECTORS = 8
BIN_WIDTH = 0.5  # px: rings of one detector pixel stay within a bin or two
MIN_RADIUS = 8.0  # px: closer to the axis a sector's annulus holds too few pixels
DETAIL_BINS = 9  # the running median the radial detail is taken against (4.5 px)
SEARCH = 1.0  # px each way around the given axis position
SEARCH_STEP = 0.5  # half a bin
NULL_OFFSET = 10.0  # px: where the texture-only comparison is taken
UNIT = "ring amplitude"  # what the penalty's slope is per unit of (tiqa.penalties.Penalty.describe)
# Caps on the amplitude the penalty follows, in [0, 1] image units (`penalties.fit_penalty`
# picks one).
CAPS = (0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 1.0)  # 1: no cap
# Floors below which an amplitude costs nothing (`penalties.fit_penalty` picks one): the
# measure's own noise on ring-free images (up to about 0.006 on the ideal acquisitions of the
# training objects), and faint isolated rings, which the network already sees.
FLOORS = (0.0, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01)

__all__ = ["ring_power", "ring_amplitude", "image_centre", "measurable", "UNIT", "CAPS", "FLOORS"]


def image_centre(height: int, width: int) -> tuple[float, float]:
    """The rotation axis of a reconstructed (height, width) slice or of its centre crop: the
    middle of the pixel grid (the search covers the N / 2 convention)."""
    return (height - 1) / 2.0, (width - 1) / 2.0


def _profiles(image: jax.Array, centre: jax.Array, bins: int) -> jax.Array:
    """(SECTORS, bins) mean of `image` in annuli of BIN_WIDTH px from MIN_RADIUS, per sector."""
    height, width = image.shape
    rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                              jnp.arange(width, dtype=jnp.float32), indexing="ij")
    dy, dx = rows - centre[0], cols - centre[1]
    radius_bin = jnp.floor((jnp.hypot(dy, dx) - MIN_RADIUS) / BIN_WIDTH).astype(jnp.int32)
    sector = jnp.floor((jnp.arctan2(dy, dx) + jnp.pi) / (2 * jnp.pi) * SECTORS).astype(jnp.int32)
    sector = jnp.clip(sector, 0, SECTORS - 1)  # arctan2 = pi exactly
    inside = (radius_bin >= 0) & (radius_bin < bins)
    segment = jnp.where(inside, sector * bins + radius_bin, SECTORS * bins).ravel()
    total = jax.ops.segment_sum(image.ravel(), segment, num_segments=SECTORS * bins + 1)
    count = jax.ops.segment_sum(jnp.ones_like(image).ravel(), segment,
                                num_segments=SECTORS * bins + 1)
    return (total / jnp.maximum(count, 1.0))[:-1].reshape(SECTORS, bins)


def _bin_count(height: int, width: int, search: float) -> int:
    reach = min(height, width) / 2.0 - 1.0 - search
    return int((reach - MIN_RADIUS) / BIN_WIDTH)


def measurable(height: int, width: int, search: float = SEARCH,
               null_offset: float = NULL_OFFSET) -> bool:
    """Whether `ring_amplitude` can measure a (height, width) image."""
    return _bin_count(height, width, search + null_offset) >= 4 * DETAIL_BINS


def _bins(height: int, width: int, search: float) -> int:
    bins = _bin_count(height, width, search)
    if bins < 4 * DETAIL_BINS:
        raise ValueError(f"a {height}x{width} image is too small for the ring check")
    return bins


def ring_power(image: jax.Array, centre, search: float = 0.0) -> jax.Array:
    """The median over radii of the mean product between sectors of the radial detail about
    `centre` (row, col): the power of what is the same in every direction at a typical
    radius (rings at most radii), in image units^2."""
    image = jnp.asarray(image, jnp.float32)
    bins = _bins(*image.shape, search)
    profiles = _profiles(image, jnp.asarray(centre, jnp.float32), bins)
    # Against a running median, a step in the profile (a cylindrical sample's edge, the edge
    # of the field of view: concentric, but not rings) leaves no detail; a ring does.
    half = DETAIL_BINS // 2
    windows = jnp.stack([profiles[:, start:bins - DETAIL_BINS + 1 + start]
                         for start in range(DETAIL_BINS)], axis=-1)
    detail = profiles[:, half:bins - half] - jnp.median(windows, axis=-1)
    pairs = np.triu_indices(SECTORS, 1)
    per_radius = (detail[pairs[0]] * detail[pairs[1]]).mean(axis=0)
    # The median over radii, not the mean: miscalibrated detectors are many, so their rings
    # lie at most radii; a few isolated rings (a defective pixel, the paper's image-domain
    # rings) are outliers of this distribution and are left to the network, which sees them.
    return jnp.median(per_radius)


@functools.partial(jax.jit, static_argnames=("search", "null_offset"))
def ring_amplitude(images: jax.Array, search: float = SEARCH,
                   null_offset: float = NULL_OFFSET) -> jax.Array:
    """(N, H, W) slices or centre crops of slices in [0, 1] -> (N,) ring amplitudes.

    The largest `ring_power` over axis positions within `search` px of the image's centre,
    less the largest found the same way about four points `null_offset` px away (rings are
    smeared out there, texture is not): taking the best of many positions favours texture
    too, and the same search off the axis measures how much. The amplitude is the square
    root of the excess, 0 when the axis shows no more than the points beside it.
    """
    images = jnp.asarray(images, jnp.float32)
    height, width = images.shape[-2:]
    steps = int(round(search / SEARCH_STEP))
    offsets = jnp.arange(-steps, steps + 1, dtype=jnp.float32) * SEARCH_STEP
    grid = jnp.stack(jnp.meshgrid(offsets, offsets, indexing="ij"), -1).reshape(-1, 2)
    anchors = jnp.asarray([[0, 0], [null_offset, 0], [-null_offset, 0], [0, null_offset],
                           [0, -null_offset]], jnp.float32)
    centres = (jnp.asarray(image_centre(height, width), jnp.float32) + anchors[:, None]
               + grid[None]).reshape(-1, 2)
    reach = search + null_offset

    def one(image):
        # All positions at once (vmap): 0.10 s per 224 px image on the 2-core CPU, against
        # 0.14 s one position at a time.
        powers = jax.vmap(lambda centre: ring_power(image, centre, reach))(centres)
        best = powers.reshape(len(anchors), -1).max(axis=1)
        return jnp.sqrt(jnp.maximum(best[0] - best[1:].max(), 0.0))

    return jax.lax.map(one, images)
