"""Checks of constructor arguments shared by the layers, with messages naming the layer."""

from __future__ import annotations

import math
import numbers

import numpy as np

_REDUCTIONS = ("none", "mean", "sum")


def positive_int(layer: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{layer}: {name} must be an integer, got {value!r} "
                        f"({type(value).__name__})")
    if value <= 0:
        raise ValueError(f"{layer}: {name} must be positive, got {value}")
    return int(value)


def real_number(layer: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{layer}: {name} must be a number, got {value!r} "
                        f"({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{layer}: {name} must be finite, got {value}")
    return float(value)


def float_dtype(layer: str, dtype) -> np.dtype:
    if dtype is None:
        return np.dtype(np.float32)
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{layer}: dtype {dtype!r} is not a NumPy dtype") from None
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{layer}: dtype must be float32 or float64, got {resolved}")
    return resolved


def reduction(layer: str, value) -> str:
    if value not in _REDUCTIONS:
        raise ValueError(f"{layer}: reduction must be one of 'none', 'mean', 'sum', "
                         f"got {value!r}")
    return value


def dim(layer: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{layer}: {name} must be an integer, got {value!r} "
                        f"({type(value).__name__})")
    return int(value)


def window(layer: str, name: str, value, dims: int, minimum: int):
    """A pooling window argument: an int or a tuple of `dims` ints, each >= minimum.
    Returned unchanged (layers show it in repr as given, like PyTorch)."""
    values = value if isinstance(value, (tuple, list)) else (value,)
    if (not values or len(values) not in (1, dims)
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in values)):
        raise TypeError(f"{layer}: {name} must be an int or a tuple of {dims} ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value!r}")
    return tuple(int(v) for v in value) if isinstance(value, list) else value
