"""Parameter: a Tensor that a Module registers as one of its learnable weights."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor

__all__ = ["Parameter"]


class Parameter(Tensor):
    """A Tensor that is a module's learnable weight: assigning one to a Module attribute
    registers it, so it appears in ``parameters()`` and ``state_dict()``.

    Args:
        data: the initial values: a NumPy/CuPy array, a Tensor (its array is used) or anything
            ``np.asarray`` accepts. Arrays are used as they are, without a copy, so the Parameter
            and the array share memory (as ``torch.nn.Parameter`` shares storage). ``None`` gives
            an empty float32 array.
        requires_grad: whether backward() computes a gradient for it (default True).

    Example:
        >>> w = nn.Parameter(np.zeros((3, 4), np.float32))
        >>> w.requires_grad
        True
    """

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = np.empty((0,), dtype=np.float32)
        elif isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
