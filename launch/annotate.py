"""Annotation survey: python -m launch.annotate --config.images=DIR --config.store=ratings.sqlite
[--config.port=8080]; export: --config.store=ratings.sqlite --config.export=annotations.csv"""

from absl import app

from launch import common
from tiqa.phases import annotate

_CONFIG = common.define_config("annotate", "Annotation survey configuration.")


def main(argv):
    del argv
    common.run_cleanly(annotate.run, _CONFIG.value)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
