"""Attenuation objects for simulated acquisitions, with the variety of real samples.

Three sources, each turned into a square (N, N) attenuation map whose inscribed circle is the
scanned sample:

* grey slices (real reconstructions in [0, 1]): a random zoom and window, a random gamma;
* label maps (segmented microstructures): a random attenuation per phase, kept apart so the
  phases stay distinct, and optional smooth texture inside the phases;
* the project's synthetic electrodes (`tiqa.phantom`).

Every object is then scaled so that a ray through the centre is attenuated by a random total
line integral (`TRANSMISSION_RANGE`), so the ladders span dense and light samples alike. The
point of the variety is that "clean" is never the same as "smooth": a score trained on these
must read acquisition quality, not resemblance to one kind of texture.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
from scipy import ndimage

from tiqa import io, phantom

# Total line integral through the centre of an object: exp(-0.5) to exp(-2.5) transmitted.
TRANSMISSION_RANGE = (0.5, 2.5)
ZOOM_RANGE = (0.75, 1.5)
GAMMA_RANGE = (0.7, 1.4)
# Phases of a label map get attenuations in [0, 1] at least this far apart.
MIN_PHASE_GAP = 0.15
TEXTURE_RANGE = (0.02, 0.12)  # relative amplitude of smooth texture inside the phases
KINDS = ("grey", "label_map", "phantom")

__all__ = ["KINDS", "Collection", "collect", "from_grey", "from_labels", "from_phantom", "scale_to_transmission",
           "read_label_map", "inside_circle"]


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


def _zoom_and_crop(image: np.ndarray, size: int, rng: np.random.Generator, order: int
                   ) -> np.ndarray:
    """A random (size, size) window of `image` zoomed by a random factor (at least enough to
    cover the window)."""
    factor = max(rng.uniform(*ZOOM_RANGE), size / min(image.shape))
    zoomed = ndimage.zoom(image, factor, order=order, mode="nearest", grid_mode=True)
    top = rng.integers(0, zoomed.shape[0] - size + 1)
    left = rng.integers(0, zoomed.shape[1] - size + 1)
    return zoomed[top:top + size, left:left + size]


def _transmission(rng: np.random.Generator) -> float:
    return float(rng.uniform(*TRANSMISSION_RANGE))


def from_grey(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """An object from a grey slice in [0, 1]: random zoom, window and gamma."""
    window = np.clip(_zoom_and_crop(np.asarray(image, np.float64), size, rng, order=1), 0, 1)
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


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / max(field.std(), 1e-12)


def from_labels(labels: np.ndarray, size: int, rng: np.random.Generator,
                texture: bool | None = None) -> np.ndarray:
    """An object from an integer label map: random attenuation per phase, optional texture
    (None: a coin toss)."""
    window = _zoom_and_crop(np.asarray(labels), size, rng, order=0)
    phases, index = np.unique(window, return_inverse=True)
    values = _phase_values(len(phases), rng)[index.reshape(window.shape)]
    if values.max() <= 0:
        values = values + 0.5
    if texture is None:
        texture = bool(rng.random() < 0.5)
    if texture:
        amplitude = rng.uniform(*TEXTURE_RANGE)
        values = values * (1.0 + amplitude * _smooth_field(rng, window.shape, rng.uniform(1, 4)))
    return scale_to_transmission(np.maximum(values, 0.0), _transmission(rng))


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


def collect(grey: str, label_maps: str, phantoms: int, phantom_seed: int, size: int, seed: int,
            *, label_map_slices: int = 0, label_texture: bool | None = None) -> Collection:
    """Objects from comma-separated grey slices and label maps (`label_map_slices` evenly
    spaced pages of each, 0: all) and `phantoms` phantoms of seeds from `phantom_seed`, in
    that order, all random draws from one generator of `seed`. Empty lists give no objects."""
    rng = np.random.default_rng(seed)
    attenuation, kinds, sources = [], [], []

    def source(item: io.Item) -> str:
        return f"{item[0]}" + ("" if item[1] is None else f"[{item[1]}]")

    for path in io.split_paths(grey):
        for item in io.list_inputs(path):
            attenuation.append(from_grey(io.read_item(item), size, rng))
            kinds.append("grey")
            sources.append(source(item))
    for path in io.split_paths(label_maps):
        for item in evenly_spaced(io.list_inputs(path), label_map_slices):
            attenuation.append(from_labels(read_label_map(item), size, rng, label_texture))
            kinds.append("label_map")
            sources.append(source(item))
    for index in range(phantoms):
        attenuation.append(from_phantom(phantom_seed + index, size, rng))
        kinds.append("phantom")
        sources.append(str(phantom_seed + index))
    stacked = np.stack(attenuation) if attenuation else np.zeros((0, size, size), np.float32)
    return Collection(stacked, tuple(kinds), tuple(sources))
