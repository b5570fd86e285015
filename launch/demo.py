"""The demo (make demo): python -m launch.demo [--config.workdir=DIR]"""

from absl import app

from launch import common
from tiqa.phases import demo

_CONFIG = common.define_config("demo", "Demo configuration.")


def main(argv):
    del argv
    common.run_cleanly(demo.run, _CONFIG.value)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
