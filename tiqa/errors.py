"""The one exception type for bad input and configuration.

`InputError` is what the user can fix: a bad file, flag or config value; the message names the
file or key. The launch layer prints it as one line; every other exception is a bug and keeps
its traceback. It is a ValueError, so callers that catch ValueError still catch it.
"""

from __future__ import annotations

import numbers


class InputError(ValueError):
    """Bad input or configuration; the message names the file or config key and the problem."""


def check_positive(value, key: str) -> int:
    """`value` as an int when it is a whole number >= 1, else an InputError naming `key`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{key} must be a positive whole number, got {value!r}")
    return int(value)

