"""Scoring: python -m launch.score --config.input=PATH --config.output=results.csv [--config.report=DIR]"""

from absl import app

from launch import common
from tiqa.phases import score

_CONFIG = common.define_config("score", "Scoring configuration.")


def main(argv):
    del argv
    common.run_cleanly(score.run, _CONFIG.value)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
