"""python -m launch.study_segmentation --config=configs/study_segmentation.py"""

from absl import app

from launch import common
from tiqa.phases import study_segmentation

_CONFIG = common.define_config("study_segmentation", "Configuration of study_segmentation.")


def main(argv):
    del argv
    common.run_cleanly(study_segmentation.run, _CONFIG.value)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
