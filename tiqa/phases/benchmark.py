"""Which benchmark to run, on which originals; each suite prints its figures and a ratio."""

from __future__ import annotations

import jax
import numpy as np

from tiqa import errors, io, phantom, preprocessing
from tiqa.benchmark import acquisition, datagen, scale, score, segmentation, train
from tiqa.phases import settings

SUITES = ("datagen", "train", "score", "segmentation", "acquisition", "scale")


def load_originals(config, count: int) -> np.ndarray:
    """`count` (crop, crop) originals in [0, 1]: from config.input, or phantom slices."""
    if config.input:
        slices = [io.read_item(item) for item in io.list_inputs(config.input)]
    else:
        reconstruction, _ = phantom.phantom_volume(
            config.seed, n_slices=min(count, 8), size=max(config.crop + 32, 256))
        slices = list(phantom.to_unit_range(reconstruction))
    crops = [np.asarray(preprocessing.preprocess(s, key=None, resize=255, crop=config.crop)) for s in slices]
    # Repeat the distinct originals to fill the batch; the work per original is the same.
    return np.stack([crops[i % len(crops)] for i in range(count)]).astype(np.float32)


def run(config) -> dict:
    """Runs `config.suite` and prints its table; returns the figures."""
    if config.suite not in SUITES:
        raise errors.InputError(f"config.suite={config.suite!r} is not one of {SUITES}")
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}: {jax.devices()}")
    if config.suite == "datagen":
        originals = load_originals(config, config.datagen.originals)
        result = datagen.run(originals, config.datagen.reference_originals, config.datagen.repeats,
                             config.datagen.kinds, config.seed,
                             peer_ssim_pairs=config.datagen.peer_ssim_pairs,
                             peer_blur_images=config.datagen.peer_blur_images)
        print(datagen.format_result(result))
        return result
    if config.suite == "train":
        bench = settings.block(train.TrainBenchmark, config.train, "config.train")
        result = train.run(bench, config.seed,
                           progress=lambda row: print(train.format_row(row), flush=True))
        print(train.format_result(result, bench))
        return result
    if config.suite == "score":
        bench = settings.block(score.ScoreBenchmark, config.score, "config.score")
        result = score.run(bench, config.seed)
        print(score.format_result(result, bench))
        return result
    if config.suite == "segmentation":
        bench = settings.block(segmentation.SegmentationBenchmark, config.segmentation,
                               "config.segmentation")
        result = segmentation.run(bench)
        print(segmentation.format_result(result, bench))
        return result
    if config.suite == "acquisition":
        result = acquisition.run(settings.block(
            acquisition.AcquisitionBenchmark, config.acquisition, "config.acquisition"), config.seed)
        print(acquisition.format_result(result))
        return result
    if config.suite == "scale":
        result = scale.run(settings.block(scale.ScaleBenchmark, config.scale, "config.scale"),
                           config.seed)
        print(scale.format_result(result))
        return result
    raise AssertionError("unreachable")
