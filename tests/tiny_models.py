"""A small random score network, for tests that need a model but not a good one."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tiqa import scoring
from tiqa.models.iqa import IQAConfig
from tiqa.train import phases

TINY = IQAConfig(backbone="b0", pretrained=False, hidden=(8,),
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


def export_tiny_score_model(folder: pathlib.Path) -> scoring.LoadedModel:
    """Exports TINY with random weights to `folder` (crop 64 after resizing to 72)."""
    graphdef, params, stats = nnx.split(phases.build_model(TINY, jax.random.key(0)),
                                        nnx.Param, nnx.BatchStat)
    loaded = scoring.LoadedModel(graphdef, params, stats, TINY, crop=64, resize=72)
    scoring.save_exported(loaded, folder, card={"purpose": "tests"})
    return loaded
