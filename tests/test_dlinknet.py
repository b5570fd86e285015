"""D-LinkNet: output shapes, torchvision encoder parameter counts, the size check, PyTorch's
transposed convolution, training-mode BatchNorm updates and gradients, torchvision weights."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tests import tiny_models
from tiqa.models.dlinknet import (DLinkNet, DLinkNetConfig, encoder_param_count,
                                  load_torchvision_resnet, TorchConvTranspose)

# torchvision resnet34 / resnet18 (3 input channels) less the 1000-class fc: 21,797,672 - 513,000
# and 11,689,512 - 513,000.
ENCODER_PARAMS = {"resnet34": 21_284_672, "resnet18": 11_176_512}


def _abstract(config: DLinkNetConfig) -> DLinkNet:
    """The module tree without computing an initialisation."""
    return nnx.eval_shape(lambda: DLinkNet(config, rngs=nnx.Rngs(0)))


def _random_filled(config: DLinkNetConfig, seed: int = 0) -> DLinkNet:
    """Random weights and statistics drawn by numpy: no compilation of the real initialisers,
    which costs more than the forward passes on this CPU."""
    return tiny_models.fill_randomly(_abstract(config), seed)


@functools.partial(jax.jit, static_argnums=0)
def _eval_forward(graphdef, params, batch_stats, images):
    return nnx.merge(graphdef, params, batch_stats)(images, train=False)


@pytest.fixture(scope="module")
def resnet34_models() -> dict[int, tuple]:
    """num_classes -> (graphdef, params, batch_stats) of a D-LinkNet34."""
    return {n: nnx.split(_random_filled(DLinkNetConfig(num_classes=n), seed=n),
                         nnx.Param, nnx.BatchStat)
            for n in (1, 3)}


@pytest.mark.slow
@pytest.mark.parametrize("num_classes", [1, 3])
@pytest.mark.parametrize("size", [256, 1024])
def test_output_shape(resnet34_models, size, num_classes):
    graphdef, params, batch_stats = resnet34_models[num_classes]
    images = jnp.asarray(np.random.default_rng(size).uniform(size=(1, size, size)), jnp.float32)
    logits = _eval_forward(graphdef, params, batch_stats, images)
    assert logits.shape == (1, size, size, num_classes)
    assert logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_shapes_without_computing():
    """Non-square input, explicit channel axis, bfloat16 compute with float32 parameters."""
    config = DLinkNetConfig(encoder="resnet18", num_classes=2, in_channels=3,
                            dtype=jnp.bfloat16)
    model = _abstract(config)
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    images = jax.ShapeDtypeStruct((2, 64, 96, 3), jnp.float32)
    out = jax.eval_shape(lambda p, s, x: nnx.merge(graphdef, p, s)(x, train=False),
                         params, batch_stats, images)
    assert out.shape == (2, 64, 96, 2) and out.dtype == jnp.float32
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["resnet34", "resnet18"])
def test_encoder_parameter_count(encoder):
    rgb = _abstract(DLinkNetConfig(encoder=encoder, in_channels=3))
    assert encoder_param_count(rgb) == ENCODER_PARAMS[encoder]
    # Grey input: conv1 is 7x7x1x64 instead of 7x7x3x64.
    grey = _abstract(DLinkNetConfig(encoder=encoder))
    assert encoder_param_count(grey) == ENCODER_PARAMS[encoder] - 2 * 49 * 64


def test_state_is_only_params_and_batch_stats():
    model = _abstract(DLinkNetConfig(encoder="resnet18"))
    *_, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    assert not jax.tree.leaves(rest)


@pytest.mark.parametrize("shape", [(1, 100, 96), (1, 64, 48), (1, 64, 64, 3)])
def test_bad_input_raises(shape):
    model = _abstract(DLinkNetConfig(encoder="resnet18"))
    with pytest.raises(ValueError):
        model(jnp.zeros(shape), train=False)  # raised before any computation


def _torch_conv_transpose_reference(x, weight, bias, stride, padding, output_padding):
    """PyTorch's ConvTranspose2d by its definition, in numpy (NCHW, weight (in, out, k, k)):
    every input pixel scatters its weighted kernel to stride * position - padding."""
    n, cin, h, w = x.shape
    _, cout, k, _ = weight.shape
    full = np.zeros((n, cout, (h - 1) * stride + k + output_padding,
                     (w - 1) * stride + k + output_padding))
    for i in range(h):
        for j in range(w):
            full[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum(
                "nc,cokl->nokl", x[:, :, i, j], weight)
    out_h = (h - 1) * stride - 2 * padding + k + output_padding
    out_w = (w - 1) * stride - 2 * padding + k + output_padding
    out = full[:, :, padding:padding + out_h, padding:padding + out_w]
    return out + bias[None, :, None, None]


@pytest.mark.slow
@pytest.mark.parametrize("kernel, stride, padding, output_padding",
                         [(3, 2, 1, 1), (4, 2, 1, 0), (2, 2, 0, 0), (5, 3, 1, 0)])
def test_transposed_conv_matches_pytorch_definition(kernel, stride, padding, output_padding):
    """D-LinkNet's two layouts (3/2/1/1 in the decoder, 4/2/1/0 in the head), and two others
    whose output phases read other input offsets, against PyTorch's definition in numpy."""
    rng = np.random.default_rng(kernel)
    cin, cout = 3, 4
    x = rng.normal(size=(2, cin, 5, 7))
    weight = rng.normal(size=(cin, cout, kernel, kernel))
    bias = rng.normal(size=(cout,))
    expected = _torch_conv_transpose_reference(x, weight, bias, stride, padding, output_padding)

    layer = TorchConvTranspose(cin, cout, kernel, stride, padding, output_padding,
                               dtype=jnp.float32, rngs=nnx.Rngs(0))
    layer.kernel.set_value(jnp.asarray(weight.transpose(2, 3, 1, 0), jnp.float32))
    layer.bias.set_value(jnp.asarray(bias, jnp.float32))
    got = np.asarray(layer(jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32)))
    assert got.shape == (2, 5 * stride, 7 * stride, cout)  # exactly `stride` times H and W
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_training_step_updates_statistics_and_gives_finite_gradients():
    model = _random_filled(DLinkNetConfig(encoder="resnet18"))
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.uniform(size=(2, 64, 64)), jnp.float32)
    labels = jnp.asarray(rng.uniform(size=(2, 64, 64)) > 0.5, jnp.float32)

    def loss_fn(params, batch_stats, key):
        net = nnx.merge(graphdef, params, batch_stats, copy=True)
        logits = net(images, train=True, key=key)
        loss = optax.sigmoid_binary_cross_entropy(logits[..., 0], labels).mean()
        return loss, nnx.state(net, nnx.BatchStat)

    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (loss, new_stats), grads = step(params, batch_stats, jax.random.key(1))
    assert np.isfinite(float(loss))
    grad_leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grad_leaves)
    assert float(jnp.abs(grads["encoder"]["conv1"]["kernel"][...]).max()) > 0
    assert float(jnp.abs(grads["finalconv3"]["kernel"][...]).max()) > 0
    # Every running average moved towards its batch statistic.
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), batch_stats, new_stats)
    assert all(jax.tree.leaves(changed))


def _torchvision_state_dict(encoder: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A torchvision ResNet state dict of random numbers, keys and shapes written out by hand."""
    state: dict[str, np.ndarray] = {}

    def conv(key: str, cout: int, cin: int, k: int) -> None:
        state[f"{key}.weight"] = rng.normal(size=(cout, cin, k, k)).astype(np.float32)

    def bn(key: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            state[f"{key}.{name}"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        state[f"{key}.num_batches_tracked"] = np.array(7)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    blocks = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}[encoder]
    for layer, (n, c) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        for b in range(n):
            key = f"layer{layer}.{b}"
            conv(f"{key}.conv1", c, cin if b == 0 else c, 3)
            bn(f"{key}.bn1", c)
            conv(f"{key}.conv2", c, c, 3)
            bn(f"{key}.bn2", c)
            if b == 0 and layer > 1:
                conv(f"{key}.downsample.0", c, cin, 1)
                bn(f"{key}.downsample.1", c)
        cin = c
    state["fc.weight"] = rng.normal(size=(1000, 512)).astype(np.float32)
    state["fc.bias"] = np.zeros(1000, np.float32)
    return state


def test_load_torchvision_resnet():
    state = _torchvision_state_dict("resnet18", np.random.default_rng(0))
    model = _abstract(DLinkNetConfig(encoder="resnet18"))
    load_torchvision_resnet(model, state)
    enc = model.encoder
    np.testing.assert_array_equal(enc.layer2[0].downsample_conv.kernel[...],
                                  state["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(enc.layer4[1].bn2.var[...], state["layer4.1.bn2.running_var"])
    # Grey model, RGB checkpoint: conv1 summed over the colour channels.
    np.testing.assert_allclose(enc.conv1.kernel[...][:, :, 0, :],
                               state["conv1.weight"].sum(axis=1).transpose(1, 2, 0), rtol=1e-6)

    with pytest.raises(ValueError, match="layer5.0.conv1.weight"):
        load_torchvision_resnet(model, {**state, "layer5.0.conv1.weight": np.zeros(1)})
    with pytest.raises(ValueError, match="missing.*layer3.1.bn1.bias"):
        load_torchvision_resnet(model, {k: v for k, v in state.items()
                                        if k != "layer3.1.bn1.bias"})
    # A resnet34 file does not fit a resnet18 encoder.
    with pytest.raises(ValueError, match="left unmapped"):
        load_torchvision_resnet(model, _torchvision_state_dict("resnet34",
                                                               np.random.default_rng(1)))


def _numpy_conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, dilation: int) -> np.ndarray:
    """A k x k convolution (cross-correlation, as lax) of (H, W, C) with zero padding that keeps
    the size, dilation d: the reference for DinkNet's centre, in float64."""
    k = kernel.shape[0]
    pad = dilation * (k // 2)
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    height, width = x.shape[:2]
    out = np.zeros((height, width, kernel.shape[-1])) + bias
    for i in range(k):
        for j in range(k):
            window = padded[i * dilation:i * dilation + height, j * dilation:j * dilation + width]
            out += window @ kernel[i, j]
    return out


def test_centre_block_equals_a_numpy_reference():
    from tiqa.models.dlinknet import DBlock

    block = tiny_models.fill_randomly(
        nnx.eval_shape(lambda: DBlock(4, DLinkNetConfig(), rngs=nnx.Rngs(0))), seed=3)
    x = np.random.default_rng(4).normal(size=(1, 20, 20, 4))
    # x + d1 + d2 + d3 + d4, d_i = relu(conv_i(d_{i-1})) with dilations 1, 2, 4, 8.
    expected, d = x[0].copy(), x[0]
    for conv, dilation in ((block.dilate1, 1), (block.dilate2, 2), (block.dilate3, 4),
                           (block.dilate4, 8)):
        d = np.maximum(_numpy_conv_same(d, np.asarray(conv.kernel.get_value(), np.float64),
                                        np.asarray(conv.bias.get_value(), np.float64), dilation), 0)
        expected = expected + d
    got = np.asarray(block(jnp.asarray(x, jnp.float32)))[0]
    scale = np.abs(expected).max()
    assert scale > 1.0  # of order one, so the tolerance below means something
    np.testing.assert_allclose(got, expected, atol=1e-4 * scale,
                               err_msg="D-LinkNet's centre block differs from x + d1 + d2 + d3 + d4")


@pytest.mark.slow
def test_forward_equals_a_reference_built_from_its_parts():
    model = _random_filled(DLinkNetConfig(encoder="resnet18", num_classes=1), seed=5)
    images = jnp.asarray(np.random.default_rng(6).uniform(size=(1, 64, 64)), jnp.float32)
    got = np.asarray(model(images, train=False))

    def reference(centre_block=True, skips=(True, True, True)):
        # The paper's wiring: centre = dblock(e4); d4 = dec4(centre) + e3; d3 = dec3(d4) + e2;
        # d2 = dec2(d3) + e1; d1 = dec1(d2); then deconv, conv, conv (ReLU between).
        e1, e2, e3, e4 = model.encoder(model._prepare(images), train=False)
        centre = model.dblock(e4) if centre_block else e4
        d4 = model.decoder4(centre, train=False) + (e3 if skips[0] else 0)
        d3 = model.decoder3(d4, train=False) + (e2 if skips[1] else 0)
        d2 = model.decoder2(d3, train=False) + (e1 if skips[2] else 0)
        d1 = model.decoder1(d2, train=False)
        y = jax.nn.relu(model.finaldeconv1(d1))
        y = jax.nn.relu(model.finalconv2(y))
        return np.asarray(model.finalconv3(y))

    expected = reference()
    tolerance = 1e-4 * np.abs(expected).max()
    np.testing.assert_allclose(got, expected, atol=tolerance,
                               err_msg="D-LinkNet's forward is not its centre block, decoders "
                                       "and skip connections as the paper wires them")
    # The check has teeth: leaving out the centre or any skip changes the output well beyond it.
    for variant in ({"centre_block": False}, {"skips": (False, True, True)},
                    {"skips": (True, False, True)}, {"skips": (True, True, False)}):
        assert np.abs(reference(**variant) - expected).max() > 100 * tolerance, variant
