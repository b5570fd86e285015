"""Training and inference throughput of the score network, beside a PyTorch peer when present.

Ours: the real rank-phase step (`loop.make_train_step` with the hinge loss, Adam, dropout,
the IQA head), on a fixed batch and with the on-device batch generation of the rank phase;
inference is the jitted eval forward pass. The peer: timm's efficientnet_b0 with bf16
autocast and channels-last, eager and torch.compile, run in the same process when torch,
timm and a CUDA device are available (the GPU machine). On the CPU the peer is the same Lite0
score network in plain PyTorch (`torch_peer`), when torch is importable. Otherwise skipped
with a note.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tiqa.models.forward import eval_forward
from tiqa.models.iqa import IQAConfig, build_model
from tiqa.benchmark import timing, torch_peer
from tiqa.train import batches, loop, losses




def ours(variant: str, *, batch: int, inference_batch: int, size: int, dtype: str,
         steps: int, seed: int = 0) -> dict:
    """images/s of the rank-phase train step and of inference for one backbone."""
    model_cfg = IQAConfig.from_mapping({"backbone": variant, "pretrained": False, "dtype": dtype})
    model = build_model(model_cfg, jax.random.key(seed))
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=3e-5)
    graphdef, state = loop.init_state(model, optimizer)
    mesh = loop.data_mesh()
    state = jax.device_put(state, loop.replicated(mesh))
    train_step = loop.make_train_step(graphdef, optimizer, losses.rank_loss_fn(6.0))

    originals = max(1, batch // 18)
    pool = batches.build_pool(
        [np.random.default_rng(i).random((size + 31, size + 31), np.float32) for i in range(4)],
        [4.0] * 4, resize=0, crop=size)
    pool = jax.device_put(pool, loop.replicated(mesh))
    make_batch = jax.jit(functools.partial(batches.rank_batch, key=jax.random.key(1),
                                           originals_per_batch=originals, crop=size,
                                           kinds=("blur", "noise", "ring")),
                         out_shardings=loop.batch_sharded(mesh))
    fixed = make_batch(pool, jnp.int32(0))
    images_per_step = fixed["images"].shape[0]
    key = jax.random.key(2)
    holder = {"state": state}

    def step_fixed():
        holder["state"], metrics = train_step(holder["state"], fixed, key)
        return metrics["loss"]

    counter = {"step": 0}

    def step_with_data():
        counter["step"] += 1
        data = make_batch(pool, jnp.int32(counter["step"]))
        holder["state"], metrics = train_step(holder["state"], data, key)
        return metrics["loss"]

    start = time.perf_counter()
    step_fixed()
    compile_seconds = time.perf_counter() - start
    train_seconds = timing.best_seconds(step_fixed, steps)
    rank_seconds = timing.best_seconds(step_with_data, steps)

    images = jax.device_put(jax.random.uniform(jax.random.key(3), (inference_batch, size, size)),
                            loop.batch_sharded(mesh))
    params, stats = holder["state"].params, holder["state"].batch_stats
    inference_seconds = timing.best_seconds(lambda: eval_forward(graphdef, params, stats, images),
                                            steps)
    return {
        "variant": variant, "dtype": dtype, "batch": images_per_step,
        "train_images_per_s": images_per_step / train_seconds,
        "rank_step_images_per_s": images_per_step / rank_seconds,
        "inference_images_per_s": inference_batch / inference_seconds,
        "inference_batch": inference_batch, "compile_s": compile_seconds,
    }


def network_of(timm_name: str) -> str:
    """Our variant name for a timm EfficientNet: efficientnet_b0 -> b0, tf_efficientnet_lite0 ->
    lite0 (the TensorFlow-ported Lite weights' layout, which ours follows)."""
    return timm_name.removeprefix("tf_").removeprefix("efficientnet_")


def timm_peer(model_name: str, *, batch: int, inference_batch: int, size: int, steps: int,
              compile_model: bool) -> dict | None:
    """timm `model_name` with bf16 autocast and channels-last on CUDA; None without torch/CUDA."""
    try:
        import timm
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda")
    model = timm.create_model(model_name, num_classes=1).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-5)
    runner = torch.compile(model) if compile_model else model
    images = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
    targets = torch.randn(batch, device=device)

    def train_step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.mse_loss(runner(images)[:, 0].float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def timed(function, count):
        for _ in range(3):
            function()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(count):
            function()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / count

    model.train()
    start = time.perf_counter()
    train_step()
    torch.cuda.synchronize()
    compile_seconds = time.perf_counter() - start
    train_seconds = timed(train_step, steps)
    model.eval()
    inference_images = torch.randn(inference_batch, 3, size, size, device=device).to(
        memory_format=torch.channels_last)

    @torch.no_grad()
    def infer():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            runner(inference_images)

    inference_seconds = timed(infer, steps)
    return {"variant": f"timm {model_name}{' compiled' if compile_model else ' eager'}",
            "network": network_of(model_name),
            "train_images_per_s": batch / train_seconds,
            "inference_images_per_s": inference_batch / inference_seconds,
            "compile_s": compile_seconds}


@dataclasses.dataclass(frozen=True)
class TrainBenchmark:
    """configs/benchmark.py's `train` block."""
    variants: tuple[str, ...]
    batch: int
    inference_batch: int
    size: int
    dtype: str
    steps: int
    # timm networks run eager beside ours on the GPU; those in `timm_compiled` run again
    # under torch.compile (about 80 s of compilation each).
    timm_peers: tuple[str, ...] = ("efficientnet_b0", "tf_efficientnet_lite0")
    timm_compiled: tuple[str, ...] = ("efficientnet_b0",)


def run(cfg: TrainBenchmark, seed: int, progress: Callable[[dict], None] | None = None) -> dict:
    """Our variants, then the peers; `progress` gets each row as it is measured, so a run cut
    short (a time limit on the GPU machine) still reports the rows it finished."""
    report = progress or (lambda row: None)
    results = []
    for variant in cfg.variants:
        results.append(ours(variant, batch=cfg.batch, inference_batch=cfg.inference_batch,
                            size=cfg.size, dtype=cfg.dtype, steps=cfg.steps, seed=seed))
        report(results[-1])
    peers = []
    if jax.default_backend() == "cpu":
        peer = torch_peer.cpu_peer(batch=cfg.batch, inference_batch=cfg.inference_batch,
                                   size=cfg.size, steps=cfg.steps, seed=seed)
        return {"ours": results, "peers": [peer] if peer else []}
    runs = [(name, False) for name in cfg.timm_peers] + [(name, True) for name in cfg.timm_compiled]
    for name, compile_model in runs:
        peer = timm_peer(name, batch=cfg.batch, inference_batch=cfg.inference_batch,
                         size=cfg.size, steps=cfg.steps, compile_model=compile_model)
        if peer is not None:
            peers.append(peer)
            report(peer)
    return {"ours": results, "peers": peers}


def format_row(row: dict) -> str:
    """One measured row as a line (ours or a peer)."""
    name = (f"ours {row['variant']} (batch {row['batch']})" if "batch" in row
            else row["variant"])
    return (f"  {name:<34s} train {row['train_images_per_s']:.1f} img/s, inference "
            f"{row['inference_images_per_s']:.1f} img/s, compile {row['compile_s']:.1f} s")


def format_result(result: dict, cfg: TrainBenchmark) -> str:
    lines = [f"train benchmark: {cfg.size}x{cfg.size}, rank-phase step (hinge loss, Adam, IQA head), "
             f"compute {cfg.dtype}, on {jax.devices()[0].device_kind} x{jax.device_count()}",
             f"  {'network':<26s}{'train img/s':>13s}{'rank step img/s':>17s}{'infer img/s':>13s}"
             f"{'compile s':>11s}"]
    for row in result["ours"]:
        lines.append(f"  {'ours ' + row['variant'] + ' (batch ' + str(row['batch']) + ')':<26s}"
                     f"{row['train_images_per_s']:13.1f}{row['rank_step_images_per_s']:17.1f}"
                     f"{row['inference_images_per_s']:13.1f}{row['compile_s']:11.1f}")
    for peer in result["peers"]:
        lines.append(f"  {peer['variant']:<26s}{peer['train_images_per_s']:13.1f}{'':>17s}"
                     f"{peer['inference_images_per_s']:13.1f}{peer['compile_s']:11.1f}")
    if result["peers"]:
        # Each peer is compared with our run of the same network (timm B0 on the GPU, Lite0 on the CPU).
        for peer in result["peers"]:
            ours = next((r for r in result["ours"] if r["variant"] == peer["network"]), None)
            if ours:
                lines.append(f"  ratio ours {peer['network']} / {peer['variant']}: train "
                             f"{ours['train_images_per_s'] / peer['train_images_per_s']:.2f}x, inference "
                             f"{ours['inference_images_per_s'] / peer['inference_images_per_s']:.2f}x")
    else:
        lines.append("  peer: not run (the CPU peer needs torch importable; the GPU peer needs torch, "
                     "timm and a CUDA device, which the GPU machine has)")
    return "\n".join(lines)
