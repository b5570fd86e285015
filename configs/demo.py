"""The demo: python -m launch.demo (make demo). Runs on data the project makes itself."""

import ml_collections

from configs import generate


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.workdir = "work/demo"
    config.seed = 0
    # The phantom: a simulated scan of a synthetic NMC electrode.
    config.phantom = ml_collections.ConfigDict()
    config.phantom.slices = 6
    config.phantom.size = 256
    config.phantom.photons = 2e4
    config.phantom.gain_error_std = 0.002
    config.phantom.angles = 180
    # The data phase run on it; input and output are set inside the work directory.
    config.generate = generate.get_config()
    config.generate.crops_per_image = 2
    config.generate.batch_size = 4
    return config
