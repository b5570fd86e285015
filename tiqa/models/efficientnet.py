"""EfficientNet B0..B3 and Lite0..Lite2 as one `flax.nnx` implementation (NHWC).

The layout follows lukemelas/EfficientNet-PyTorch (and the TF original it was converted from), so
that `tiqa.models.params` can map its checkpoints tensor by tensor: a stem convolution, MBConv
blocks (1x1 expansion, depthwise k x k, optional squeeze-excitation, 1x1 projection, identity
skip), a 1x1 head convolution, global average pooling, dropout and a linear classifier.

Variants are frozen `EfficientNetConfig`s built by named constructors (`EfficientNetConfig.b0()`,
..., `.lite2()`); train/eval is the explicit `train` argument of every call; BatchNorm running
statistics are `nnx.BatchStat` state.

Depthwise convolutions have two implementations that compute the same thing: XLA's grouped
convolution (best on GPU, where cuDNN runs it) and a sum of k x k shifted, strided slices times
per-channel weights, which XLA's CPU backend runs about 10x faster than its grouped convolution
(docs/SPEC.md section 7).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from tiqa import errors

DepthwiseImpl = Literal["auto", "grouped", "shifted"]
Activation = Literal["silu", "relu6"]

_ACTIVATIONS = {"silu": jax.nn.silu, "relu6": jax.nn.relu6}

# TF EfficientNet initialisers: He-normal over fan-out for convolutions (for a depthwise kernel
# of layout (k, k, 1, C) the TF fan-out k*k*1 is our fan-in), uniform(+-1/sqrt(out)) for dense.
_CONV_INIT = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_DEPTHWISE_INIT = jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")
_DENSE_INIT = jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


class StageSpec(NamedTuple):
    """One stage of the B0 baseline, before compound scaling."""

    kernel: int
    repeats: int
    in_channels: int
    out_channels: int
    expand_ratio: int
    stride: int


class BlockSpec(NamedTuple):
    """One MBConv block after scaling: the exact shapes the module builds."""

    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    expand_ratio: int
    se_channels: int  # 0: no squeeze-excitation


# lukemelas' 'r1_k3_s11_e1_i32_o16_se0.25', ...: the EfficientNet-B0 baseline.
B0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(3, 1, 32, 16, 1, 1),
    StageSpec(3, 2, 16, 24, 6, 2),
    StageSpec(5, 2, 24, 40, 6, 2),
    StageSpec(3, 3, 40, 80, 6, 2),
    StageSpec(5, 3, 80, 112, 6, 1),
    StageSpec(5, 4, 112, 192, 6, 2),
    StageSpec(3, 1, 192, 320, 6, 1),
)


@dataclasses.dataclass(frozen=True)
class EfficientNetConfig:
    """One EfficientNet variant. Build it with a named constructor, e.g. `.lite0(num_classes=0)`.

    Attributes:
      name: the variant's name ('b0', ..., 'lite2').
      width: width (channel) multiplier of compound scaling.
      depth: depth (repeat) multiplier of compound scaling.
      resolution: the input side the variant was trained at.
      dropout_rate: dropout before the classifier.
      squeeze_excitation: whether blocks have squeeze-excitation (ratio 0.25); Lite has none.
      activation: 'silu' (B) or 'relu6' (Lite).
      fix_stem_head: Lite keeps the stem (32), head (1280) and the first and last stages' repeats
        unscaled.
      num_classes: classifier outputs; 0 builds no classifier and calls return pooled features.
      drop_connect_rate: stochastic depth of the last block (linearly less for earlier ones);
        0 (the default) switches it off.
      dtype: compute dtype (float32 or bfloat16); parameters and statistics stay float32.
      depthwise: 'grouped' (XLA grouped convolution), 'shifted' (sum of shifted slices) or
        'auto' (shifted on the CPU backend, grouped elsewhere).
      batch_norm_momentum: running-average decay, TF convention (lukemelas' 0.01 in torch terms).
      batch_norm_epsilon: BatchNorm epsilon.
      width_divisor: channel counts are multiples of this.
      stem_channels: stem width before scaling.
      head_channels: head width before scaling.
      se_ratio: squeeze width as a fraction of a block's input channels.
      stages: the baseline stages.
    """

    name: str
    width: float
    depth: float
    resolution: int
    dropout_rate: float
    squeeze_excitation: bool = True
    activation: Activation = "silu"
    fix_stem_head: bool = False
    num_classes: int = 1000
    drop_connect_rate: float = 0.0
    dtype: Any = jnp.float32
    depthwise: DepthwiseImpl = "auto"
    batch_norm_momentum: float = 0.99
    batch_norm_epsilon: float = 1e-3
    width_divisor: int = 8
    stem_channels: int = 32
    head_channels: int = 1280
    se_ratio: float = 0.25
    stages: tuple[StageSpec, ...] = B0_STAGES

    # Named constructors: (width, depth, resolution, dropout) as in lukemelas / TF; any field
    # (dropout_rate included) can be overridden.
    @classmethod
    def _variant(cls, name: str, width: float, depth: float, resolution: int,
                 dropout_rate: float, lite: bool, overrides: dict[str, Any]) -> EfficientNetConfig:
        fields: dict[str, Any] = dict(name=name, width=width, depth=depth, resolution=resolution,
                                      dropout_rate=dropout_rate)
        if lite:
            fields.update(squeeze_excitation=False, activation="relu6", fix_stem_head=True)
        return cls(**{**fields, **overrides})

    @classmethod
    def b0(cls, **overrides: Any) -> EfficientNetConfig:
        return cls._variant("b0", 1.0, 1.0, 224, 0.2, False, overrides)

    @classmethod
    def b1(cls, **overrides: Any) -> EfficientNetConfig:
        return cls._variant("b1", 1.0, 1.1, 240, 0.2, False, overrides)

    @classmethod
    def b2(cls, **overrides: Any) -> EfficientNetConfig:
        return cls._variant("b2", 1.1, 1.2, 260, 0.3, False, overrides)

    @classmethod
    def b3(cls, **overrides: Any) -> EfficientNetConfig:
        return cls._variant("b3", 1.2, 1.4, 300, 0.3, False, overrides)

    @classmethod
    def lite0(cls, **overrides: Any) -> EfficientNetConfig:
        return cls._variant("lite0", 1.0, 1.0, 224, 0.2, True, overrides)

    @classmethod
    def lite1(cls, **overrides: Any) -> EfficientNetConfig:
        return cls._variant("lite1", 1.0, 1.1, 240, 0.2, True, overrides)

    @classmethod
    def lite2(cls, **overrides: Any) -> EfficientNetConfig:
        return cls._variant("lite2", 1.1, 1.2, 260, 0.3, True, overrides)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> EfficientNetConfig:
        """The variant called `name` ('b0'..'b3', 'lite0'..'lite2')."""
        if name not in VARIANTS:
            raise errors.InputError(f"unknown EfficientNet variant {name!r}; known: {VARIANTS}")
        return getattr(cls, name)(**overrides)

    def round_filters(self, filters: int) -> int:
        """lukemelas/timm channel rounding: scale by `width`, round to the divisor, never more
        than 10% below the scaled value."""
        divisor = self.width_divisor
        scaled = filters * self.width
        rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
        if rounded < 0.9 * scaled:
            rounded += divisor
        return int(rounded)

    def round_repeats(self, repeats: int) -> int:
        """Repeats scaled by `depth`, rounded up."""
        return int(math.ceil(self.depth * repeats))

    @property
    def stem_width(self) -> int:
        return self.stem_channels if self.fix_stem_head else self.round_filters(self.stem_channels)

    @property
    def head_width(self) -> int:
        """Width of the pooled features."""
        return self.head_channels if self.fix_stem_head else self.round_filters(self.head_channels)

    def blocks(self) -> list[BlockSpec]:
        """Every MBConv block after compound scaling, in order."""
        specs = []
        in_channels = self.stem_width
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            fixed = self.fix_stem_head and i in (0, last)
            repeats = stage.repeats if fixed else self.round_repeats(stage.repeats)
            out_channels = self.round_filters(stage.out_channels)
            for r in range(repeats):
                # Squeeze width follows the block's input channels, as in lukemelas.
                block_in = in_channels if r == 0 else out_channels
                se = max(1, int(block_in * self.se_ratio)) if self.squeeze_excitation else 0
                specs.append(BlockSpec(stage.kernel, stage.stride if r == 0 else 1, block_in,
                                       out_channels, stage.expand_ratio, se))
            in_channels = out_channels
        return specs


VARIANTS: tuple[str, ...] = ("b0", "b1", "b2", "b3", "lite0", "lite1", "lite2")


def resolve_depthwise(impl: DepthwiseImpl) -> Literal["grouped", "shifted"]:
    """'auto' -> 'shifted' on the CPU backend (XLA's grouped convolution is slow there),
    'grouped' elsewhere."""
    if impl == "auto":
        return "shifted" if jax.default_backend() == "cpu" else "grouped"
    if impl not in ("grouped", "shifted"):
        raise errors.InputError(f"depthwise must be 'auto', 'grouped' or 'shifted', got {impl!r}")
    return impl


def _correlate(xp: jax.Array, weights: jax.Array, stride: int, ho: int, wo: int) -> jax.Array:
    """sum over (i, j) of the strided slice of `xp` at offset (i, j) times weights[i, j]: the
    (N, ho, wo, C) depthwise correlation of padded `xp` with (k, k, C) `weights`, accumulated in
    the weights' dtype. XLA fuses the whole sum into one loop."""
    n, _, _, c = xp.shape
    k = weights.shape[0]
    out = jnp.zeros((n, ho, wo, c), weights.dtype)
    for i in range(k):
        for j in range(k):
            patch = lax.slice(xp, (0, i, j, 0),
                              (n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c),
                              (1, stride, stride, 1))
            out = out + patch.astype(weights.dtype) * weights[i, j]
    return out


def kernel_sums_by_image_pairs() -> bool:
    """Whether hand-written kernel gradients sum over the batch two images at a time: on the
    CPU backend only. On a GPU a scan over pairs would serialise many tiny products (126 per
    layer at batch 252) where one product over the whole batch fills the device."""
    return jax.default_backend() == "cpu"


def _sum_over_batch(term: Callable, initial: jax.Array, *arrays: jax.Array) -> jax.Array:
    """initial + the sum of term(*part) over the batch. `term` sums over its leading axis, so
    on a GPU it takes the whole batch at once; on the CPU it takes two images at a time (one
    when the batch is odd): a kernel gradient summed over a whole batch at once makes XLA:CPU
    stream or transpose the full activations, while a pair of images stays in the cache."""
    if not kernel_sums_by_image_pairs():
        return initial + term(*arrays)
    n = arrays[0].shape[0]
    chunk = 2 if n % 2 == 0 else 1
    pairs = tuple(a.reshape((n // chunk, chunk) + a.shape[1:]) for a in arrays)
    total, _ = lax.scan(lambda acc, pair: (acc + term(*pair), None), initial, pairs)
    return total


def _pad(x: jax.Array, padding: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def depthwise_conv_shifted(x: jax.Array, kernel: jax.Array, stride: int,
                           padding: int) -> jax.Array:
    """Depthwise convolution as a sum of k x k shifted, strided slices times per-channel weights.

    Args:
      x: (N, H, W, C) input.
      kernel: (k, k, 1, C) weights (HWIO with one input channel per group).
      stride: spatial stride.
      padding: symmetric zero padding on each side.

    Returns:
      (N, H', W', C), the same as `lax.conv_general_dilated` with `feature_group_count=C`.

    Its gradient is written out (`_depthwise_backward`): XLA's own transpose of the k x k
    slices is two times slower on the CPU for 3 x 3 kernels.
    """
    return _depthwise_forward(x, kernel, stride, padding)[0]


def _depthwise_forward(x, kernel, stride, padding):
    k = kernel.shape[0]
    _, h, w, _ = x.shape
    ho = (h + 2 * padding - k) // stride + 1
    wo = (w + 2 * padding - k) // stride + 1
    # Accumulate in float32 so that bfloat16 inputs do not lose the k*k-term sum.
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    out = _correlate(_pad(x, padding), kernel[:, :, 0, :].astype(acc_dtype), stride, ho, wo)
    return out.astype(x.dtype), (x, kernel)


def _depthwise_backward(stride, padding, residuals, grad):
    """The input gradient is the correlation of the stride-dilated, padded output gradient
    with the flipped kernel; the kernel gradient sums each shifted input times the gradient."""
    x, kernel = residuals
    k = kernel.shape[0]
    _, h, w, c = x.shape
    ho, wo = grad.shape[1:3]
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    grad = grad.astype(acc_dtype)
    span_h, span_w = (ho - 1) * stride + 1, (wo - 1) * stride + 1
    hp, wp = h + 2 * padding, w + 2 * padding
    dilated = lax.pad(grad, jnp.zeros((), acc_dtype),
                      ((0, 0, 0), (k - 1, hp - span_h, stride - 1),
                       (k - 1, wp - span_w, stride - 1), (0, 0, 0)))
    grad_padded_x = _correlate(dilated, kernel[::-1, ::-1, 0, :].astype(acc_dtype), 1, hp, wp)
    grad_x = grad_padded_x[:, padding:padding + h, padding:padding + w, :].astype(x.dtype)
    # Each pair of images stays in the cache for all k*k sums instead of being streamed from
    # memory k*k times (2 to 6x faster).
    def kernel_terms(x_pair, grad_pair):
        return jnp.stack([
            jnp.sum(lax.slice(x_pair, (0, i, j, 0), (x_pair.shape[0], i + span_h, j + span_w, c),
                              (1, stride, stride, 1)) * grad_pair, axis=(0, 1, 2))
            for i in range(k) for j in range(k)])

    grad_kernel = _sum_over_batch(kernel_terms, jnp.zeros((k * k, c), acc_dtype),
                                  _pad(x, padding).astype(acc_dtype), grad)
    return grad_x, grad_kernel.reshape(kernel.shape).astype(kernel.dtype)


depthwise_conv_shifted.defvjp(_depthwise_forward, _depthwise_backward)


def depthwise_conv_grouped(x: jax.Array, kernel: jax.Array, stride: int,
                           padding: int) -> jax.Array:
    """Depthwise convolution with XLA's grouped convolution (cuDNN's kernel on GPU)."""
    return lax.conv_general_dilated(
        x, kernel.astype(x.dtype), window_strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])


class DepthwiseConv(nnx.Module):
    """k x k depthwise convolution without bias, symmetric padding k // 2 (what the Lite weights
    were verified with, docs/SPEC.md section 5). Kernel layout (k, k, 1, C)."""

    def __init__(self, channels: int, kernel_size: int, stride: int, *, impl: DepthwiseImpl,
                 dtype: Any, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_DEPTHWISE_INIT(rngs.params(), (kernel_size, kernel_size, 1,
                                                                  channels), jnp.float32))
        self.stride = stride
        self.padding = kernel_size // 2
        self.impl = impl
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        fn = (depthwise_conv_shifted if resolve_depthwise(self.impl) == "shifted"
              else depthwise_conv_grouped)
        return fn(x.astype(self.dtype), self.kernel[...], self.stride, self.padding)


class SqueezeExcitation(nnx.Module):
    """Channel gating from the globally pooled block activations (B variants only)."""

    def __init__(self, channels: int, squeeze: int, *, activation: Activation, dtype: Any,
                 rngs: nnx.Rngs):
        self.reduce = nnx.Linear(channels, squeeze, dtype=dtype, kernel_init=_CONV_INIT,
                                 rngs=rngs)
        self.expand = nnx.Linear(squeeze, channels, dtype=dtype, kernel_init=_CONV_INIT,
                                 rngs=rngs)
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        pooled = jnp.mean(x, axis=(1, 2), dtype=jnp.float32)
        gate = self.expand(_ACTIVATIONS[self.activation](self.reduce(pooled)))
        return x * jax.nn.sigmoid(gate)[:, None, None, :].astype(x.dtype)


class PointwiseConv(nnx.Module):
    """1x1 convolution without bias, computed as a matrix product over the channels.

    The kernel keeps nnx.Conv's (1, 1, in, out) layout, name and initialisation, so weights and
    checkpoints are unchanged. XLA:CPU runs the product 2 to 4 times faster than a 1x1
    convolution, forward and backward (Lite0's shapes, batch 18); on the GPU both are one GEMM.
    (`pointwise_conv` has its own gradient.)
    """

    def __init__(self, cin: int, cout: int, *, dtype: Any, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_CONV_INIT(rngs.params(), (1, 1, cin, cout), jnp.float32))
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        return pointwise_conv(x.astype(self.dtype), self.kernel[0, 0].astype(self.dtype))


@jax.custom_vjp
def pointwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """(N, H, W, C) x (C, D) -> (N, H, W, D). The kernel gradient is summed two images at a
    time: as one product over N*H*W, XLA:CPU first transposes the whole activation (170 ms for
    Lite0's largest, 10% of a train step); per pair of images it stays in the cache."""
    return jnp.einsum("nhwc,cd->nhwd", x, kernel)


def _pointwise_forward(x, kernel):
    return pointwise_conv(x, kernel), (x, kernel)


def _pointwise_backward(residuals, grad):
    x, kernel = residuals
    acc_dtype = jnp.promote_types(kernel.dtype, jnp.float32)
    grad_kernel = _sum_over_batch(
        lambda x_pair, grad_pair: jnp.einsum("nhwc,nhwd->cd", x_pair, grad_pair,
                                             preferred_element_type=acc_dtype),
        jnp.zeros(kernel.shape, acc_dtype), x, grad)
    grad_x = jnp.einsum("nhwd,cd->nhwc", grad, kernel).astype(x.dtype)
    return grad_x, grad_kernel.astype(kernel.dtype)


pointwise_conv.defvjp(_pointwise_forward, _pointwise_backward)


def _conv1x1(cin: int, cout: int, dtype: Any, rngs: nnx.Rngs) -> PointwiseConv:
    return PointwiseConv(cin, cout, dtype=dtype, rngs=rngs)


def _batch_norm(channels: int, config: EfficientNetConfig, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(channels, momentum=config.batch_norm_momentum,
                         epsilon=config.batch_norm_epsilon, dtype=config.dtype, rngs=rngs)


class MBConvBlock(nnx.Module):
    """Inverted residual block: [1x1 expand, BN, act], depthwise, BN, act, [SE], 1x1 project,
    BN, [drop connect + identity skip]."""

    def __init__(self, spec: BlockSpec, config: EfficientNetConfig, drop_connect_rate: float, *,
                 rngs: nnx.Rngs):
        mid = spec.in_channels * spec.expand_ratio
        self.activation = config.activation
        if spec.expand_ratio != 1:
            self.expand_conv = _conv1x1(spec.in_channels, mid, config.dtype, rngs)
            self.expand_bn = _batch_norm(mid, config, rngs)
        else:
            self.expand_conv = None
            self.expand_bn = None
        self.depthwise_conv = DepthwiseConv(mid, spec.kernel, spec.stride, impl=config.depthwise,
                                            dtype=config.dtype, rngs=rngs)
        self.depthwise_bn = _batch_norm(mid, config, rngs)
        self.se = (SqueezeExcitation(mid, spec.se_channels, activation=config.activation,
                                     dtype=config.dtype, rngs=rngs)
                   if spec.se_channels else None)
        self.project_conv = _conv1x1(mid, spec.out_channels, config.dtype, rngs)
        self.project_bn = _batch_norm(spec.out_channels, config, rngs)
        self.residual = spec.stride == 1 and spec.in_channels == spec.out_channels
        # Stochastic depth drops a whole sample's branch: one mask value per example.
        # The key comes with each call, so the module holds no RNG state.
        self.drop_connect = (nnx.Dropout(drop_connect_rate, broadcast_dims=(1, 2, 3))
                             if self.residual and drop_connect_rate > 0 else None)

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None = None,
                 frozen_batch_norm: bool = False) -> jax.Array:
        """Applies the block; `key` drives drop connect and is needed only if that is on and
        `train` is true. `frozen_batch_norm`: BatchNorm uses (and keeps) its running averages
        even when `train` is true."""
        act = _ACTIVATIONS[self.activation]
        running = not train or frozen_batch_norm
        y = x
        if self.expand_conv is not None:
            y = act(self.expand_bn(self.expand_conv(y), use_running_average=running))
        y = act(self.depthwise_bn(self.depthwise_conv(y), use_running_average=running))
        if self.se is not None:
            y = self.se(y)
        y = self.project_bn(self.project_conv(y), use_running_average=running)
        if self.residual:
            if self.drop_connect is not None:
                y = self.drop_connect(y, deterministic=not train, rngs=key)
            y = y + x
        return y


def make_classifier(config: EfficientNetConfig, *, rngs: nnx.Rngs) -> nnx.Linear:
    """The linear classifier on the pooled features (also a fresh head for a pretrained body)."""
    return nnx.Linear(config.head_width, config.num_classes, dtype=config.dtype,
                      kernel_init=_DENSE_INIT, rngs=rngs)


class EfficientNet(nnx.Module):
    """EfficientNet B0..B3 / Lite0..Lite2, NHWC.

    `model(x, train=...)` returns logits (float32, (N, num_classes)), or the pooled features when
    `config.num_classes == 0`; `model.features(x, train=...)` returns the pooled features
    (float32, (N, config.head_width)). With `train=True`, BatchNorm normalises with the batch
    statistics and updates its running averages, and dropout / drop connect draw their masks
    from the `key` given to the call; with `train=False` the call is deterministic, needs no key
    and changes no state. The module's state is only `nnx.Param` and `nnx.BatchStat` variables
    (no RNG state), so `nnx.split` gives a plain pytree to shard, donate and checkpoint.
    """

    def __init__(self, config: EfficientNetConfig, *, rngs: nnx.Rngs):
        """Builds the network; `rngs` (its 'params' stream, or 'default') initialises weights."""
        self.config = config
        self.stem_conv = nnx.Conv(3, config.stem_width, (3, 3), strides=(2, 2),
                                  padding=((1, 1), (1, 1)), use_bias=False, dtype=config.dtype,
                                  kernel_init=_CONV_INIT, rngs=rngs)
        self.stem_bn = _batch_norm(config.stem_width, config, rngs)
        specs = config.blocks()
        # lukemelas: the drop-connect rate grows linearly with the block index.
        self.blocks = nnx.List([
            MBConvBlock(spec, config, config.drop_connect_rate * i / len(specs), rngs=rngs)
            for i, spec in enumerate(specs)])
        self.head_conv = _conv1x1(specs[-1].out_channels, config.head_width, config.dtype, rngs)
        self.head_bn = _batch_norm(config.head_width, config, rngs)
        if config.num_classes > 0:
            self.dropout = nnx.Dropout(config.dropout_rate)
            self.classifier = make_classifier(config, rngs=rngs)
        else:
            self.dropout = None
            self.classifier = None

    def _check_key(self, train: bool, key: jax.Array | None, *, with_dropout: bool) -> None:
        """Refuses a training call that draws random masks without a key."""
        dropout = with_dropout and self.classifier is not None and self.config.dropout_rate > 0
        if train and key is None and (dropout or self.config.drop_connect_rate > 0):
            raise ValueError(
                f"EfficientNet-{self.config.name}: train=True with dropout rate "
                f"{self.config.dropout_rate} / drop connect rate "
                f"{self.config.drop_connect_rate} needs a PRNG key (key=...)")

    def features(self, x: jax.Array, *, train: bool, key: jax.Array | None = None,
                 frozen_batch_norm: bool = False) -> jax.Array:
        """Globally pooled head activations, (N, head_width) float32.

        Args:
          x: (N, H, W, 3) images, already normalised as the weights expect.
          train: batch statistics (and their running-average update), drop connect on.
          key: PRNG key for drop connect; needed only when `train` and drop connect is on.
          frozen_batch_norm: with `train`, BatchNorm still normalises with (and keeps) its
            running averages, so training sees the function that evaluation computes.
        """
        chex.assert_rank(x, 4)
        chex.assert_axis_dimension(x, 3, 3)
        self._check_key(train, key, with_dropout=False)
        block_keys = ([None] * len(self.blocks)
                      if key is None or self.config.drop_connect_rate == 0
                      else list(jax.random.split(key, len(self.blocks))))
        act = _ACTIVATIONS[self.config.activation]
        y = x.astype(self.config.dtype)
        running = not train or frozen_batch_norm
        y = act(self.stem_bn(self.stem_conv(y), use_running_average=running))
        for block, block_key in zip(self.blocks, block_keys):
            y = block(y, train=train, key=block_key, frozen_batch_norm=frozen_batch_norm)
        y = act(self.head_bn(self.head_conv(y), use_running_average=running))
        return jnp.mean(y, axis=(1, 2), dtype=jnp.float32)

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None = None) -> jax.Array:
        """Logits (N, num_classes) float32, or the pooled features if there is no classifier.

        Args:
          x: (N, H, W, 3) images, already normalised as the weights expect.
          train: training mode (batch statistics, dropout, drop connect) or evaluation.
          key: PRNG key for dropout and drop connect; needed only when `train` and either is on.
        """
        self._check_key(train, key, with_dropout=True)
        features_key, dropout_key = (None, None) if key is None else jax.random.split(key)
        feats = self.features(x, train=train, key=features_key)
        if self.classifier is None:
            return feats
        feats = self.dropout(feats, deterministic=not train, rngs=dropout_key)
        return self.classifier(feats).astype(jnp.float32)


def count_params(model: nnx.Module) -> int:
    """Number of trainable parameters (nnx.Param leaves; BatchNorm statistics excluded)."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
