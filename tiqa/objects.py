"""Attenuation objects for simulated acquisitions, with the variety of real samples.

Three sources, each turned into a square (N, N) attenuation map whose inscribed circle is the
scanned sample:

* grey slices (real reconstructions in [0, 1]): a random zoom and window, a random gamma;
* label maps (segmented microstructures): a random attenuation per phase, kept apart so the
  phases stay distinct, and optional smooth texture inside the phases;
* smooth label maps: a label map drawn as a grey slice with soft phase boundaries, texture
  inside the phases and a faint grain (`smooth_from_labels`), then treated as a grey slice.
  Real slices can be this smooth: sub-volume B's nano-CT slices are best explained by their
  own label maps blurred with a Gaussian of 6 to 10 px, and a score trained only on sharp
  objects reads their soft edges as blur, whatever the acquisition;
* the project's synthetic electrodes (`tiqa.phantom`);
* stochastic textures (`texture_image`): 1/f^beta Gaussian fields and Voronoi "stone" cells
  with a rough fill and dark joints, drawn as grey slices. Their fine detail is the object's
  own, so its loss is blur: a score trained without them reads such texture as noise, scores a
  clean textured object "average" and reads mild blur as an improvement
  (docs/acquisition_ladder.md, "Where the 256 px validation blur is fragile").

Every object is then scaled so that a ray through the centre is attenuated by a random total
line integral (`TRANSMISSION_RANGE`), so the ladders span dense and light samples alike. The
point of the variety is that "clean" is never the same as "smooth": a score trained on these
must read acquisition quality, not resemblance to one kind of texture.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
from scipy import ndimage, spatial

from tiqa import errors, io, phantom

# Total line integral through the centre of an object: exp(-0.5) to exp(-2.5) transmitted.
TRANSMISSION_RANGE = (0.5, 2.5)
ZOOM_RANGE = (0.75, 1.5)
GAMMA_RANGE = (0.7, 1.4)
# Phases of a label map get attenuations in [0, 1] at least this far apart.
MIN_PHASE_GAP = 0.15
TEXTURE_RANGE = (0.02, 0.12)  # relative amplitude of smooth texture inside the phases
# Smooth label maps (`smooth_from_labels`), in the label map's own pixels: the Gaussian sigma of
# the soft phase boundaries, the relative amplitude and correlation length (Gaussian sigma) of
# the texture inside the phases, and the std of a faint white grain on the [0, 1] range.
SMOOTH_EDGE_RANGE = (3.0, 8.0)
SMOOTH_TEXTURE_RANGE = (0.05, 0.20)
SMOOTH_TEXTURE_SCALE = (2.0, 6.0)
SMOOTH_GRAIN_RANGE = (0.005, 0.02)
# Stochastic textures (`texture_image`): the share of fractal fields (the rest are stone cells),
# the fractal fields' spectral exponent (power ~ 1 / f^beta), the stone cells' count in a
# TEXTURE_SIDE px square and the joints' width (px), and the side they are drawn at.
FRACTAL_SHARE = 2 / 3
FRACTAL_BETA_RANGE = (1.0, 2.2)
STONE_CELLS_RANGE = (50, 220)
STONE_JOINT_RANGE = (2.0, 5.0)
TEXTURE_SIDE = 512
KINDS = ("grey", "label_map", "smooth", "phantom", "texture")
# The scale at which a slice is drawn before the random zoom: "native", its own pixels; or
# "scored", the scale at which the scoring path shows the whole slice when its short side is
# resized to the reconstruction's side (how a user's real slice of any size is scored).
SCALES = ("native", "scored")

__all__ = ["KINDS", "SCALES", "Collection", "check_scale", "collect", "from_grey", "from_labels",
           "from_phantom", "smooth_from_labels", "scale_to_transmission", "read_label_map",
           "inside_circle", "fractal_texture", "stone_texture", "texture_image"]


def inside_circle(size: int) -> np.ndarray:
    offsets = np.arange(size) - size // 2
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= (size // 2) ** 2


def scale_to_transmission(values: np.ndarray, line_integral: float) -> np.ndarray:
    """Attenuation per pixel: `values` scaled so the mean ray through the disc integrates to
    `line_integral` (the mean over the disc times its diameter)."""
    size = values.shape[0]
    mean = float(values[inside_circle(size)].mean())
    if mean <= 0:
        raise ValueError("an object with no attenuating material inside its field of view")
    return (values * (line_integral / (mean * size))).astype(np.float32)


def _zoom_and_crop(image: np.ndarray, size: int, rng: np.random.Generator, order: int,
                   base: float = 1.0, antialias: bool = False) -> np.ndarray:
    """A random (size, size) window of `image` zoomed by `base` times a random factor (at least
    enough to cover the window). With `antialias`, a shrinking zoom of grey values is
    Gaussian-prefiltered first (scikit-image's sigma (1/factor - 1)/2), so that noise is
    averaged, as the scoring path's area resize does, instead of aliased."""
    factor = max(base * rng.uniform(*ZOOM_RANGE), size / min(image.shape))
    if antialias and order > 0 and factor < 1:
        image = ndimage.gaussian_filter(image, (1.0 / factor - 1.0) / 2.0, mode="nearest")
    zoomed = ndimage.zoom(image, factor, order=order, mode="nearest", grid_mode=True)
    top = rng.integers(0, zoomed.shape[0] - size + 1)
    left = rng.integers(0, zoomed.shape[1] - size + 1)
    return zoomed[top:top + size, left:left + size]


def _transmission(rng: np.random.Generator) -> float:
    return float(rng.uniform(*TRANSMISSION_RANGE))


def scale_base(shape: tuple[int, ...], scored_size: int | None) -> float:
    """The zoom before the random one: 1 (native pixels), or the scoring path's scale of a
    whole slice of `shape` reconstructed at `scored_size` px (`scored_size / short side`)."""
    return 1.0 if scored_size is None else scored_size / min(shape[-2:])


def from_grey(image: np.ndarray, size: int, rng: np.random.Generator,
              scored_size: int | None = None) -> np.ndarray:
    """An object from a grey slice in [0, 1]: random zoom (about `scale_base`), window and
    gamma."""
    base = scale_base(np.shape(image), scored_size)
    window = np.clip(_zoom_and_crop(np.asarray(image, np.float64), size, rng, order=1, base=base,
                                    antialias=scored_size is not None), 0, 1)
    values = window ** rng.uniform(*GAMMA_RANGE)
    # A floor keeps the darkest phase (pores) slightly attenuating, as resin or electrolyte.
    values = values + rng.uniform(0.0, 0.1)
    return scale_to_transmission(values, _transmission(rng))


def _phase_values(count: int, rng: np.random.Generator) -> np.ndarray:
    for _ in range(1000):
        values = rng.uniform(0.0, 1.0, count)
        gaps = np.abs(values[:, None] - values[None, :]) + np.eye(count)
        if count < 2 or gaps.min() >= MIN_PHASE_GAP:
            return values
    raise AssertionError(f"no attenuations {MIN_PHASE_GAP} apart for {count} phases")


def _attenuation_per_phase(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random attenuation in [0, 1] per phase of `labels` (`_phase_values`), mapped onto it."""
    phases, index = np.unique(labels, return_inverse=True)
    return _phase_values(len(phases), rng)[index.reshape(np.shape(labels))]


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / max(field.std(), 1e-12)


def from_labels(labels: np.ndarray, size: int, rng: np.random.Generator,
                texture: bool | None = None, scored_size: int | None = None) -> np.ndarray:
    """An object from an integer label map: random zoom (about `scale_base`), attenuation
    per phase, optional texture (None: a coin toss)."""
    window = _zoom_and_crop(np.asarray(labels), size, rng, order=0,
                            base=scale_base(np.shape(labels), scored_size))
    values = _attenuation_per_phase(window, rng)
    if values.max() <= 0:
        values = values + 0.5
    if texture is None:
        texture = bool(rng.random() < 0.5)
    if texture:
        amplitude = rng.uniform(*TEXTURE_RANGE)
        values = values * (1.0 + amplitude * _smooth_field(rng, window.shape, rng.uniform(1, 4)))
    return scale_to_transmission(np.maximum(values, 0.0), _transmission(rng))


def smooth_from_labels(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A grey slice in [0, 1], the same shape as the integer label map `labels`: a random
    attenuation per phase (kept `MIN_PHASE_GAP` apart), phase boundaries softened by a
    Gaussian of sigma `SMOOTH_EDGE_RANGE`, texture inside the phases (`SMOOTH_TEXTURE_RANGE`
    of the local value, correlated over `SMOOTH_TEXTURE_SCALE`) and a white grain
    (`SMOOTH_GRAIN_RANGE`). `from_grey` then zooms, windows and scales it like a real slice."""
    labels = np.asarray(labels)
    # A floor keeps the darkest phase attenuating, so the texture has a value to modulate.
    values = 0.1 + _attenuation_per_phase(labels, rng)
    values = ndimage.gaussian_filter(values, rng.uniform(*SMOOTH_EDGE_RANGE), mode="nearest")
    # The texture after the boundaries are softened, so its amplitude is the one drawn.
    texture = _smooth_field(rng, labels.shape, rng.uniform(*SMOOTH_TEXTURE_SCALE))
    values = values * (1.0 + rng.uniform(*SMOOTH_TEXTURE_RANGE) * texture)
    # Divided by the maximum, not stretched to [0, 1], so phases keep their attenuation
    # ratios and the texture its relative amplitude.
    values = np.maximum(values, 0.0) / float(values.max())
    grain = rng.uniform(*SMOOTH_GRAIN_RANGE) * rng.standard_normal(labels.shape)
    return np.clip(values + grain, 0.0, 1.0)


def fractal_texture(rng: np.random.Generator, side: int, beta: float) -> np.ndarray:
    """A (side, side) Gaussian random field whose power spectrum falls as 1 / f^beta (periodic),
    with mean 0 and std 1."""
    frequency = np.hypot(np.fft.fftfreq(side)[:, None], np.fft.fftfreq(side)[None, :])
    frequency[0, 0] = 1.0  # the mean is removed below
    field = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((side, side)))
                                 / frequency ** (beta / 2)))
    return (field - field.mean()) / max(field.std(), 1e-12)


def stone_texture(rng: np.random.Generator, side: int, cells: int) -> np.ndarray:
    """A (side, side) wall of `cells` Voronoi stones: each a random level with a rough fractal
    fill, the joints (where the two nearest centres are within a random width) dark."""
    centres = rng.uniform(0, side, (cells, 2))
    rows, cols = np.mgrid[0:side, 0:side]
    distances, nearest = spatial.cKDTree(centres).query(
        np.stack([rows.ravel(), cols.ravel()], axis=1), k=2)
    joint = (distances[:, 1] - distances[:, 0]).reshape(side, side) < rng.uniform(
        *STONE_JOINT_RANGE)
    values = (rng.uniform(0.4, 0.8, cells)[nearest[:, 0]].reshape(side, side)
              + 0.12 * fractal_texture(rng, side, 1.2) + 0.05 * fractal_texture(rng, side, 0.5))
    values = np.where(joint, 0.15 + 0.05 * fractal_texture(rng, side, 1.0), values)
    return ndimage.gaussian_filter(values, 0.6)


def texture_image(rng: np.random.Generator, side: int = TEXTURE_SIDE) -> np.ndarray:
    """A stochastic texture as a grey slice in [0, 1]: a fractal field (`FRACTAL_SHARE` of
    draws) or a stone wall, stretched between its 0.5 and 99.5 percentiles."""
    if rng.random() < FRACTAL_SHARE:
        image = fractal_texture(rng, side, rng.uniform(*FRACTAL_BETA_RANGE))
    else:
        image = stone_texture(rng, side, int(rng.integers(*STONE_CELLS_RANGE)))
    low, high = np.percentile(image, (0.5, 99.5))
    return np.clip((image - low) / (high - low), 0.0, 1.0)


def from_phantom(seed: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """An object from the project's synthetic electrode (a random particle size)."""
    attenuation, _ = phantom.microstructure(seed, (size, size),
                                            radius_median=float(rng.uniform(8.0, 24.0)))
    return scale_to_transmission(attenuation, _transmission(rng))


def read_label_map(item: io.Item) -> np.ndarray:
    """Integer labels 0..K-1 of a label image or a page of a label volume, in the order of
    their stored values."""
    values = io.read_item(item, io.Normalisation(mode="minmax"))
    return np.unique(values, return_inverse=True)[1].reshape(values.shape).astype(np.int32)


def evenly_spaced(items: Sequence, count: int) -> list:
    """`count` items spread evenly over `items` (all of them when count is 0 or larger)."""
    if count <= 0 or count >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


class Collection(NamedTuple):
    attenuation: np.ndarray  # (M, size, size)
    kinds: tuple[str, ...]  # one of KINDS per object
    sources: tuple[str, ...]  # file (with [page] for a volume's page), or the phantom's seed


def check_scale(scale: str, key: str = "object scale", allowed: tuple[str, ...] = SCALES) -> None:
    """Refuses a scale outside `allowed` (SCALES, or a phase's own choices), naming `key` (a
    config key where there is one)."""
    if scale not in allowed:
        raise errors.InputError(f"{key} must be one of {allowed}, got {scale!r}")


def collect(grey: str, label_maps: str, phantoms: int, phantom_seed: int, size: int, seed: int,
            *, label_map_slices: int = 0, label_texture: bool | None = None,
            scale: str = "native", scored_size: int = 0,
            smooth_label_maps: str = "", textures: int = 0) -> Collection:
    """Objects from comma-separated grey slices, label maps and label maps drawn as smooth
    grey slices (`smooth_from_labels`; `label_map_slices` evenly spaced pages of each label
    map, 0: all), `phantoms` phantoms of seeds from `phantom_seed`, and `textures` stochastic
    textures (`texture_image`, drawn as grey slices), in that order, all random draws from one
    generator of `seed`. Empty lists give no objects.
    `scale` (SCALES) is the scale slices and label maps are drawn at; "scored" needs the
    reconstruction's side, `scored_size`."""
    check_scale(scale)
    if scale == "scored" and scored_size <= 0:
        raise errors.InputError("the 'scored' object scale needs the reconstruction's side")
    scored = scored_size if scale == "scored" else None
    rng = np.random.default_rng(seed)
    attenuation, kinds, sources = [], [], []

    def source(item: io.Item) -> str:
        return f"{item[0]}" + ("" if item[1] is None else f"[{item[1]}]")

    for path in io.split_paths(grey):
        for item in io.list_inputs(path):
            attenuation.append(from_grey(io.read_item(item), size, rng, scored))
            kinds.append("grey")
            sources.append(source(item))
    for path in io.split_paths(label_maps):
        for item in evenly_spaced(io.list_inputs(path), label_map_slices):
            attenuation.append(from_labels(read_label_map(item), size, rng, label_texture, scored))
            kinds.append("label_map")
            sources.append(source(item))
    for path in io.split_paths(smooth_label_maps):
        for item in evenly_spaced(io.list_inputs(path), label_map_slices):
            grey_slice = smooth_from_labels(read_label_map(item), rng)
            attenuation.append(from_grey(grey_slice, size, rng, scored))
            kinds.append("smooth")
            sources.append(source(item))
    for index in range(phantoms):
        attenuation.append(from_phantom(phantom_seed + index, size, rng))
        kinds.append("phantom")
        sources.append(str(phantom_seed + index))
    for index in range(textures):
        attenuation.append(from_grey(texture_image(rng), size, rng, scored))
        kinds.append("texture")
        sources.append(f"texture {index}")
    stacked = np.stack(attenuation) if attenuation else np.zeros((0, size, size), np.float32)
    return Collection(stacked, tuple(kinds), tuple(sources))
