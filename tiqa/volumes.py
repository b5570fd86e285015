"""Volumes read a slice or a few at a time, so memory is set by what is read, not the volume.

`open_volume(path)` opens a 3-D source without reading its pixels and returns a `Volume`:
`shape` (D, H, W), source `dtype`, and `raw(indices)` giving the grey samples of those slices.

    TIFF stack        (.tif/.tiff, multi-page or 3-D) an uncompressed, contiguous series is read
                      through a memory map of just the slices asked for (mapped and unmapped per
                      read: a map held over the whole file would count every page touched in the
                      resident memory); any other layout page by page with tifffile.
    HDF5              (.h5/.hdf5) through h5py. A file holding a single 3-D dataset needs no name;
                      otherwise name it as `scan.h5:/exchange/data` (Data Exchange layout). The
                      separator is the first ':' after the .h5/.hdf5 extension that is followed
                      by '/', and a file whose full name exists is always taken as a whole, so
                      any POSIX path still works.
    Zarr              (a .zarr folder, v2 or v3) through zarr: an array, or a group holding one
                      3-D array (`scan.zarr:/path/in/group` names one of several).
    folder of slices  2-D files (as tiqa.io reads them) in natural order, one file per slice.

`VolumeScale` is the normalisation shared by all slices of a volume, measured on a bounded
sample (`Normalisation.sample_slices` slices evenly spaced through the volume, every
`stride`-th pixel of each when they would hold more than `Normalisation.sample_values`
values). When the sample is the whole volume (small volumes) the scale equals the
whole-volume normalisation exactly; otherwise each sampled percentile lies between the
whole volume's percentiles p - d and p + d, with d = 0.05 percentile points documented as
the tolerance (measured with the defaults: d = 0.01 on a 160-slice phantom scan, 0.05 on a
512-slice volume with a trend along the depth, where the sample's 64 slices weigh the trend
coarsely; the tests hold a small volume to 0.25 points with a sample of 1/8 of its slices). 'minmax' needs the exact extremes and reads the whole volume once more, as does
a nearly constant sample. `StreamedVolume` pairs a volume with its scale and yields float32
slices in [0, 1]; NaN/inf and, in mode 'none', values outside [0, 1] are found as slices are
read, and named with the slice.

`parse_slices(text, count, key)` reads a selection: an index (`5`, `-1`) or a Python slice
(`0:2000:10`, `::4`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import pathlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tifffile

from tiqa import errors, io

HDF5_EXTENSIONS = (".h5", ".hdf5")
ZARR_EXTENSIONS = (".zarr",)
# `scan.h5:/exchange/data`: the file, then the dataset's absolute path inside it.
_DATASET = re.compile(r"^(?P<file>.+?\.(?:h5|hdf5|zarr)):(?P<name>/.*)$", re.IGNORECASE)
# h5py's chunk cache per open file: room for a few rows of typical (16, 256, 256) chunks, so
# reading slice after slice does not decompress each chunk again for every slice in it.
_HDF5_CACHE_BYTES = 64 * 2**20


def split_dataset(path: io.PathLike) -> tuple[pathlib.Path, str | None]:
    """(file, dataset name or None) of `path`; an existing file of the full name is whole."""
    text = str(path)
    if pathlib.Path(text).exists():
        return pathlib.Path(text), None
    match = _DATASET.match(text)
    if match is None:
        return pathlib.Path(text), None
    return pathlib.Path(match["file"]), match["name"]


def is_hdf5(path: io.PathLike) -> bool:
    return split_dataset(path)[0].suffix.lower() in HDF5_EXTENSIONS


def is_zarr(path: io.PathLike) -> bool:
    return split_dataset(path)[0].suffix.lower() in ZARR_EXTENSIONS


def is_container(path: io.PathLike) -> bool:
    """HDF5 files and Zarr stores: always volumes, read through `open_volume`."""
    return is_hdf5(path) or is_zarr(path)


def _native(data: np.ndarray) -> np.ndarray:
    """`data` in the machine's byte order (big-endian HDF5/TIFF samples are swapped)."""
    if data.dtype.byteorder not in ("=", "|") and data.dtype != data.dtype.newbyteorder("="):
        return data.astype(data.dtype.newbyteorder("="))
    return data


def _runs(indices: Sequence[int]) -> Iterator[tuple[int, int, int]]:
    """(position in `indices`, start, stop) of each run of consecutive indices."""
    first = 0
    for k in range(1, len(indices) + 1):
        if k == len(indices) or indices[k] != indices[k - 1] + 1:
            yield first, indices[first], indices[k - 1] + 1
            first = k


class Volume:
    """A 3-D source read slice by slice: `shape` (D, H, W), source `dtype`, `name` (str)."""

    name: str
    shape: tuple[int, int, int]
    dtype: np.dtype

    def _read_run(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def raw(self, indices: Sequence[int]) -> np.ndarray:
        """Grey samples (len(indices), H, W) in the source dtype; consecutive indices are read
        together."""
        indices = [int(i) for i in indices]
        for index in indices:
            if not 0 <= index < self.shape[0]:
                raise io.ImageError(f"{self.name}: slice {index} is out of range "
                                    f"(0..{self.shape[0] - 1})")
        out = np.empty((len(indices),) + tuple(self.shape[1:]), self.dtype)
        for position, start, stop in _runs(indices):
            out[position:position + stop - start] = self._read_run(start, stop)
        return out

    def slice_name(self, index: int) -> str:
        return f"{self.name} (slice {index})"

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ArrayVolume(Volume):
    """A volume already in memory (tests, callers that hold one)."""

    def __init__(self, data: np.ndarray, name: str = "array"):
        data = np.asarray(data)
        if data.ndim != 3:
            raise io.ImageError(f"{name}: has shape {data.shape}; expected a 3-D volume")
        self.data, self.name = data, name
        self.shape, self.dtype = tuple(data.shape), data.dtype

    def _read_run(self, start, stop):
        return self.data[start:stop]


class TiffVolume(Volume):
    def __init__(self, path: pathlib.Path, tiff_planes: str = "volume"):
        self.name, self.path = str(path), path
        try:
            self._tif = tifffile.TiffFile(path)
            series = io._tiff_series(self._tif, path)
            self._axes = io._tiff_axes(series.axes, tiff_planes)
            self.shape = io._grey_shape(series.shape, self._axes)
            self.dtype = np.dtype(series.dtype)
            self._series = series
            # Uncompressed and in one block: memory-map just the slices asked for.
            offset = series.dataoffset
            self._offset = offset if offset is not None and "S" not in self._axes else None
            self._byteorder = self._tif.byteorder
            pages = series.pages
            self._pages = pages if len(pages) == self.shape[0] else None
        except io.ImageError:
            self.close()
            raise
        except Exception as exc:  # tifffile raises many types for corrupt files
            self.close()
            raise io.ImageError(f"{path}: unreadable or truncated TIFF ({exc})") from exc
        if len(self.shape) != 3:
            self.close()
            if len(self.shape) == 2:
                raise io.ImageError(f"{path}: is a single 2-D image {self.shape}, not a volume; "
                                    "use read_slice")
            raise io.ImageError(f"{path}: has rank {len(self.shape)} (shape {self.shape}); "
                                "expected a 3-D volume (D, H, W)")

    def _read_run(self, start, stop):
        try:
            if self._offset is not None:
                per_slice = self.shape[1] * self.shape[2] * self.dtype.itemsize
                mapped = np.memmap(self.path, dtype=self.dtype.newbyteorder(self._byteorder),
                                   mode="r", offset=self._offset + start * per_slice,
                                   shape=(stop - start,) + tuple(self.shape[1:]))
                try:
                    return _native(np.array(mapped))
                finally:
                    del mapped  # unmapped now, so the pages leave the resident set
            if self._pages is not None and all(self._pages[i] is not None
                                               for i in range(start, stop)):
                return np.stack([_native(io._tiff_to_grey(self._pages[i].asarray(),
                                                          self._pages[i].keyframe.axes, self.path))
                                 for i in range(start, stop)])
            # Neither contiguous nor one page per slice (a single page of planes): small.
            return _native(io._tiff_to_grey(self._series.asarray(), self._axes,
                                            self.path)[start:stop])
        except io.ImageError:
            raise
        except Exception as exc:
            raise io.ImageError(f"{self.path}: unreadable or truncated TIFF at slices "
                                f"{start}..{stop - 1} ({exc})") from exc

    def close(self):
        tif = getattr(self, "_tif", None)
        if tif is not None:
            tif.close()
            self._tif = None


def _check_3d(shape, dtype, name: str) -> None:
    if len(shape) != 3:
        raise io.ImageError(f"{name}: dataset has shape {tuple(shape)} ({len(shape)}-D); "
                            "expected a 3-D volume (D, H, W)")
    io._check_dtype(np.dtype(dtype), name)
    io._check_slice_shape(shape, name)


class Hdf5Volume(Volume):
    def __init__(self, path: pathlib.Path, dataset: str | None):
        import h5py  # only needed for HDF5 input

        self.path = path
        if not path.exists():
            raise io.ImageError(f"{path}: no such file")
        try:
            self._file = h5py.File(path, "r", rdcc_nbytes=_HDF5_CACHE_BYTES)
        except Exception as exc:
            raise io.ImageError(f"{path}: unreadable HDF5 file ({exc})") from exc
        try:
            if dataset is None:
                found = []
                self._file.visititems(lambda name, obj: found.append("/" + name)
                                      if isinstance(obj, h5py.Dataset) and obj.ndim == 3 else None)
                if not found:
                    raise io.ImageError(f"{path}: holds no 3-D dataset")
                if len(found) > 1:
                    raise io.ImageError(
                        f"{path}: holds {len(found)} 3-D datasets ({', '.join(found[:6])}); name "
                        f"one as {path}:{found[0]}")
                dataset = found[0]
            self.name = f"{path}:{dataset}"
            if dataset not in self._file or not isinstance(self._file[dataset], h5py.Dataset):
                raise io.ImageError(f"{path}: has no dataset {dataset}")
            self._data = self._file[dataset]
            _check_3d(self._data.shape, self._data.dtype, self.name)
            self.shape, self.dtype = tuple(self._data.shape), np.dtype(self._data.dtype).newbyteorder("=")
        except BaseException:
            self.close()
            raise

    def _read_run(self, start, stop):
        try:
            return _native(self._data[start:stop])
        except Exception as exc:
            raise io.ImageError(f"{self.name}: unreadable at slices {start}..{stop - 1} "
                                f"({exc})") from exc

    def close(self):
        handle = getattr(self, "_file", None)
        if handle is not None:
            handle.close()
            self._file = None


class ZarrVolume(Volume):
    def __init__(self, path: pathlib.Path, member: str | None):
        import zarr  # only needed for Zarr input

        self.path = path
        if not path.exists():
            raise io.ImageError(f"{path}: no such Zarr store")
        try:
            node = zarr.open(str(path), mode="r")
        except Exception as exc:
            raise io.ImageError(f"{path}: unreadable Zarr store ({exc})") from exc
        if member is not None:
            if not isinstance(node, zarr.Group):
                raise io.ImageError(f"{path}: is a Zarr array, not a group; give it without "
                                    f"{member}")
            try:
                node = node[member.strip("/")]
            except KeyError:
                raise io.ImageError(f"{path}: has no array {member}") from None
        if isinstance(node, zarr.Group):
            found = [(f"/{name}", array) for name, array in node.members(max_depth=None)
                     if isinstance(array, zarr.Array) and array.ndim == 3]
            if not found:
                raise io.ImageError(f"{path}: Zarr group holds no 3-D array")
            if len(found) > 1:
                names = ", ".join(name for name, _ in found[:6])
                raise io.ImageError(f"{path}: Zarr group holds {len(found)} 3-D arrays ({names}); "
                                    f"name one as {path}:{found[0][0]}")
            member, node = found[0]
        if not isinstance(node, zarr.Array):
            raise io.ImageError(f"{path}: {member} is not a Zarr array")
        self.name = f"{path}:{member}" if member else str(path)
        self._data = node
        _check_3d(node.shape, node.dtype, self.name)
        self.shape, self.dtype = tuple(node.shape), np.dtype(node.dtype).newbyteorder("=")

    def _read_run(self, start, stop):
        try:
            return _native(np.asarray(self._data[start:stop]))
        except Exception as exc:
            raise io.ImageError(f"{self.name}: unreadable at slices {start}..{stop - 1} "
                                f"({exc})") from exc


class FolderVolume(Volume):
    """2-D files as slices, read one file at a time; shapes are checked from the headers
    first, dtypes as each file is read."""

    def __init__(self, folder: pathlib.Path, tiff_planes: str = "volume"):
        self.name, self.tiff_planes = str(folder), tiff_planes
        self.files = io._image_files(folder)
        first_shape = None
        for file in self.files:
            shape, _ = io._header(io._check_file(file), tiff_planes)
            if len(shape) != 2:
                raise io.ImageError(f"{file}: has shape {shape}; a volume folder must hold 2-D "
                                    "slices only")
            if first_shape is None:
                first_shape = shape
            elif shape != first_shape:
                raise io.ImageError(f"{file}: slice shape {shape} differs from "
                                    f"{first_shape} of {self.files[0].name}")
        io._check_slice_shape(first_shape, str(self.files[0]))
        self.shape = (len(self.files),) + tuple(first_shape)
        # The first file's dtype is the volume's (PIL headers do not tell 8 from 16 bits).
        self.dtype = np.dtype(io._load(self.files[0], tiff_planes)[1])
        io._check_dtype(self.dtype, str(self.files[0]))

    def _read_run(self, start, stop):
        slices = []
        for file in self.files[start:stop]:
            data, dtype = io._load(file, self.tiff_planes)
            if np.dtype(dtype) != self.dtype:
                raise io.ImageError(f"{file}: slice dtype {dtype} differs from "
                                    f"{self.dtype} of {self.files[0].name}")
            if data.shape != self.shape[1:]:
                raise io.ImageError(f"{file}: slice shape {data.shape} differs from "
                                    f"{self.shape[1:]} of {self.files[0].name}")
            slices.append(data)
        return np.stack(slices)

    def slice_name(self, index: int) -> str:
        return str(self.files[index])


def open_volume(path: io.PathLike, tiff_planes: str = "volume") -> Volume:
    """The volume at `path` (see the module docstring), headers read, pixels not yet."""
    file, member = split_dataset(path)
    if is_hdf5(file):
        return Hdf5Volume(file, member)
    if is_zarr(file):
        return ZarrVolume(file, member)
    if member is not None:
        raise io.ImageError(f"{path}: no such file or folder")
    if not file.exists():
        raise io.ImageError(f"{file}: no such file or folder")
    if file.is_dir():
        return FolderVolume(file, tiff_planes)
    file = io._check_file(file)
    if file.suffix.lower() in io.TIFF_EXTENSIONS:
        return TiffVolume(file, tiff_planes)
    shape, _ = io._header(file, tiff_planes)
    raise io.ImageError(f"{file}: is a single 2-D image {tuple(shape)}, not a volume; "
                        "use read_slice")


# --------------------------------------------------------------------------------------------
# The normalisation shared by a volume, from a bounded sample.
# --------------------------------------------------------------------------------------------


def sample_plan(shape: Sequence[int], sample_slices: int, sample_values: int
                ) -> tuple[list[int], int]:
    """(slice indices, pixel stride) of the sample: up to `sample_slices` slices evenly
    spaced, every `stride`-th row and column so that at most ~`sample_values` values are kept."""
    depth, height, width = shape
    count = depth if sample_slices <= 0 else min(depth, sample_slices)
    indices = sorted({int(round(i)) for i in np.linspace(0, depth - 1, count)})
    stride = max(1, math.ceil(math.sqrt(len(indices) * height * width / max(1, sample_values))))
    return indices, stride


@dataclasses.dataclass(frozen=True)
class VolumeScale:
    """x -> clip((x - low) / (high - low), 0, 1) in float64, then float32 (or x / top for
    8-bit 'auto'; x as it is for 'none')."""

    low: float
    high: float
    clip: bool = True

    def apply(self, data: np.ndarray) -> np.ndarray:
        x = data.astype(np.float64)
        if not self.clip:
            return x.astype(np.float32)
        return np.clip((x - self.low) / (self.high - self.low), 0.0, 1.0).astype(np.float32)


def _check_values(data: np.ndarray, name: str, mode: str) -> None:
    io._check_finite(data, name)
    if mode == "none" and data.size:
        low, high = float(data.min()), float(data.max())
        if low < 0.0 or high > 1.0:
            raise io.ImageError(f"{name}: values span [{low:g}, {high:g}], outside [0, 1], which "
                                "normalisation mode 'none' requires; use 'auto' or 'minmax'")


def _extremes(volume: Volume, mode: str, batch: int = 1) -> tuple[float, float]:
    """Exact min and max of the whole volume, one slice at a time."""
    low, high = math.inf, -math.inf
    for start in range(0, volume.shape[0], batch):
        indices = list(range(start, min(start + batch, volume.shape[0])))
        data = volume.raw(indices)
        _check_values(data, volume.slice_name(indices[0]), mode)
        low, high = min(low, float(data.min())), max(high, float(data.max()))
    return low, high


def volume_scale(volume: Volume, normalisation: io.NormalisationLike = io.Normalisation()
                 ) -> VolumeScale:
    """The normalisation of `volume` as a whole, from the bounded sample (module docstring)."""
    norm = io._as_normalisation(normalisation)
    io._check_dtype(volume.dtype, volume.name)
    indices, stride = sample_plan(volume.shape, norm.sample_slices, norm.sample_values)
    parts = []
    for k, index in enumerate(indices):
        data = volume.raw([index])[0]
        _check_values(data, volume.slice_name(index), norm.mode)
        # Offsets move with the slice, so a strided grid does not always land on the same
        # pixels of a periodic structure.
        parts.append(np.ascontiguousarray(data[k % stride::stride, (k // stride) % stride::stride]))
    sample = np.concatenate([p.ravel() for p in parts])
    del parts
    low, high = float(sample.min()), float(sample.max())
    whole = stride == 1 and len(indices) == volume.shape[0]
    if low == high and not whole:
        low, high = _extremes(volume, norm.mode)
    if low == high:
        raise io.ImageError(f"{volume.name}: constant image (every value is {low:g}); nothing "
                            "to score")
    mode = norm.mode
    if mode == "auto":
        if volume.dtype == np.uint8 or volume.dtype == np.bool_:
            return VolumeScale(0.0, 1.0 if volume.dtype == np.bool_ else 255.0)
        mode = "percentile"
    if mode == "none":
        return VolumeScale(0.0, 1.0, clip=False)
    if mode == "minmax":
        if not whole:
            low, high = _extremes(volume, norm.mode)
        return VolumeScale(low, high)
    p_low, p_high = np.percentile(sample.astype(np.float64),
                                  [norm.low_percentile, norm.high_percentile])
    if p_high > p_low:
        return VolumeScale(float(p_low), float(p_high))
    # A nearly binary sample: the volume's own extremes, as for a single image.
    if not whole:
        low, high = _extremes(volume, norm.mode)
    return VolumeScale(low, high)


class StreamedVolume:
    """A volume with its shared normalisation: `read(indices)` gives float32 slices in [0, 1],
    normalised one slice at a time (so the float64 temporaries stay one slice large)."""

    def __init__(self, volume: Volume, normalisation: io.NormalisationLike = io.Normalisation(),
                 per_slice: bool = False):
        self.volume = volume
        self.norm = io._as_normalisation(normalisation)
        self.per_slice = per_slice
        self.scale = None if per_slice else volume_scale(volume, self.norm)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.volume.shape

    @property
    def name(self) -> str:
        return self.volume.name

    def read(self, indices: Sequence[int]) -> np.ndarray:
        indices = [int(i) for i in indices]
        out = np.empty((len(indices),) + tuple(self.shape[1:]), np.float32)
        for position, start, stop in _runs(indices):
            data = self.volume.raw(range(start, stop))
            for offset, raw in enumerate(data):
                name = self.volume.slice_name(start + offset)
                if self.per_slice:
                    out[position + offset] = io._checked_slice(raw, self.volume.dtype,
                                                               self.norm, name)
                else:
                    _check_values(raw, name, self.norm.mode)
                    out[position + offset] = self.scale.apply(raw)
        return out

    def close(self) -> None:
        self.volume.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def streamed(path: io.PathLike, normalisation: io.NormalisationLike = io.Normalisation(),
             tiff_planes: str = "volume", per_slice: bool = False) -> Iterator[StreamedVolume]:
    volume = open_volume(path, tiff_planes)
    try:
        yield StreamedVolume(volume, normalisation, per_slice)
    finally:
        volume.close()


# --------------------------------------------------------------------------------------------
# Slice selections.
# --------------------------------------------------------------------------------------------

_SLICE = re.compile(r"^\s*(-?\d+)?\s*:\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*)?$")


def check_slices(text: Any, key: str = "config.slices") -> None:
    """Checks the syntax of a selection before any work (`parse_slices` checks the range)."""
    parse_slices(text, None, key)


def parse_slices(text: Any, count: int | None, key: str = "config.slices",
                 name: str = "") -> list[int] | None:
    """The indices of `count` slices that `text` selects: '' (all), an index ('5', '-1') or a
    Python slice ('0:2000:10'). None when `count` is None (syntax check only)."""
    text = "" if text is None else str(text).strip()
    where = f" of {name}" if name else ""
    if not text:
        return None if count is None else list(range(count))
    if re.fullmatch(r"-?\d+", text):
        index = int(text)
        if count is None:
            return None
        if not -count <= index < count:
            raise errors.InputError(f"{key}={text}: slice {index} is out of range{where} "
                                    f"({count} slices)")
        return [index % count]
    match = _SLICE.match(text)
    if match is None:
        raise errors.InputError(f"{key}={text!r} is not a slice index (5, -1) or a Python slice "
                                "(start:stop:step, e.g. 0:2000:10)")
    start, stop, step = (None if g is None else int(g) for g in match.groups())
    if step == 0:
        raise errors.InputError(f"{key}={text}: the step must not be 0")
    if count is None:
        return None
    chosen = list(range(count))[slice(start, stop, step)]
    if not chosen:
        raise errors.InputError(f"{key}={text} selects no slice{where} ({count} slices)")
    return chosen
