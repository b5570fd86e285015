"""Rank phase: python -m launch.train_rank --config=configs/train_rank.py[:smoke]"""

from absl import app

from launch import common
from tiqa.train import phases

_CONFIG = common.define_config("train_rank", "Rank-phase configuration.")


def main(argv):
    del argv
    workdir = common.run_cleanly(phases.train_rank, _CONFIG.value)
    print(f"checkpoints and metrics.jsonl written to {workdir}")


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
