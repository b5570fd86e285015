"""Ring-check calibration: python -m launch.calibrate_rings --config.grey=SLICES"""

from absl import app

from launch import common
from tiqa.phases import calibrate_rings

_CONFIG = common.define_config("calibrate_rings", "Ring-check calibration configuration.")


def main(argv):
    del argv
    common.run_cleanly(calibrate_rings.run, _CONFIG.value)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
