"""python -m launch.evaluate_segmentation --config=configs/evaluate_segmentation.py"""

from absl import app

from launch import common
from tiqa.phases import evaluate_segmentation

_CONFIG = common.define_config("evaluate_segmentation", "Configuration of evaluate_segmentation.")


def main(argv):
    del argv
    common.run_cleanly(evaluate_segmentation.run, _CONFIG.value)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
