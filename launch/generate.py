"""Data phase: python -m launch.generate --config=configs/generate.py --config.input=DIR --config.output=DIR"""

from absl import app

from launch import common
from tiqa.phases import generate

_CONFIG = common.define_config("generate", "Data-phase configuration.")


def main(argv):
    del argv
    output = common.run_cleanly(generate.run, _CONFIG.value)
    print(f"data set written to {output} (manifest.csv, images/, summary.json)")


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
