"""The VGG16 trunk (RankIQA baseline): layout, IQA network on it, and one training step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tiqa.models.iqa import IQAConfig, IQANet, build_model
from tiqa.models.vgg import VGG, VGGConfig, count_conv_params
from tiqa.train import loop, losses

VGG_TINY = IQAConfig(backbone="vgg16", pretrained=False, hidden=(8,))
# VGG16's five stages and 13 convolutions, narrowed: the same wiring, a far shorter compile.
NARROW_STAGES = ((8, 8), (8, 8), (8, 8, 8), (8, 8, 8), (16, 16, 16))
VGG_NARROW = IQAConfig(backbone="vgg16", pretrained=False, hidden=(8,),
                       trunk_overrides=(("stages", NARROW_STAGES),))


@pytest.fixture(scope="module")
def abstract_vgg16():
    return nnx.eval_shape(lambda: VGG(VGGConfig.vgg16(), rngs=nnx.Rngs(0)))


def test_vgg16_conv_parameter_count_matches_torchvision(abstract_vgg16):
    # torchvision vgg16().features: 13 convolutions, 14,714,688 parameters.
    assert len(abstract_vgg16.convs) == 13
    assert count_conv_params(abstract_vgg16) == 14_714_688
    assert abstract_vgg16.config.head_width == 512
    # No BatchNorm: only parameters, and an empty BatchStat state from the three-way split.
    _, params, stats = nnx.split(abstract_vgg16, nnx.Param, nnx.BatchStat)
    assert len(jax.tree.leaves(stats)) == 0
    assert len(jax.tree.leaves(params)) == 26


@pytest.mark.slow
def test_vgg16_iqa_network_scores_under_jit():
    model = IQANet(VGG_TINY, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, train=False))
    images = jax.random.uniform(jax.random.key(1), (3, 32, 32))
    scores = forward(state, images)
    assert scores.shape == (3,) and scores.dtype == jnp.float32
    assert np.all(np.isfinite(scores))
    features = model.trunk.features(images[..., None].repeat(3, -1), train=False)
    assert features.shape == (3, 512) and features.dtype == jnp.float32


def test_vgg_bfloat16_compute_float32_params():
    # VGG16's five stages, narrowed: the dtype handling is the same, the compile 10x shorter.
    trunk = VGG(VGGConfig.vgg16(dtype=jnp.bfloat16, stages=NARROW_STAGES), rngs=nnx.Rngs(0))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(nnx.state(trunk, nnx.Param)))
    features = jax.jit(lambda x: trunk.features(x, train=False))(jnp.ones((2, 32, 32, 3)))
    assert features.dtype == jnp.float32 and features.shape == (2, 16)


def test_vgg16_pretrained_raises_clear_error():
    with pytest.raises(ValueError, match="no ImageNet weights ship for 'vgg16'.*pretrained=False"):
        IQANet(IQAConfig(backbone="vgg16", pretrained=True), rngs=nnx.Rngs(0))


def test_vgg16_rejects_too_small_inputs():
    trunk = VGG(VGGConfig.vgg16(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="at least 32 pixels"):
        trunk.features(jnp.ones((1, 16, 16, 3)), train=False)


@pytest.mark.slow
def test_vgg16_one_rank_train_step_is_finite():
    model = build_model(VGG_NARROW, jax.random.key(0))
    assert len(model.trunk.convs) == 13
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1e-4)
    graphdef, state = loop.init_state(model, optimizer)
    assert len(jax.tree.leaves(state.batch_stats)) == 0
    step = loop.make_train_step(graphdef, optimizer, losses.rank_loss_fn(6.0))
    # rank_batch's layout: 3 groups (original x kind) of levels 0..5, flattened.
    groups, levels = 3, 6
    batch = {
        "images": jax.random.uniform(jax.random.key(2), (groups * levels, 32, 32)),
        "levels": jnp.tile(jnp.arange(levels), groups),
        "group_ids": jnp.repeat(jnp.arange(groups), levels),
    }
    new_state, metrics = step(state, batch, jax.random.key(3))
    assert np.isfinite(float(metrics["loss"]))
    assert int(new_state.step) == 1
