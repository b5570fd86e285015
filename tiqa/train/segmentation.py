"""Training D-LinkNet on labelled slices: the segmentation half of the paper (SPEC.md 1.8).

The phase itself is `tiqa.phases.train_segmentation`, with the score network's machinery
(`loop.make_train_step`, `loop.run`); here are its batches and its loss. Batches are random crops
(a multiple of 32) with flips, 90-degree rotations and intensity jitter, made on the device
from a pool of slices and their label maps.
"""

from __future__ import annotations

import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tifffile
from PIL import Image

from tiqa import errors, io, preprocessing


class LabelledPool(NamedTuple):
    images: jax.Array  # (S, H, W) float32 in [0, 1], zero-padded to a common shape
    labels: jax.Array  # (S, H, W) int32 class labels; -1 marks padding (ignored)
    heights: jax.Array
    widths: jax.Array


def target_classes(labels: np.ndarray, num_classes: int, positive_class: int) -> np.ndarray:
    """Binary targets (label == positive_class, e.g. particle = 0 against the rest) when
    num_classes is 1, else the labels themselves."""
    if num_classes == 1:
        return (labels == positive_class).astype(np.int32)
    if labels.max() >= num_classes:
        raise errors.InputError(f"labels go up to {labels.max()}, more than num_classes={num_classes}")
    return labels.astype(np.int32)


def read_labelled_slices(image_paths: list[str], label_dir: str, label_suffix: str
                         ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Slices and their pixel-aligned label maps: `<label_dir>/<stem><label_suffix>`."""
    images, label_maps = [], []
    for path in image_paths:
        path = pathlib.Path(path)
        label_path = pathlib.Path(label_dir) / f"{path.stem}{label_suffix}"
        image = io.read_slice(path)
        try:
            if label_path.suffix.lower() in io.TIFF_EXTENSIONS:
                label = np.asarray(tifffile.imread(label_path))
            else:
                label = np.asarray(Image.open(label_path))
        except FileNotFoundError as error:
            raise io.ImageError(f"{label_path}: no label map for {path}") from error
        if label.shape != image.shape:
            raise io.ImageError(f"{label_path}: shape {label.shape} differs from {path} {image.shape}")
        images.append(image)
        label_maps.append(label)
    return images, label_maps


def build_labelled_pool(images, label_maps) -> LabelledPool:
    height = max(i.shape[0] for i in images)
    width = max(i.shape[1] for i in images)
    pixels = np.zeros((len(images), height, width), np.float32)
    targets = np.full((len(images), height, width), -1, np.int32)
    for n, (image, label) in enumerate(zip(images, label_maps)):
        pixels[n, :image.shape[0], :image.shape[1]] = image
        targets[n, :label.shape[0], :label.shape[1]] = label
    return LabelledPool(jnp.asarray(pixels), jnp.asarray(targets),
                        jnp.asarray([i.shape[0] for i in images], jnp.int32),
                        jnp.asarray([i.shape[1] for i in images], jnp.int32))


def augmented_batch(pool: LabelledPool, step: jax.Array, *, key: jax.Array, batch_size: int,
                    crop: int, jitter: float) -> dict[str, jax.Array]:
    """Random crops with flips, 90-degree rotations and intensity jitter, from fold_in(key, step)."""
    step_key = jax.random.fold_in(key, step)
    keys = jax.random.split(step_key, batch_size)

    def one(sample_key):
        (pick, top_key, left_key, up_down_key, left_right_key, rotate_key, gain_key,
         bias_key) = jax.random.split(sample_key, 8)
        index = jax.random.randint(pick, (), 0, pool.images.shape[0])
        # Not pix.random_crop: the corner must lie within this slice's own extent in the
        # zero-padded pool, and the label map is cut at the same corner.
        top = jax.random.randint(top_key, (), 0, pool.heights[index] - crop + 1)
        left = jax.random.randint(left_key, (), 0, pool.widths[index] - crop + 1)
        image = jax.lax.dynamic_slice(pool.images[index], (top, left), (crop, crop))
        label = jax.lax.dynamic_slice(pool.labels[index], (top, left), (crop, crop))
        dihedral_keys = (up_down_key, left_right_key, rotate_key)
        image = preprocessing.random_dihedral(dihedral_keys, image)
        label = preprocessing.random_dihedral(dihedral_keys, label)
        # Intensity jitter: contrast and brightness, as scans differ from one another.
        gain = 1.0 + jitter * jax.random.uniform(gain_key, (), minval=-1.0, maxval=1.0)
        bias = jitter * jax.random.uniform(bias_key, (), minval=-1.0, maxval=1.0)
        image = jnp.clip((image - 0.5) * gain + 0.5 + bias, 0.0, 1.0)
        return image, label

    images, labels = jax.vmap(one)(keys)
    return {"images": images, "labels": labels}


def segmentation_loss(logits: jax.Array, labels: jax.Array, *, bce_weight: float,
                      dice_weight: float) -> tuple[jax.Array, dict]:
    """BCE (or softmax cross-entropy) + (1 - soft Dice); pixels labelled -1 are ignored."""
    valid = (labels >= 0).astype(jnp.float32)
    num_classes = logits.shape[-1]
    if num_classes == 1:
        target = (labels == 1).astype(jnp.float32)
        logit = logits[..., 0]
        cross_entropy = optax.sigmoid_binary_cross_entropy(logit, target)
        probability = jax.nn.sigmoid(logit)
        overlap = jnp.sum(probability * target * valid)
        dice = (2 * overlap + 1.0) / (jnp.sum(probability * valid) + jnp.sum(target * valid) + 1.0)
    else:
        target = jax.nn.one_hot(jnp.maximum(labels, 0), num_classes)
        cross_entropy = optax.softmax_cross_entropy(logits, target)
        probability = jax.nn.softmax(logits, axis=-1)
        overlap = jnp.sum(probability * target * valid[..., None], axis=(0, 1, 2))
        sizes = jnp.sum((probability + target) * valid[..., None], axis=(0, 1, 2))
        dice = jnp.mean((2 * overlap + 1.0) / (sizes + 1.0))
    bce = jnp.sum(cross_entropy * valid) / jnp.maximum(jnp.sum(valid), 1.0)
    loss = bce_weight * bce + dice_weight * (1.0 - dice)
    return loss, {"cross_entropy": bce, "dice": dice}
