"""Benchmarks: python -m launch.benchmark --config=configs/benchmark.py --config.suite=datagen"""

from absl import app

from launch import common
from tiqa.phases import benchmark

_CONFIG = common.define_config("benchmark", "Benchmark configuration.")


def main(argv):
    del argv
    common.run_cleanly(benchmark.run, _CONFIG.value)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
