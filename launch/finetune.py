"""Fine-tune phase: python -m launch.finetune --config=configs/finetune.py[:smoke] --config.rank_checkpoint=DIR"""

from absl import app

from launch import common
from tiqa.phases import finetune

_CONFIG = common.define_config("finetune", "Fine-tune-phase configuration.")


def main(argv):
    del argv
    workdir = common.run_cleanly(finetune.run, _CONFIG.value)
    print(f"checkpoints and metrics.jsonl written to {workdir}")


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
