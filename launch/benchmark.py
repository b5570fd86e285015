"""Benchmarks: python -m launch.benchmark --config=configs/benchmark.py --config.suite=datagen"""

import pathlib

from absl import app
from ml_collections import config_flags

from launch import common
from tiqa.benchmark import suites

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).parents[1] / "configs" / "benchmark.py"),
    "Benchmark configuration.", lock_config=True)


def main(argv):
    del argv
    common.run_cleanly(suites.run_benchmark, _CONFIG.value)


if __name__ == "__main__":
    app.run(main)
