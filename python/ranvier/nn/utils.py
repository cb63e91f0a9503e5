"""Training utilities on modules and parameters: gradient clipping, freezing for transfer learning."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._arrays import array_module
from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "freeze", "unfreeze"]


def _host_float(value) -> float:
    if hasattr(value, "get"):  # CuPy scalar array
        value = value.get()
    return float(value)


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Scale the gradients of ``parameters`` in place so that their joint norm is at most
    ``max_norm``, as ``torch.nn.utils.clip_grad_norm_``.

    The norm is taken over all gradients together, as if concatenated into one vector;
    when it exceeds ``max_norm`` every gradient is multiplied by
    ``max_norm / (total_norm + 1e-6)``. Parameters without a gradient are skipped.

    Args:
        parameters: a Tensor or an iterable of Tensors (e.g. ``model.parameters()``).
        max_norm: the largest norm allowed (>= 0).
        norm_type: the p of the p-norm (default 2.0), or ``float('inf')`` for the largest
            absolute value.
        error_if_nonfinite: raise ``RuntimeError`` when the total norm is NaN or infinite
            (otherwise the gradients are scaled by a NaN factor, as in PyTorch).

    Returns:
        the total norm of the gradients before clipping, as a Python float.

    Example:
        >>> loss.backward()
        >>> ranvier.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        >>> optimizer.step()
    """
    op = "clip_grad_norm_"
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    parameters = list(parameters)
    for p in parameters:
        if not isinstance(p, Tensor):
            raise TypeError(f"{op}: expected Tensors, got a {type(p).__name__}")
    for name, value in (("max_norm", max_norm), ("norm_type", norm_type)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            raise ValueError(f"{op}: {name} must be a number, got {value!r}")
    max_norm, norm_type = float(max_norm), float(norm_type)
    if max_norm < 0 or math.isinf(max_norm):
        raise ValueError(f"{op}: max_norm must be finite and >= 0, got {max_norm}")
    if norm_type <= 0:
        raise ValueError(f"{op}: norm_type must be > 0 (or inf), got {norm_type}")
    grads = [p.grad.data for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    if math.isinf(norm_type):
        total = max(_host_float(array_module(g).abs(g).max()) if g.size else 0.0 for g in grads)
    else:
        # Per-gradient norms in float64, then the norm of those norms.
        norms = [_host_float(array_module(g).linalg.norm(g.reshape(-1).astype(np.float64), ord=norm_type))
                 for g in grads]
        total = float(np.linalg.norm(np.asarray(norms, dtype=np.float64), ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"{op}: the total norm of order {norm_type} of the gradients is "
                           f"{total}; set error_if_nonfinite=False to scale them anyway")
    clip_coefficient = max_norm / (total + 1e-6)
    if clip_coefficient < 1.0 or math.isnan(clip_coefficient):
        for g in grads:
            g *= g.dtype.type(clip_coefficient)
    return total


def freeze(module):
    """Stop training ``module``'s parameters (``requires_grad_(False)``), e.g. a pretrained
    feature extractor whose head alone is fine-tuned. Returns the module.

    Build the optimizer over the parameters that still require gradients::

        freeze(model.features)
        optimizer = Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    """
    if not hasattr(module, "requires_grad_") or not hasattr(module, "parameters"):
        raise TypeError(f"freeze: expected a Module, got a {type(module).__name__}")
    module.requires_grad_(False)
    return module


def unfreeze(module):
    """Train ``module``'s parameters again (``requires_grad_(True)``). Returns the module."""
    if not hasattr(module, "requires_grad_") or not hasattr(module, "parameters"):
        raise TypeError(f"unfreeze: expected a Module, got a {type(module).__name__}")
    module.requires_grad_(True)
    return module
