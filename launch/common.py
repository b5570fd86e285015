"""What every entry point shares: bad input ends in one clear line, not a traceback."""

import sys

from tiqa import io


def run_cleanly(function, *args):
    """Calls `function(*args)`; expected failures (bad input, bad config) exit with their message."""
    try:
        return function(*args)
    except (io.ImageError, ValueError, FileNotFoundError, FileExistsError, RuntimeError) as error:
        sys.exit(f"error: {error}")
