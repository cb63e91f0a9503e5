"""Save and load state dicts in the safetensors format, written and read by ranvier itself.

A ``.safetensors`` file is (https://github.com/huggingface/safetensors, "Format")::

    8 bytes   N, the header length: unsigned 64-bit little-endian integer
    N bytes   the header: UTF-8 JSON object, padded with spaces so that 8 + N is a multiple of 8
              {"name": {"dtype": "F32", "shape": [3, 4], "data_offsets": [begin, end]}, ...,
               "__metadata__": {"str": "str", ...}}          (metadata is optional)
    rest      the data buffer: each tensor's bytes, little-endian, C order; ``data_offsets`` are
              byte offsets into this buffer, and the tensors tile it exactly (no gaps, no overlap)

No pickle is involved anywhere: loading a file cannot run code. Files written here are read by
the ``safetensors`` package and vice versa (tested when that package is installed).

- ``save(state_dict, path, metadata=None)`` writes atomically: a temporary file in the same
  directory is written, flushed and fsync'ed, then renamed over ``path``. If anything fails, the
  temporary file is removed and a file already at ``path`` is left as it was.
- ``load(path)`` returns ``{name: numpy.ndarray}`` (fresh, writable, aligned arrays in the stored
  dtype); ``load(path, with_metadata=True)`` returns ``(arrays, metadata)``; ``load_metadata(path)``
  reads only the header's metadata. Every malformed file raises ``ValueError`` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
import tempfile
from collections.abc import Mapping

import numpy as np

__all__ = ["save", "load", "load_metadata"]

# safetensors dtype name -> NumPy dtype (always little-endian, as the format prescribes).
_DTYPE_BY_NAME = {
    "BOOL": np.dtype("|b1"),
    "U8": np.dtype("|u1"),
    "I8": np.dtype("|i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}
_NAME_BY_KIND_AND_SIZE = {(dt.kind, dt.itemsize): name for name, dt in _DTYPE_BY_NAME.items()}
# Valid safetensors dtypes that NumPy has no type for: a clear error rather than "unknown".
_DTYPES_WITHOUT_NUMPY_TYPE = {"BF16", "F8_E4M3", "F8_E5M2", "F4", "F6_E2M3", "F6_E3M2",
                              "E8M0", "F8_E8M0", "C64"}

_METADATA_KEY = "__metadata__"
_HEADER_LENGTH_BYTES = 8
_ALIGNMENT = 8


def _current_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any threads use it.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


# ----------------------------------------------------------------------------------- saving

def _to_numpy(value, name: str) -> np.ndarray:
    """The host NumPy array behind a state-dict value (ndarray, NumPy scalar, Tensor, CuPy array)."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):
        return np.asarray(value)
    # A ranvier Tensor (or Parameter) holds its array in .data; imported lazily so that this
    # module does not depend on the autograd floor.
    try:
        from .tensor import Tensor
    except ImportError:  # pragma: no cover - only while tensor.py does not exist
        Tensor = ()
    if Tensor and isinstance(value, Tensor):
        return _to_numpy(value.data, name)
    if hasattr(value, "__cuda_array_interface__") and hasattr(value, "get"):
        return value.get()  # CuPy array -> host copy
    raise TypeError(
        f"save: value for {name!r} is a {type(value).__name__}; only arrays (NumPy, CuPy) and "
        f"ranvier Tensors can be saved"
    )


def _flatten(obj, prefix: str, out: dict, path) -> None:
    for key, value in obj.items():
        if not isinstance(key, str):
            raise TypeError(f"save: keys must be strings, got {key!r} ({type(key).__name__}) "
                            f"for {path}")
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            # Nested dicts are flattened with '.', as PyTorch names nested modules' entries.
            _flatten(value, name + ".", out, path)
            continue
        if name in out:
            raise ValueError(f"save: two entries both flatten to the name {name!r} for {path}; "
                             f"rename one of them")
        if name == _METADATA_KEY:
            raise ValueError(f"save: {_METADATA_KEY!r} is reserved for metadata and cannot name "
                             f"a tensor ({path})")
        out[name] = _to_numpy(value, name)


def _safetensors_dtype(array: np.ndarray, name: str) -> str:
    dtype = array.dtype
    dtype_name = _NAME_BY_KIND_AND_SIZE.get((dtype.kind, dtype.itemsize))
    if dtype_name is None:
        raise TypeError(f"save: {name!r} has dtype {dtype}, which safetensors cannot store "
                        f"(supported: bool, uint8/16/32/64, int8/16/32/64, float16/32/64)")
    return dtype_name


def _check_metadata(metadata, path) -> dict | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise TypeError(f"save: metadata must be a dict of str to str, got "
                        f"{type(metadata).__name__} ({path})")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"save: metadata must map str to str; got {key!r}: {value!r} "
                            f"({path})")
    return dict(metadata)


def _encode_header(entries: dict, metadata: dict | None) -> bytes:
    header = {}
    if metadata is not None:
        header[_METADATA_KEY] = metadata
    header.update(entries)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    padding = -(_HEADER_LENGTH_BYTES + len(text)) % _ALIGNMENT
    return text + b" " * padding


def save(obj: Mapping, path, metadata: Mapping | None = None) -> None:
    """Write a state dict to ``path`` in the safetensors format, atomically.

    Args:
        obj: ``{name: array}`` where each value is a NumPy array or scalar, a CuPy array or a
            ranvier Tensor/Parameter (its array is saved). Nested dicts are flattened with
            ``'.'`` (``{"model": {"0.weight": w}}`` is stored as ``"model.0.weight"``); two
            entries that flatten to the same name raise ``ValueError``. ``load`` returns the flat
            dict. Any other value (lists, Python numbers, strings) raises ``TypeError``.
        path: file name (str or path-like). Its directory must exist.
        metadata: optional ``{str: str}`` stored in the header under ``"__metadata__"``.

    Arrays are stored in C order, little-endian, in the order of ``obj``. Supported dtypes: bool,
    uint8/16/32/64, int8/16/32/64, float16/32/64.

    Example:
        >>> ranvier.save(model.state_dict(), "model.safetensors", metadata={"epoch": "3"})
    """
    if not isinstance(obj, Mapping):
        hint = " (pass model.state_dict())" if hasattr(obj, "state_dict") else ""
        raise TypeError(f"save: expected a dict of name -> array, got {type(obj).__name__}{hint}")
    path = os.fspath(path)
    arrays: dict[str, np.ndarray] = {}
    _flatten(obj, "", arrays, path)
    metadata = _check_metadata(metadata, path)

    entries, payload, offset = {}, [], 0
    for name, array in arrays.items():
        dtype_name = _safetensors_dtype(array, name)
        # (not np.ascontiguousarray: it turns 0-d arrays into 1-d ones)
        data = np.asarray(array, dtype=_DTYPE_BY_NAME[dtype_name], order="C")
        entries[name] = {"dtype": dtype_name, "shape": list(data.shape),
                         "data_offsets": [offset, offset + data.nbytes]}
        payload.append(data)
        offset += data.nbytes
    header = _encode_header(entries, metadata)

    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                                             suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(struct.pack("<Q", len(header)))
            stream.write(header)
            for data in payload:
                if data.nbytes:
                    stream.write(data.reshape(-1).view(np.uint8).data)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates the file 0600; give it the mode the file at path has, or would get.
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
        os.chmod(temp_path, mode)
        os.replace(temp_path, path)
    except BaseException:
        try:
            os.unlink(temp_path)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------------------------- loading

def _no_duplicate_keys(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_header(stream, path: str, file_size: int):
    """Parse and validate the header; returns (entries, metadata, data_start)."""
    def bad(reason: str) -> ValueError:
        return ValueError(f"{path}: not a valid safetensors file: {reason}")

    prefix = stream.read(_HEADER_LENGTH_BYTES)
    if len(prefix) < _HEADER_LENGTH_BYTES:
        raise bad(f"the file has {file_size} bytes, fewer than the 8-byte header length")
    (header_length,) = struct.unpack("<Q", prefix)
    if header_length > file_size - _HEADER_LENGTH_BYTES:
        raise bad(f"the header length is {header_length} bytes but only "
                  f"{file_size - _HEADER_LENGTH_BYTES} bytes follow it")
    raw = stream.read(header_length)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad(f"the header is not UTF-8 ({exc})") from None
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError, as is a duplicate key
        raise bad(f"the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise bad(f"the header is a JSON {type(header).__name__}, not an object")

    metadata = header.pop(_METADATA_KEY, None)
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise bad(f"{_METADATA_KEY!r} must be an object of strings, got {metadata!r}")

    entries = {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"entry {name!r} must be an object with exactly 'dtype', 'shape' and "
                      f"'data_offsets', got {entry!r}")
        dtype_name, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if isinstance(dtype_name, str) and dtype_name in _DTYPES_WITHOUT_NUMPY_TYPE:
            raise bad(f"tensor {name!r} has dtype {dtype_name}, which NumPy cannot represent")
        if not isinstance(dtype_name, str) or dtype_name not in _DTYPE_BY_NAME:
            raise bad(f"tensor {name!r} has unknown dtype {dtype_name!r} "
                      f"(known: {', '.join(_DTYPE_BY_NAME)})")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise bad(f"tensor {name!r} has shape {shape!r}; expected a list of "
                      f"non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_count(o) for o in offsets) or offsets[0] > offsets[1]):
            raise bad(f"tensor {name!r} has data_offsets {offsets!r}; expected "
                      f"[begin, end] with 0 <= begin <= end")
        dtype = _DTYPE_BY_NAME[dtype_name]
        expected = math.prod(shape) * dtype.itemsize
        if offsets[1] - offsets[0] != expected:
            raise bad(f"tensor {name!r} ({dtype_name}, shape {tuple(shape)}) needs {expected} "
                      f"bytes but data_offsets {offsets} span {offsets[1] - offsets[0]}")
        entries[name] = (dtype, tuple(shape), offsets[0], offsets[1])

    data_start = _HEADER_LENGTH_BYTES + header_length
    data_size = file_size - data_start
    # The tensors must tile the data buffer exactly, as the reference implementation requires.
    position, previous = 0, None
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda item: item[1][2:]):
        if end > data_size:
            raise bad(f"tensor {name!r} has data_offsets [{begin}, {end}] beyond the "
                      f"{data_size}-byte data buffer")
        if begin < position:
            raise bad(f"tensors {previous!r} and {name!r} overlap (data_offsets up to {position} "
                      f"and from {begin})")
        if begin > position:
            raise bad(f"{begin - position} unused bytes before tensor {name!r} "
                      f"(offsets {position}..{begin})")
        position, previous = end, name
    if position != data_size:
        raise bad(f"{data_size - position} bytes of trailing data after the last tensor")
    return entries, metadata, data_start


def _open_and_read_header(path):
    path = os.fspath(path)
    stream = open(path, "rb")  # FileNotFoundError for a missing file, as open() gives it
    try:
        file_size = os.fstat(stream.fileno()).st_size
        entries, metadata, data_start = _read_header(stream, path, file_size)
    except BaseException:
        stream.close()
        raise
    return path, stream, entries, metadata, data_start


def load(path, with_metadata: bool = False):
    """Read a safetensors file into ``{name: numpy.ndarray}``, in the order of the file's header.

    Args:
        path: file name (str or path-like).
        with_metadata: if True, return ``(arrays, metadata)`` where ``metadata`` is the header's
            ``{str: str}`` ``"__metadata__"`` dict (``{}`` when the file has none).

    Each array is a fresh, writable, C-contiguous copy in the stored dtype (``F32`` ->
    float32, ``I64`` -> int64, ``BOOL`` -> bool, ...). A missing file raises
    ``FileNotFoundError``; a malformed one raises ``ValueError`` naming the file and the problem.

    Example:
        >>> model.load_state_dict(ranvier.load("model.safetensors"))
    """
    path, stream, entries, metadata, data_start = _open_and_read_header(path)
    arrays = {}
    with stream:
        for name, (dtype, shape, begin, end) in entries.items():
            array = np.empty(shape, dtype=dtype.newbyteorder("="))
            if end > begin:
                stream.seek(data_start + begin)
                view = array.reshape(-1).view(np.uint8)
                if stream.readinto(view.data) != end - begin:
                    raise ValueError(f"{path}: not a valid safetensors file: the file ended "
                                     f"while reading tensor {name!r}")
                if dtype.byteorder not in ("=", "|"):  # big-endian host: bytes are little-endian
                    array = array.view(dtype).astype(dtype.newbyteorder("="))
                if dtype.kind == "b" and view.max() > 1:
                    raise ValueError(f"{path}: not a valid safetensors file: BOOL tensor "
                                     f"{name!r} holds bytes other than 0 and 1")
            arrays[name] = array
    if with_metadata:
        return arrays, dict(metadata or {})
    return arrays


def load_metadata(path) -> dict:
    """The ``{str: str}`` ``"__metadata__"`` of a safetensors file (``{}`` if it has none).

    Reads and validates only the header, not the tensor data.
    """
    _, stream, _, metadata, _ = _open_and_read_header(path)
    stream.close()
    return dict(metadata or {})
