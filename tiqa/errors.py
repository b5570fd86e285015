"""The one exception type for bad input and configuration.

`InputError` is what the user can fix: a bad file, flag or config value; the message names the
file or key. The launch layer prints it as one line; every other exception is a bug and keeps
its traceback. It is a ValueError, so callers that catch ValueError still catch it.
"""

from __future__ import annotations

import numbers


class InputError(ValueError):
    """Bad input or configuration; the message names the file or config key and the problem."""


def _is_whole(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def check_positive(value, key: str) -> int:
    """`value` as an int when it is a whole number >= 1, else an InputError naming `key`."""
    if not _is_whole(value) or value < 1:
        raise InputError(f"{key} must be a positive whole number, got {value!r}")
    return int(value)


def check_non_negative(value, key: str, zero_means: str) -> int:
    """`value` as an int when it is a whole number >= 0, else an InputError naming `key` and
    what 0 means for it."""
    if not _is_whole(value) or value < 0:
        raise InputError(f"{key} must be an integer >= 0 (0: {zero_means}), got {value!r}")
    return int(value)

