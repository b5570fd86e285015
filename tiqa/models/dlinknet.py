"""D-LinkNet (ResNet34 or ResNet18 encoder) for semantic segmentation, in `flax.nnx` (NHWC).

The layout is DinkNet34 of zlckanata/DeepGlobe-Road-Extraction-Challenge (`networks/dinknet.py`,
docs/SPEC.md section 5), with the same module names so that a checkpoint maps tensor by tensor:

* encoder: torchvision's ResNet without its classifier (conv 7x7/2, BN, ReLU, max-pool 3x3/2,
  four layers of basic blocks with 64/128/256/512 channels);
* `dblock`: cascaded dilated 3x3 convolutions (dilation 1, 2, 4, 8), each followed by ReLU,
  output x + d1 + d2 + d3 + d4;
* `decoder4`..`decoder1`: 1x1 conv C -> C/4, 3x3 transposed conv stride 2, 1x1 conv -> C_out,
  each with BN and ReLU; skips d4 + e3, d3 + e2, d2 + e1;
* head: 4x4 transposed conv stride 2 (64 -> 32), ReLU, 3x3 conv, ReLU, 3x3 conv -> classes.

The network returns logits; the sigmoid (one class) or softmax (several) is the caller's.
Transposed convolutions follow PyTorch's `ConvTranspose2d` definition exactly (see
`TorchConvTranspose`), which `nnx.ConvTranspose`'s own padding convention does not.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from tiqa.models.dtypes import model_config_values
from tiqa.models.efficientnet import count_params
from tiqa.models.params import Transform, assign_checked, variables_by_path
from tiqa import errors

Encoder = Literal["resnet34", "resnet18"]

# Basic blocks per layer of the torchvision ResNets.
ENCODER_BLOCKS: dict[str, tuple[int, ...]] = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
ENCODER_CHANNELS: tuple[int, ...] = (64, 128, 256, 512)
# The encoder downsamples by 32 (conv/2, pool/2, three stride-2 layers); the decoder undoes it.
SIZE_MULTIPLE = 32

# torchvision ResNet: Kaiming-normal over fan-out for convolutions.
_ENCODER_INIT = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# PyTorch's default Conv2d / ConvTranspose2d initialiser (kaiming_uniform with a = sqrt(5)),
# which DinkNet keeps for its centre, decoder and head. Biases start at zero (DinkNet zeroes the
# centre's; for the rest this differs from PyTorch's small uniform draw, harmlessly).
_TORCH_DEFAULT_INIT = jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


@dataclasses.dataclass(frozen=True)
class DLinkNetConfig:
    """D-LinkNet hyperparameters.

    Attributes:
      encoder: 'resnet34' (D-LinkNet34) or 'resnet18' (for small data sets).
      num_classes: 1 = binary (logit of the positive class; apply a sigmoid), >= 2 = one logit
        per class (apply a softmax).
      dtype: compute dtype (float32 or bfloat16); parameters and statistics stay float32.
      in_channels: channels of the input (1 for grey slices).
      batch_norm_momentum: running-average decay, flax convention (PyTorch's momentum 0.1).
      batch_norm_epsilon: BatchNorm epsilon (PyTorch's default).
      input_mean: subtracted from the input before the first convolution.
      input_std: the input is divided by this after subtracting `input_mean`. The defaults are
        the channel means of torchvision's ImageNet normalisation, so grey images in [0, 1] look
        like what ImageNet weights (`load_torchvision_resnet`) were trained on.
    """

    encoder: Encoder = "resnet34"
    num_classes: int = 1
    dtype: Any = jnp.float32
    in_channels: int = 1
    batch_norm_momentum: float = 0.9
    batch_norm_epsilon: float = 1e-5
    input_mean: float = 0.449
    input_std: float = 0.226

    def __post_init__(self) -> None:
        if self.encoder not in ENCODER_BLOCKS:
            raise errors.InputError(f"encoder must be one of {sorted(ENCODER_BLOCKS)}, "
                                    f"got {self.encoder!r}")
        if self.num_classes < 1:
            raise errors.InputError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.in_channels < 1:
            raise errors.InputError(f"in_channels must be >= 1, got {self.in_channels}")

    @classmethod
    def from_mapping(cls, values: Mapping) -> DLinkNetConfig:
        """From a ConfigDict or dict; `dtype` may be 'float32' or 'bfloat16'; unknown keys are
        named."""
        return cls(**model_config_values(cls, values))

    def to_dict(self) -> dict:
        """Plain values (dtype by name), the inverse of `from_mapping`."""
        values = dataclasses.asdict(self)
        values["dtype"] = jnp.dtype(self.dtype).name
        return values


def _phase_taps(kernel_size: int, stride: int, padding: int) -> tuple[np.ndarray, int]:
    """Which kernel tap each output phase applies at each input offset, for one axis.

    PyTorch's transposed convolution gives output o = stride * q + r the sum of x[i] W[t] over
    i * stride + t = o + padding. For phase r the taps are t = t0 + j * stride with
    t0 = (r + padding) mod stride, read at input q + c_r - j, c_r = (r + padding - t0) / stride.
    Returns (window, stride) tap indices (kernel_size where a phase has no tap at that offset)
    over the offsets lowest..lowest + window - 1, and `lowest`.
    """
    reads = []
    for phase in range(stride):
        first = (phase + padding) % stride
        centre = (phase + padding - first) // stride
        reads.append([(centre - j, tap) for j, tap in enumerate(range(first, kernel_size, stride))])
    lowest = min(offset for phase in reads for offset, _ in phase)
    highest = max(offset for phase in reads for offset, _ in phase)
    taps = np.full((highest - lowest + 1, stride), kernel_size, np.int32)
    for phase, phase_reads in enumerate(reads):
        for offset, tap in phase_reads:
            taps[offset - lowest, phase] = tap
    return taps, lowest


class TorchConvTranspose(nnx.Module):
    """PyTorch's `ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding,
    output_padding)` (with bias), computed as one ordinary convolution over the input that
    gives all stride x stride output phases as channels, then a depth-to-space shuffle.

    The usual form, a convolution of the zero-dilated input, spends most of its work on the
    inserted zeros, and its gradients are lhs-dilated convolutions that XLA runs slowly: on the
    CPU, a 64-channel 3x3 stride-2 layer at 128x128 took 748 ms forward and backward against
    126 ms for a plain 3x3 convolution of the same output size. The kernel is stored
    (k, k, out, in), PyTorch's weight (in, out, k, k) transposed (2, 3, 1, 0), as the
    `nnx.ConvTranspose` this replaces stored it, so checkpoints are unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, output_padding: int = 0, *, dtype: Any, rngs: nnx.Rngs):
        if not 0 <= padding <= kernel_size - 1:
            raise ValueError(f"padding must be in [0, {kernel_size - 1}], got {padding}")
        self.kernel = nnx.Param(_TORCH_DEFAULT_INIT(
            rngs.params(), (kernel_size, kernel_size, out_channels, in_channels), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32))
        self.kernel_size, self.stride = kernel_size, stride
        self.padding, self.output_padding = padding, output_padding
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        k, s = self.kernel_size, self.stride
        n, height, width, _ = x.shape
        out_h, out_w = ((size - 1) * s - 2 * self.padding + k + self.output_padding
                        for size in (height, width))
        if out_h % s or out_w % s:
            raise ValueError(f"output size {out_h}x{out_w} is not a multiple of the stride {s}")
        taps, lowest = _phase_taps(k, s, self.padding)
        window = taps.shape[0]
        # (k + 1, k + 1, in, out) with a zero tap at index k for offsets a phase does not read.
        weights = jnp.pad(jnp.transpose(self.kernel[...], (0, 1, 3, 2)),
                          ((0, 1), (0, 1), (0, 0), (0, 0)))
        phased = weights[taps[:, :, None, None], taps[None, None, :, :]]  # (w, s, w, s, in, out)
        cin, cout = phased.shape[-2:]
        phased = jnp.transpose(phased, (0, 2, 4, 1, 3, 5)).reshape(window, window, cin,
                                                                   s * s * cout)
        rows, cols = out_h // s, out_w // s
        x = lax.pad(x.astype(self.dtype), jnp.zeros((), self.dtype),
                    ((0, 0, 0), (-lowest, rows + lowest + window - 1 - height, 0),
                     (-lowest, cols + lowest + window - 1 - width, 0), (0, 0, 0)))
        y = lax.conv_general_dilated(x, phased.astype(self.dtype), (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = y.reshape(n, rows, cols, s, s, cout).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(n, out_h, out_w, cout) + self.bias[...].astype(self.dtype)


def _batch_norm(channels: int, config: DLinkNetConfig, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(channels, momentum=config.batch_norm_momentum,
                         epsilon=config.batch_norm_epsilon, dtype=config.dtype, rngs=rngs)


def _encoder_conv(cin: int, cout: int, kernel: int, stride: int, config: DLinkNetConfig,
                  rngs: nnx.Rngs) -> nnx.Conv:
    """Bias-free k x k convolution with PyTorch's symmetric padding k // 2 (torchvision ResNet)."""
    pad = kernel // 2
    return nnx.Conv(cin, cout, (kernel, kernel), strides=(stride, stride),
                    padding=((pad, pad), (pad, pad)), use_bias=False, dtype=config.dtype,
                    kernel_init=_ENCODER_INIT, rngs=rngs)


def _conv(cin: int, cout: int, kernel: int, config: DLinkNetConfig, rngs: nnx.Rngs, *,
          dilation: int = 1) -> nnx.Conv:
    """k x k convolution with bias, 'same' padding dilation * (k // 2) (DinkNet's centre,
    decoder and head)."""
    pad = dilation * (kernel // 2)
    return nnx.Conv(cin, cout, (kernel, kernel), padding=((pad, pad), (pad, pad)),
                    kernel_dilation=(dilation, dilation), use_bias=True, dtype=config.dtype,
                    kernel_init=_TORCH_DEFAULT_INIT, bias_init=jax.nn.initializers.zeros,
                    rngs=rngs)


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """PyTorch's MaxPool2d(3, stride=2, padding=1): padding never wins the max."""
    # A concrete scalar -inf with lax.max lets JAX recognise a max pool, which it can
    # differentiate; an array-valued initial value would make it a generic, opaque reduction.
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1),
                             (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))


class BasicBlock(nnx.Module):
    """torchvision's ResNet basic block: two 3x3 conv + BN, identity (or 1x1 conv + BN) skip."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 config: DLinkNetConfig, *, rngs: nnx.Rngs):
        self.conv1 = _encoder_conv(in_channels, out_channels, 3, stride, config, rngs)
        self.bn1 = _batch_norm(out_channels, config, rngs)
        self.conv2 = _encoder_conv(out_channels, out_channels, 3, 1, config, rngs)
        self.bn2 = _batch_norm(out_channels, config, rngs)
        if stride != 1 or in_channels != out_channels:
            # torchvision's `downsample.0` / `downsample.1`.
            self.downsample_conv = _encoder_conv(in_channels, out_channels, 1, stride, config,
                                                 rngs)
            self.downsample_bn = _batch_norm(out_channels, config, rngs)
        else:
            self.downsample_conv = None
            self.downsample_bn = None

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        y = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=not train))
        y = self.bn2(self.conv2(y), use_running_average=not train)
        if self.downsample_conv is not None:
            x = self.downsample_bn(self.downsample_conv(x), use_running_average=not train)
        return jax.nn.relu(y + x)


class ResNetEncoder(nnx.Module):
    """torchvision's ResNet18/34 up to `layer4` (no pooling, no classifier); torchvision's names
    (conv1, bn1, layer1..layer4), so its state dicts map directly."""

    def __init__(self, config: DLinkNetConfig, *, rngs: nnx.Rngs):
        self.conv1 = _encoder_conv(config.in_channels, 64, 7, 2, config, rngs)
        self.bn1 = _batch_norm(64, config, rngs)
        in_channels = 64
        layers = []
        for i, (blocks, channels) in enumerate(zip(ENCODER_BLOCKS[config.encoder],
                                                   ENCODER_CHANNELS)):
            stride = 1 if i == 0 else 2
            layers.append(nnx.List([
                BasicBlock(in_channels if b == 0 else channels, channels,
                           stride if b == 0 else 1, config, rngs=rngs)
                for b in range(blocks)]))
            in_channels = channels
        self.layer1, self.layer2, self.layer3, self.layer4 = layers

    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, ...]:
        """(N, H, W, in_channels) -> the four layers' outputs e1..e4, at H/4 .. H/32."""
        y = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=not train))
        y = max_pool_3x3_s2(y)
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                y = block(y, train=train)
            features.append(y)
        return tuple(features)


class DBlock(nnx.Module):
    """DinkNet's centre: x + d1 + d2 + d3 + d4, d_i = relu(conv_dilated_i(d_{i-1})), d_0 = x,
    dilations 1, 2, 4, 8 (receptive field grown without losing resolution)."""

    def __init__(self, channels: int, config: DLinkNetConfig, *, rngs: nnx.Rngs):
        self.dilate1 = _conv(channels, channels, 3, config, rngs, dilation=1)
        self.dilate2 = _conv(channels, channels, 3, config, rngs, dilation=2)
        self.dilate3 = _conv(channels, channels, 3, config, rngs, dilation=4)
        self.dilate4 = _conv(channels, channels, 3, config, rngs, dilation=8)

    def __call__(self, x: jax.Array) -> jax.Array:
        out = x
        y = x
        for conv in (self.dilate1, self.dilate2, self.dilate3, self.dilate4):
            y = jax.nn.relu(conv(y))
            out = out + y
        return out


class DecoderBlock(nnx.Module):
    """1x1 conv C_in -> C_in/4, BN, ReLU; 3x3 transposed conv stride 2 (doubles H and W), BN,
    ReLU; 1x1 conv -> C_out, BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, config: DLinkNetConfig, *,
                 rngs: nnx.Rngs):
        mid = in_channels // 4
        self.conv1 = _conv(in_channels, mid, 1, config, rngs)
        self.norm1 = _batch_norm(mid, config, rngs)
        self.deconv2 = TorchConvTranspose(mid, mid, 3, 2, 1, 1, dtype=config.dtype, rngs=rngs)
        self.norm2 = _batch_norm(mid, config, rngs)
        self.conv3 = _conv(mid, out_channels, 1, config, rngs)
        self.norm3 = _batch_norm(out_channels, config, rngs)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = jax.nn.relu(self.norm1(self.conv1(x), use_running_average=not train))
        x = jax.nn.relu(self.norm2(self.deconv2(x), use_running_average=not train))
        return jax.nn.relu(self.norm3(self.conv3(x), use_running_average=not train))


class DLinkNet(nnx.Module):
    """D-LinkNet34 (or 18): `model(images, train=..., key=None)` -> logits (N, H, W, classes).

    `images` are (N, H, W) grey slices or (N, H, W, in_channels), H and W multiples of 32;
    logits are float32 at the input size. With `train=True` BatchNorm normalises with the batch
    statistics and updates its running averages; with `train=False` the call is deterministic
    and changes no state. The network draws no random numbers: `key` is accepted (the training
    loop passes one to every model) and ignored. The state is only `nnx.Param` and
    `nnx.BatchStat`, so `nnx.split(model, nnx.Param, nnx.BatchStat)` gives the pytrees to
    train, shard and checkpoint.
    """

    def __init__(self, config: DLinkNetConfig, *, rngs: nnx.Rngs):
        """Builds the network; `rngs` (its 'params' stream, or 'default') initialises weights."""
        self.config = config
        filters = ENCODER_CHANNELS
        self.encoder = ResNetEncoder(config, rngs=rngs)
        self.dblock = DBlock(filters[3], config, rngs=rngs)
        self.decoder4 = DecoderBlock(filters[3], filters[2], config, rngs=rngs)
        self.decoder3 = DecoderBlock(filters[2], filters[1], config, rngs=rngs)
        self.decoder2 = DecoderBlock(filters[1], filters[0], config, rngs=rngs)
        self.decoder1 = DecoderBlock(filters[0], filters[0], config, rngs=rngs)
        self.finaldeconv1 = TorchConvTranspose(filters[0], 32, 4, 2, 1, dtype=config.dtype,
                                               rngs=rngs)
        self.finalconv2 = _conv(32, 32, 3, config, rngs)
        self.finalconv3 = _conv(32, config.num_classes, 3, config, rngs)

    def _prepare(self, images: jax.Array) -> jax.Array:
        """Checks the input's shape, adds the channel axis of grey input, normalises, casts."""
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] != self.config.in_channels:
            raise ValueError(f"D-LinkNet expects (N, H, W) grey or (N, H, W, "
                             f"{self.config.in_channels}) input, got shape {images.shape}")
        height, width = images.shape[1:3]
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE or not (height and width):
            raise ValueError(f"D-LinkNet input height and width must be positive multiples of "
                             f"{SIZE_MULTIPLE}, got {height}x{width} (pad or crop the slices)")
        x = (images.astype(jnp.float32) - self.config.input_mean) / self.config.input_std
        return x.astype(self.config.dtype)

    def __call__(self, images: jax.Array, *, train: bool,
                 key: jax.Array | None = None) -> jax.Array:
        """Per-pixel logits (N, H, W, num_classes), float32.

        Args:
          images: (N, H, W) or (N, H, W, in_channels), H and W multiples of 32; grey slices in
            [0, 1] for the default input normalisation.
          train: batch statistics (and their running-average update) or running averages.
          key: unused (the network has no dropout); accepted for the training loop's calling
            convention.

        Raises:
          ValueError: for a wrong rank or channel count, or a size not a multiple of 32.
        """
        del key  # nothing random in D-LinkNet
        x = self._prepare(images)
        e1, e2, e3, e4 = self.encoder(x, train=train)
        centre = self.dblock(e4)
        d4 = self.decoder4(centre, train=train) + e3
        d3 = self.decoder3(d4, train=train) + e2
        d2 = self.decoder2(d3, train=train) + e1
        d1 = self.decoder1(d2, train=train)
        y = jax.nn.relu(self.finaldeconv1(d1))
        y = jax.nn.relu(self.finalconv2(y))
        return self.finalconv3(y).astype(jnp.float32)


def encoder_param_count(model: DLinkNet) -> int:
    """Trainable parameters of the ResNet encoder (conv1, bn1, layer1..4): 21,284,672 for
    ResNet34 and 11,176,512 for ResNet18 with 3 input channels (torchvision's counts less the
    classifier), 6,272 fewer with one input channel (conv1 7x7x1x64 instead of 7x7x3x64)."""
    return count_params(model.encoder)


def _torch_conv(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 1, 0) if w.ndim == 4 else w  # OIHW -> HWIO


def _grey_conv1(w: np.ndarray) -> np.ndarray:
    # An RGB conv1 summed over the colours: the response to a grey image fed as three channels.
    return _torch_conv(w.sum(axis=1, keepdims=True) if w.ndim == 4 and w.shape[1] == 3 else w)


def _same(w: np.ndarray) -> np.ndarray:
    return w


def torchvision_resnet_mapping(config: DLinkNetConfig) -> dict[str, tuple[str, Transform]]:
    """Encoder variable path (relative to `model.encoder`) -> (torchvision ResNet state-dict
    key, layout change)."""
    mapping: dict[str, tuple[str, Transform]] = {}

    def conv(path: str, key: str, transform: Transform = _torch_conv) -> None:
        mapping[f"{path}.kernel"] = (f"{key}.weight", transform)

    def bn(path: str, key: str) -> None:
        for ours, theirs in (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"),
                             ("var", "running_var")):
            mapping[f"{path}.{ours}"] = (f"{key}.{theirs}", _same)

    conv("conv1", "conv1", _grey_conv1 if config.in_channels == 1 else _torch_conv)
    bn("bn1", "bn1")
    for layer, blocks in enumerate(ENCODER_BLOCKS[config.encoder], start=1):
        for b in range(blocks):
            name = f"layer{layer}.{b}"
            conv(f"{name}.conv1", f"{name}.conv1")
            bn(f"{name}.bn1", f"{name}.bn1")
            conv(f"{name}.conv2", f"{name}.conv2")
            bn(f"{name}.bn2", f"{name}.bn2")
            if b == 0 and layer > 1:
                conv(f"{name}.downsample_conv", f"{name}.downsample.0")
                bn(f"{name}.downsample_bn", f"{name}.downsample.1")
    return mapping


def load_torchvision_resnet(model: DLinkNet, state_dict: Mapping[str, np.ndarray]) -> None:
    """Fills `model.encoder` in place from a torchvision resnet34 / resnet18 state dict.

    Convolution weights go from OIHW to HWIO; BatchNorm weight, bias, running_mean and
    running_var become scale, bias, mean and var. The classifier (`fc.*`) and
    `num_batches_tracked` are ignored; a `module.` prefix (DataParallel) is stripped. For a
    model with one input channel and an RGB checkpoint, `conv1`'s weights are summed over the
    colour channels: the response to a grey image fed as three equal channels. Nothing is ever
    downloaded; read a file with e.g. `tiqa.models.torch_legacy.load_state_dict`. Checked by
    `params.assign_checked`: any mismatch raises, naming every problem, and leaves the model
    untouched.
    """
    state = {k.removeprefix("module."): np.asarray(v) for k, v in state_dict.items()}
    ignored = {k for k in state if k.startswith("fc.") or k.endswith(".num_batches_tracked")}
    mapping = {f"encoder.{path}": value
               for path, value in torchvision_resnet_mapping(model.config).items()}
    variables = {path: variable for path, variable in variables_by_path(model).items()
                 if path.startswith("encoder.")}
    assign_checked(variables, mapping, state, ignored=ignored,
                   what=f"D-LinkNet {model.config.encoder} encoder")
