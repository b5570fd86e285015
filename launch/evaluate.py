"""Evaluation: python -m launch.evaluate --config.checkpoint=DIR --config.input=HELD_OUT"""

from absl import app

from launch import common
from tiqa.phases import evaluate

_CONFIG = common.define_config("evaluate", "Evaluation configuration.")


def main(argv):
    del argv
    common.run_cleanly(evaluate.run, _CONFIG.value)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
