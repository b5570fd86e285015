"""A no-reference estimate of a rotation-centre offset in a reconstructed slice, and the score
penalty it sets.

When the rotation axis lies d px from where the reconstruction assumes it, every projection of
a 180-degree scan is moved by d px along the detector. By the Fourier slice theorem, the
slice's Fourier transform at k = w (cos t, sin t), t in [0, 180) degrees and w signed, is then
multiplied by exp(-2 pi i w d): an all-pass filter, exp(-2 pi i d |k| s(k)) with s = +1 on one
half of the frequency plane and -1 on the other, the two halves split by the line of the first
projection's direction. It keeps every amplitude, so unlike detector blur it costs no power at
any frequency; within each half it moves every edge by about d px along its normal, and
across the split the phase jumps by 4 pi d |k|, so edges whose normal lies near the first
projection's direction are doubled (the "tuning fork" of a misplaced axis).

The estimate undoes candidate offsets with the inverse filter and keeps the one whose result
has the sparsest gradient: the smallest ratio of the mean to the root mean square of the
smoothed gradient's magnitude. The filter is unitary, so the gradient's energy is the same for
every candidate and only its spread changes; doubled edges spread it. This is the sharpness
search that reconstruction software runs over re-reconstructions from the sinogram, here on
the slice alone. Before the search:

- rings are taken out (`remove_rings`): a detector's gain error draws half circles about the
  axis, which the inverse filter moves like edges, so with rings left in, the sparsest
  result of a ring-heavy slice is any offset at all;
- the slice's periodic component is taken (`periodic_component`), so the frame's edges put no
  cross into the spectrum along the very axes where the halves meet.

And after it, an offset counts only where the sparsity varies enough over the search
(`min_structure`): a slice without edges (heavy noise, featureless texture, very few views)
is as sparse at any offset, and its sparsest one means nothing. Heavily blurred slices (edges
many pixels wide) pass that test but their sparsest offset is poorly determined: they can read
several px that are not an axis error. And rings too heavy for `remove_rings` to take out
whole can read as an offset, so the penalty does not count one on a slice whose rings are
above `RING_GATE` (`ringed`).

Both directions of the first projection (along the rows or the columns) are searched, as
reconstruction software differs, and the larger offset found is the estimate. An offset found
at the end of the search range (`REACH`) is no finding (0): there the sparsity keeps falling
because of something else than the axis. The sign says which way the axis is off, in this
module's convention; the penalty counts its magnitude.

The score network orders centre offsets poorly on smooth grey objects
(docs/acquisition_ladder.md). The shipped model's `centre_check` penalty (`tiqa.penalties`,
fitted on training objects' centre-offset ladders by `launch.calibrate`) takes score points
per px of the estimate above a floor, measured on the slice's centred square of up to
`PENALTY_SIDE` px at its own pixels. That square is larger than the view penalty's: on smooth
objects, a 256 px square misses offsets of several px that the 512 px square around it finds
(its edges are too few and too soft; docs/acquisition_ladder.md), and real slices are mostly
larger than 512 px. The estimate is more reliable on the larger square, so a penalty can carry
one fit per size (`launch.calibrate`'s `centre_output_sizes`), and a slice is charged by the
fit for the size of the square it is measured on (`measured_side`, `penalties.Penalty.at`).
The shipped model carries the fit on 256 px acquisitions alone: a fit on 512 px ones orders
offsets better but also charges the best acquisitions for what they read with the axis in
place (docs/acquisition_ladder.md, "A centre penalty per measured size").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tiqa import ring_check, view_check

REACH = 12.0  # px: the largest offset searched each way
COARSE_STEP = 1.0  # px: the first search's grid
FINE_STEP = 0.25  # px: the second search's grid, over one coarse step each way
GRADIENT_SIGMA = 1.0  # px: the Gaussian the gradient is taken of (noise in the finest detail)
RING_BIN_WIDTH = 0.5  # px: annuli of the ring profiles (`tiqa.ring_check`'s)
RING_DETAIL_BINS = 9  # the running median and mean the rings are taken against (4.5 px)
# The least variation of the sparsity over the search (its range over its least) for an offset
# to count, in a 256 px square: slices with edges vary by 1 to 3 % (smooth particles) and
# more, featureless or noise-dominated ones by up to about 1 %, and their sparsest offset is
# anywhere (docs/acquisition_ladder.md). A featureless field's variation is a sampling fluctuation,
# which grows as the side shrinks (fewer independent patches), so the least variation is
# scaled by STRUCTURE_SIDE / side (`min_structure`).
MIN_STRUCTURE = 0.01
STRUCTURE_SIDE = 256  # px: the side MIN_STRUCTURE holds at
MIN_SIDE = 64  # px: a smaller square holds too little to search 12 px each way
PENALTY_SIDE = 512  # px: the largest centred square the penalty measures (module docstring)
UNIT = "centre offset (px)"  # what the penalty's slope is per unit of (penalties.Penalty.describe)
# Caps and floors of the penalty (`penalties.fit_penalty` picks one of each), in px. The floors
# cover what smooth objects measure with the axis in place (up to about 0.4 px at the scored
# scale, 1 px at their own, docs/acquisition_ladder.md).
CAPS = (1.0, 2.0, 4.0, 8.0, 1e9)
FLOORS = (0.0, 0.25, 0.5, 1.0)
NOTE_OFFSET = 1.0  # px: offsets the report names (the shipped penalty's floor under 512 px)
# Heavy rings that `remove_rings` leaves can read as an offset: along the training objects'
# gain-error ladders (no offset) 7 of 360 acquisitions read more than 1 px, at ring amplitudes
# of 0.018 to 0.075, while along their centre-offset ladders (no rings added) the amplitude
# is at most 0.015. So where a slice's ring amplitude (`tiqa.ring_check`, on its centred
# square of up to RING_SIDE px, as the ring penalty measures it) is above RING_GATE, the
# penalty's offset is no finding: such a slice pays the ring penalty, and its axis cannot be
# told from its rings (docs/acquisition_ladder.md, "Rings read as an offset").
RING_GATE = 0.016
RING_SIDE = 224  # px: the crop the ring penalty measures on

__all__ = ["REACH", "MIN_STRUCTURE", "STRUCTURE_SIDE", "MIN_SIDE", "PENALTY_SIDE", "UNIT", "CAPS",
           "FLOORS", "RING_GATE", "RING_SIDE", "ringed", "periodic_component", "remove_rings",
           "undo_offset", "gradient_spread", "search", "centre_offset", "penalty_offset",
           "measurable", "measured_side", "min_structure", "NOTE_OFFSET", "offset_note"]


def measurable(height: int, width: int) -> bool:
    """Whether a (height, width) slice is large enough to be searched."""
    return min(height, width) >= MIN_SIDE


def measured_side(height: int, width: int) -> int:
    """The side of the centred square `penalty_offset` measures in a (height, width) slice:
    the penalty's fit for that size applies (`penalties.Penalty.at`)."""
    return view_check.square_side(height, width, PENALTY_SIDE)


def min_structure(height: int, width: int) -> float:
    """The least structure (`search`) for an offset to count in a (height, width) slice."""
    return MIN_STRUCTURE * STRUCTURE_SIDE / min(height, width)


def periodic_component(image: jax.Array) -> jax.Array:
    """The periodic part of an (H, W) image (Moisan's periodic plus smooth decomposition): the
    image less the smooth image whose Laplacian is the jump across the frame's opposite edges,
    so its Fourier transform has no cross along the axes from those jumps."""
    height, width = image.shape
    boundary = jnp.zeros_like(image)
    boundary = boundary.at[0, :].add(image[-1, :] - image[0, :])
    boundary = boundary.at[-1, :].add(image[0, :] - image[-1, :])
    boundary = boundary.at[:, 0].add(image[:, -1] - image[:, 0])
    boundary = boundary.at[:, -1].add(image[:, 0] - image[:, -1])
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    laplacian = 2 * np.cos(2 * np.pi * rows / height) + 2 * np.cos(2 * np.pi * cols / width) - 4
    laplacian[0, 0] = 1.0  # the mean is the periodic part's
    smooth = jnp.fft.fft2(boundary) / jnp.asarray(laplacian, jnp.float32)
    smooth = smooth.at[0, 0].set(0.0)
    return image - jnp.real(jnp.fft.ifft2(smooth)).astype(image.dtype)


def _ring_geometry(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Each pixel's (quadrant, annulus) segment about the slice's centre, the pixels of each
    segment (at least 1), the non-empty segment standing in for each segment (the nearest
    inward, else outward, annulus of the same quadrant), and the annuli per quadrant. Shapes
    are static, so this is numpy."""
    rows, cols = np.meshgrid(np.arange(height) - (height - 1) / 2.0,
                             np.arange(width) - (width - 1) / 2.0, indexing="ij")
    annulus = np.floor(np.hypot(rows, cols) / RING_BIN_WIDTH).astype(np.int64)
    bins = int(annulus.max()) + 1
    quadrant = 2 * (rows >= 0) + (cols >= 0)
    segment = quadrant * bins + annulus
    counts = np.bincount(segment.ravel(), minlength=4 * bins).reshape(4, bins)
    stand_in = np.empty((4, bins), np.int64)
    for index in range(4):
        filled = np.flatnonzero(counts[index])
        nearest = np.abs(np.arange(bins)[:, None] - filled[None, :]).argmin(axis=1)
        stand_in[index] = index * bins + filled[nearest]
    return segment.ravel(), np.maximum(counts.ravel(), 1), stand_in.ravel(), bins


def remove_rings(image: jax.Array) -> jax.Array:
    """An (H, W) slice less its rings about the centre: in each quadrant, the radial profile's
    fine detail (the mean in annuli of half a pixel less the running mean of its running
    median, each over 4.5 px), much as `tiqa.ring_check` measures rings. A detector pixel's
    half circle lies in two quadrants of one half, so each quadrant holds its rings whichever
    way the first projection lies."""
    height, width = image.shape
    segment, count, stand_in, bins = _ring_geometry(height, width)
    total = jax.ops.segment_sum(image.ravel(), jnp.asarray(segment), num_segments=4 * bins)
    profiles = (total / jnp.asarray(count, jnp.float32))[jnp.asarray(stand_in)].reshape(4, bins)
    half = RING_DETAIL_BINS // 2

    def running(values, statistic):
        padded = jnp.pad(values, ((0, 0), (half, half)), mode="edge")
        return statistic(jnp.stack([padded[:, start:start + bins]
                                    for start in range(RING_DETAIL_BINS)], axis=-1), axis=-1)

    # The median keeps an edge of the sample as a step; its running mean then smooths the
    # median's own jumps, which follow the rings when a ring lies at every radius.
    baseline = running(running(profiles, jnp.median), jnp.mean)
    detail = (profiles - baseline).ravel()
    return image - detail[jnp.asarray(segment)].reshape(height, width)


def _frequencies(height: int, width: int, split_rows: bool):
    """The (H, W) frequencies along rows and columns (cycles per px) and the signed radius w
    of each: +|k| on the half plane of projection angles [0, 180), -|k| on the other. With
    `split_rows` the first projection's direction is along the columns' axis (the halves meet
    on the row frequency 0), else along the rows'."""
    along_rows = np.fft.fftfreq(height)[:, None] * np.ones((1, width))
    along_cols = np.ones((height, 1)) * np.fft.fftfreq(width)[None, :]
    first, second = (along_cols, along_rows) if split_rows else (along_rows, along_cols)
    upper = (second > 0) | ((second == 0) & (first >= 0))
    radius = np.hypot(along_rows, along_cols)
    return along_rows, along_cols, np.where(upper, radius, -radius)


def undo_offset(spectrum: jax.Array, signed_radius: jax.Array, offset) -> jax.Array:
    """The spectrum of a slice with a centre offset of `offset` px undone (the inverse all-pass
    filter)."""
    return spectrum * jnp.exp(2j * jnp.pi * offset * signed_radius)


def gradient_spread(spectrum: jax.Array, along_rows, along_cols, smooth) -> jax.Array:
    """Mean over root mean square of the smoothed gradient's magnitude of a slice given by its
    spectrum (smaller: sparser). `smooth` is the Gaussian's transfer function, 0 on the
    Nyquist row and column so that the spectrum stays Hermitian and one inverse transform
    gives both derivatives (real part: along columns, imaginary: along rows)."""
    both = jnp.fft.ifft2(spectrum * smooth * 2j * jnp.pi * (along_cols + 1j * along_rows))
    magnitude = jnp.abs(both)
    return magnitude.mean() / jnp.sqrt(jnp.mean(magnitude ** 2))


def _search(spectrum, along_rows, along_cols, signed_radius, smooth) -> tuple[jax.Array, jax.Array]:
    """(offset, structure): the offset (px) whose undoing leaves the sparsest gradient, by a
    coarse grid over +-REACH, a fine grid over one coarse step each way of its best, and a
    parabola through the fine best and its neighbours (0 when the coarse best is at either end
    of the range); and how much the sparsity varies over the coarse grid (its range over its
    least), the evidence that the slice holds edges the offset moves."""
    def spread(offset):
        return gradient_spread(undo_offset(spectrum, signed_radius, offset), along_rows,
                               along_cols, smooth)

    steps = int(round(REACH / COARSE_STEP))
    coarse = jnp.arange(-steps, steps + 1, dtype=jnp.float32) * COARSE_STEP
    coarse_spread = jax.vmap(spread)(coarse)
    best = jnp.argmin(coarse_spread)
    fine_steps = int(round(COARSE_STEP / FINE_STEP))
    fine = coarse[best] + jnp.arange(-fine_steps, fine_steps + 1, dtype=jnp.float32) * FINE_STEP
    fine_spread = jax.vmap(spread)(fine)
    index = jnp.clip(jnp.argmin(fine_spread), 1, 2 * fine_steps - 1)
    left, middle, right = fine_spread[index - 1], fine_spread[index], fine_spread[index + 1]
    curvature = left - 2 * middle + right
    vertex = jnp.where(curvature > 0, 0.5 * (left - right) / jnp.where(curvature > 0, curvature,
                                                                        1.0), 0.0)
    found = fine[index] + FINE_STEP * jnp.clip(vertex, -1.0, 1.0)
    at_end = (best == 0) | (best == coarse.shape[0] - 1)
    structure = (coarse_spread.max() - coarse_spread.min()) / coarse_spread.min()
    return jnp.where(at_end, 0.0, found), structure


def _both_directions(image: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(2,) offsets and (2,) structures of one slice, the first projection along the columns'
    axis, then along the rows'."""
    height, width = image.shape
    clean = periodic_component(remove_rings(image.astype(jnp.float32)))
    spectrum = jnp.fft.fft2(clean)
    found, structure = [], []
    for split_rows in (True, False):
        along_rows, along_cols, signed_radius = _frequencies(height, width, split_rows)
        smooth = np.exp(-2 * np.pi ** 2 * GRADIENT_SIGMA ** 2 * (along_rows ** 2 + along_cols ** 2))
        smooth[np.abs(along_rows) == 0.5] = 0.0  # the Nyquist row and column (even sides)
        smooth[np.abs(along_cols) == 0.5] = 0.0
        offset, evidence = _search(spectrum, *(jnp.asarray(a, jnp.float32) for a in
                                               (along_rows, along_cols, signed_radius, smooth)))
        found.append(offset)
        structure.append(evidence)
    return jnp.stack(found), jnp.stack(structure)


def _check_shape(images) -> None:
    if not measurable(*images.shape[-2:]):
        raise ValueError(f"a {images.shape[-2]}x{images.shape[-1]} slice is too small for the "
                         f"centre check (at least {MIN_SIDE} px a side)")


@jax.jit
def search(images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(N, H, W) slices -> the search's (N, 2) offsets (px) and (N, 2) structures, for the first
    projection along the columns' axis and along the rows' (`centre_offset` keeps one)."""
    images = jnp.asarray(images, jnp.float32)
    _check_shape(images)
    return jax.lax.map(_both_directions, images)


@jax.jit
def centre_offset(images: jax.Array) -> jax.Array:
    """(N, H, W) reconstructed slices (any grey scale) -> (N,) estimated rotation-centre
    offsets in px, signed (module docstring): of the two directions searched, the larger
    offset found where the slice shows at least `min_structure`; 0 where none is found."""
    found, structure = search(images)
    found = jnp.where(structure >= min_structure(*images.shape[-2:]), found, 0.0)
    return jnp.where(jnp.abs(found[:, 0]) >= jnp.abs(found[:, 1]), found[:, 0], found[:, 1])


def ringed(slices) -> jax.Array:
    """(N, H, W) slices -> (N,) whether their rings are too heavy for an offset to count: the
    ring amplitude of the centred square of up to RING_SIDE px above RING_GATE (False for a
    square too small to measure rings on)."""
    square = view_check.square_side(*slices.shape[-2:], RING_SIDE)
    if not ring_check.measurable(square, square):
        return jnp.zeros(slices.shape[:-2], bool)
    return ring_check.ring_amplitude(view_check.centred_square(slices, RING_SIDE)) > RING_GATE


def penalty_offset(slices) -> jax.Array:
    """(N, H, W) whole slices -> (N,) `centre_offset` of their centred squares of up to
    PENALTY_SIDE px at their own pixels, 0 where the slice is `ringed`: what the centre penalty
    counts."""
    found = centre_offset(view_check.centred_square(slices, PENALTY_SIDE))
    return jnp.where(ringed(slices), 0.0, found)


def offset_note(offsets: list[float | None]) -> str:
    """One line on the slices' estimated rotation-centre offsets (None: not measured): how many
    read more than NOTE_OFFSET px, and their median."""
    measured = [abs(offset) for offset in offsets if offset is not None]
    if not measured:
        return "rotation centre: no slice was large enough to be checked."
    off = [offset for offset in measured if offset > NOTE_OFFSET]
    if not off:
        return (f"rotation centre: no slice of {len(measured)} reads an offset above "
                f"{NOTE_OFFSET:g} px.")
    return (f"rotation centre: {len(off)} of {len(measured)} slice(s) read an offset above "
            f"{NOTE_OFFSET:g} px (median {float(np.median(off)):.1f} px). A misplaced axis "
            "doubles edges; heavily blurred slices can read so without one (tiqa/centre_check.py).")
