"""Small images for tests: real nano-CT crops, a smooth synthetic slice, radial profiles."""

import glob
import pathlib

import numpy as np
import tifffile
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def real_crops(nanoct_dir, count=2, size=224):
    crops = []
    for path in sorted(glob.glob(str(nanoct_dir / "images" / "*.tif")))[:count]:
        image = tifffile.imread(path).astype(np.float64)
        low, high = np.percentile(image, [0.5, 99.5])
        image = np.clip((image - low) / (high - low), 0, 1)
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        crops.append(image[top:top + size, left:left + size].astype(np.float32))
    return np.stack(crops)


def check_png(path: pathlib.Path) -> None:
    """A whole, decodable PNG of a real figure: at least 300x200 and not a blank canvas."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("L"))
    assert width >= 300 and height >= 200
    assert pixels.std() > 5  # something is drawn, not a blank canvas


def synthetic(size=224, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    smooth = 0.5 + 0.3 * np.sin(6 * x) * np.cos(4 * y)
    return np.clip(smooth + 0.05 * rng.standard_normal((size, size)), 0, 1).astype(np.float32)


def radial_profile(image: np.ndarray) -> np.ndarray:
    """Mean |value| per integer radius around (H // 2, W // 2), up to the inscribed radius."""
    height, width = image.shape
    rows, cols = np.mgrid[:height, :width]
    radius = np.rint(np.hypot(rows - height // 2, cols - width // 2)).astype(int)
    keep = radius <= min(height, width) // 2
    sums = np.bincount(radius[keep], np.abs(image[keep]))
    return sums / np.maximum(np.bincount(radius[keep]), 1)
