"""The data phase end to end on the project's own phantoms: outputs, resume, refusal, errors."""

import csv
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import metrics

from configs import generate as generate_config
from tiqa import errors, io, phantom
from tiqa.phases import generate

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def volume_path(tmp_path_factory):
    reconstruction, _ = phantom.phantom_volume(0, n_slices=3, size=96, photons=3e4,
                                                  gain_error_std=0.003)
    path = tmp_path_factory.mktemp("phantom") / "scan.tif"
    io.write_tiff(path, reconstruction)
    return path


def _config(input_path, output, **overrides):
    config = generate_config.get_config()
    config.input = str(input_path)
    config.output = str(output)
    config.resize = 80
    config.crop = 64
    config.crops_per_image = 2
    config.batch_size = 4
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def _rows(output):
    with open(pathlib.Path(output) / generate.MANIFEST, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_data_phase_writes_images_manifest_and_labels_that_match_the_files(volume_path, tmp_path):
    output = generate.run(_config(volume_path, tmp_path / "out"))
    rows = _rows(output)
    assert len(rows) == 3 * 2 * 16  # slices x crops x (reference + 3 kinds x 5 levels)
    assert not (output / generate.PARTIAL_MANIFEST).exists()
    assert (output / generate.SUMMARY).exists() and (output / generate.RUN_CONFIG).exists()
    references = {r["group"]: r for r in rows if r["kind"] == "reference"}
    assert len(references) == 6
    for row in references.values():
        assert float(row["label"]) == pytest.approx(4.0)  # the documented default prior
    for row in rows[:16]:
        image = np.asarray(Image.open(output / row["file"]))
        assert image.shape == (64, 64) and image.dtype == np.uint8
    # The manifest's observer scores describe the saved 8-bit files exactly.
    row = next(r for r in rows if r["kind"] == "noise" and r["level"] == "3")
    reference = np.asarray(Image.open(output / references[row["group"]]["file"]), np.float64) / 255
    distorted = np.asarray(Image.open(output / row["file"]), np.float64) / 255
    assert float(row["mse"]) == pytest.approx(metrics.mean_squared_error(reference, distorted), rel=1e-4)
    assert float(row["ssim"]) == pytest.approx(metrics.structural_similarity(
        reference, distorted, data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False), abs=1e-4)
    # Labels fall from level 1 to level 5 for every kind.
    for kind in ("blur", "noise", "ring"):
        for group in references:
            first = [float(r["label"]) for r in rows if r["group"] == group and r["kind"] == kind]
            assert first[-1] < first[0]


def test_interrupted_run_resumes_to_the_same_result(volume_path, tmp_path, monkeypatch):
    reference = generate.run(_config(volume_path, tmp_path / "whole"))
    calls = {"n": 0}
    original = generate._write_batch

    def failing_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interruption")
        return original(*args, **kwargs)

    monkeypatch.setattr(generate, "_write_batch", failing_write)
    with pytest.raises(KeyboardInterrupt):
        generate.run(_config(volume_path, tmp_path / "resumed"))
    assert (tmp_path / "resumed" / generate.PARTIAL_MANIFEST).exists()
    assert not (tmp_path / "resumed" / generate.MANIFEST).exists()
    monkeypatch.setattr(generate, "_write_batch", original)
    resumed = generate.run(_config(volume_path, tmp_path / "resumed"))
    key = lambda r: r["file"]
    whole_rows, resumed_rows = sorted(_rows(reference), key=key), sorted(_rows(resumed), key=key)
    assert whole_rows == resumed_rows
    for row in whole_rows[::7]:
        assert (reference / row["file"]).read_bytes() == (resumed / row["file"]).read_bytes()


@pytest.mark.slow
def test_existing_output_is_refused_unless_told(volume_path, tmp_path):
    output = tmp_path / "out"
    generate.run(_config(volume_path, output, crops_per_image=1))
    with pytest.raises(generate.OutputExistsError, match="already holds a complete data set"):
        generate.run(_config(volume_path, output, crops_per_image=1))
    generate.run(_config(volume_path, output, crops_per_image=1, overwrite=True))
    assert len(_rows(output)) == 3 * 16
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("do not delete")
    with pytest.raises(generate.OutputExistsError, match="refusing to delete"):
        generate.run(_config(volume_path, foreign, overwrite=True))
    assert (foreign / "thesis.tex").exists()


def test_annotations_set_the_reference_scores(volume_path, tmp_path):
    annotations = tmp_path / "annotations.csv"
    annotations.write_text(f"path,score\n{volume_path.name},2.5\n")
    output = generate.run(
        _config(volume_path, tmp_path / "out", crops_per_image=1, annotations=str(annotations)))
    rows = _rows(output)
    assert {float(r["label"]) for r in rows if r["kind"] == "reference"} == {2.5}
    assert max(float(r["label"]) for r in rows) <= 2.5


def test_bad_input_gives_clear_errors_and_no_output(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(io.ImageError, match="empty"):
        generate.run(_config(empty, tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(io.ImageError, match="broken.png"):
        generate.run(_config(broken, tmp_path / "out2"))


@pytest.mark.slow
def test_launch_names_a_wrong_config_key(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "launch.generate", "--config.inptu=x"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "unknown config key" in result.stderr and "inptu" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_kill_before_the_summary_is_completed_by_a_rerun(volume_path, tmp_path):
    output = generate.run(_config(volume_path, tmp_path / "out", crops_per_image=1))
    summary = (output / generate.SUMMARY).read_text()
    manifest = (output / generate.MANIFEST).read_bytes()
    (output / generate.SUMMARY).unlink()  # as if killed after the manifest's rename
    assert generate.run(_config(volume_path, output, crops_per_image=1)) == output
    assert (output / generate.SUMMARY).read_text() == summary
    assert (output / generate.MANIFEST).read_bytes() == manifest
    with pytest.raises(generate.OutputExistsError, match="already holds a complete data set"):
        generate.run(_config(volume_path, output, crops_per_image=1))


def test_a_torn_last_row_is_redone_and_stale_temporaries_removed(volume_path, tmp_path,
                                                                  monkeypatch):
    reference = generate.run(_config(volume_path, tmp_path / "whole"))
    original = generate._write_batch
    calls = {"n": 0}

    def failing_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interruption")
        return original(*args, **kwargs)

    monkeypatch.setattr(generate, "_write_batch", failing_write)
    output = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        generate.run(_config(volume_path, output))
    monkeypatch.setattr(generate, "_write_batch", original)
    partial = output / generate.PARTIAL_MANIFEST
    text = partial.read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 1 + 4 * 16  # header + 4 groups
    partial.write_text(text.rstrip("\r\n")[:-3])  # killed inside the last row's last field
    stale = [output / ".manifest.partial.csv.tmp-99-deadbeef",
             output / "images" / ".000000-0_blur_1.png.tmp-99-0123abcd"]
    for path in stale:
        path.write_bytes(b"half written")
    resumed = generate.run(_config(volume_path, output))
    key = lambda r: r["file"]
    assert sorted(_rows(resumed), key=key) == sorted(_rows(reference), key=key)
    assert not any(path.exists() for path in stale)


@pytest.mark.parametrize("key, value", [("crops_per_image", 0), ("crop", 0), ("batch_size", 0),
                                        ("batch_size", -4), ("resize", 0)])
def test_sizes_are_validated_by_name_before_anything_is_written(volume_path, tmp_path, key, value):
    output = tmp_path / "out"
    with pytest.raises(errors.InputError, match=f"config.{key} must be a positive whole number"):
        generate.run(_config(volume_path, output, **{key: value}))
    assert not output.exists()


def test_a_config_error_leaves_nothing_that_blocks_the_corrected_run(volume_path, tmp_path):
    output = tmp_path / "out"
    with pytest.raises(errors.InputError, match="config.crop=100 is larger than config.resize=80"):
        generate.run(_config(volume_path, output, crop=100, crops_per_image=1))
    assert not output.exists()
    with pytest.raises(errors.InputError, match="percentiles"):
        generate.run(_config(volume_path, output, crops_per_image=1,
                                          low_percentile=60.0, high_percentile=50.0))
    assert not output.exists()
    generate.run(_config(volume_path, output, crops_per_image=1))
    assert len(_rows(output)) == 3 * 16


def test_output_that_is_a_file_is_refused_by_name(volume_path, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    with pytest.raises(errors.InputError, match=f"config.output={taken} is a file"):
        generate.run(_config(volume_path, taken))


@pytest.mark.slow
def test_batches_are_never_padded_past_the_input(volume_path, tmp_path, monkeypatch):
    from tiqa import labels

    shapes, project = [], labels.project

    def recording_project(pixels, *args):
        shapes.append(pixels.shape[0])
        if pixels.shape[0] > 3:
            raise AssertionError(f"a batch of {pixels.shape[0]} for 3 references")
        return project(pixels, *args)

    monkeypatch.setattr(labels, "project", recording_project)
    output = generate.run(_config(volume_path, tmp_path / "out", crops_per_image=1,
                                               batch_size=100_000_000))
    assert shapes == [3] and len(_rows(output)) == 3 * 16
