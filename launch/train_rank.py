"""Rank phase: python -m launch.train_rank --config=configs/train_rank.py[:smoke]"""

from absl import app

from launch import common
from tiqa.phases import train_rank

_CONFIG = common.define_config("train_rank", "Rank-phase configuration.")


def main(argv):
    del argv
    workdir = common.run_cleanly(train_rank.run, _CONFIG.value)
    print(f"checkpoints and metrics.jsonl written to {workdir}")


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
