"""Reading tomography slices and volumes, and writing results whole or not at all.

Resizing and cropping (in JAX) are in `tiqa.preprocessing`.

Reading
    `read_slice` returns one float32 (H, W) image in [0, 1]; `read_volume` a float32 (D, H, W)
    volume in [0, 1] from a multi-page / 3-D TIFF, an HDF5 dataset, a Zarr array or a folder of
    2-D slices, read slice by slice through `tiqa.volumes`; `list_inputs` lists
    the items to score in a file, a multi-page TIFF or a folder, and `read_item` reads one of them.
    Accepted files: PNG, BMP, GIF (read with PIL) and TIFF (.tif/.tiff, read with tifffile), with
    samples of dtype uint8, uint16 or float32/float64 (bool, other integer widths and float16 are
    also taken: bool like 8-bit data, the others like 16-bit data). RGB(A) images are turned into
    grey with the ITU-R BT.601 luma, Y = 0.299 R + 0.587 G + 0.114 B, computed in floating point
    on the raw samples (alpha is ignored; an image whose channels are all equal keeps that channel
    exactly). Every bad input raises `ImageError`, naming the file and the problem.
    A TIFF page whose 3 or 4 samples are stored as separate planes (what tifffile writes for a
    (3|4, H, W) array by default) is ambiguous: it is read as a volume of 3 or 4 slices unless
    the readers are given `tiff_planes='colour'`; samples stored together in each pixel are
    colour.

Normalisation (see `Normalisation`)
    'auto'        8-bit data: x / 255 (the dtype's range, so grey levels keep their meaning);
                  16-bit and float data: percentiles (0.5, 99.5 by default) mapped to 0 and 1,
                  then clipped.
    'minmax'      the data's own min and max mapped to 0 and 1.
    'percentile'  the given percentiles mapped to 0 and 1, then clipped.
    'none'        values are taken as they are and must already lie in [0, 1].
    A constant image (max == min) is an error: there is nothing to score. In 'percentile' (or
    'auto' on 16-bit/float) mode, when the two percentiles coincide on a non-constant image (a
    nearly binary image, say) the data's min and max are used instead.

Writing
    `atomic_write` yields a temporary path beside the target and renames it over the target only
    when its block completes, so an output is written whole or not at all; `write_png`,
    `write_tiff`, `write_json` and `write_text` go through it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import re
import secrets
from collections.abc import Iterator, Sequence
from typing import Any, Union

import jax
import numpy as np
import tifffile
from PIL import Image

from tiqa import errors

PathLike = Union[str, os.PathLike]
# An item to score: the source file and the page index within it (None for a 2-D image file).
Item = tuple[pathlib.Path, Union[int, None]]

TIFF_EXTENSIONS = (".tif", ".tiff")
PIL_EXTENSIONS = (".bmp", ".gif", ".png")
ACCEPTED_EXTENSIONS = tuple(sorted(PIL_EXTENSIONS + TIFF_EXTENSIONS))
# Smallest side accepted for a slice: smaller images hold too little structure to score.
MIN_SIDE = 8

_MODES = ("auto", "minmax", "percentile", "none")
# How a TIFF page of 3 or 4 sample planes (samples before the rows) is read.
TIFF_PLANES = ("volume", "colour")
# ITU-R BT.601 luma weights for R, G, B.
_LUMA = np.array([0.299, 0.587, 0.114])
# Slack allowed above 1 / below 0 when writing [0, 1] images (float round-off of resampling).
_RANGE_TOLERANCE = 1e-6


class ImageError(errors.InputError):
    """A bad input image, volume or folder; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class Normalisation:
    """How raw samples are mapped to [0, 1] (see the module docstring for the modes).

    Attributes:
        mode: 'auto', 'minmax', 'percentile' or 'none'.
        low_percentile: percentile mapped to 0 in 'percentile' mode (and 'auto' on 16-bit/float).
        high_percentile: percentile mapped to 1 in the same modes.
        sample_slices: slices of a volume its shared normalisation is measured on (0: all).
        sample_values: about how many values of those slices are kept (a pixel stride).
    """

    mode: str = "auto"
    low_percentile: float = 0.5
    high_percentile: float = 99.5
    # A volume's shared normalisation is measured on at most this many slices (evenly spaced;
    # 0: all) and about this many values (every k-th pixel of each): see tiqa.volumes.
    sample_slices: int = 64
    sample_values: int = 2**23

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise errors.InputError(f"normalisation mode {self.mode!r} is not one of {_MODES}")
        if self.sample_slices < 0 or self.sample_values < 1:
            raise errors.InputError(
                "sample_slices must be >= 0 (0: all) and sample_values >= 1, got "
                f"sample_slices={self.sample_slices}, sample_values={self.sample_values}")
        if not 0.0 <= self.low_percentile < self.high_percentile <= 100.0:
            raise errors.InputError(
                "percentiles must satisfy 0 <= low < high <= 100, got "
                f"low={self.low_percentile}, high={self.high_percentile}")


NormalisationLike = Union[Normalisation, str]


def _as_normalisation(normalisation: NormalisationLike) -> Normalisation:
    """Accepts a `Normalisation` or just its mode name."""
    if isinstance(normalisation, Normalisation):
        return normalisation
    if isinstance(normalisation, str):
        return Normalisation(mode=normalisation)
    raise TypeError(f"normalisation must be a Normalisation or a mode name, got {normalisation!r}")


# --------------------------------------------------------------------------------------------
# Raw loading: (samples, source dtype), grey, before any checks of values or normalisation.
# --------------------------------------------------------------------------------------------


def _natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers by value: slice_2 before slice_10."""
    parts = re.split(r"(\d+)", name)
    # Even positions are text, odd positions digits, so tuples always compare like with like.
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name


def _check_file(path: PathLike) -> pathlib.Path:
    """The path as a Path if it is an existing, non-empty file with an accepted extension."""
    path = pathlib.Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file or folder")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    suffix = path.suffix.lower()
    if suffix not in ACCEPTED_EXTENSIONS:
        raise ImageError(f"{path}: unsupported extension {path.suffix!r}; "
                         f"accepted: {', '.join(ACCEPTED_EXTENSIONS)}")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    return path


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """Files in `folder` with accepted extensions, naturally sorted (hidden files are skipped)."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    files = [p for p in entries if p.is_file() and p.suffix.lower() in ACCEPTED_EXTENSIONS]
    if not files:
        seen = ", ".join(sorted(p.name for p in entries)[:5]) or "nothing"
        raise ImageError(f"{folder}: folder holds no image files (accepted extensions: "
                         f"{', '.join(ACCEPTED_EXTENSIONS)}; found {seen})")
    return sorted(files, key=lambda p: _natural_key(p.name))


def _luma(data: np.ndarray) -> np.ndarray:
    """Grey from channels-last RGB(A) data; equal channels are kept exactly."""
    rgb = data[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0]
    return rgb.astype(np.float64) @ _LUMA


def _tiff_axes(axes: str, tiff_planes: str) -> str:
    """`axes` with planar samples (S before Y) as slices (Q) when `tiff_planes` is 'volume'."""
    if tiff_planes not in TIFF_PLANES:
        raise ImageError(f"tiff_planes must be one of {TIFF_PLANES}, got {tiff_planes!r}")
    if tiff_planes == "volume" and "S" in axes and "Y" in axes and axes.index("S") < axes.index("Y"):
        return axes.replace("S", "Q")
    return axes


def _grey_shape(shape: Sequence[int], axes: str) -> tuple[int, ...]:
    """Shape of a TIFF series once samples are merged to grey and singleton outer axes dropped."""
    dims = [n for n, a in zip(shape, axes) if a != "S"]
    outer = [n for n in dims[:-2] if n != 1]
    return tuple(outer + dims[-2:])


def _tiff_to_grey(data: np.ndarray, axes: str, path: pathlib.Path) -> np.ndarray:
    """Merges a TIFF's sample axis (if any) to grey and drops singleton outer axes."""
    if "S" in axes:
        s = axes.index("S")
        samples = data.shape[s]
        data = np.moveaxis(data, s, -1)
        if samples in (3, 4):
            data = _luma(data)
        elif samples in (1, 2):  # grey, or grey + alpha
            data = data[..., 0]
        else:
            raise ImageError(f"{path}: {samples} samples per pixel is not grey, RGB or RGBA")
    return data.reshape(_grey_shape(data.shape, axes.replace("S", "")))


def _tiff_series(tif: tifffile.TiffFile, path: pathlib.Path) -> Any:
    """The single image series of a TIFF (pages of different shapes make several)."""
    if not tif.series:
        raise ImageError(f"{path}: TIFF holds no image")
    if len(tif.series) > 1:
        raise ImageError(f"{path}: TIFF holds {len(tif.series)} image series (pages of different "
                         "shapes?); expected one image or one stack of equal pages")
    return tif.series[0]


def _load_tiff(path: pathlib.Path, page: int | None = None,
               tiff_planes: str = "volume") -> tuple[np.ndarray, np.dtype]:
    """Grey samples of a TIFF (2-D or more), or of one page of a 3-D TIFF when `page` is given."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = _tiff_series(tif, path)
            axes = _tiff_axes(series.axes, tiff_planes)
            shape = _grey_shape(series.shape, axes)
            if page is None:
                data = _tiff_to_grey(series.asarray(), axes, path)
            else:
                if len(shape) != 3:
                    raise ImageError(f"{path}: has shape {shape}, not a stack of 2-D pages")
                if not 0 <= page < shape[0]:
                    raise ImageError(f"{path}: page {page} is out of range (0..{shape[0] - 1})")
                pages = series.pages
                if len(pages) == shape[0] and pages[page] is not None:
                    # One page per slice: read just that page.
                    one = pages[page]
                    data = _tiff_to_grey(one.asarray(), one.keyframe.axes, path)
                else:
                    data = _tiff_to_grey(series.asarray(), axes, path)[page]
            dtype = series.dtype
    except ImageError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files; report them all.
        raise ImageError(f"{path}: unreadable or truncated TIFF ({exc})") from exc
    return data, np.dtype(dtype)


def _pil_to_array(image: Image.Image, path: pathlib.Path) -> tuple[np.ndarray, np.dtype]:
    """Grey samples and their source dtype from a loaded PIL image."""
    mode = image.mode
    if mode == "1":
        image, mode = image.convert("L"), "L"  # 0/255, so 'auto' maps it to 0/1
    elif mode == "P":
        # Palette images (GIF): expand to the palette colours, then grey like any RGB image.
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    elif mode not in ("L", "LA", "RGB", "RGBA", "RGBX", "F", "I") and not mode.startswith("I;16"):
        image, mode = image.convert("RGB"), "RGB"
    data = np.asarray(image)
    if mode.startswith("I;16"):
        data = data.astype(np.uint16)  # native byte order
    elif mode == "I":
        if data.size and (data.min() < 0 or data.max() > 65535):
            raise ImageError(f"{path}: 32-bit integer samples outside the 16-bit range")
        data = data.astype(np.uint16)
    dtype = data.dtype
    if mode == "LA":
        data = data[..., 0]
    elif data.ndim == 3:
        data = _luma(data)
    return data, dtype


def _load_pil(path: pathlib.Path) -> tuple[np.ndarray, np.dtype]:
    """Grey samples of a PNG, BMP or GIF file."""
    try:
        with Image.open(path) as image:
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                raise ImageError(f"{path}: has {frames} frames; only single-frame images are read")
            image.load()  # decodes now, so a truncated file fails here
            return _pil_to_array(image, path)
    except ImageError:
        raise
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad files.
        raise ImageError(f"{path}: unreadable or truncated image ({exc})") from exc


def _load(path: pathlib.Path, tiff_planes: str = "volume") -> tuple[np.ndarray, np.dtype]:
    """Grey samples (2-D, or more for TIFF stacks) and the source dtype of a checked file."""
    if path.suffix.lower() in TIFF_EXTENSIONS:
        return _load_tiff(path, tiff_planes=tiff_planes)
    return _load_pil(path)


# --------------------------------------------------------------------------------------------
# Checks and normalisation.
# --------------------------------------------------------------------------------------------


def _check_dtype(dtype: np.dtype, name: str) -> None:
    if dtype.kind not in "buif":
        raise ImageError(f"{name}: unsupported sample type {dtype}; expected uint8, uint16, "
                         "float32 or float64")


def _check_slice_shape(shape: Sequence[int], name: str) -> None:
    """Slices must be at least MIN_SIDE x MIN_SIDE (this also rejects empty images)."""
    height, width = shape[-2:]
    if height == 0 or width == 0:
        raise ImageError(f"{name}: empty image ({height}x{width} pixels)")
    if min(height, width) < MIN_SIDE:
        raise ImageError(f"{name}: image of {height}x{width} pixels is too small; "
                         f"need at least {MIN_SIDE}x{MIN_SIDE}")


def _check_finite(data: np.ndarray, name: str) -> None:
    if data.dtype.kind != "f":
        return
    finite = np.isfinite(data)
    if not finite.all():
        nans = int(np.isnan(data).sum())
        infs = int(data.size - finite.sum()) - nans
        raise ImageError(f"{name}: contains {nans} NaN and {infs} inf values "
                         f"(of {data.size} samples)")


def _normalise(data: np.ndarray, dtype: np.dtype, norm: Normalisation, name: str) -> np.ndarray:
    """Maps checked, finite samples to float32 in [0, 1] as `norm` says."""
    x = data.astype(np.float64)
    low, high = float(x.min()), float(x.max())
    if low == high:
        raise ImageError(f"{name}: constant image (every value is {low:g}); nothing to score")
    mode = norm.mode
    if mode == "auto":
        if dtype == np.uint8 or dtype == np.bool_:
            top = 1.0 if dtype == np.bool_ else 255.0
            return (x / top).astype(np.float32)
        mode = "percentile"
    if mode == "none":
        if low < 0.0 or high > 1.0:
            raise ImageError(f"{name}: values span [{low:g}, {high:g}], outside [0, 1], which "
                             "normalisation mode 'none' requires; use 'auto' or 'minmax'")
        return x.astype(np.float32)
    if mode == "percentile":
        p_low, p_high = np.percentile(x, [norm.low_percentile, norm.high_percentile])
        if p_high > p_low:  # else a nearly constant image: fall back to min/max
            low, high = float(p_low), float(p_high)
    return np.clip((x - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _checked_slice(data: np.ndarray, dtype: np.dtype, norm: Normalisation,
                   name: str) -> np.ndarray:
    _check_dtype(dtype, name)
    _check_slice_shape(data.shape, name)
    _check_finite(data, name)
    return _normalise(data, dtype, norm, name)


# --------------------------------------------------------------------------------------------
# Public readers.
# --------------------------------------------------------------------------------------------


def read_slice(path: PathLike, normalisation: NormalisationLike = Normalisation(),
               tiff_planes: str = "volume") -> np.ndarray:
    """Reads one 2-D image as float32 (H, W) in [0, 1].

    Args:
        path: a PNG, BMP, GIF or TIFF file holding one 2-D image (grey or RGB(A); RGB is turned
            into grey with the BT.601 luma). A TIFF with several pages is an error: use
            `read_volume` or `list_inputs`.
        normalisation: a `Normalisation` or a mode name ('auto', 'minmax', 'percentile', 'none').
        tiff_planes: a TIFF page of 3 or 4 sample planes is a volume ('volume', the default)
            or one colour image ('colour').

    Returns:
        The normalised image, at least MIN_SIDE x MIN_SIDE (8x8).

    Raises:
        ImageError: for a missing, empty, unreadable or truncated file, an unsupported extension
            or dtype, a multi-page or higher-rank image, an image under 8x8, NaN or inf values,
            a constant image, or values outside [0, 1] with mode 'none'.
    """
    norm = _as_normalisation(normalisation)
    path = pathlib.Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a folder; use read_volume or list_inputs")
    path = _check_file(path)
    data, dtype = _load(path, tiff_planes)
    if data.ndim == 3:
        hint = (" (or tiff_planes='colour' if its planes are colours)"
                if data.shape[0] in (3, 4) and path.suffix.lower() in TIFF_EXTENSIONS else "")
        raise ImageError(f"{path}: is a volume of {data.shape[0]} slices, shape {data.shape}; "
                         f"use read_volume (or list_inputs to score each slice){hint}")
    if data.ndim != 2:
        raise ImageError(f"{path}: has rank {data.ndim} (shape {data.shape}); expected a 2-D image")
    return _checked_slice(data, dtype, norm, str(path))


def read_volume(path: PathLike, normalisation: NormalisationLike = Normalisation(),
                per_slice: bool = False, tiff_planes: str = "volume",
                slices: str | Sequence[int] | None = None) -> np.ndarray:
    """Reads a volume, or the slices `slices` selects, as float32 (k, H, W) in [0, 1].

    Only the selected slices are held (as float32); the volume is read through
    `tiqa.volumes` a slice at a time. Use `tiqa.volumes.streamed` to read a large volume in
    batches instead of whole.

    Args:
        path: a multi-page / 3-D TIFF, an HDF5 file (`scan.h5` holding one 3-D dataset, or
            `scan.h5:/exchange/data`), a Zarr store (`scan.zarr`), or a folder of 2-D slices
            (files with accepted extensions, not recursive, hidden files skipped, sorted
            naturally by name: slice_2 before slice_10), all of the same shape and dtype.
        normalisation: a `Normalisation` or a mode name.
        per_slice: False (default) computes the normalisation over the whole volume, so grey
            levels stay comparable between slices (from a bounded sample of it: exact for
            small volumes, see tiqa.volumes); True normalises each slice by itself.
        tiff_planes: as in `read_slice`.
        slices: None (all), a selection string ('5', '0:2000:10') or a list of indices.

    Raises:
        ImageError: for the problems listed in `read_slice`, a 2-D file, an empty folder or one
            with no image files, or a slice whose shape or dtype differs from the first (named).
            A constant volume is an error, and with per_slice=True so is a constant slice.
    """
    from tiqa import volumes  # volumes builds on this module

    with volumes.streamed(path, normalisation, tiff_planes, per_slice) as volume:
        chosen = (volumes.parse_slices(slices, volume.shape[0], "slices", volume.name)
                  if slices is None or isinstance(slices, str) else [int(i) for i in slices])
        return volume.read(chosen)


def _header(path: pathlib.Path, tiff_planes: str = "volume") -> tuple[tuple[int, ...], np.dtype]:
    """(grey shape, dtype) of a checked image file from its header (PIL files: uint8 assumed)."""
    if path.suffix.lower() in TIFF_EXTENSIONS:
        try:
            with tifffile.TiffFile(path) as tif:
                series = _tiff_series(tif, path)
                axes = _tiff_axes(series.axes, tiff_planes)
                return _grey_shape(series.shape, axes), np.dtype(series.dtype)
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(f"{path}: unreadable or truncated TIFF ({exc})") from exc
    try:
        with Image.open(path) as image:
            frames = getattr(image, "n_frames", 1)
            width, height = image.size
    except Exception as exc:
        raise ImageError(f"{path}: unreadable image ({exc})") from exc
    if frames > 1:
        raise ImageError(f"{path}: has {frames} frames; only single-frame images are read")
    return (height, width), np.dtype(np.uint8)


def _inputs_of_file(path: PathLike, tiff_planes: str = "volume") -> list[Item]:
    """Items of one file: one per slice of a 3-D TIFF, HDF5 dataset or Zarr array (named with
    its dataset), else a single (path, None)."""
    from tiqa import volumes  # volumes builds on this module

    if volumes.is_container(path):
        with volumes.open_volume(path, tiff_planes) as volume:
            return [(pathlib.Path(volume.name), i) for i in range(volume.shape[0])]
    path = _check_file(path)
    shape, dtype = _header(path, tiff_planes)
    _check_dtype(dtype, str(path))
    if len(shape) not in (2, 3):
        raise ImageError(f"{path}: has rank {len(shape)} (shape {shape}); expected a 2-D image "
                         "or a 3-D volume")
    _check_slice_shape(shape, str(path))
    if len(shape) == 2:
        return [(path, None)]
    return [(path, i) for i in range(shape[0])]


def _input_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """What a folder given to `list_inputs` holds: image files, HDF5 files and Zarr stores."""
    from tiqa import volumes

    stores = [p for p in folder.iterdir() if not p.name.startswith(".")
              and (volumes.is_zarr(p) and p.is_dir() or volumes.is_hdf5(p) and p.is_file())]
    if not stores:
        return _image_files(folder)
    try:
        images = _image_files(folder)
    except ImageError:
        images = []
    return sorted(images + stores, key=lambda p: _natural_key(p.name))


def list_inputs(path: PathLike, tiff_planes: str = "volume") -> list[Item]:
    """Lists the items to score or process under `path`, from headers only.

    Args:
        path: an image file (one item, index None), a multi-page / 3-D TIFF (one item per page,
            index 0..D-1) or a folder (not recursive; files with accepted extensions, naturally
            sorted, hidden files skipped; each file expanded as above).
        tiff_planes: a TIFF page of 3 or 4 sample planes is 3 or 4 items ('volume', the
            default) or one colour image ('colour').

    Returns:
        A list of (source path, slice index or None); read each with `read_item`.

    Raises:
        ImageError: for a missing path, an empty folder or one with no image files, or a file
            that `read_slice` would reject from its header (extension, empty, unreadable, rank,
            size). Problems only visible in the pixels (truncation, NaN) surface at reading.
    """
    from tiqa import volumes

    if volumes.is_container(path):
        return _inputs_of_file(path, tiff_planes)  # an HDF5 file or Zarr store, maybe named
    path = pathlib.Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file or folder")
    if path.is_dir():
        return [item for file in _input_files(path) for item in _inputs_of_file(file, tiff_planes)]
    return _inputs_of_file(path, tiff_planes)


def read_item(item: Item, normalisation: NormalisationLike = Normalisation(),
              tiff_planes: str = "volume") -> np.ndarray:
    """Reads one item of `list_inputs` as float32 (H, W) in [0, 1].

    A page of a volume (TIFF stack, HDF5 dataset, Zarr array) is normalised by itself (only
    that page is read); use `read_volume` or `tiqa.volumes.streamed` for a normalisation shared
    by all slices.
    """
    from tiqa import volumes

    path, index = item
    norm = _as_normalisation(normalisation)
    if volumes.is_container(path):
        with volumes.open_volume(path, tiff_planes) as volume:
            data = volume.raw([0 if index is None else int(index)])[0]
            return _checked_slice(data, volume.dtype, norm, volume.slice_name(int(index or 0)))
    if index is None:
        return read_slice(path, normalisation, tiff_planes)
    path = _check_file(path)
    if path.suffix.lower() not in TIFF_EXTENSIONS:
        raise ImageError(f"{path}: slice index {index} given for a file that is not a TIFF stack")
    # Through the streaming reader: only that page is read (mapped when contiguous).
    with volumes.open_volume(path, tiff_planes) as volume:
        data = volume.raw([int(index)])[0]
        return _checked_slice(data, volume.dtype, norm, f"{path} (slice {index})")


# --------------------------------------------------------------------------------------------
# Writing, whole or not at all.
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_write(path: PathLike) -> Iterator[pathlib.Path]:
    """Yields a temporary path beside `path`; renames it over `path` when the block completes.

    The temporary (`.<name>.tmp-<pid>-<random>` in the same folder, so the rename stays on one
    file system and is atomic) is flushed to disk and moved with os.replace only if the block
    raises nothing; on any exception it is removed and `path` is left as it was.
    """
    path = pathlib.Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield temporary
        if not temporary.exists():
            raise FileNotFoundError(f"{path}: nothing was written to the temporary {temporary}")
        descriptor = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(descriptor)  # the data is on disk before the name points at it
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        if error.filename is None or pathlib.Path(error.filename) != temporary:
            raise
        # The temporary is our detail: the user asked for `path`, so name that.
        raise type(error)(error.errno, f"cannot write {path}: {error.strerror}") from error
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


# Names `atomic_write` gives its temporaries: `.<name>.tmp-<pid>-<8 hex digits>`.
_TEMPORARY = re.compile(r"\..+\.tmp-\d+-[0-9a-f]{8}")


def remove_temporaries(folder: PathLike) -> list[pathlib.Path]:
    """Deletes the temporaries that interrupted `atomic_write`s left in `folder` (not
    recursive); returns them. Only for folders a single run writes."""
    removed = []
    for entry in pathlib.Path(folder).iterdir():
        if _TEMPORARY.fullmatch(entry.name) and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


def check_output(path: PathLike, key: str, folder: bool = False) -> pathlib.Path:
    """Checks, before any work, that the output `path` (a file, or a folder when `folder`) can
    be written: it is not the other kind of thing, and the nearest existing folder above it
    is a writable folder. Raises an InputError naming `key` and the path."""
    path = pathlib.Path(path)
    if not str(path).strip():
        raise errors.InputError(f"{key} is empty: give the output {'folder' if folder else 'file'}")
    if folder and path.exists() and not path.is_dir():
        raise errors.InputError(f"{key}={path} is a file; give a folder for the outputs")
    if not folder and path.is_dir():
        raise errors.InputError(f"{key}={path} is a folder; give the name of the file to write")
    above = path if folder and path.is_dir() else path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise errors.InputError(f"{key}={path}: {above} is a file, not a folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise errors.InputError(f"{key}={path}: cannot write in {above} (permission denied)")
    return path


def split_paths(text: str) -> list[str]:
    r"""The paths of a comma-separated list, stripped, blanks dropped; `\,` is a comma that
    belongs to a path (other backslashes are kept as they are)."""
    paths, current, chars = [], [], iter(str(text))
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            current.append("," if following == "," else char + following)
        elif char == ",":
            paths.append("".join(current))
            current = []
        else:
            current.append(char)
    paths.append("".join(current))
    return [p.strip() for p in paths if p.strip()]


def write_png(path: PathLike, image01: Any, bits: int = 8) -> None:
    """Writes a [0, 1] image as an 8- or 16-bit PNG (round(x * 255) or round(x * 65535)).

    `image01` is (H, W), or (H, W, 3|4) for 8 bits. Values may overshoot [0, 1] by 1e-6 (float
    round-off), which is clipped; anything further out, NaN or inf raises ImageError.
    """
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    data = np.asarray(image01, dtype=np.float64)
    colour = data.ndim == 3 and data.shape[-1] in (3, 4)
    if not (data.ndim == 2 or (colour and bits == 8)):
        raise ImageError(f"{path}: cannot write shape {data.shape} as a {bits}-bit PNG; expected "
                         "(H, W)" + (" or (H, W, 3|4)" if bits == 8 else ""))
    if data.size == 0:
        raise ImageError(f"{path}: cannot write an empty image {data.shape}")
    _check_finite(data, str(path))
    if data.min() < -_RANGE_TOLERANCE or data.max() > 1.0 + _RANGE_TOLERANCE:
        raise ImageError(f"{path}: values span [{data.min():g}, {data.max():g}], outside [0, 1]")
    top, dtype = (255, np.uint8) if bits == 8 else (65535, np.uint16)
    quantised = np.round(np.clip(data, 0.0, 1.0) * top).astype(dtype)
    with atomic_write(path) as temporary:
        # The temporary has no .png suffix, so the format is named.
        Image.fromarray(quantised).save(temporary, format="PNG")


def write_tiff(path: PathLike, array: Any, photometric: str | None = "minisblack") -> None:
    """Writes an array as TIFF with its dtype: (H, W) as one page, (D, H, W) as D pages."""
    data = np.asarray(array)
    with atomic_write(path) as temporary:
        tifffile.imwrite(temporary, data, photometric=photometric)


def _json_default(value: Any) -> Any:
    """Makes numpy and JAX scalars and arrays JSON-serialisable."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, jax.Array)):
        return np.asarray(value).tolist()
    if isinstance(value, pathlib.PurePath):
        return str(value)
    raise TypeError(f"object of type {type(value).__name__} is not JSON serialisable")


def write_json(path: PathLike, obj: Any, indent: int = 2) -> None:
    """Writes `obj` as JSON (numpy/JAX values and paths converted), ending with a newline."""
    with atomic_write(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(obj, handle, indent=indent, default=_json_default)
            handle.write("\n")


def save_figure(figure, path: PathLike, dpi: float | None = None) -> None:
    """Writes a matplotlib figure as PNG, whole or not at all (`dpi` None: matplotlib's)."""
    with atomic_write(path) as temporary:
        # The temporary has no .png suffix, so the format is named.
        figure.savefig(temporary, format="png", dpi=dpi)


def write_text(path: PathLike, text: str) -> None:
    """Writes `text` as UTF-8."""
    with atomic_write(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
