"""Data-generation benchmark: the batched JAX generator against the per-image reference path.

The reference approach (the original TIQA scripts, SPEC.md section 7) works one image at a time
in numpy and scikit-image: for each original, 15 distortions (3 kinds x 5 levels) and 5
observers each. Both paths run here on the same originals in the same process, and the
figure of merit is labelled (distorted) images per second.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from skimage import metrics

from tiqa import distortions, labels, observers, reference_distortions
from tiqa.benchmark import reference_numpy, timing


def _numpy_observers(reference: np.ndarray, distorted: np.ndarray) -> list[float]:
    return [
        metrics.mean_squared_error(reference, distorted),
        metrics.peak_signal_noise_ratio(reference, distorted, data_range=1.0),
        metrics.structural_similarity(reference, distorted, data_range=1.0, gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False),
        reference_numpy.gmsd_numpy(reference, distorted, data_range=1.0),
        reference_numpy.mdsi_numpy(reference, distorted, data_range=1.0, combination="sum"),
    ]


def label_per_image(originals: np.ndarray, kinds, seed: int = 0) -> int:
    """The reference path; returns how many distorted images it labelled."""
    rng = np.random.default_rng(seed)
    count = 0
    for original in originals.astype(np.float64):
        for kind in kinds:
            for level in range(1, distortions.NUM_LEVELS):
                distorted = reference_distortions.distort(kind, original, level, rng)
                _numpy_observers(original, distorted)
                count += 1
    return count


def torch_ops(*, ssim_pairs: int, blur_images: int, size: int, repeats: int,
              blur_sigma: float = 6.5) -> dict | None:
    """Two of the generator's operations beside their PyTorch GPU peers (SPEC.md section 7):
    mean SSIM of grey pairs (ours against torchmetrics, both Gaussian 11 taps, sigma 1.5) and a
    Gaussian blur (ours against torchvision's, both with scipy's 4-sigma radius; torchvision
    pads by reflection, ours by the edge pixel, which costs the same). None without
    torch, torchmetrics, torchvision and a CUDA device."""
    try:
        import torch
        import torchmetrics.functional as tm_functional
        import torchvision.transforms.functional as tv_functional
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    key_a, key_b = jax.random.split(jax.random.key(0))
    reference = jax.random.uniform(key_a, (ssim_pairs, size, size))
    distorted = jnp.clip(reference + 0.1 * jax.random.normal(key_b, reference.shape), 0.0, 1.0)
    ssim = jax.jit(observers.ssim)
    blur = jax.jit(functools.partial(distortions.gaussian_blur, sigma=blur_sigma))
    images = reference[:blur_images]
    ours_ssim = timing.best_seconds(lambda: ssim(reference, distorted), repeats)
    ours_blur = timing.best_seconds(lambda: blur(images), repeats)

    device = torch.device("cuda")
    torch_reference = torch.from_numpy(np.asarray(reference))[:, None].to(device)
    torch_distorted = torch.from_numpy(np.asarray(distorted))[:, None].to(device)
    torch_images = torch_reference[:blur_images]
    radius = int(distortions.GAUSSIAN_TRUNCATE * blur_sigma + 0.5)

    def timed(function):
        function()
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best

    peer_ssim = timed(lambda: tm_functional.structural_similarity_index_measure(
        torch_distorted, torch_reference, gaussian_kernel=True, sigma=1.5, kernel_size=11,
        data_range=1.0))
    peer_blur = timed(lambda: tv_functional.gaussian_blur(
        torch_images, kernel_size=2 * radius + 1, sigma=blur_sigma))
    return {"ssim_pairs": ssim_pairs, "blur_images": blur_images, "blur_sigma": blur_sigma,
            "ours_ssim_pairs_per_s": ssim_pairs / ours_ssim,
            "peer_ssim_pairs_per_s": ssim_pairs / peer_ssim,
            "ours_blur_images_per_s": blur_images / ours_blur,
            "peer_blur_images_per_s": blur_images / peer_blur}


def run(originals: np.ndarray, reference_originals: int, repeats: int, kinds, seed: int = 0,
        peer_ssim_pairs: int = 1024, peer_blur_images: int = 256) -> dict:
    """Times both paths on `originals` (N, H, W); returns the figures it prints."""
    config = labels.ProjectionConfig(kinds=tuple(kinds))
    project = jax.jit(labels.project, static_argnums=3)
    scores = np.full((len(originals),), 4.0, np.float32)
    key = jax.random.key(seed)

    start = time.perf_counter()
    jax.block_until_ready(project(originals, scores, key, config))
    compile_seconds = time.perf_counter() - start
    timings = []
    for repeat in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(project(originals, scores, jax.random.fold_in(key, repeat), config))
        timings.append(time.perf_counter() - start)
    per_call = min(timings)
    labelled = len(originals) * len(kinds) * (distortions.NUM_LEVELS - 1)
    batched_rate = labelled / per_call

    subset = originals[:reference_originals]
    start = time.perf_counter()
    reference_count = label_per_image(subset, kinds, seed)
    reference_rate = reference_count / (time.perf_counter() - start)

    return {
        "device": str(jax.devices()[0].device_kind),
        "originals": len(originals),
        "image_shape": tuple(originals.shape[1:]),
        "batched_images_per_s": batched_rate,
        "batched_compile_s": compile_seconds,
        "reference_images_per_s": reference_rate,
        "reference_originals": len(subset),
        "ratio": batched_rate / reference_rate,
        "torch_ops": torch_ops(ssim_pairs=peer_ssim_pairs, blur_images=peer_blur_images,
                               size=originals.shape[-1], repeats=repeats),
    }


def format_result(result: dict) -> str:
    height, width = result["image_shape"]
    lines = [
        f"datagen benchmark on {result['device']}, {width}x{height} crops, "
        f"15 distortions x 5 observers per original",
        f"  batched JAX generator : {result['batched_images_per_s']:10.1f} labelled images/s "
        f"({result['originals']} originals per call; compile {result['batched_compile_s']:.1f} s)",
        f"  per-image numpy/skimage: {result['reference_images_per_s']:10.1f} labelled images/s "
        f"({result['reference_originals']} originals)",
        f"  ratio                  : {result['ratio']:10.1f}x",
    ]
    ops = result["torch_ops"]
    if ops is None:
        lines.append("  PyTorch operation peers: not run (need torch, torchmetrics, torchvision "
                     "and a CUDA device; the GPU machine has them)")
        return "\n".join(lines)
    lines += [
        f"  SSIM, {ops['ssim_pairs']} pairs: ours {ops['ours_ssim_pairs_per_s']:.0f} pairs/s, "
        f"torchmetrics {ops['peer_ssim_pairs_per_s']:.0f} pairs/s, ratio "
        f"{ops['ours_ssim_pairs_per_s'] / ops['peer_ssim_pairs_per_s']:.2f}x",
        f"  Gaussian blur sigma {ops['blur_sigma']}, {ops['blur_images']} images: ours "
        f"{ops['ours_blur_images_per_s']:.0f} img/s, torchvision "
        f"{ops['peer_blur_images_per_s']:.0f} img/s, ratio "
        f"{ops['ours_blur_images_per_s'] / ops['peer_blur_images_per_s']:.2f}x",
    ]
    return "\n".join(lines)
