"""The demo (make demo): python -m launch.demo [--config.workdir=DIR]"""

import pathlib

from absl import app
from ml_collections import config_flags

from launch import common
from tiqa import demo

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).parents[1] / "configs" / "demo.py"),
    "Demo configuration.", lock_config=True)


def main(argv):
    del argv
    common.run_cleanly(demo.run_demo, _CONFIG.value)


if __name__ == "__main__":
    app.run(main)
