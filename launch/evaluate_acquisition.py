"""The acquisition-ladder benchmark: does the score order simulated scans of held-out objects
as the physics does?

    python -m launch.evaluate_acquisition --config.grey=HELD_OUT_SLICES --config.label_maps=HELD_OUT_LABELS
"""

from absl import app

from launch import common
from tiqa.phases import evaluate_acquisition

_CONFIG = common.define_config("evaluate_acquisition", "Acquisition-ladder configuration.")


def main(argv):
    del argv
    common.run_cleanly(evaluate_acquisition.run, _CONFIG.value)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
