"""The launch layer: which failures end in one line, and which keep their traceback."""

import pytest

from launch import common
from tiqa import errors, io


def _raise(error):
    def function():
        raise error
    return function


def test_run_cleanly_exits_quietly_only_for_input_errors():
    for error in (errors.InputError("config.batch_size must be a positive whole number"),
                  io.ImageError("scan.tif: empty file (0 bytes)"),
                  FileNotFoundError("runs/x: no model.json")):
        with pytest.raises(SystemExit) as exit_info:
            common.run_cleanly(_raise(error))
        assert exit_info.value.code == f"error: {error}"
    # Anything else is a bug: it keeps its type and traceback.
    for error in (ValueError("operands could not be broadcast"), RuntimeError("XLA failed"),
                  KeyError("params")):
        with pytest.raises(type(error)):
            common.run_cleanly(_raise(error))


def test_input_error_is_a_value_error_and_image_error_is_an_input_error():
    assert issubclass(errors.InputError, ValueError)
    assert issubclass(io.ImageError, errors.InputError)
    with pytest.raises(errors.InputError, match="normalisation mode 'bright'"):
        io.Normalisation(mode="bright")
