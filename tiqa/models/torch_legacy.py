"""A torch-free reader for PyTorch's legacy (pre-zip) serialisation of a state dict.

The file is a sequence of pickles (docs/SPEC.md section 5):

1. the magic number 0x1950a86a20f9469cfc6c,
2. the protocol version 1001,
3. system information (endianness, type sizes),
4. the state dict, whose tensors reference storages through persistent ids,
5. the list of storage keys, in the order their bytes follow,
6. for each storage: an 8-byte little-endian element count, then its raw little-endian bytes.

Only the handful of classes such a file needs are resolved, each to a local stand-in; any other
class in the pickle is refused, so reading a file never runs code from it.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
from typing import Any

import ml_dtypes
import numpy as np

from tiqa import errors

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch storage class name -> numpy dtype of its elements.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class LegacyCheckpointError(errors.InputError):
    """A file is not a readable PyTorch legacy checkpoint (wrong magic number, truncated, ...)."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stand-in for a `torch.<Name>Storage` class: only its element type matters."""

    name: str
    dtype: np.dtype


@dataclasses.dataclass
class _Storage:
    """A storage announced by a persistent id; its bytes arrive after the state dict."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclasses.dataclass
class _LazyTensor:
    """A tensor whose storage has not been read yet (storages follow the state dict)."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        data = self.storage.data
        assert data is not None, "storage bytes must be read before tensors are materialised"
        numel = int(np.prod(self.shape, dtype=np.int64))
        if numel == 0:
            return np.zeros(self.shape, data.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride))
        if self.offset < 0 or last >= data.size:
            raise LegacyCheckpointError(
                f"tensor of shape {self.shape} at offset {self.offset} runs past its storage "
                f"{self.storage.key!r} of {data.size} elements")
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.shape,
            strides=tuple(s * data.itemsize for s in self.stride))
        # A copy, so that no tensor aliases another's storage or a read-only buffer.
        return np.array(view, copy=True)


def _rebuild_tensor_v2(storage: _Storage, storage_offset: int, size: tuple[int, ...],
                       stride: tuple[int, ...], requires_grad: bool = False,
                       backward_hooks: Any = None, metadata: Any = None) -> _LazyTensor:
    """Stand-in for `torch._utils._rebuild_tensor_v2`; gradients and hooks are irrelevant here."""
    del requires_grad, backward_hooks, metadata
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_tensor(storage: _Storage, storage_offset: int, size: tuple[int, ...],
                    stride: tuple[int, ...]) -> _LazyTensor:
    """Stand-in for the older `torch._utils._rebuild_tensor`."""
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: _LazyTensor, requires_grad: bool = False,
                       backward_hooks: Any = None) -> _LazyTensor:
    """Stand-in for `torch._utils._rebuild_parameter`: a Parameter is just its tensor here."""
    del requires_grad, backward_hooks
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _StateDictUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed classes and records the storages the pickle names."""

    def __init__(self, file: io.BufferedIOBase, path: str, storages: dict[str, _Storage]):
        super().__init__(file, encoding="latin1")
        self._path = path
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{self._path}: refusing to load {module}.{name}; a PyTorch state dict needs "
                f"only tensors, storages and OrderedDict") from None

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or not pid or pid[0] not in ("storage", b"storage"):
            raise pickle.UnpicklingError(f"{self._path}: unsupported persistent id {pid!r}")
        storage_type, key, _location, numel, view_metadata = pid[1:]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"{self._path}: {storage_type!r} is not a storage type")
        if view_metadata is not None:
            raise pickle.UnpicklingError(f"{self._path}: storage views are not supported")
        key = key.decode("ascii") if isinstance(key, bytes) else str(key)
        if key not in self._storages:
            self._storages[key] = _Storage(key, storage_type.dtype, int(numel))
        return self._storages[key]


def _read_storage(stream: io.BytesIO, storage: _Storage, path: str) -> None:
    header = stream.read(8)
    if len(header) != 8:
        raise LegacyCheckpointError(
            f"{path}: truncated file: the element count of storage {storage.key!r} is missing")
    (numel,) = struct.unpack("<q", header)
    if numel != storage.numel:
        raise LegacyCheckpointError(
            f"{path}: storage {storage.key!r} holds {numel} elements, the state dict says "
            f"{storage.numel}")
    nbytes = numel * storage.dtype.itemsize
    raw = stream.read(nbytes)
    if len(raw) != nbytes:
        raise LegacyCheckpointError(
            f"{path}: truncated file: storage {storage.key!r} needs {nbytes} bytes, "
            f"{len(raw)} remain")
    storage.data = np.frombuffer(raw, dtype=storage.dtype)


def _load_pickle(stream: io.BytesIO, path: str, what: str) -> Any:
    """One plain pickle of the header; it may hold only builtins (refused classes otherwise)."""
    try:
        return _StateDictUnpickler(stream, path, {}).load()
    except (EOFError, pickle.UnpicklingError, ValueError, struct.error, IndexError) as err:
        raise LegacyCheckpointError(f"{path}: cannot read the {what}: {err}") from err


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a PyTorch legacy-format `.pth` state dict into numpy arrays, without torch.

    Args:
      path: the file.

    Returns:
      The state dict's entries, in file order, as numpy arrays (little-endian, copied).

    Raises:
      LegacyCheckpointError: the file is not a legacy checkpoint (e.g. a zip-format file or a
        wrong magic number) or it is truncated; the message names the path.
      pickle.UnpicklingError: the pickle names a class outside the allow-list.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        # Read it whole: the storages follow the pickles, so the exact position after each
        # pickle matters, and a BytesIO makes that position unambiguous.
        stream = io.BytesIO(f.read())
    if stream.getbuffer()[:2].tobytes() == b"PK":
        raise LegacyCheckpointError(
            f"{path}: this is PyTorch's zip serialisation, not the legacy format this reads")
    magic = _load_pickle(stream, path, "magic number")
    if magic != MAGIC_NUMBER:
        raise LegacyCheckpointError(
            f"{path}: wrong magic number {magic!r} (expected {MAGIC_NUMBER:#x}); not a PyTorch "
            f"legacy checkpoint")
    protocol = _load_pickle(stream, path, "protocol version")
    if protocol != PROTOCOL_VERSION:
        raise LegacyCheckpointError(
            f"{path}: protocol version {protocol!r}, this reader knows {PROTOCOL_VERSION}")
    sys_info = _load_pickle(stream, path, "system information")
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise LegacyCheckpointError(f"{path}: written on a big-endian machine; not supported")

    storages: dict[str, _Storage] = {}
    try:
        state = _StateDictUnpickler(stream, path, storages).load()
    except (EOFError, ValueError, struct.error, IndexError) as err:
        raise LegacyCheckpointError(f"{path}: cannot read the state dict: {err}") from err
    if not isinstance(state, dict):
        raise LegacyCheckpointError(
            f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    keys = _load_pickle(stream, path, "list of storage keys")
    if not isinstance(keys, list):
        raise LegacyCheckpointError(f"{path}: the storage keys are not a list: {keys!r}")
    for key in keys:
        key = key.decode("ascii") if isinstance(key, bytes) else str(key)
        if key not in storages:
            raise LegacyCheckpointError(f"{path}: storage {key!r} is not used by the state dict")
        _read_storage(stream, storages[key], path)
    unread = [k for k, s in storages.items() if s.data is None]
    if unread:
        raise LegacyCheckpointError(f"{path}: storages {unread} have no bytes in the file")

    arrays: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(value, _LazyTensor):
            raise LegacyCheckpointError(
                f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor")
        arrays[str(name)] = value.materialise()
    return arrays
