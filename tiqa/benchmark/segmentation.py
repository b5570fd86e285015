"""D-LinkNet34 throughput at 1024x1024: ours (the real train step of the segmentation phase and
the jitted eval forward) beside a PyTorch D-LinkNet34 (bf16 autocast, channels-last) run in the
same process when torch and a CUDA device are present."""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from tiqa.models.dlinknet import DLinkNet, DLinkNetConfig
from tiqa.models.forward import eval_forward
from tiqa.benchmark import timing
from tiqa.train import loop
from tiqa.train import segmentation as seg




def ours(*, batch: int, size: int, dtype: str, steps: int, encoder: str = "resnet34") -> dict:
    config = DLinkNetConfig.from_mapping({"encoder": encoder, "num_classes": 1, "dtype": dtype})
    model = nnx.jit(lambda: DLinkNet(config, rngs=nnx.Rngs(params=jax.random.key(0))))()
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1e-4)
    graphdef, state = loop.init_state(model, optimizer)
    mesh = loop.data_mesh()
    state = jax.device_put(state, loop.replicated(mesh))
    loss_fn = functools.partial(seg.segmentation_loss, bce_weight=1.0, dice_weight=1.0)
    step = loop.make_train_step(graphdef, optimizer,
                                lambda logits, b: loss_fn(logits, b["labels"]))
    images = jax.random.uniform(jax.random.key(1), (batch, size, size))
    batch_data = jax.device_put({"images": images, "labels": (images > 0.5).astype(jnp.int32)},
                                loop.batch_sharded(mesh))
    holder = {"state": state}

    def train():
        holder["state"], metrics = step(holder["state"], batch_data, jax.random.key(2))
        return metrics["loss"]

    start = time.perf_counter()
    train()
    compile_seconds = time.perf_counter() - start
    train_seconds = timing.best_seconds(train, steps)

    params, stats = holder["state"].params, holder["state"].batch_stats
    inference_seconds = timing.best_seconds(
        lambda: eval_forward(graphdef, params, stats, batch_data["images"]), steps)
    return {"name": f"ours D-LinkNet34 ({dtype})", "train_images_per_s": batch / train_seconds,
            "inference_images_per_s": batch / inference_seconds, "compile_s": compile_seconds}


def torch_peer(*, batch: int, size: int, steps: int) -> dict | None:
    """PyTorch D-LinkNet34 (the DeepGlobe DinkNet34 layout), bf16 autocast, channels-last, CUDA."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None

    def block(cin, cout, stride):
        layers = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                               nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                               nn.BatchNorm2d(cout))
        down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout else nn.Identity())
        return layers, down

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body, self.down = block(cin, cout, stride)

        def forward(self, x):
            return torch.relu(self.body(x) + self.down(x))

    def layer(cin, cout, count, stride):
        return nn.Sequential(Basic(cin, cout, stride), *[Basic(cout, cout, 1) for _ in range(count - 1)])

    class Decoder(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, cin // 4, 1), nn.BatchNorm2d(cin // 4), nn.ReLU(inplace=True),
                nn.ConvTranspose2d(cin // 4, cin // 4, 3, 2, 1, 1), nn.BatchNorm2d(cin // 4),
                nn.ReLU(inplace=True), nn.Conv2d(cin // 4, cout, 1), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True))

        def forward(self, x):
            return self.body(x)

    class DinkNet34(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
            self.e1, self.e2 = layer(64, 64, 3, 1), layer(64, 128, 4, 2)
            self.e3, self.e4 = layer(128, 256, 6, 2), layer(256, 512, 3, 2)
            self.dilate = nn.ModuleList([nn.Conv2d(512, 512, 3, 1, d, dilation=d) for d in (1, 2, 4, 8)])
            self.d4, self.d3 = Decoder(512, 256), Decoder(256, 128)
            self.d2, self.d1 = Decoder(128, 64), Decoder(64, 64)
            self.head = nn.Sequential(nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(inplace=True),
                                      nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(32, 1, 3, padding=1))

        def forward(self, x):
            e1 = self.e1(self.stem(x))
            e2 = self.e2(e1)
            e3 = self.e3(e2)
            e4 = self.e4(e3)
            out, d = e4, e4
            for conv in self.dilate:
                d = torch.relu(conv(d))
                out = out + d
            d4 = self.d4(out) + e3
            d3 = self.d3(d4) + e2
            d2 = self.d2(d3) + e1
            return self.head(self.d1(d2))

    device = torch.device("cuda")
    model = DinkNet34().to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.rand(batch, 1, size, size, device=device).to(memory_format=torch.channels_last)
    targets = (images > 0.5).float()

    def train():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(images).float()
        probability = torch.sigmoid(logits)
        dice = (2 * (probability * targets).sum() + 1) / (probability.sum() + targets.sum() + 1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, targets) + 1 - dice
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def infer():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(images)

    def timed(function):
        for _ in range(3):
            function()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            function()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / steps

    model.train()
    train_seconds = timed(train)
    model.eval()
    inference_seconds = timed(infer)
    return {"name": "PyTorch D-LinkNet34 (bf16 autocast, channels-last)",
            "train_images_per_s": batch / train_seconds,
            "inference_images_per_s": batch / inference_seconds, "compile_s": 0.0}


@dataclasses.dataclass(frozen=True)
class SegmentationBenchmark:
    """configs/benchmark.py's `segmentation` block."""
    batch: int
    size: int
    dtype: str
    steps: int


def run(cfg: SegmentationBenchmark) -> dict:
    result = {"ours": ours(batch=cfg.batch, size=cfg.size, dtype=cfg.dtype, steps=cfg.steps)}
    result["peer"] = torch_peer(batch=cfg.batch, size=cfg.size, steps=cfg.steps)
    return result


def format_result(result: dict, cfg: SegmentationBenchmark) -> str:
    lines = [f"segmentation benchmark: D-LinkNet34, batch {cfg.batch} at {cfg.size}x{cfg.size} on "
             f"{jax.devices()[0].device_kind} x{jax.device_count()}",
             f"  {'network':<52s}{'train img/s':>12s}{'infer img/s':>13s}"]
    rows = [result["ours"]] + ([result["peer"]] if result["peer"] else [])
    for row in rows:
        lines.append(f"  {row['name']:<52s}{row['train_images_per_s']:12.2f}"
                     f"{row['inference_images_per_s']:13.2f}")
    if result["peer"]:
        lines.append(f"  ratio ours / PyTorch: train "
                     f"{result['ours']['train_images_per_s'] / result['peer']['train_images_per_s']:.2f}x, "
                     f"inference {result['ours']['inference_images_per_s'] / result['peer']['inference_images_per_s']:.2f}x")
    else:
        lines.append("  PyTorch peer: not run (needs torch and a CUDA device; the GPU machine has them)")
    return "\n".join(lines)
