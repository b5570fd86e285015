"""A small random score network, for tests that need a model but not a good one."""

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tiqa import checkpoints
from tiqa.models.iqa import IQAConfig, IQANet

# Grouped depthwise convolutions compile faster than the CPU's shifted slices (configs/common.py).
TINY = IQAConfig(backbone="b0", pretrained=False, hidden=(8,), depthwise="grouped",
                 trunk_overrides=(("depth", 0.25), ("width", 0.25)))


def fill_randomly(model: nnx.Module, seed: int = 0) -> nnx.Module:
    """`model` (abstract or not) with random weights and statistics drawn by numpy: the same
    numbers for any config of the same shapes, without compiling the real initialisers."""
    rng = np.random.default_rng(seed)
    for path, var in nnx.iter_graph(model):
        if not isinstance(var, (nnx.Param, nnx.BatchStat)):
            continue
        shape, name = var.get_value().shape, path[-1]
        if name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name in ("bias", "mean"):
            value = rng.normal(0.0, 0.1, shape)
        else:  # kernels: He-normal over the fan-in keeps activations O(1)
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        var.set_value(jnp.asarray(value, jnp.float32))
    return model


def probe_images(seed: int = 1, count: int = 32, size: int = 64) -> np.ndarray:
    """Grey images in [0, 1] from white noise to smooth blobs at several contrasts."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    noise = rng.random((count, size, size))
    images = np.stack([ndimage.gaussian_filter(image, sigma)
                       for image, sigma in zip(noise, np.linspace(0.0, 4.0, count))])
    low = images.min(axis=(1, 2), keepdims=True)
    images = (images - low) / np.ptp(images, axis=(1, 2), keepdims=True)
    return (images * rng.uniform(0.2, 1.0, (count, 1, 1))).astype(np.float32)


@functools.cache
def _tiny_score_variables():
    """TINY filled by numpy, its BatchNorm statistics measured on probe images (random ones
    would leave every activation near its bias: scores that barely depend on the image), and
    the output layer scaled so the probes score mean 3, std 1: scores of order one whose
    differences between images are of order one too, so tests can tell right from wrong."""
    from tiqa.models.forward import eval_forward
    from tiqa.train import loop

    graphdef, params, stats = nnx.split(fill_randomly(checkpoints.abstract_network(IQANet, TINY)),
                                        nnx.Param, nnx.BatchStat)
    probes = jnp.asarray(probe_images())
    stats = loop.population_batch_stats(graphdef, params, stats, [probes], jax.random.key(0))
    raw = np.asarray(eval_forward(graphdef, params, stats, probes), np.float64)
    slope = 1.0 / raw.std()
    output = params["output"]
    output["kernel"].set_value(output["kernel"].get_value() * slope)
    output["bias"].set_value((output["bias"].get_value() - raw.mean()) * slope + 3.0)
    return graphdef, params, stats


def export_tiny_score_model(folder: pathlib.Path) -> checkpoints.LoadedModel:
    """Exports TINY (crop 64 after resizing to 72) with weights that give scores of order one."""
    graphdef, params, stats = _tiny_score_variables()
    copy = lambda tree: jax.tree.map(lambda x: x, tree)  # callers may change theirs
    loaded = checkpoints.LoadedModel(graphdef, copy(params), copy(stats), TINY, crop=64, resize=72)
    checkpoints.save_exported(loaded, folder, card={"purpose": "tests"})
    return loaded
