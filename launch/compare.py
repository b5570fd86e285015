"""TIQA against BRISQUE (LIVE and retrained) and RankIQA on held-out slices and phantom scans.

    python -m launch.compare --config.input=HELD_OUT_SLICES --config.brisque_training.input=TRAINING_SLICES
"""

from absl import app

from launch import common
from tiqa.phases import compare

_CONFIG = common.define_config("compare", "Comparison configuration.")


def main(argv):
    del argv
    common.run_cleanly(compare.run, _CONFIG.value)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
