"""Linear (fully connected) layer, Identity and Flatten."""

from __future__ import annotations

import math

import numpy as np

from . import _validation as check
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["Linear", "Identity", "Flatten"]


class Linear(Module):
    """y = x @ weight.T + bias, PyTorch's layout and initialisation.

    Args:
        in_features: size of each input sample (> 0).
        out_features: size of each output sample (> 0).
        bias: whether to learn an additive bias (default True).
        dtype: float32 (default) or float64.

    Shape:
        - Input: ``(*, in_features)``, any number of leading dimensions.
        - Output: ``(*, out_features)``.

    Attributes:
        weight: Parameter of shape ``(out_features, in_features)``, initialised from
            U(-1/sqrt(in_features), 1/sqrt(in_features)) (``kaiming_uniform_`` with
            ``a=sqrt(5)``, as PyTorch).
        bias: Parameter of shape ``(out_features,)`` from the same distribution, or None.

    Example:
        >>> layer = nn.Linear(20, 30)
        >>> layer(ranvier.Tensor(np.zeros((128, 20), np.float32))).shape
        (128, 30)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=None):
        super().__init__()
        self.in_features = check.positive_int("Linear", "in_features", in_features)
        self.out_features = check.positive_int("Linear", "out_features", out_features)
        if not isinstance(bias, bool):
            raise TypeError(f"Linear: bias must be True or False, got {bias!r}")
        dtype = check.float_dtype("Linear", dtype)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty((self.out_features,), dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw weight and bias from PyTorch's default distribution."""
        # kaiming_uniform_ with a=sqrt(5): gain = sqrt(2 / 6), bound = gain * sqrt(3 / fan_in)
        # = 1 / sqrt(fan_in).
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def _check_input(self, input) -> None:
        """ValueError naming the layer unless input's last dimension is ``in_features``."""
        shape = tuple(getattr(input, "shape", ()))
        if len(shape) == 0 or shape[-1] != self.in_features:
            features = shape[-1] if shape else "no"
            raise ValueError(f"{self!r}: input has {features} features (shape {shape}); "
                             f"expected the last dimension to be {self.in_features}")

    def forward(self, input):
        self._check_input(input)
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Identity(Module):
    """Returns its input unchanged; a placeholder (arguments are accepted and ignored).

    Shape:
        - Input: ``(*)``. Output: ``(*)``, the same object.

    Example:
        >>> head = nn.Identity()  # e.g. to strip a classifier's last layer
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Flatten(Module):
    """Flattens the dimensions ``start_dim`` .. ``end_dim`` (inclusive) into one.

    Args:
        start_dim: first dimension to flatten (default 1: keep the batch dimension).
        end_dim: last dimension to flatten (default -1). Negative values count from the end.

    Shape:
        - Input: ``(*, S_start, ..., S_end, *)``.
        - Output: ``(*, S_start * ... * S_end, *)``.

    Example:
        >>> nn.Flatten()(ranvier.Tensor(np.zeros((32, 1, 5, 5)))).shape
        (32, 25)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = check.dim("Flatten", "start_dim", start_dim)
        self.end_dim = check.dim("Flatten", "end_dim", end_dim)

    def output_shape(self, shape: tuple) -> tuple:
        """The shape ``forward`` gives for an input of ``shape``."""
        ndim = max(len(shape), 1)  # a 0-d input flattens like a 1-element 1-d one
        start = self.start_dim + ndim if self.start_dim < 0 else self.start_dim
        end = self.end_dim + ndim if self.end_dim < 0 else self.end_dim
        if not 0 <= start < ndim or not 0 <= end < ndim:
            raise IndexError(f"{self!r}: dimension out of range for an input of shape {shape} "
                             f"(expected dims in [{-ndim}, {ndim - 1}])")
        if start > end:
            raise ValueError(f"{self!r}: start_dim ({start}) comes after end_dim ({end}) for "
                             f"an input of shape {shape}")
        shape = tuple(shape) if shape else (1,)
        return shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]

    def forward(self, input):
        return input.reshape(self.output_shape(tuple(input.shape)))

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
