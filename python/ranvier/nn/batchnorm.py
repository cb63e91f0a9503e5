"""Batch normalisation layers: BatchNorm1d and BatchNorm2d (PyTorch's arguments, parameters,
buffers, state-dict keys and initialisation)."""

from __future__ import annotations

import numpy as np

from . import _validation as check
from . import functional as F
from .module import Module
from .parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    """Shared by BatchNorm1d/2d; subclasses say which input ranks they take."""

    _ranks: tuple
    _layout: str

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=None, *,
                 bias: bool = True):
        super().__init__()
        name = type(self).__name__
        self.num_features = check.positive_int(name, "num_features", num_features)
        self.eps = check.real_number(name, "eps", eps)
        if self.eps < 0:
            raise ValueError(f"{name}: eps must be >= 0, got {eps}")
        self.momentum = None if momentum is None else check.real_number(name, "momentum", momentum)
        for flag, value in (("affine", affine), ("track_running_stats", track_running_stats),
                            ("bias", bias)):
            if not isinstance(value, bool):
                raise TypeError(f"{name}: {flag} must be True or False, got {value!r}")
        self.affine = affine
        self.track_running_stats = track_running_stats
        dtype = check.float_dtype(name, dtype)
        if affine:
            self.weight = Parameter(np.empty(self.num_features, dtype=dtype))
            if bias:
                self.bias = Parameter(np.empty(self.num_features, dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(self.num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """running_mean = 0, running_var = 1, num_batches_tracked = 0."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self) -> None:
        """Reset the running statistics, and weight to 1 and bias to 0 (as PyTorch)."""
        self.reset_running_stats()
        if self.weight is not None:
            self.weight.data[...] = 1
        if self.bias is not None:
            self.bias.data[...] = 0

    def _check_input(self, input) -> None:
        shape = tuple(getattr(input, "shape", ()))
        if len(shape) not in self._ranks:
            ranks = " or ".join(f"{r}D" for r in self._ranks)
            raise ValueError(f"{self!r}: expected {ranks} input {self._layout}, got {len(shape)}D "
                             f"input of shape {shape}")
        if shape[1] != self.num_features:
            raise ValueError(f"{self!r}: expected input with {self.num_features} channels (dim 1), "
                             f"got input of shape {shape}")

    def forward(self, input):
        self._check_input(input)
        # As PyTorch: momentum None means a cumulative average over the batches seen so far.
        average_factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked[...] += 1
            if self.momentum is None:
                average_factor = 1.0 / float(self.num_batches_tracked)
        # Without running statistics the batch's are used in evaluation mode too.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        keep_stats = not self.training or self.track_running_stats
        return F.batch_norm(input, self.running_mean if keep_stats else None,
                            self.running_var if keep_stats else None, self.weight, self.bias,
                            use_batch_stats, average_factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs: each of the C channels is
    normalised with the mean and (biased) variance over N (and L), then scaled by ``weight``
    and shifted by ``bias``.

    In training mode the batch statistics are used and the running estimates updated:
    running = (1 - momentum) * running + momentum * batch (unbiased variance); in
    evaluation mode (``model.eval()``) the running estimates are used.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance for stability (default 1e-5).
        momentum: weight of each new batch in the running statistics (default 0.1); None
            for a cumulative average.
        affine: learn a per-channel ``weight`` (init 1) and ``bias`` (init 0) (default True).
        track_running_stats: keep ``running_mean`` (init 0), ``running_var`` (init 1) and
            ``num_batches_tracked`` buffers (default True); without them the batch
            statistics are used in evaluation mode too.
        dtype: float32 (default) or float64.
        bias: with affine, whether to learn the bias too (keyword only, default True).

    Shape:
        - Input: ``(N, C)`` or ``(N, C, L)``. Output: the same shape.

    Example:
        >>> bn = nn.BatchNorm1d(32)
        >>> bn(ranvier.randn(16, 32)).shape
        (16, 32)
    """

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of images (N, C, H, W): each channel is normalised over N, H and W.

    Args: as BatchNorm1d.

    Shape:
        - Input: ``(N, C, H, W)``. Output: the same shape.

    Example:
        >>> model = nn.Sequential(nn.Conv2d(1, 16, 3), nn.BatchNorm2d(16), nn.ReLU())
    """

    _ranks = (4,)
    _layout = "(N, C, H, W)"
