"""What every entry point shares: bad input or a bad flag ends in one clear line, not a traceback."""

import logging
import pathlib
import sys

import tqdm
from absl import flags
from ml_collections import config_flags

from tiqa import errors

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def _one_line(error: Exception) -> str:
    text = str(error).replace("\\n", "; ").replace("\n", "; ").replace("\\", "")
    return text.replace("'", "")


def define_config(phase: str, help_text: str):
    """The `--config` flag of a phase, defaulting to configs/<phase>.py, locked so that a
    misspelt `--config.key=value` is an error naming the key rather than a silent new key."""
    try:
        return config_flags.DEFINE_config_file(
            "config", str(CONFIGS / f"{phase}.py"), help_text, lock_config=True)
    except (AttributeError, KeyError) as error:  # raised while applying the overrides
        sys.exit(f"error: unknown config key: {_one_line(error)}")


class _QuietLibraries(logging.Filter):
    """Drops the INFO chatter of Orbax and XLA's backend probe; warnings still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        noisy = any(part in record.pathname for part in ("orbax", "xla_bridge", "jax/_src"))
        return record.levelno >= logging.WARNING or not noisy


def parse_flags(argv):
    """absl's flag parsing, with a wrong `--config.key` reported in one line that names it."""
    logging.getLogger("absl").addFilter(_QuietLibraries())
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as error:
        sys.exit(f"error: bad command-line flag: {_one_line(error)}\n"
                 f"(run with --helpfull to list the flags; config keys are listed in configs/)")


def run_cleanly(function, *args):
    """Calls `function(*args)`; expected failures (bad input, bad config: `errors.InputError`, a
    missing or existing path) exit with their message; anything else is a bug and keeps its
    traceback."""
    try:
        return function(*args)
    except (errors.InputError, FileNotFoundError, FileExistsError) as error:
        _close_progress_bars()
        sys.exit(f"error: {error}")


def _close_progress_bars() -> None:
    """Closes any tqdm bar still open, so the error line starts a line of its own."""
    for bar in list(getattr(tqdm.tqdm, "_instances", ())):
        bar.close()
