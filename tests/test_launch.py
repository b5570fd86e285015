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


@pytest.mark.slow
def test_an_error_mid_run_is_printed_on_its_own_line_after_the_progress_bar(tmp_path):
    import pathlib
    import subprocess
    import sys

    import numpy as np
    from tests.tiny_models import export_tiny_score_model

    root = pathlib.Path(__file__).resolve().parents[1]
    export_tiny_score_model(tmp_path / "model")
    folder = tmp_path / "slices"
    folder.mkdir()
    for index in (1, 2):
        io.write_png(folder / f"slice_{index}.png", np.random.default_rng(index).random((80, 80)))
    # A readable header and truncated pixels: the error comes only when the slice is read.
    io.write_png(folder / "slice_3.png", np.random.default_rng(3).random((80, 80)))
    data = (folder / "slice_3.png").read_bytes()
    (folder / "slice_3.png").write_bytes(data[:len(data) // 2])
    result = subprocess.run(
        [sys.executable, "-m", "launch.score", f"--config.input={folder}",
         f"--config.checkpoint={tmp_path / 'model'}", "--config.batch_size=1",
         f"--config.output={tmp_path / 'results.csv'}"],
        cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "scoring" in result.stderr  # the bar was drawn before the bad slice was reached
    lines = result.stderr.split("\n")
    assert any(line.startswith("error: ") and "slice_3.png" in line for line in lines), result.stderr
    assert "Traceback" not in result.stderr
