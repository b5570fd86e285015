"""The demo (make demo): python -m launch.demo [--config.workdir=DIR]. Runs on data the project makes itself."""

import ml_collections

from configs import score


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.workdir = "work/demo"
    config.seed = 0
    # One synthetic electrode, scanned twice: a good acquisition and a poor one (fewer photons,
    # stronger detector gain errors, hence more noise and rings).
    config.slices = 12
    config.size = 256
    config.angles = 180
    config.good = ml_collections.ConfigDict({"photons": 1e5, "gain_error_std": 0.0005})
    config.poor = ml_collections.ConfigDict({"photons": 3e3, "gain_error_std": 0.006})
    # How they are scored (configs/score.py); input, output and report are set by the demo.
    # score.checkpoint empty: the shipped default model.
    config.score = score.get_config()
    return config
