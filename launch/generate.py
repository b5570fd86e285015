"""Data phase: python -m launch.generate --config=configs/generate.py --config.input=DIR --config.output=DIR"""

import pathlib

from absl import app
from ml_collections import config_flags

from launch import common
from tiqa import generate

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).parents[1] / "configs" / "generate.py"),
    "Data-phase configuration.", lock_config=True)


def main(argv):
    del argv
    output = common.run_cleanly(generate.generate_dataset, _CONFIG.value)
    print(f"data set written to {output} (manifest.csv, images/, summary.json)")


if __name__ == "__main__":
    app.run(main)
