"""Tests for tiqa.io: reading, normalisation, bad inputs, atomic writes."""

import json
import os
import pathlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from tiqa import io

RNG = np.random.default_rng(0)


def _u8(shape: tuple[int, ...]) -> np.ndarray:
    """Random uint8 samples that use both ends of the range."""
    data = RNG.integers(0, 256, size=shape, dtype=np.uint8)
    data.flat[0], data.flat[1] = 0, 255
    return data


def _nanoct_slice(nanoct_dir: pathlib.Path) -> pathlib.Path:
    return nanoct_dir / "images" / "1.tif"  # group A, 499x601 float32


# --------------------------------------------------------------------------------------------
# Round trips.
# --------------------------------------------------------------------------------------------


def test_uint8_png_round_trip(tmp_path):
    data = _u8((20, 30))
    path = tmp_path / "grey.png"
    Image.fromarray(data).save(path)
    out = io.read_slice(path)
    assert out.dtype == np.float32 and out.shape == (20, 30)
    np.testing.assert_array_equal(out, (data / 255.0).astype(np.float32))
    # write_png quantises by rounding, so the samples come back exactly.
    io.write_png(tmp_path / "again.png", out)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "again.png")), data)


def test_uint16_png_round_trip(tmp_path):
    values = RNG.random((24, 18))
    values[0, 0], values[0, 1] = 0.0, 1.0
    path = tmp_path / "deep.png"
    io.write_png(path, values, bits=16)
    raw = np.asarray(Image.open(path))
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, np.round(values * 65535).astype(np.uint16))
    # 0 and 1 are present, so min/max gives back the values to 16-bit precision.
    np.testing.assert_allclose(io.read_slice(path, "minmax"), values, atol=1 / 65535)


def test_uint16_tiff_round_trip(tmp_path):
    data = RNG.integers(100, 60000, size=(16, 20), dtype=np.uint16)
    path = tmp_path / "deep.tif"
    io.write_tiff(path, data)
    np.testing.assert_array_equal(tifffile.imread(path), data)
    low, high = data.min(), data.max()
    expected = (data - float(low)) / (float(high) - float(low))
    np.testing.assert_allclose(io.read_slice(path, "minmax"), expected, atol=1e-7)


def test_float32_tiff_round_trip(tmp_path):
    data = RNG.random((12, 10)).astype(np.float32)
    path = tmp_path / "float.tiff"
    io.write_tiff(path, data)
    np.testing.assert_array_equal(io.read_slice(path, "none"), data)


def test_multipage_tiff(tmp_path):
    volume = _u8((5, 16, 20))
    path = tmp_path / "stack.tif"
    io.write_tiff(path, volume)
    out = io.read_volume(path)
    assert out.shape == (5, 16, 20) and out.dtype == np.float32
    np.testing.assert_array_equal(out, (volume / 255.0).astype(np.float32))
    items = io.list_inputs(path)
    assert items == [(path, i) for i in range(5)]
    np.testing.assert_array_equal(io.read_item(items[2]), out[2])
    with pytest.raises(io.ImageError, match="read_volume") as error:
        io.read_slice(path)
    assert "stack.tif" in str(error.value)


def test_folder_of_slices_natural_order(tmp_path):
    volume = _u8((3, 12, 14))
    names = ["slice_1.png", "slice_2.png", "slice_10.png"]
    for name, image in zip(names, volume):
        Image.fromarray(image).save(tmp_path / name)
    (tmp_path / "README.txt").write_text("not an image")
    out = io.read_volume(tmp_path)
    np.testing.assert_array_equal(out, (volume / 255.0).astype(np.float32))
    assert io.list_inputs(tmp_path) == [(tmp_path / name, None) for name in names]


def test_volume_normalisation_whole_or_per_slice(tmp_path):
    # Slices on different scales: a shared normalisation keeps them different.
    volume = np.stack([RNG.random((16, 16)), 10 * RNG.random((16, 16))]).astype(np.float32)
    path = tmp_path / "float_stack.tif"
    io.write_tiff(path, volume)
    x = volume.astype(np.float64)

    low, high = np.percentile(x, [0.5, 99.5])
    whole = io.read_volume(path)
    np.testing.assert_allclose(whole, np.clip((x - low) / (high - low), 0, 1), atol=1e-6)

    per_slice = io.read_volume(path, per_slice=True)
    for i in range(2):
        low, high = np.percentile(x[i], [0.5, 99.5])
        np.testing.assert_allclose(per_slice[i], np.clip((x[i] - low) / (high - low), 0, 1),
                                   atol=1e-6)


def test_rgb_converted_with_luma(tmp_path):
    rgb = _u8((10, 12, 3))
    path = tmp_path / "colour.png"
    Image.fromarray(rgb).save(path)
    expected = (rgb.astype(np.float64) @ [0.299, 0.587, 0.114]) / 255.0
    np.testing.assert_allclose(io.read_slice(path), expected, atol=1e-6)


def test_real_files(tomobank_png, tomoiqa_bmp, electrode_tiff):
    png = io.read_slice(tomobank_png)
    raw = np.asarray(Image.open(tomobank_png))
    assert png.shape == (1544, 1568)
    np.testing.assert_array_equal(png, (raw / 255.0).astype(np.float32))  # 8-bit: x / 255

    assert set(np.unique(io.read_slice(tomoiqa_bmp))) == {0.0, 1.0}  # binary 0/255

    items = io.list_inputs(electrode_tiff)
    assert len(items) == 256 and items[10] == (electrode_tiff, 10)
    page = io.read_item(items[10])
    np.testing.assert_array_equal(page * 255, tifffile.imread(electrode_tiff, key=10))


# --------------------------------------------------------------------------------------------
# Normalisation.
# --------------------------------------------------------------------------------------------


def test_float_percentiles_match_numpy(nanoct_dir):
    path = _nanoct_slice(nanoct_dir)
    x = tifffile.imread(path).astype(np.float64)
    low, high = np.percentile(x, [0.5, 99.5])
    np.testing.assert_allclose(io.read_slice(path), np.clip((x - low) / (high - low), 0, 1),
                               atol=1e-6)

    low, high = np.percentile(x, [2, 98])
    custom = io.Normalisation("percentile", low_percentile=2, high_percentile=98)
    np.testing.assert_allclose(io.read_slice(path, custom),
                               np.clip((x - low) / (high - low), 0, 1), atol=1e-6)

    minmax = io.read_slice(path, io.Normalisation("minmax"))
    assert minmax.min() == 0.0 and minmax.max() == 1.0
    np.testing.assert_allclose(minmax, (x - x.min()) / (x.max() - x.min()), atol=1e-6)

    with pytest.raises(io.ImageError, match="outside") as error:  # raw values beyond [0, 1]
        io.read_slice(path, "none")
    assert "1.tif" in str(error.value)


def test_normalisation_is_validated():
    with pytest.raises(ValueError, match="mode"):
        io.Normalisation("median")
    with pytest.raises(ValueError, match="percentiles"):
        io.Normalisation("percentile", low_percentile=60, high_percentile=40)


# --------------------------------------------------------------------------------------------
# Bad inputs: each raises ImageError naming the file.
# --------------------------------------------------------------------------------------------


def _cut_png(folder):
    path = folder / "cut_in_half.png"
    Image.fromarray(_u8((64, 64))).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _garbage_tiff(folder):
    path = folder / "garbage.tif"
    path.write_bytes(os.urandom(600))
    return path


def _cut_tiff(folder):
    path = folder / "cut.tif"
    tifffile.imwrite(path, RNG.random((64, 64)).astype(np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _zero_bytes(folder):
    path = folder / "zero_bytes.png"
    path.write_bytes(b"")
    return path


def _zero_size(folder):
    path = folder / "zero_size.tif"
    with pytest.warns(UserWarning):  # tifffile warns that the TIFF is nonconformant
        tifffile.imwrite(path, np.zeros((0, 5), np.uint8))
    return path


def _one_pixel(folder):
    path = folder / "one_pixel.png"
    Image.fromarray(np.array([[7]], np.uint8)).save(path)
    return path


def _too_small(folder):
    path = folder / "seven_by_nine.png"
    Image.fromarray(_u8((7, 9))).save(path)
    return path


def _nan_tiff(folder):
    path = folder / "has_nan.tif"
    data = RNG.random((16, 16)).astype(np.float32)
    data[0, :3] = np.nan
    data[1, 0] = np.inf
    tifffile.imwrite(path, data)
    return path


def _four_d(folder):
    path = folder / "four_d.tif"
    tifffile.imwrite(path, _u8((2, 5, 16, 16)), photometric="minisblack")
    return path


def _constant(folder):
    path = folder / "constant.png"
    Image.fromarray(np.full((16, 16), 9, np.uint8)).save(path)
    return path


def _unsupported(folder):
    path = folder / "photo.jpg"
    Image.fromarray(_u8((16, 16))).save(path, format="JPEG")
    return path


def _missing(folder):
    return folder / "missing.png"


@pytest.mark.parametrize("make, message", [
    (_missing, "no such file"),
    (_cut_png, "truncated"),
    (_garbage_tiff, "unreadable"),
    (_cut_tiff, "truncated"),
    (_zero_bytes, "empty file"),
    (_zero_size, "empty image"),
    (_one_pixel, "at least 8x8"),
    (_too_small, "at least 8x8"),
    (_nan_tiff, "3 NaN and 1 inf"),
    (_four_d, "rank 4"),
    (_constant, "constant"),
    (_unsupported, "unsupported extension"),
])
def test_bad_slice(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(io.ImageError, match=message) as error:
        io.read_slice(path)
    assert path.name in str(error.value)


def test_bad_volumes(tmp_path):
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    for read in (io.read_volume, io.list_inputs):
        with pytest.raises(io.ImageError, match=r"\.png") as error:  # lists the extensions
            read(empty)
        assert "empty_folder" in str(error.value)

    notes = tmp_path / "only_notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("x")
    with pytest.raises(io.ImageError, match="no image files") as error:
        io.read_volume(notes)
    assert "only_notes" in str(error.value) and "notes.txt" in str(error.value)

    odd = tmp_path / "odd_shapes"
    odd.mkdir()
    Image.fromarray(_u8((12, 12))).save(odd / "a_1.png")
    Image.fromarray(_u8((12, 12))).save(odd / "a_2.png")
    Image.fromarray(_u8((10, 12))).save(odd / "a_3.png")
    with pytest.raises(io.ImageError, match="a_3.png") as error:
        io.read_volume(odd)
    assert "differs" in str(error.value)

    flat = tmp_path / "flat.png"
    Image.fromarray(_u8((12, 12))).save(flat)
    with pytest.raises(io.ImageError, match="read_slice") as error:
        io.read_volume(flat)
    assert "flat.png" in str(error.value)

    with pytest.raises(io.ImageError, match="is a folder") as error:
        io.read_slice(odd)
    assert "odd_shapes" in str(error.value)

    four_d = _four_d(tmp_path)
    for read in (io.read_volume, io.list_inputs):
        with pytest.raises(io.ImageError, match="rank 4") as error:
            read(four_d)
        assert "four_d.tif" in str(error.value)

    garbage = _garbage_tiff(tmp_path)
    with pytest.raises(io.ImageError, match="garbage.tif"):
        io.list_inputs(garbage)
    with pytest.raises(io.ImageError, match="missing"):
        io.list_inputs(tmp_path / "missing")


# --------------------------------------------------------------------------------------------
# Writing whole or not at all.
# --------------------------------------------------------------------------------------------


def test_atomic_write_nothing_left_when_block_raises(tmp_path):
    target = tmp_path / "result.txt"
    with pytest.raises(RuntimeError):
        with io.atomic_write(target) as temporary:
            assert temporary.parent == tmp_path and temporary.name.startswith(".result.txt.tmp-")
            temporary.write_text("partial")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_old_file_when_overwrite_fails(tmp_path):
    target = tmp_path / "scores.json"
    io.write_json(target, {"score": np.float32(0.5), "shape": np.array([2, 3])})
    assert json.loads(target.read_text()) == {"score": 0.5, "shape": [2, 3]}
    old = target.read_bytes()

    with pytest.raises(TypeError):  # fails part-way through serialising
        io.write_json(target, {"score": 1.0, "bad": object()})
    with pytest.raises(io.ImageError, match="scores.json"):
        io.write_png(target, np.full((4, 4), 2.0))
    assert target.read_bytes() == old
    assert list(tmp_path.iterdir()) == [target]


def test_write_text_and_overwrite(tmp_path):
    target = tmp_path / "notes.txt"
    io.write_text(target, "first")
    io.write_text(target, "second ✓")
    assert target.read_text(encoding="utf-8") == "second ✓"
    assert list(tmp_path.iterdir()) == [target]


def test_split_paths_takes_an_escaped_comma_as_part_of_a_path():
    assert io.split_paths("a.tif, b.tif") == ["a.tif", "b.tif"]
    assert io.split_paths(r"scan\,1.tif,run 2/scan.tif,,") == ["scan,1.tif", "run 2/scan.tif"]
    assert io.split_paths(r"C:\data\scan.tif") == [r"C:\data\scan.tif"]  # other backslashes stay
    assert io.split_paths("") == []


def test_atomic_write_errors_name_the_output_not_the_temporary(tmp_path):
    target = tmp_path / "missing_folder" / "scores.csv"
    with pytest.raises(FileNotFoundError) as error:
        io.write_text(target, "x")
    assert str(target) in str(error.value) and ".tmp-" not in str(error.value)


@pytest.mark.parametrize("pages", [3, 4])
def test_a_stack_of_three_or_four_pages_saved_with_tifffile_defaults_is_a_volume(tmp_path, pages):
    volume = _u8((pages, 16, 20))
    path = tmp_path / "stack.tif"
    with pytest.warns(DeprecationWarning):  # tifffile stores it as one page of planar samples
        tifffile.imwrite(path, volume)
    expected = (volume / 255.0).astype(np.float32)
    assert io.list_inputs(path) == [(path, i) for i in range(pages)]
    np.testing.assert_array_equal(io.read_volume(path), expected)
    np.testing.assert_array_equal(io.read_item((path, 1)), expected[1])
    with pytest.raises(io.ImageError, match="tiff_planes='colour'"):
        io.read_slice(path)
    # Told that the planes are colours, it is one RGB(A) image in grey.
    colour = io.read_slice(path, tiff_planes="colour")
    np.testing.assert_allclose(colour, np.moveaxis(volume[:3], 0, -1) @ [0.299, 0.587, 0.114] / 255,
                               atol=1e-6)
    assert io.list_inputs(path, tiff_planes="colour") == [(path, None)]
    with pytest.raises(io.ImageError, match="tiff_planes"):
        io.list_inputs(path, tiff_planes="rgb")
    # Samples stored together in each pixel are colour, as before.
    rgb = _u8((10, 12, 3))
    path = tmp_path / "colour.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    expected = (rgb.astype(np.float64) @ [0.299, 0.587, 0.114]) / 255.0
    np.testing.assert_allclose(io.read_slice(path), expected, atol=1e-6)
    assert io.list_inputs(path) == [(path, None)]
