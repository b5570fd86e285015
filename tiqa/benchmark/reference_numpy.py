"""Per-image float64 numpy GMSD and MDSI: the "reference approach" peer in the benchmarks.

Straight transcriptions of the MATLAB originals (Xue et al.'s ``GMSD.m``, Nafchi et al.'s
``MDSI.m``), one image at a time, written independently of ``tiqa.observers`` so that each checks
the other. Together with scikit-image's mse / psnr / ssim they are what a per-image script would
run. Images are (H, W) grey or (H, W, 3) RGB; pixels are scaled to 0..255 by ``255 / data_range``.
"""

import numpy as np


def _conv2_same_box(image: np.ndarray, size: int) -> np.ndarray:
    """MATLAB ``conv2(image, ones(size) / size^2, 'same')``: zeros beyond the edge; output pixel i
    covers rows i - (size-1)//2 .. i + size//2 (for 2: itself, right, lower, lower-right)."""
    before, after = (size - 1) // 2, size // 2
    padded = np.pad(image, ((before, after), (before, after)))
    height, width = image.shape
    total = np.zeros_like(image)
    for dy in range(size):
        for dx in range(size):
            total += padded[dy:dy + height, dx:dx + width]
    return total / size**2


def _prewitt_magnitude(image: np.ndarray) -> np.ndarray:
    """|gradient| from MATLAB ``conv2(image, [1 0 -1; 1 0 -1; 1 0 -1] / 3, 'same')`` and its
    transpose (zero padding)."""
    padded = np.pad(image, 1)
    height, width = image.shape
    grad_x = np.zeros_like(image)
    grad_y = np.zeros_like(image)
    for k in range(3):
        grad_x += (padded[k:k + height, 0:width] - padded[k:k + height, 2:width + 2]) / 3.0
        grad_y += (padded[0:height, k:k + width] - padded[2:height + 2, k:k + width]) / 3.0
    return np.sqrt(grad_x**2 + grad_y**2)


def _similarity(a: np.ndarray, b: np.ndarray, constant: float) -> np.ndarray:
    return (2.0 * a * b + constant) / (a**2 + b**2 + constant)


def _matlab_round(value: float) -> int:
    """Round half away from zero, as MATLAB (for the non-negative values used here)."""
    return int(np.floor(value + 0.5))


def gmsd_numpy(reference, distorted, data_range=1.0) -> float:
    """GMSD of one image pair, as ``GMSD.m`` (T = 170, 2x2 conv2 'same' mean, stride 2, Prewitt,
    ``std2``); RGB goes to grey with Y = 0.299 R + 0.587 G + 0.114 B."""
    images = []
    for image in (reference, distorted):
        image = np.asarray(image, dtype=np.float64) * (255.0 / data_range)
        if image.ndim == 3:
            image = image @ np.array([0.299, 0.587, 0.114])
        images.append(_conv2_same_box(image, 2)[::2, ::2])
    gms = _similarity(_prewitt_magnitude(images[0]), _prewitt_magnitude(images[1]), 170.0)
    return float(np.std(gms, ddof=1))


def mdsi_numpy(reference, distorted, data_range=1.0, combination="sum", alpha=0.6) -> float:
    """MDSI of one image pair, as ``MDSI.m`` (C1, C2, C3 = 140, 55, 550; f = round(min(H, W)/256)
    conv2 'same' box mean and stride f; L/H/M transform; gradient similarity with the fused image;
    'sum' or 'mult' combination; deviation pooling with exponents 0.25 in complex arithmetic)."""
    if combination not in ("sum", "mult"):
        raise ValueError(f"combination must be 'sum' or 'mult', got {combination!r}")
    lhm = []
    for image in (reference, distorted):
        image = np.asarray(image, dtype=np.float64) * (255.0 / data_range)
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        factor = max(1, _matlab_round(min(image.shape[:2]) / 256))
        red, green, blue = (_conv2_same_box(image[..., c], factor)[::factor, ::factor]
                            for c in range(3))
        lhm.append((0.2989 * red + 0.587 * green + 0.114 * blue,
                    0.30 * red + 0.04 * green - 0.35 * blue,
                    0.34 * red - 0.60 * green + 0.17 * blue))
    (lum_ref, h_ref, m_ref), (lum_dist, h_dist, m_dist) = lhm

    grad_ref, grad_dist = _prewitt_magnitude(lum_ref), _prewitt_magnitude(lum_dist)
    grad_fused = _prewitt_magnitude(0.5 * (lum_ref + lum_dist))
    gs = (_similarity(grad_ref, grad_dist, 140.0) + _similarity(grad_dist, grad_fused, 55.0)
          - _similarity(grad_ref, grad_fused, 55.0))
    cs = ((2.0 * (h_ref * h_dist + m_ref * m_dist) + 550.0)
          / (h_ref**2 + h_dist**2 + m_ref**2 + m_dist**2 + 550.0))
    # MATLAB turns powers of negative numbers complex (principal branch); so does numpy on complex.
    if combination == "sum":
        gcs = (alpha * gs + (1.0 - alpha) * cs).astype(np.complex128)
    else:
        gcs = gs.astype(np.complex128) ** 0.2 * cs.astype(np.complex128) ** 0.1
    z = gcs**0.25
    return float(np.mean(np.abs(z - z.mean())) ** 0.25)
