"""D-LinkNet training: python -m launch.train_segmentation --config=configs/segmentation.py[:smoke]"""

from absl import app

from launch import common
from tiqa.phases import train_segmentation

_CONFIG = common.define_config("segmentation", "Segmentation training configuration.")


def main(argv):
    del argv
    workdir = common.run_cleanly(train_segmentation.run, _CONFIG.value)
    print(f"checkpoints and metrics.jsonl written to {workdir}")


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
