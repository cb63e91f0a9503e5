"""Activation layers: thin Modules over ``nn.functional``.

Every activation works element-wise on any shape (``Softmax``/``LogSoftmax`` along ``dim``):

Shape:
    - Input: ``(*)``. Output: ``(*)``, the same shape.
"""

from __future__ import annotations

from . import _validation as check
from . import functional as F
from .module import Module

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "LogSoftmax"]


class ReLU(Module):
    """max(0, x), element-wise.

    Example:
        >>> nn.ReLU()(x)
    """

    def forward(self, input):
        return F.relu(input)


class LeakyReLU(Module):
    """x if x >= 0 else negative_slope * x, element-wise.

    Args:
        negative_slope: slope for negative inputs (default 0.01); a finite number.

    Example:
        >>> nn.LeakyReLU(0.2)(x)
    """

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = check.real_number("LeakyReLU", "negative_slope", negative_slope)

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """1 / (1 + exp(-x)), element-wise.

    Example:
        >>> nn.Sigmoid()(x)
    """

    def forward(self, input):
        return F.sigmoid(input)


class Tanh(Module):
    """tanh(x), element-wise.

    Example:
        >>> nn.Tanh()(x)
    """

    def forward(self, input):
        return F.tanh(input)


class GELU(Module):
    """x * Phi(x), Phi the standard normal CDF; ``approximate='tanh'`` uses
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).

    Args:
        approximate: ``'none'`` (exact, default) or ``'tanh'``.

    Example:
        >>> nn.GELU(approximate="tanh")(x)
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


def _softmax_dim(layer: str, dim) -> int:
    # PyTorch picks an axis when dim is None (0 for 0-, 1- and 3-d inputs, else 1) and warns
    # that this is deprecated; guessing the axis of a biologist's (batch, genes, ...) array is
    # a silent error waiting to happen, so ranvier asks for it.
    if dim is None:
        raise ValueError(f"{layer}: dim is required (e.g. {layer}(dim=1) for inputs of shape "
                         f"(batch, classes)); ranvier does not guess the dimension as PyTorch's "
                         f"deprecated dim=None does")
    return check.dim(layer, "dim", dim)


class Softmax(Module):
    """exp(x_i) / sum_j exp(x_j) along ``dim``: each slice along ``dim`` sums to 1.

    Args:
        dim: the dimension to normalise (required; negative counts from the end). Unlike
            PyTorch, ``dim=None`` is an error rather than a guess.

    Example:
        >>> probabilities = nn.Softmax(dim=1)(logits)   # logits (batch, classes)
    """

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = _softmax_dim("Softmax", dim)

    def forward(self, input):
        return F.softmax(input, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log(softmax(x)) along ``dim``, computed stably (x_i - logsumexp(x)).

    Args:
        dim: the dimension to normalise (required, as for ``Softmax``).

    Example:
        >>> log_probabilities = nn.LogSoftmax(dim=1)(logits)
    """

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = _softmax_dim("LogSoftmax", dim)

    def forward(self, input):
        return F.log_softmax(input, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
