"""VGG16's convolutional body as a `flax.nnx` trunk (NHWC): the RankIQA baseline's backbone.

The layout is torchvision's `vgg16().features`: 3x3 convolutions (padding 1, with bias) and ReLU,
64 x2, max-pool, 128 x2, pool, 256 x3, pool, 512 x3, pool, 512 x3, pool (2x2, stride 2, floor
as torchvision's `ceil_mode=False`); no BatchNorm. Its 13 convolutions hold 14,714,688
parameters.

The trunk has the interface `tiqa.models.iqa.IQANet` expects of a trunk (the same as
`EfficientNet`'s): a frozen `config` with `head_width` and `dtype`, and
`features(x, *, train, key=None)` -> (N, head_width) float32.

Features: RankIQA (Liu et al., 2017) put its score head on VGG16's 4096-wide fully connected
layers (fc6, fc7), which tie the network to 224 x 224 inputs and hold ~120M parameters. Here the
features are the globally average-pooled conv5 activations (512 wide), which keeps the head
small and the trunk independent of the input size, like the EfficientNet trunk's pooled head.

No ImageNet VGG16 weights ship with any installed wheel (they would need a download), so the
trunk is always randomly initialised (He-normal over fan-out for the convolutions, zero biases,
as torchvision initialises VGG). The model's state is only `nnx.Param` (no BatchStat, no RNG
state); `nnx.split(model, nnx.Param, nnx.BatchStat)` gives an empty BatchStat state.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from tiqa import errors

# torchvision's VGG initialisation: kaiming_normal_(mode='fan_out', nonlinearity='relu'), bias 0.
_CONV_INIT = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")

# torchvision's cfg 'D' (VGG16): the output channels of each stage's convolutions; a 2x2 max-pool
# follows every stage.
VGG16_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)

VARIANTS: tuple[str, ...] = ("vgg16",)


@dataclasses.dataclass(frozen=True)
class VGGConfig:
    """A VGG trunk. Build it with `VGGConfig.vgg16(...)` or `VGGConfig.from_name('vgg16', ...)`.

    Attributes:
      name: the variant's name ('vgg16').
      dtype: compute dtype (float32 or bfloat16); parameters stay float32, features are float32.
      stages: output channels of each stage's 3x3 convolutions; a 2x2 max-pool follows each stage.
      in_channels: input channels (3: grey slices are fed as three equal channels).
    """

    name: str = "vgg16"
    dtype: Any = jnp.float32
    stages: tuple[tuple[int, ...], ...] = VGG16_STAGES
    in_channels: int = 3

    @classmethod
    def vgg16(cls, **overrides: Any) -> VGGConfig:
        return cls(**{"name": "vgg16", **overrides})

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> VGGConfig:
        if name not in VARIANTS:
            raise errors.InputError(f"unknown VGG variant {name!r}; known: {VARIANTS}")
        return getattr(cls, name)(**overrides)

    @property
    def head_width(self) -> int:
        """Width of the pooled features: the last convolution's channels (512 for VGG16).

        RankIQA's original head used the 4096-wide fc7 features; the globally pooled conv5
        features keep the head small and the trunk size-agnostic.
        """
        return self.stages[-1][-1]

    @property
    def min_side(self) -> int:
        """The smallest input side that survives every max-pool (32 for VGG16)."""
        return 2 ** len(self.stages)


def _max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool, stride 2, no padding (torchvision's MaxPool2d(2, 2), ceil_mode=False)."""
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


class VGG(nnx.Module):
    """VGG convolutional body, NHWC; `features(x, train=...)` -> (N, head_width) float32.

    There is no dropout or BatchNorm in the body, so `train` and `key` change nothing; they are
    accepted for the trunk interface `IQANet` uses.
    """

    def __init__(self, config: VGGConfig, *, rngs: nnx.Rngs):
        self.config = config
        convs = []
        cin = config.in_channels
        for stage in config.stages:
            for cout in stage:
                convs.append(nnx.Conv(cin, cout, (3, 3), padding=((1, 1), (1, 1)), use_bias=True,
                                      dtype=config.dtype, param_dtype=jnp.float32,
                                      kernel_init=_CONV_INIT,
                                      bias_init=jax.nn.initializers.zeros, rngs=rngs))
                cin = cout
        self.convs = nnx.List(convs)

    def feature_map(self, x: jax.Array) -> jax.Array:
        """(N, H, W, 3) -> the last stage's pooled map (N, H / 32, W / 32, head_width) in `dtype`."""
        chex.assert_rank(x, 4)
        side = min(x.shape[1], x.shape[2])
        if side < self.config.min_side:
            raise ValueError(f"VGG needs inputs of at least {self.config.min_side} pixels a side "
                             f"(5 max-pools), got {x.shape[1]}x{x.shape[2]}")
        x = x.astype(self.config.dtype)
        layer = 0
        for stage in self.config.stages:
            for _ in stage:
                x = jax.nn.relu(self.convs[layer](x))
                layer += 1
            x = _max_pool_2x2(x)
        return x

    def features(self, x: jax.Array, *, train: bool, key: jax.Array | None = None,
                 frozen_batch_norm: bool = False) -> jax.Array:
        """Globally average-pooled last-stage features, (N, head_width) float32."""
        del train, key, frozen_batch_norm  # no stochastic or batch-dependent layers
        return jnp.mean(self.feature_map(x), axis=(1, 2), dtype=jnp.float32)

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None = None) -> jax.Array:
        return self.features(x, train=train, key=key)


def count_conv_params(model: VGG) -> int:
    """Parameters of the convolutions (kernels and biases)."""
    return sum(int(leaf.size) for leaf in jax.tree.leaves(nnx.state(model.convs, nnx.Param)))
