"""Pooling layers: MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d (PyTorch's arguments,
defaults and repr)."""

from __future__ import annotations

import numbers

from . import _validation as check
from . import functional as F
from .module import Module

__all__ = ["MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d",
           "AdaptiveAvgPool2d"]


class _Pool(Module):
    """Shared by the pooling layers: the input's rank check, and errors that name the layer."""

    _dims: int

    def _check_rank(self, input) -> None:
        shape = tuple(getattr(input, "shape", ()))
        if len(shape) not in (self._dims + 1, self._dims + 2):
            spatial = "L" if self._dims == 1 else "H, W"
            raise ValueError(f"{self!r}: expected a {self._dims + 2}-D input (N, C, {spatial}) or "
                             f"{self._dims + 1}-D unbatched (C, {spatial}), got shape {shape}")

    def _call(self, function, input, *args, **kwargs):
        self._check_rank(input)
        try:
            return function(input, *args, **kwargs)
        except ValueError as error:  # the window does not fit this input, say: name the layer
            raise ValueError(f"{self!r}: {error}") from None


class _MaxPoolNd(_Pool):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        name, dims = type(self).__name__, self._dims
        self.kernel_size = check.window(name, "kernel_size", kernel_size, dims, 1)
        self.stride = (check.window(name, "stride", stride, dims, 1) if stride is not None
                       else self.kernel_size)
        self.padding = check.window(name, "padding", padding, dims, 0)
        self.dilation = check.window(name, "dilation", dilation, dims, 1)
        self.return_indices = bool(return_indices)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, input):
        function = F.max_pool1d if self._dims == 1 else F.max_pool2d
        return self._call(function, input, self.kernel_size, self.stride, self.padding,
                          self.dilation, ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(_MaxPoolNd):
    """Maximum over sliding windows along the last axis.

    Args:
        kernel_size: window length.
        stride: step between windows (default: kernel_size).
        padding: implicit -inf padding on both sides, at most kernel_size / 2 (default 0).
        dilation: spacing between the window's elements (default 1).
        return_indices: also return the positions of the maxima (default False).
        ceil_mode: round the output length up instead of down (default False).

    Shape:
        - Input: ``(N, C, L)`` or ``(C, L)``.
        - Output: ``(N, C, L_out)`` or ``(C, L_out)``, with
          L_out = floor((L + 2 padding - dilation (kernel_size - 1) - 1) / stride) + 1.

    Example:
        >>> nn.MaxPool1d(3, stride=2)(ranvier.randn(16, 4, 200)).shape
        (16, 4, 99)
    """

    _dims = 1


class MaxPool2d(_MaxPoolNd):
    """Maximum over sliding 2-D windows; each argument is an int or an (h, w) pair.

    Args: as MaxPool1d.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``, each size as in MaxPool1d.

    Example:
        >>> nn.MaxPool2d(2)(ranvier.randn(8, 16, 28, 28)).shape
        (8, 16, 14, 14)
    """

    _dims = 2


class AvgPool1d(_Pool):
    """Mean over sliding windows along the last axis.

    Args:
        kernel_size: window length.
        stride: step between windows (default: kernel_size).
        padding: implicit zero padding on both sides, at most kernel_size / 2 (default 0).
        ceil_mode: round the output length up instead of down (default False).
        count_include_pad: count the padding in each window's size (default True).

    Shape:
        - Input: ``(N, C, L)`` or ``(C, L)``.
        - Output: ``(N, C, L_out)`` or ``(C, L_out)``, L_out as in MaxPool1d with dilation 1.

    Example:
        >>> nn.AvgPool1d(4)(ranvier.randn(16, 4, 200)).shape
        (16, 4, 50)
    """

    _dims = 1

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True):
        super().__init__()
        # As PyTorch, AvgPool1d keeps its window arguments as 1-tuples.
        as_tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,)  # noqa: E731
        self.kernel_size = as_tuple(check.window("AvgPool1d", "kernel_size", kernel_size, 1, 1))
        self.stride = (as_tuple(check.window("AvgPool1d", "stride", stride, 1, 1))
                       if stride is not None else self.kernel_size)
        self.padding = as_tuple(check.window("AvgPool1d", "padding", padding, 1, 0))
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, input):
        return self._call(F.avg_pool1d, input, self.kernel_size, self.stride, self.padding,
                          self.ceil_mode, self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(_Pool):
    """Mean over sliding 2-D windows; each window argument is an int or an (h, w) pair.

    Args:
        kernel_size, stride, padding, ceil_mode, count_include_pad: as AvgPool1d.
        divisor_override: if given, the divisor of every window instead of its size.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``.

    Example:
        >>> nn.AvgPool2d(2)(ranvier.randn(8, 16, 28, 28)).shape
        (8, 16, 14, 14)
    """

    _dims = 2

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None):
        super().__init__()
        self.kernel_size = check.window("AvgPool2d", "kernel_size", kernel_size, 2, 1)
        self.stride = (check.window("AvgPool2d", "stride", stride, 2, 1) if stride is not None
                       else self.kernel_size)
        self.padding = check.window("AvgPool2d", "padding", padding, 2, 0)
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        if divisor_override is not None:
            divisor_override = check.positive_int("AvgPool2d", "divisor_override", divisor_override)
        self.divisor_override = divisor_override

    def forward(self, input):
        return self._call(F.avg_pool2d, input, self.kernel_size, self.stride, self.padding,
                          self.ceil_mode, self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _output_size(layer: str, output_size, dims: int):
    values = output_size if isinstance(output_size, (tuple, list)) else (output_size,)
    if len(values) not in (1, dims) or any(
            v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral)) for v in values):
        raise TypeError(f"{layer}: output_size must be an int or a tuple of {dims} ints (or None), "
                        f"got {output_size!r}")
    if any(v is not None and v < 1 for v in values):
        raise ValueError(f"{layer}: output_size must be positive, got {output_size!r}")
    return tuple(values) if isinstance(output_size, list) else output_size


class AdaptiveAvgPool1d(_Pool):
    """Mean over ``output_size`` bins along the last axis, whatever the input length: bin i
    covers floor(i L / L_out) .. ceil((i + 1) L / L_out) - 1. AdaptiveAvgPool1d(1) is global
    average pooling.

    Shape:
        - Input: ``(N, C, L)`` or ``(C, L)``.
        - Output: ``(N, C, output_size)`` or ``(C, output_size)``.

    Example:
        >>> nn.AdaptiveAvgPool1d(1)(ranvier.randn(16, 32, 187)).shape
        (16, 32, 1)
    """

    _dims = 1

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _output_size("AdaptiveAvgPool1d", output_size, 1)
        if self.output_size is None:
            raise TypeError("AdaptiveAvgPool1d: output_size must be an int, got None")

    def forward(self, input):
        return self._call(F.adaptive_avg_pool1d, input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_Pool):
    """Mean over an ``output_size`` grid of bins (an int, or (H_out, W_out) where None keeps
    the input's size), whatever the input size. AdaptiveAvgPool2d(1) is global average pooling.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``.

    Example:
        >>> nn.AdaptiveAvgPool2d((5, 7))(ranvier.randn(1, 64, 10, 9)).shape
        (1, 64, 5, 7)
    """

    _dims = 2

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _output_size("AdaptiveAvgPool2d", output_size, 2)

    def forward(self, input):
        return self._call(F.adaptive_avg_pool2d, input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
