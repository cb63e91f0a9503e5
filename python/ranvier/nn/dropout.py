"""Dropout layer."""

from __future__ import annotations

from . import _validation as check
from . import functional as F
from .module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """In training mode, zeroes each element with probability ``p`` and scales the rest by
    1 / (1 - p), so the expected value is unchanged; in evaluation mode (``model.eval()``)
    it returns the input unchanged.

    The masks come from ranvier's generator (``ranvier.manual_seed`` makes them reproducible).

    Args:
        p: probability of zeroing an element, 0 <= p <= 1 (default 0.5).

    Shape:
        - Input: ``(*)``. Output: ``(*)``, the same shape.

    Example:
        >>> model = nn.Sequential(nn.Linear(100, 50), nn.ReLU(), nn.Dropout(0.2), nn.Linear(50, 2))
        >>> model.eval()   # no dropout when evaluating
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        p = check.real_number("Dropout", "p", p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, input):
        return F.dropout(input, p=self.p, training=self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
