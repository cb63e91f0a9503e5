"""Parameter initialisation with PyTorch's formulas (``torch.nn.init``), filled in place.

Every function takes a Parameter, a Tensor or an array, fills its values in place (no graph
is recorded) and returns it. Random values come from ranvier's default generator
(``ranvier.random.default_generator.numpy``, reseeded by ``ranvier.manual_seed``) unless a
``generator`` (a ``ranvier.random.Generator`` or ``numpy.random.Generator``) is given. They are
drawn in float64 on the host and cast to the array's dtype (and copied to the GPU for CuPy
arrays).

Example:
    >>> layer = nn.Linear(128, 64)
    >>> nn.init.xavier_uniform_(layer.weight)
    >>> nn.init.zeros_(layer.bias)
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from .. import random as _random
from .._arrays import array_module
from ..tensor import Tensor

__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"]

_LINEAR_FAMILY = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                  "conv_transpose2d", "conv_transpose3d", "sigmoid"}


def _array(tensor, function: str):
    array = tensor.data if isinstance(tensor, Tensor) else tensor
    if not hasattr(array, "shape") or not hasattr(array, "dtype"):
        raise TypeError(f"{function}: expected a Parameter, Tensor or array, got "
                        f"{type(tensor).__name__}")
    if np.dtype(array.dtype).kind != "f":
        raise TypeError(f"{function}: expected a floating-point array, got dtype {array.dtype}")
    return array


def _numpy_generator(generator) -> np.random.Generator:
    if generator is None:
        return _random.default_generator.numpy
    if isinstance(generator, _random.Generator):
        return generator.numpy
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(f"generator must be a ranvier.random.Generator or numpy.random.Generator, "
                    f"got {type(generator).__name__}")


def _fill(array, values) -> None:
    """Copy float64 host values into the array, casting to its dtype and device."""
    xp = array_module(array)
    array[...] = xp.asarray(values).astype(array.dtype, copy=False)


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for an activation (PyTorch's table).

    ============================  =====================================
    linear, conv*, sigmoid        1
    tanh                          5/3
    relu                          sqrt(2)
    leaky_relu                    sqrt(2 / (1 + negative_slope**2))
    selu                          3/4
    ============================  =====================================

    Args:
        nonlinearity: the activation's name.
        param: the negative slope for ``leaky_relu`` (default 0.01).
    """
    if nonlinearity in _LINEAR_FAMILY:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif isinstance(param, numbers.Real) and not isinstance(param, bool):
            negative_slope = float(param)
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + negative_slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _fan_in_and_fan_out(array, function: str) -> tuple[int, int]:
    """fan_in = shape[1] * receptive field, fan_out = shape[0] * receptive field, where the
    receptive field is the product of shape[2:] (1 for a Linear weight (out, in))."""
    if array.ndim < 2:
        raise ValueError(f"{function}: fan in and fan out can not be computed for an array "
                         f"with fewer than 2 dimensions (shape {tuple(array.shape)})")
    receptive_field = math.prod(array.shape[2:])
    return array.shape[1] * receptive_field, array.shape[0] * receptive_field


def _empty_warning(array, function: str) -> bool:
    if array.size == 0:
        warnings.warn(f"{function}: initializing a zero-element array is a no-op",
                      stacklevel=3)
        return True
    return False


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill with values drawn from the uniform distribution U(a, b)."""
    array = _array(tensor, "uniform_")
    if not a <= b:
        raise ValueError(f"uniform_: expected a <= b, got a={a}, b={b}")
    _fill(array, _numpy_generator(generator).uniform(a, b, size=array.shape))
    return tensor


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with values drawn from the normal distribution N(mean, std**2)."""
    array = _array(tensor, "normal_")
    if not std >= 0:
        raise ValueError(f"normal_: std must be non-negative, got {std}")
    _fill(array, _numpy_generator(generator).normal(mean, std, size=array.shape))
    return tensor


def constant_(tensor, val: float):
    """Fill with the value ``val``."""
    array = _array(tensor, "constant_")
    array[...] = val
    return tensor


def zeros_(tensor):
    """Fill with zeros."""
    return constant_(tensor, 0.0)


def ones_(tensor):
    """Fill with ones."""
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """Glorot uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    array = _array(tensor, "xavier_uniform_")
    fan_in, fan_out = _fan_in_and_fan_out(array, "xavier_uniform_")
    if _empty_warning(array, "xavier_uniform_"):
        return tensor
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """Glorot normal: N(0, std**2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    array = _array(tensor, "xavier_normal_")
    fan_in, fan_out = _fan_in_and_fan_out(array, "xavier_normal_")
    if _empty_warning(array, "xavier_normal_"):
        return tensor
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def _kaiming_std(array, a, mode, nonlinearity, function):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{function}: mode {mode!r} not supported, please use one of "
                         f"'fan_in', 'fan_out'")
    fan_in, fan_out = _fan_in_and_fan_out(array, function)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator=None):
    """He uniform: U(-bound, bound) with bound = gain * sqrt(3 / fan), where
    gain = calculate_gain(nonlinearity, a) and fan = fan_in or fan_out by ``mode``.

    ``Linear`` uses ``a=sqrt(5)``, which gives bound = 1 / sqrt(fan_in).
    """
    array = _array(tensor, "kaiming_uniform_")
    if _empty_warning(array, "kaiming_uniform_"):
        return tensor
    std = _kaiming_std(array, a, mode, nonlinearity, "kaiming_uniform_")
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator=None):
    """He normal: N(0, std**2) with std = gain / sqrt(fan) (see ``kaiming_uniform_``)."""
    array = _array(tensor, "kaiming_normal_")
    if _empty_warning(array, "kaiming_normal_"):
        return tensor
    std = _kaiming_std(array, a, mode, nonlinearity, "kaiming_normal_")
    return normal_(tensor, 0.0, std, generator)
