"""Data phase: distort reference crops at every kind and level and label them.

python -m launch.generate --config=configs/generate.py \
    --config.input=DIR --config.output=DIR [--config.annotations=annotations.csv]
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # A slice, a multi-page TIFF volume, or a folder of slices (required).
    config.input = ""
    # Folder for images/, manifest.csv, config.json and summary.json (required).
    config.output = ""
    # CSV of human scores (`path,score` or per-observer columns); empty: every reference gets
    # `default_reference_score`, a prior and not a measurement (a warning says so).
    config.annotations = ""
    config.default_reference_score = 4.0
    config.seed = 0
    # Random crops taken from each slice (each is one reference with its own distortions).
    config.crops_per_image = 1
    config.resize = 255  # shorter side after area resizing, as in the paper
    config.crop = 224
    # References distorted and labelled together in one jitted call on the accelerator.
    config.batch_size = 16
    # Intensity normalisation to [0, 1]: auto | minmax | percentile | none.
    config.normalisation = "auto"
    config.low_percentile = 0.5
    config.high_percentile = 99.5
    # An existing, different or complete output is refused unless this is set.
    config.overwrite = False

    common.add_projection(config)
    # Images are saved as 8-bit PNG, so they are labelled after the same rounding.
    config.projection.quantize_8bit = True
    return config
