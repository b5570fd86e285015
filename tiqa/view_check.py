"""A no-reference check of angular sampling: how many views a reconstructed slice was made from,
when they were too few.

Filtered back-projection of V parallel-beam views over 180 degrees is a sum of V back-projected
ridges, so the slice's spectrum lies on V lines through the origin, at the view angles (Fourier
slice theorem). With enough views the lines overlap into the full plane; with too few they are
apart wherever the arc between neighbours, r x pi / V frequency bins at radius r, is wider
than about 1.5 bins, and the angular profile of the power spectrum there repeats every
180 / V degrees. The measure is the magnitude of that repetition: the angular Fourier
coefficient of harmonic 2V (period pi / V in the spectrum's angle) of the log power spectrum,
z-normalised in annuli of half a bin so the object's own radial fall-off does not count,
summed over the radii where the lines are apart and divided by the square root of the number of
pixels summed (about 1 per V for pure texture). The largest over V (3 to 10 on fully sampled
slices) says how strong the comb is and at how many views.

This sees angular undersampling that the score network orders poorly at the scored scale
(docs/acquisition_ladder.md): in a 256 px square, 180 views and fewer stand out (18 and more,
against at most 10 on fully sampled acquisitions) and the views estimate is exact; more views
than about pi x size / 3 cannot be resolved in the square at all (their lines are closer than
1.5 bins even at the highest frequency).

Two uses: a diagnostic (`view_comb` on the centred square of up to `MAX_SIDE` px: the score
CSV's `view_comb` and `views` columns, `select_filter`'s caution), and the score's view
penalty (`tiqa.penalties`, the exported model's `view_check`): score points per unit of the
comb above `THRESHOLD`, measured by `strongest_comb` on the centred square of up to
`PENALTY_SIDE` px, the whole slice of the acquisition ladders it was fitted on.

The spectrum is taken through a rotationally symmetric window (`radial_window`), so that
nothing but the slice itself puts angular structure into it (docs/acquisition_ladder.md, "The
view penalty, shipped").
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from tiqa import penalties

MIN_VIEWS = 16
MAX_SIDE = 512  # px: the centred square the spectrum is taken of
MIN_SIDE = 32  # px: below, too few annuli hold a resolved comb
LINE_GAP = 1.5  # bins between neighbouring lines for the comb to be resolved
ANNULUS = 0.5  # bins: the z-normalisation's annuli
# Comb strengths above this are flagged as undersampled: well above the largest found on the
# training objects' acquisitions that are not (docs/acquisition_ladder.md, "The comb of sparse
# views as a diagnostic").
THRESHOLD = 12.0
_BLOCK = 32  # consecutive V computed by rotation from one exact start
TAPER = 0.5  # the outer part of the window's radius that tapers to 0 (`radial_window`)
# The view penalty's square: the side of the acquisition-ladder slices it is fitted on
# (configs/calibrate.py's output_size), so a slice is measured as calibrated whatever its size.
PENALTY_SIDE = 256
UNIT = "comb strength"  # what the penalty's slope is per unit of (penalties.Penalty.describe)
# The penalty's floor is the diagnostic's threshold (`penalties.fit_penalty` fits the slope
# and picks a cap): below it a comb is what fully sampled slices show.
FLOORS = (THRESHOLD,)
CAPS = (20.0, 40.0, 80.0, penalties.NO_CAP)

__all__ = ["MIN_VIEWS", "MIN_SIDE", "MAX_SIDE", "THRESHOLD", "PENALTY_SIDE", "UNIT", "CAPS",
           "FLOORS", "square_side", "measurable", "max_views", "candidate_views",
           "comb_strengths", "strongest_comb", "penalty_comb", "view_comb", "undersampled",
           "sampling_note"]


def square_side(height: int, width: int, max_side: int = MAX_SIDE) -> int:
    """The side of the centred square the comb is measured on: even, at most `max_side`."""
    side = min(height, width, max_side)
    return side - side % 2


def max_views(side: int) -> int:
    """The most views whose spectral lines are resolved in a `side` px square: their gap at
    the highest radius, side / 2 bins, is `LINE_GAP` bins."""
    return int(math.floor(math.pi * (side / 2) / LINE_GAP))


def _spectrum_polar(side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radius (bins), angle (radians) and half-bin annulus index of each frequency of a
    `side` x `side` FFT, in its own (unshifted) order."""
    k = np.fft.fftfreq(side) * side
    ky, kx = np.meshgrid(k, k, indexing="ij")
    radius = np.hypot(ky, kx)
    angle = np.arctan2(ky, kx)
    return radius, angle, np.floor(radius / ANNULUS).astype(np.int32)


def radial_window(side: int) -> np.ndarray:
    """The (side, side) window the spectrum is taken through: 1 inside half the inscribed
    circle's radius, a cosine taper to 0 at the circle, 0 beyond (a radial Tukey window).

    Rotationally symmetric, because the measure looks for angular structure: a separable
    window (a Hann in rows times one in columns) leaks the object's low frequencies along the
    two axes, a cross whose log spectrum has every harmonic of 4 theta; on slices with little
    high-frequency content (a Gaussian blur of 6.5 px and more) that cross measured 12 to 20,
    as if made from 16 to 20 views. The flat centre keeps the lines sharp: 180 views in a
    256 px square measure about twice as much as through a Hann window.
    """
    centre = (side - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(side) - centre, np.arange(side) - centre, indexing="ij")
    radius = np.hypot(rows, cols) / (side / 2.0)
    taper = np.clip((radius - (1.0 - TAPER)) / TAPER, 0.0, 1.0)
    return np.where(radius < 1.0, 0.5 * (1.0 + np.cos(np.pi * taper)), 0.0)


def candidate_views(side: int) -> np.ndarray:
    """The numbers of views looked for in a `side` px square: MIN_VIEWS .. max_views(side)."""
    return np.arange(MIN_VIEWS, max_views(side) + 1)


@jax.jit
def comb_strengths(image: jax.Array) -> jax.Array:
    """(V,) comb strength of a (side, side) square for each of `candidate_views(side)`."""
    side = image.shape[0]
    radius, angle, annulus = _spectrum_polar(side)
    window = jnp.asarray(radial_window(side), image.dtype)
    windowed = (image - jnp.sum(image * window) / jnp.sum(window)) * window
    log_power = jnp.log(jnp.abs(jnp.fft.fft2(windowed)) ** 2 + 1e-12)
    # z-normalise within annuli: the spectrum's fall-off with radius is the object's, not a comb.
    count = np.bincount(annulus.ravel(), minlength=annulus.max() + 1).astype(np.float32)
    flat, ids = log_power.ravel(), jnp.asarray(annulus.ravel())
    mean = jnp.zeros(count.shape).at[ids].add(flat) / np.maximum(count, 1)
    var = jnp.zeros(count.shape).at[ids].add(flat ** 2) / np.maximum(count, 1) - mean ** 2
    z = (flat - mean[ids]) / jnp.sqrt(jnp.maximum(var[ids], 1e-12))
    # Only inside the inscribed circle (the corners are not full annuli) and away from the
    # lowest frequencies (the window's own leakage): those pixels alone are kept.
    kept = np.flatnonzero((radius.ravel() <= side / 2) & (radius.ravel() >= 4.0))
    z, r = z[kept], jnp.asarray(radius.ravel()[kept])
    theta = angle.ravel()[kept]
    views = candidate_views(side)
    blocks = -(-len(views) // _BLOCK)
    # Harmonic 2V for consecutive V by rotating e^(2iV theta) by e^(2i theta) at each step, not by
    # evaluating cos and sin again (four times faster); exact values start each block, so the
    # rounding of the rotations stays within _BLOCK steps.
    step_cos, step_sin = jnp.asarray(np.cos(2 * theta)), jnp.asarray(np.sin(2 * theta))
    theta = jnp.asarray(theta)

    def block(first):
        def step(carry, v):
            cos, sin = carry
            used = r >= LINE_GAP * v / math.pi
            weight = jnp.where(used, z, 0.0)
            total = jnp.hypot(jnp.sum(weight * cos), jnp.sum(weight * sin))
            rotated = (cos * step_cos - sin * step_sin, sin * step_cos + cos * step_sin)
            return rotated, total / jnp.sqrt(jnp.maximum(jnp.sum(used), 1))

        start = (jnp.cos(2.0 * first * theta), jnp.sin(2.0 * first * theta))
        return jax.lax.scan(step, start, first + jnp.arange(_BLOCK, dtype=jnp.float32))[1]

    firsts = jnp.asarray(views[0] + _BLOCK * np.arange(blocks), jnp.float32)
    return jax.lax.map(block, firsts).ravel()[:len(views)]


def measurable(height: int, width: int) -> bool:
    """Whether a (height, width) slice is large enough for the comb (`MIN_SIDE`)."""
    return square_side(height, width) >= MIN_SIDE


def centred_square(images, max_side: int = MAX_SIDE):
    """The centred square of (..., H, W) slices that the comb is measured on (side
    `square_side`); a ValueError naming the shape when it is under `MIN_SIDE`."""
    height, width = images.shape[-2:]
    side = square_side(height, width, max_side)
    if not measurable(height, width):
        raise ValueError(f"the view check needs slices of at least {MIN_SIDE} px a side, got "
                         f"{tuple(images.shape)}")
    top, left = (height - side) // 2, (width - side) // 2
    return images[..., top:top + side, left:left + side]


@jax.jit
def strongest_comb(squares: jax.Array) -> jax.Array:
    """(N, side, side) squares -> (N,) strength of each one's strongest comb, on the device
    (the view penalty's measure, inside the scoring path's jit)."""
    # Vectorised over 16 squares at a time: four times faster than one by one on the CPU, and
    # a bounded memory however many squares come.
    return jax.lax.map(lambda square: jnp.max(comb_strengths(square)), squares, batch_size=16)


def penalty_comb(slices) -> jax.Array:
    """(N, H, W) whole slices -> (N,) `strongest_comb` of their centred squares of up to
    PENALTY_SIDE px at their own pixels: what the view penalty counts (calibrated on 256 px
    acquisitions, so a slice is measured as calibrated whatever its size)."""
    return strongest_comb(centred_square(slices, PENALTY_SIDE))


def view_comb(image, max_side: int = MAX_SIDE) -> tuple[float, int]:
    """(strength, views) of the strongest angular comb in the centred square (at most
    `max_side` px) of a (H, W) slice: about 3 to 10 for a fully sampled slice, tens for one made
    from too few views."""
    image = np.asarray(image, np.float32)
    if image.ndim != 2:
        raise ValueError(f"view_comb takes one (H, W) slice, got shape {image.shape}")
    square = centred_square(image, max_side)
    side = square.shape[0]
    strengths = np.asarray(comb_strengths(jnp.asarray(square)))
    best = int(np.argmax(strengths))
    return float(strengths[best]), int(candidate_views(side)[best])


def undersampled(strength: float, threshold: float = THRESHOLD) -> bool:
    """Whether a comb this strong says the slice was made from too few views."""
    return strength > threshold


def sampling_note(views: list[int | None]) -> str:
    """One line on the slices' angular sampling, from each slice's views when undersampled
    (`view_comb`'s views where `undersampled`, else None): how many look made from too few
    views, and how many views they show."""
    flagged = [count for count in views if count is not None]
    if not flagged:
        return f"angular sampling: no slice of {len(views)} looks made from too few views."
    found = ", ".join(f"{count} ({flagged.count(count)})" for count in sorted(set(flagged)))
    return (f"angular sampling: {len(flagged)} of {len(views)} slice(s) look made from too few "
            f"views; views found (slices): {found}. The score orders such scans poorly at "
            "the scored scale (docs/acquisition_ladder.md).")
