"""Ablation: python -m launch.ablate [--config=configs/ablate.py:smoke] [--config.sweeps=...]"""

from absl import app

from launch import common
from tiqa.phases import ablate

_CONFIG = common.define_config("ablate", "Ablation configuration: a base pipeline and sweeps.")


def main(argv):
    del argv
    common.run_cleanly(ablate.run, _CONFIG.value)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
