"""The one evaluation forward of every network here (score network, EfficientNet, D-LinkNet).

Evaluation mode means dropout off and BatchNorm on its stored statistics. The graph is a static
argument, so each network and input shape compiles once, and the function may be called inside
another jitted function (the slice scorer's resize and crops) as well as on its own.
"""

from __future__ import annotations

import functools

import jax
from flax import nnx


@functools.partial(jax.jit, static_argnums=0)
def eval_forward(graphdef: nnx.GraphDef, params: nnx.State, batch_stats: nnx.State,
                 images: jax.Array) -> jax.Array:
    """`model(images, train=False)` of the network split as (graphdef, params, batch_stats)."""
    return nnx.merge(graphdef, params, batch_stats)(images, train=False)
