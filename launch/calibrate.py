"""Penalty calibration: python -m launch.calibrate --config.grey=SLICES"""

from absl import app

from launch import common
from tiqa.phases import calibrate

_CONFIG = common.define_config("calibrate", "Penalty calibration configuration.")


def main(argv):
    del argv
    common.run_cleanly(calibrate.run, _CONFIG.value)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
