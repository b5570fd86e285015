"""Training batches, made on the accelerator from a pool of resized reference slices.

Every step draws its originals from a per-epoch permutation, takes fresh random crops and
fresh noise and ring radii (SPEC.md 1.4), all from `fold_in(key, step)`: a batch is a pure
function of the step, which is what makes resuming exact.
"""

from __future__ import annotations

import functools
import logging
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tiqa import distortions, io, labels, phantom


class ReferencePool(NamedTuple):
    """Resized reference slices padded to one shape, with their true sizes and scores."""

    images: jax.Array  # (S, H_max, W_max) float32 in [0, 1], zero beyond each slice
    heights: jax.Array  # (S,) int32
    widths: jax.Array  # (S,) int32
    scores: jax.Array  # (S,) float32 human (or prior) scores S0


def build_pool(slices: Sequence[np.ndarray], scores: Sequence[float], resize: int, crop: int
               ) -> ReferencePool:
    """Resizes each slice's shorter side to `resize` (area) and pads them to a common shape."""
    if not slices:
        raise ValueError("no reference slices to train on")
    resized = [np.asarray(io.resize_short_side(s, resize)) if resize else np.asarray(s)
               for s in slices]
    too_small = [i for i, r in enumerate(resized) if min(r.shape) < crop]
    if too_small:
        raise ValueError(f"slice(s) {too_small} are smaller than the {crop} px crop after resizing")
    height = max(r.shape[0] for r in resized)
    width = max(r.shape[1] for r in resized)
    images = np.zeros((len(resized), height, width), np.float32)
    for index, image in enumerate(resized):
        images[index, :image.shape[0], :image.shape[1]] = image
    return ReferencePool(
        images=jnp.asarray(images),
        heights=jnp.asarray([r.shape[0] for r in resized], jnp.int32),
        widths=jnp.asarray([r.shape[1] for r in resized], jnp.int32),
        scores=jnp.asarray(np.asarray(scores, np.float32)))


def load_reference_slices(config) -> tuple[list[np.ndarray], list[str]]:
    """Slices from `config.input` (a slice, volume or folder) and/or phantom slices.

    The phantom (a simulated scan of a synthetic electrode, `config.phantom`) is used alone
    when `input` is empty (smoke runs, demos) and added to the input's slices when
    `config.phantom.mix_with_input` is set. Returns (slices in [0, 1], source names).
    """
    slices, sources = [], []
    if config.input:
        for path in str(config.input).split(","):
            for source, index in io.list_inputs(path.strip()):
                slices.append(io.read_item((source, index)))
                sources.append(str(source))
    if not config.input or config.phantom.mix_with_input:
        reconstruction, _, _ = phantom.phantom_volume(
            config.seed, n_slices=config.phantom.slices, size=config.phantom.size,
            photons=config.phantom.photons, gain_error_std=config.phantom.gain_error_std)
        low, high = np.percentile(reconstruction, [0.5, 99.5])
        volume = np.clip((reconstruction - low) / (high - low), 0.0, 1.0)
        slices += list(volume)
        sources += [f"phantom-{config.seed}"] * len(volume)
    return slices, sources


def first_originals(pool: ReferencePool, count: int) -> ReferencePool:
    """The pool limited to its first `count` slices (0: all of them).

    The order is `load_reference_slices`'s: the input's slices in the order listed, then the
    phantom's, so with the phantom mixed in the input's slices are kept first. A count beyond
    the pool keeps the whole pool, with a warning.
    """
    size = pool.images.shape[0]
    if count < 0:
        raise ValueError(f"originals must be 0 (all) or a positive number of slices, got {count}")
    if count > size:
        logging.warning("originals=%d but the pool has %d slices; using all of them", count, size)
    if count == 0 or count >= size:
        return pool
    return ReferencePool(*(field[:count] for field in pool))


def pool_from_config(config, scores_for_sources) -> ReferencePool:
    slices, sources = load_reference_slices(config)
    scores = scores_for_sources(sources)
    logging.info("reference pool: %d slices from %s", len(slices), config.input or "the phantom")
    return build_pool(slices, scores, config.resize, config.crop)


def _random_crop(key: jax.Array, image: jax.Array, height: jax.Array, width: jax.Array,
                 size: int) -> jax.Array:
    top_key, left_key = jax.random.split(key)
    top = jax.random.randint(top_key, (), 0, height - size + 1)
    left = jax.random.randint(left_key, (), 0, width - size + 1)
    return jax.lax.dynamic_slice(image, (top, left), (size, size))


def _originals(pool: ReferencePool, step: jax.Array, key: jax.Array, originals_per_batch: int,
               crop: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(crops (G, crop, crop), scores (G,), distortion keys (G,)) for this step."""
    count = pool.images.shape[0]
    steps_per_epoch = -(-count // originals_per_batch)
    epoch, position = step // steps_per_epoch, step % steps_per_epoch
    order = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, 0), epoch), count)
    index = order[(position * originals_per_batch + jnp.arange(originals_per_batch)) % count]
    step_key = jax.random.fold_in(jax.random.fold_in(key, 1), step)
    crop_key, distortion_key = jax.random.split(step_key)
    crops = jax.vmap(functools.partial(_random_crop, size=crop))(
        jax.random.split(crop_key, originals_per_batch), pool.images[index],
        pool.heights[index], pool.widths[index])
    return crops, pool.scores[index], jax.random.split(distortion_key, originals_per_batch)


def steps_per_epoch(pool_size: int, originals_per_batch: int) -> int:
    return -(-pool_size // originals_per_batch)


def rank_batch(pool: ReferencePool, step: jax.Array, *, key: jax.Array, originals_per_batch: int,
               crop: int, kinds: tuple[str, ...]) -> dict[str, jax.Array]:
    """Each original with its levels 0..5 of every kind: (G K 6) images, their levels and groups.

    A group is one original under one kind (its reference and five levels), so the rank loss
    only orders images whose order is known.
    """
    crops, _, keys = _originals(pool, step, key, originals_per_batch, crop)
    images = labels.distort_all_levels(crops, keys, labels.ProjectionConfig(kinds=kinds))
    groups, num_kinds, num_levels = images.shape[:3]
    levels = jnp.broadcast_to(jnp.arange(num_levels), (groups, num_kinds, num_levels))
    group_ids = jnp.broadcast_to(jnp.arange(groups * num_kinds).reshape(groups, num_kinds, 1),
                                 (groups, num_kinds, num_levels))
    return {"images": images.reshape((-1,) + images.shape[-2:]),
            "levels": levels.reshape(-1), "group_ids": group_ids.reshape(-1)}


def finetune_batch(pool: ReferencePool, step: jax.Array, *, key: jax.Array,
                   originals_per_batch: int, crop: int,
                   projection: labels.ProjectionConfig) -> dict[str, jax.Array]:
    """Each original with its distorted versions and their projected labels (the MSE targets)."""
    crops, scores, keys = _originals(pool, step, key, originals_per_batch, crop)
    result = labels.project(crops, scores, keys, projection)
    groups, num_kinds, num_levels = result.labels.shape
    levels = jnp.broadcast_to(jnp.arange(num_levels), (groups, num_kinds, num_levels))
    return {"images": result.images.reshape((-1,) + result.images.shape[-2:]),
            "labels": result.labels.reshape(-1), "levels": levels.reshape(-1)}


def images_per_batch(originals_per_batch: int, num_kinds: int) -> int:
    return originals_per_batch * num_kinds * distortions.NUM_LEVELS
