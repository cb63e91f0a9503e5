"""How the ops floor accepts arrays: one place for device, dtype and layout rules.

Rules (documented in ranvier.ops):
- NumPy arrays run on the CPU kernels, CuPy arrays on the CUDA kernels; the result is of
  the same kind. Mixing the two in one call raises ``ValueError`` naming both devices.
- float32 and float64 are computed natively. Float inputs of both widths in one call are
  promoted to float64, as NumPy does. Other dtypes (integers, booleans, float16, complex,
  strings, objects) raise ``TypeError``: convert explicitly, so that no precision changes
  silently. Python scalars and lists are converted with ``np.asarray`` first.
- Strided (non-contiguous) inputs are copied once into contiguous memory; read-only inputs
  are fine, since inputs are only read. Outputs are always fresh, contiguous arrays unless
  ``out=`` is given.
"""

from __future__ import annotations

import math

import numpy as np

from . import _C

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_FLOAT32, _FLOAT64 = _FLOAT_DTYPES


def _cupy():
    """The cupy module if it is importable, else None (imported lazily, never required)."""
    try:
        import cupy
    except Exception:
        return None
    return cupy


def is_cuda_array(a) -> bool:
    # The NumPy test first: it is the common case, and much cheaper than the attribute lookup.
    return not isinstance(a, np.ndarray) and hasattr(a, "__cuda_array_interface__")


def device_of(a) -> str:
    return "cuda" if is_cuda_array(a) else "cpu"


def device_name(a) -> str:
    """'cpu', or 'cuda:N' for an array on GPU N (what ``Tensor.device`` reports)."""
    if not is_cuda_array(a):
        return "cpu"
    return f"cuda:{int(getattr(getattr(a, 'device', None), 'id', 0))}"


def parse_device(device, op: str) -> str:
    """A device given by the user -> 'cpu', 'cuda' (the current GPU) or 'cuda:N'.

    Devices are plain strings in ranvier (no device class): 'cpu', 'cuda', 'cuda:N'.
    Anything else is a ValueError (a wrong string) or TypeError (not a string) naming `op`.
    """
    if not isinstance(device, str):
        raise TypeError(f"{op}: device must be a string ('cpu', 'cuda' or 'cuda:N'), got "
                        f"{type(device).__name__} {device!r}")
    if device in ("cpu", "cuda"):
        return device
    if device.startswith("cuda:"):
        index = device[5:]
        if index.isascii() and index.isdigit():  # digits only: no sign, no spaces
            return f"cuda:{int(index)}"
    raise ValueError(f"{op}: unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N' "
                     f"(N = 0, 1, ... the GPU's index)")


def resolve_device(device, op: str) -> str:
    """A device given by the user -> 'cpu' or 'cuda:N', checking that the GPU can be used.

    Raises RuntimeError with ``ranvier.cuda.unavailable_reason()`` when a GPU is asked for
    and none can be used, and when 'cuda:N' names a GPU this machine does not have.
    """
    device = parse_device(device, op)
    if device == "cpu":
        return device
    from . import cuda  # imports the extension; _arrays itself must not need it

    if not cuda.is_available():
        raise RuntimeError(f"{op}: cannot use device {device!r}: CUDA is not available "
                           f"({cuda.unavailable_reason()})")
    cupy = _cupy()
    if device == "cuda":
        return f"cuda:{int(cupy.cuda.Device().id)}"
    index, count = int(device[5:]), cuda.device_count()
    if index >= count:
        raise RuntimeError(f"{op}: device {device!r} does not exist; this machine has {count} "
                           f"GPU(s) (cuda:0 to cuda:{count - 1})")
    return device


def is_device_index(value) -> bool:
    """A GPU index given as a number (``.cuda(1)``), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def names_dtype(text: str) -> bool:
    """Whether a string argument of ``to()`` names a dtype ('float32') rather than a device."""
    try:
        np.dtype(text)
    except TypeError:
        return False
    return True


def to_device(array, device: str):
    """`array` on `device` ('cpu' or 'cuda:N', as resolve_device returns); the array itself
    when it is there already, else a copy (NumPy on the CPU, CuPy on a GPU)."""
    current = device_name(array)
    if device == current:
        return array
    if device == "cpu":
        if not hasattr(array, "get"):  # another library's GPU array: go through CuPy
            array = _cupy().asarray(array)
        return array.get()
    cupy = _cupy()
    with cupy.cuda.Device(int(device[5:])):  # allocate on the target GPU
        if isinstance(array, cupy.ndarray):
            return cupy.copy(array)  # GPU -> GPU: cupy.copy copies across devices
        # Host -> GPU on the current stream. From pageable memory (NumPy's) the call returns
        # once the source has been read, so a temporary source may be freed right after.
        return cupy.array(array, copy=True)


def to_host(array):
    """A NumPy array with `array`'s values: a GPU array is copied to the host, a NumPy array
    is returned as it is."""
    return to_device(array, "cpu") if is_cuda_array(array) else array


def array_module(*arrays):
    """numpy, or cupy when the arrays live on the GPU; mixing the two is an error."""
    for a in arrays:  # fast path: all NumPy arrays (or None)
        if a is not None and type(a) is not np.ndarray:
            break
    else:
        return np
    devices = {device_of(a) for a in arrays if a is not None}
    if len(devices) > 1:
        raise ValueError("arrays are on different devices (cpu and cuda); move them to one device")
    if devices == {"cuda"}:
        cupy = _cupy()
        if cupy is None:
            raise RuntimeError("got a CUDA array but CuPy cannot be imported")
        return cupy
    return np


def _as_array(a, xp, op: str, name: str):
    if xp is np:
        if is_cuda_array(a):
            raise ValueError(f"{op}: {name} is on cuda but the other inputs are on cpu")
        return np.asarray(a)
    if not is_cuda_array(a):
        raise ValueError(f"{op}: {name} is on cpu but the other inputs are on cuda")
    return a


def contiguous(xp, a, dtype=None):
    """`a` as a C-contiguous array of `dtype`, copied only if needed. Unlike
    ascontiguousarray this keeps 0-d arrays 0-d."""
    return xp.asarray(a, dtype=dtype, order="C")


def check_float_dtype(dtype, op: str, name: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in _FLOAT_DTYPES:
        hint = " (float16 is not supported; use float32)" if dtype == np.float16 else ""
        raise TypeError(f"{op}: {name} has dtype {dtype}; expected float32 or float64{hint}")
    return dtype


def float_inputs(op: str, **arrays):
    """Convert named inputs (None passes through) to contiguous arrays of one float dtype.

    Returns (xp, dtype, [arrays in the order given]).
    """
    # Fast path, the common case of every layer: exact NumPy arrays, C-contiguous, all of one
    # float dtype. They pass through unchanged, as the general path below would return them.
    # Dtypes are compared by identity (NumPy's float32 and float64 dtypes are singletons):
    # anything else, an equal but distinct dtype object included, takes the general path.
    dtype = None
    for a in arrays.values():
        if a is None:
            continue
        if type(a) is not np.ndarray:
            break
        a_dtype = a.dtype
        if a_dtype is not dtype:
            if dtype is not None or (a_dtype is not _FLOAT32 and a_dtype is not _FLOAT64):
                break
            dtype = a_dtype
        if not a.flags.c_contiguous:
            break
    else:
        if dtype is not None:
            return np, dtype, list(arrays.values())
    present = {k: v for k, v in arrays.items() if v is not None}
    # The module of the GPU inputs if there are any: _as_array then names the op and each
    # input on the CPU (array_module over all of them would raise without either).
    on_gpu = [v for v in present.values() if is_cuda_array(v)]
    xp = array_module(*on_gpu) if on_gpu else np
    converted = {k: _as_array(v, xp, op, k) for k, v in present.items()}
    for name, a in converted.items():
        check_float_dtype(a.dtype, op, name)
    dtype = np.result_type(*[a.dtype for a in converted.values()]) if converted else np.dtype(np.float32)
    out = []
    for name in arrays:
        a = converted.get(name)
        if a is not None:
            a = contiguous(xp, a, dtype)
        out.append(a)
    return xp, np.dtype(dtype), out


def index_input(op: str, name: str, a, xp):
    """Integer class targets as contiguous int64 (any integer dtype is accepted)."""
    a = _as_array(a, xp, op, name)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name} must hold integer class indices, got dtype {a.dtype}")
    return contiguous(xp, a, np.int64)


# Host arrays of this many bytes and more come from ranvier's host cache (empty, below).
_CACHED_MIN_BYTES = _C.host_cache_stats()["min_block_bytes"]


def empty(xp, shape, dtype: np.dtype):
    """An uninitialised C-contiguous array of `shape` and `dtype` (a ``np.dtype``) on xp's
    device (xp is numpy or cupy): what every op's fresh output is.

    Host arrays of 64 KiB and more take their memory from ranvier's host cache
    (csrc/host_memory_pool.cpp, ranvier.cpu.memory_stats), which keeps the blocks of freed
    arrays for the next arrays of their size: a training step's outputs then reuse the last
    step's pages instead of having the OS fault in and zero fresh ones each step. Their
    ``.base`` is the capsule that returns the block; otherwise they are ordinary writable
    NumPy arrays. Smaller ones, and CuPy arrays (CuPy has its own pool), come from
    ``xp.empty``. (This runs for every op's output: the small-array path costs ~0.2 us over
    ``np.empty``, which is why `dtype` must already be a ``np.dtype``.)
    """
    if xp is np:
        if type(shape) is not tuple:
            shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if math.prod(shape) * dtype.itemsize >= _CACHED_MIN_BYTES:
            return _C.host_empty(shape, dtype)
    return xp.empty(shape, dtype=dtype)


def output(xp, shape, dtype, out, op: str):
    """A fresh output array, or `out` after checking it can take the result: an array on the
    inputs' device (xp is numpy or cupy), of the result's shape and dtype, C-contiguous and
    writable. The errors name the op (the binding checks all of this too, but names itself)."""
    if out is None:
        return empty(xp, shape, dtype)
    on_gpu = is_cuda_array(out)
    if not on_gpu and not isinstance(out, np.ndarray):
        raise TypeError(f"{op}: out must be a NumPy or CuPy array, got {type(out).__name__}")
    if on_gpu != (xp is not np):
        inputs, out_device = ("cuda", "cpu") if xp is not np else ("cpu", "cuda")
        raise ValueError(f"{op}: out is on {out_device} but the inputs are on {inputs}; "
                         f"move them to one device")
    if tuple(out.shape) != tuple(shape) or np.dtype(out.dtype) != np.dtype(dtype):
        raise ValueError(f"{op}: out has shape {tuple(out.shape)} and dtype {out.dtype}, "
                         f"expected {tuple(shape)} and {np.dtype(dtype)}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{op}: out of shape {tuple(out.shape)} is not C-contiguous; "
                         "pass a contiguous array")
    if not on_gpu and not out.flags.writeable:
        raise ValueError(f"{op}: out is read-only")
    return out
