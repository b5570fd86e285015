"""Volumes read slice by slice (tiqa.volumes): every format against numpy on the whole array,
the sampled normalisation against numpy's percentiles of the whole volume, slice selections,
scoring HDF5 / Zarr / TIFF-stack inputs against the same data scored from memory, bad input."""

import csv
import pathlib

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from configs import score as score_config
from tiqa import checkpoints, errors, io, phantom, scoring, volumes
from tiqa.phases import score
from tests.tiny_models import export_tiny_score_model


def _uint16_volume(depth=12, size=40, seed=0) -> np.ndarray:
    """A phantom scan as uint16 over most of the range (smooth structure plus noise)."""
    volume, _ = phantom.phantom_volume(seed, n_slices=depth, size=size, photons=2e4)
    scaled = (volume - volume.min()) / (volume.max() - volume.min())
    return np.round(scaled * 60000 + 1000).astype(np.uint16)


def _whole_volume_reference(data: np.ndarray, low=0.5, high=99.5) -> np.ndarray:
    """Today's normalisation, independently: numpy percentiles of the whole volume in float64."""
    x = data.astype(np.float64)
    p_low, p_high = np.percentile(x, [low, high])
    return np.clip((x - p_low) / (p_high - p_low), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return _uint16_volume()


def _write_all(folder, data):
    """The same volume as a contiguous TIFF, a compressed TIFF (page by page), an HDF5 file
    (chunked, big-endian, with a second 2-D dataset), a Zarr array, a Zarr group and a folder of
    16-bit PNG slices."""
    paths = {}
    paths["tiff"] = folder / "scan.tif"
    tifffile.imwrite(paths["tiff"], data, photometric="minisblack")
    paths["tiff_compressed"] = folder / "packed.tif"
    tifffile.imwrite(paths["tiff_compressed"], data, photometric="minisblack",
                     compression="zlib")
    paths["h5"] = folder / "scan.h5"
    with h5py.File(paths["h5"], "w") as handle:
        handle.create_dataset("exchange/data", data=data.astype(">u2"), chunks=(4, 20, 20))
        handle.create_dataset("exchange/theta", data=np.linspace(0, 180, 12))
    paths["zarr"] = folder / "scan.zarr"
    array = zarr.create_array(str(paths["zarr"]), shape=data.shape, chunks=(5, 40, 40),
                              dtype=data.dtype)
    array[:] = data
    paths["zarr_group"] = folder / "group.zarr"
    group = zarr.open_group(str(paths["zarr_group"]), mode="w")
    group.create_array("recon/volume", shape=data.shape, chunks=(3, 40, 40), dtype=data.dtype)[:] = data
    group.create_array("flat", shape=(40, 40), dtype=data.dtype)[:] = 1
    paths["folder"] = folder / "slices"
    paths["folder"].mkdir()
    for index, image in enumerate(data):
        Image.fromarray(image).save(paths["folder"] / f"slice_{index}.png")
    return paths


@pytest.fixture(scope="module")
def written(tmp_path_factory, data):
    return _write_all(tmp_path_factory.mktemp("volumes"), data)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tiff", "tiff_compressed", "h5", "zarr", "zarr_group", "folder"])
def test_every_format_reads_the_volume_slice_by_slice(written, data, kind):
    expected = _whole_volume_reference(data)
    with volumes.open_volume(written[kind]) as volume:
        assert volume.shape == data.shape and volume.dtype == np.uint16
        # Out of order and with gaps: each run is read on its own.
        np.testing.assert_array_equal(volume.raw([7, 2, 3, 4, 11]), data[[7, 2, 3, 4, 11]])
    np.testing.assert_array_equal(io.read_volume(written[kind]), expected)
    np.testing.assert_array_equal(io.read_volume(written[kind], slices="1:12:5"), expected[1:12:5])
    # read_item normalises one slice by itself, the same through every reader.
    items = io.list_inputs(written[kind])
    assert len(items) == data.shape[0]
    np.testing.assert_array_equal(io.read_item(items[5]), _whole_volume_reference(data[5]))


def test_tiff_is_memory_mapped_only_when_contiguous(written):
    with volumes.open_volume(written["tiff"]) as volume:
        assert volume._offset is not None
    with volumes.open_volume(written["tiff_compressed"]) as volume:
        assert volume._offset is None and volume._pages is not None


def test_a_dataset_is_named_after_the_file(written, data, tmp_path):
    named = f"{written['h5']}:/exchange/data"
    np.testing.assert_array_equal(io.read_volume(named), _whole_volume_reference(data))
    assert io.list_inputs(written["h5"])[0] == (pathlib.Path(named), 0)
    with pytest.raises(io.ImageError, match="has no dataset /exchange/missing") as error:
        io.read_volume(f"{written['h5']}:/exchange/missing")
    assert "scan.h5" in str(error.value)
    assert volumes.split_dataset(f"{tmp_path}/a.h5:/b/c") == (tmp_path / "a.h5", "/b/c")
    # A path whose full name exists is taken whole, even with the separator in it.
    odd = tmp_path / "odd.h5:" / "x.h5"
    odd.parent.mkdir()
    with h5py.File(odd, "w") as handle:
        handle["v"] = data
    assert volumes.split_dataset(odd) == (odd, None)
    np.testing.assert_array_equal(io.read_volume(odd), _whole_volume_reference(data))


@pytest.mark.slow
def test_sampled_normalisation_equals_numpy_on_the_whole_volume(tmp_path):
    data = _uint16_volume(depth=48, size=48, seed=3)
    x = data.astype(np.float64)
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, data, photometric="minisblack")
    # Small enough for the sample to be the whole volume: exactly numpy's percentiles.
    with volumes.open_volume(path) as volume:
        scale = volumes.volume_scale(volume)
    assert (scale.low, scale.high) == tuple(np.percentile(x, [0.5, 99.5]))
    # A sample of 6 slices of 48, every 2nd pixel of each: within the documented tolerance,
    # +-0.25 percentile points of the whole volume's distribution.
    norm = io.Normalisation(sample_slices=6, sample_values=6 * 24 * 24)
    with volumes.open_volume(path) as volume:
        assert volumes.sample_plan(volume.shape, 6, 6 * 24 * 24) == ([0, 9, 19, 28, 38, 47], 2)
        scale = volumes.volume_scale(volume, norm)
    for value, p in ((scale.low, 0.5), (scale.high, 99.5)):
        rank = 100.0 * np.mean(x <= value)
        assert abs(rank - p) <= 0.25, (value, rank, p)
    for p, value in ((0.5, scale.low), (99.5, scale.high)):
        low_bound, high_bound = np.percentile(x, [p - 0.25, p + 0.25])
        assert low_bound <= value <= high_bound
    # 'minmax' is exact whatever the sample (it reads the extremes of every slice).
    with volumes.open_volume(path) as volume:
        scale = volumes.volume_scale(volume, io.Normalisation("minmax", sample_slices=2))
    assert (scale.low, scale.high) == (x.min(), x.max())


def test_a_float_volume_and_a_nan_found_while_streaming(tmp_path):
    rng = np.random.default_rng(0)
    data = (rng.random((20, 16, 16)) * 5.0).astype(np.float32)
    data[17, 3, 4] = np.nan  # not in a 4-slice sample (0, 6, 13, 19)
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, data, photometric="minisblack")
    with volumes.streamed(path, io.Normalisation(sample_slices=4)) as volume:
        np.testing.assert_array_equal(volume.read([0, 1]).shape, (2, 16, 16))
        with pytest.raises(io.ImageError, match=r"float.tif \(slice 17\): contains 1 NaN"):
            volume.read([16, 17])


@pytest.mark.parametrize("text, expected", [
    ("", list(range(10))), ("3", [3]), ("-1", [9]), ("2:8:3", [2, 5]), ("::4", [0, 4, 8]),
    (" 7: ", [7, 8, 9]), ("8:-20:-3", [8, 5, 2])])
def test_slice_selections_are_python_slices(text, expected):
    assert volumes.parse_slices(text, 10) == expected
    assert volumes.parse_slices(text, None) is None  # the syntax alone is fine


@pytest.mark.parametrize("text, message", [
    ("1:2:3:4", "is not a slice index"), ("a:b", "is not a slice index"), ("0:10:0", "step"),
    ("12", "out of range"), ("20:30", "selects no slice"), ("1.5", "is not a slice index")])
def test_bad_selections_name_the_key(text, message):
    with pytest.raises(errors.InputError, match=message) as error:
        volumes.parse_slices(text, 10, "config.slices", "scan.tif")
    assert "config.slices" in str(error.value)


def test_bad_containers_name_the_file(tmp_path, data):
    several = tmp_path / "several.h5"
    with h5py.File(several, "w") as handle:
        handle["exchange/data"] = data
        handle["exchange/data_white"] = data[:2]
    with pytest.raises(io.ImageError, match="holds 2 3-D datasets") as error:
        io.list_inputs(several)
    assert str(several) in str(error.value) and f"{several}:/exchange/data" in str(error.value)
    flat = tmp_path / "flat.h5"
    with h5py.File(flat, "w") as handle:
        handle["image"] = data[0]
    with pytest.raises(io.ImageError, match="flat.h5: holds no 3-D dataset"):
        io.read_volume(flat)
    with pytest.raises(io.ImageError, match=r"flat.h5:/image: dataset has shape \(40, 40\) \(2-D\)"):
        io.read_volume(f"{flat}:/image")
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"not an HDF5 file")
    with pytest.raises(io.ImageError, match="broken.h5: unreadable HDF5"):
        io.list_inputs(broken)
    flat_zarr = tmp_path / "flat.zarr"
    zarr.create_array(str(flat_zarr), shape=(40, 40), dtype="uint16")[:] = 1
    with pytest.raises(io.ImageError, match="flat.zarr: dataset has shape"):
        io.read_volume(flat_zarr)
    with pytest.raises(io.ImageError, match="missing.h5: no such file"):
        io.read_volume(tmp_path / "missing.h5")
    constant = tmp_path / "constant.h5"
    with h5py.File(constant, "w") as handle:
        handle["v"] = np.full((70, 8, 8), 7, np.uint16)  # more slices than the sample
    with pytest.raises(io.ImageError, match="constant.h5:/v: constant image"):
        io.read_volume(constant)


# --- Scoring the formats ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    export_tiny_score_model(folder)
    return folder


def _config(model, inputs, output, **overrides):
    config = score_config.get_config()
    config.input = str(inputs)
    config.checkpoint = str(model)
    config.output = str(output)
    config.batch_size = 4
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def _in_memory_scores(model, data, indices):
    """The independent reference: the whole volume normalised by numpy in memory, the
    selected slices scored in one call."""
    images = _whole_volume_reference(data)[indices]
    means, spreads, _ = scoring.make_slice_scorer(checkpoints.load_model(model), "grid")(images)
    return means, spreads


@pytest.mark.parametrize("kind, given", [
    ("tiff", "{tiff}"), ("h5", "{h5}"), ("h5", "{h5}:/exchange/data"), ("zarr", "{zarr}"),
    ("zarr_group", "{zarr_group}"),
    # Found once the tiny model's scores depended on the image (issue 13): scoring reads a
    # folder's slices one file at a time, each normalised by itself, while io.read_volume
    # normalises the folder as one volume. Strict: the fix makes this case pass, and fail here.
    pytest.param("folder", "{folder}", marks=pytest.mark.xfail(
        strict=True, reason="scoring normalises a folder's slices one by one, not as a volume"))])
@pytest.mark.slow
def test_formats_score_like_the_volume_in_memory(tiny_model, written, data, tmp_path, kind, given):
    selection = "1:12:3"
    config = _config(tiny_model, given.format(**written), tmp_path / "out.csv", slices=selection)
    records, _ = score.score_inputs(score.read_settings(config))
    indices = [1, 4, 7, 10]
    means, spreads = _in_memory_scores(tiny_model, data, indices)
    assert [r["slice"] for r in records] == (indices if kind != "folder" else [None] * 4)
    np.testing.assert_allclose([r["score"] for r in records], means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([r["spread"] for r in records], spreads, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_a_single_slice_and_a_bad_selection_through_run_scoring(tiny_model, written, data,
                                                                tmp_path):
    output = tmp_path / "one.csv"
    score.run(_config(tiny_model, written["h5"], output, slices="-2"))
    rows = list(csv.DictReader(open(output)))
    assert [(r["file"], r["slice"]) for r in rows] == [(f"{written['h5']}:/exchange/data", "10")]
    means, _ = _in_memory_scores(tiny_model, data, [10])
    np.testing.assert_allclose(float(rows[0]["score"]), means[0], rtol=1e-5, atol=1e-6)
    never = tmp_path / "never.csv"
    with pytest.raises(errors.InputError, match="config.slices='0:x'"):
        score.run(_config(tiny_model, written["tiff"], never, slices="0:x"))
    with pytest.raises(errors.InputError, match=f"config.slices=40.*{written['zarr']}"):
        score.run(_config(tiny_model, written["zarr"], never, slices="40"))
    assert not never.exists()


@pytest.mark.slow
def test_select_filter_reads_sampled_hdf5_slices(tiny_model, written, data, tmp_path):
    from configs import select_filter as select_config
    from tiqa.phases import select_filter

    config = select_config.get_config()
    config.input = str(written["h5"])
    config.output = str(tmp_path / "filters")
    config.checkpoint = str(tiny_model)
    config.samples = 3
    config.slices = "4:"
    config.candidates = "identity"
    slices, chosen = select_filter._read_slices(config.input, config.samples, "auto", "4:")
    assert [index for _, index in chosen] == [4, 8, 11]
    np.testing.assert_array_equal(slices, _whole_volume_reference(data)[[4, 8, 11]])
    rows = select_filter.run(config)
    assert rows[0]["slices"] == 3


# --- More than one process -------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_write_the_csv_of_one(tiny_model, written, tmp_path):
    import os
    import subprocess
    import sys

    repository = pathlib.Path(__file__).resolve().parents[1]
    # A TIFF stack, an HDF5 volume and a lone image: 7 batches of mixed shapes to share.
    image = tmp_path / "lone.png"
    io.write_png(image, np.random.default_rng(0).random((50, 60)))
    inputs = f"{written['tiff']},{written['h5']},{image}"
    common = [sys.executable, "-m", "launch.score", f"--config.input={inputs}",
              f"--config.checkpoint={tiny_model}", "--config.batch_size=4",
              "--config.slices=::1"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # The reference: the same configuration in this process (what `launch.score` runs).
    single = tmp_path / "single.csv"
    score.run(_config(tiny_model, inputs, single, slices="::1"))
    port = _free_port()
    merged = tmp_path / "merged" / "scores.csv"
    processes = [subprocess.Popen(
        common + [f"--config.output={merged}", "--config.distributed=True",
                  f"--config.coordinator_address=127.0.0.1:{port}", "--config.num_processes=2",
                  f"--config.process_id={rank}", "--config.merge_timeout=120"],
        cwd=repository, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)]
    try:
        logs = [process.communicate(timeout=300)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert [process.returncode for process in processes] == [0, 0], logs
    # 7 batches, 3 + 4: process 1 scores the HDF5 volume and the lone image.
    assert "process 1 of 2: 13 slice(s) scored" in logs[1]
    # The same bytes as the single process, and no part file left behind.
    assert merged.read_bytes() == single.read_bytes()
    assert len(single.read_text().splitlines()) == 1 + 12 + 12 + 1
    assert sorted(p.name for p in merged.parent.iterdir()) == ["scores.csv"]


@pytest.mark.slow
def test_scale_suite_scores_each_size_in_a_child(tiny_model, capsys):
    from configs import benchmark as benchmark_config
    from tiqa.benchmark import scale
    from tiqa.phases import benchmark

    config = benchmark_config.get_config()
    config.suite = "scale"
    config.scale.sizes_gb = (2e-4, 6e-4)  # 26 and 79 slices of 64x64 (8 KiB each)
    config.scale.slice_size = 64
    config.scale.batch_size = 4
    config.scale.checkpoint = str(tiny_model)
    result = benchmark.run(config)
    assert [row["slices"] for row in result["rows"]] == [scale.depth_for(2e-4, 64),
                                                         scale.depth_for(6e-4, 64)] == [26, 79]
    for row in result["rows"]:
        # The child's own peak, a real process's (a JAX process is well over 50 MiB).
        assert 0.05 < row["peak_rss_gib"] < 4 and row["slices_per_s"] > 0
    printed = capsys.readouterr().out
    assert "peak RSS GiB" in printed and len(printed.strip().splitlines()) >= 4


def test_scale_volumes_are_contiguous_and_stream_like_the_array(tmp_path):
    from tiqa.benchmark import scale

    path = tmp_path / "v.tif"
    scale.write_volume(path, 5, 32, seed=1)
    expected = np.stack(list(scale._slices(5, 32, 1)))
    with volumes.open_volume(path) as volume:
        assert volume._offset is not None  # the memory-mapped path
        np.testing.assert_array_equal(volume.raw(range(5)), expected)
