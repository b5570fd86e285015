"""Pre-processing selection: python -m launch.select_filter --config.input=VOLUME"""

from absl import app

from launch import common
from tiqa.phases import select_filter

_CONFIG = common.define_config("select_filter", "Filter selection configuration.")


def main(argv):
    del argv
    common.run_cleanly(select_filter.run, _CONFIG.value)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
