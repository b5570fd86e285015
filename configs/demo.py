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
    # Views over 180 degrees: enough for 256 px (their spectral lines are closer than 1.5
    # bins everywhere; 180 would leave the comb the view penalty charges, tiqa/view_check.py).
    config.angles = 360
    # Photons per view: the doses of 1e5 and 3e3 photons at 180 views.
    config.good = ml_collections.ConfigDict({"photons": 5e4, "gain_error_std": 0.0005})
    config.poor = ml_collections.ConfigDict({"photons": 1.5e3, "gain_error_std": 0.006})
    # How they are scored (configs/score.py); input, output and report are set by the demo.
    # score.checkpoint empty: the shipped default model.
    config.score = score.get_config()
    return config
