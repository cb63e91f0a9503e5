"""Convolution layers: Conv1d and Conv2d, with PyTorch's arguments, layout and initialisation."""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _validation as check
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["Conv1d", "Conv2d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _spatial_tuple(layer: str, name: str, value, spatial: int, minimum: int) -> tuple:
    """An int or `spatial` ints (or one int in a tuple), each >= minimum, as a tuple of
    `spatial` ints: PyTorch's _single/_pair, shown that way in repr."""
    value = check.window(layer, name, value, spatial, minimum)
    values = (value,) if isinstance(value, numbers.Integral) else tuple(value)
    return tuple(int(v) for v in values) * (spatial if len(values) == 1 else 1)


class _ConvNd(Module):
    """What Conv1d and Conv2d share; `_spatial` is the number of spatial axes."""

    _spatial: int

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", dtype=None):
        super().__init__()
        layer, spatial = type(self).__name__, self._spatial
        self.in_channels = check.positive_int(layer, "in_channels", in_channels)
        self.out_channels = check.positive_int(layer, "out_channels", out_channels)
        self.kernel_size = _spatial_tuple(layer, "kernel_size", kernel_size, spatial, 1)
        self.stride = _spatial_tuple(layer, "stride", stride, spatial, 1)
        self.dilation = _spatial_tuple(layer, "dilation", dilation, spatial, 1)
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"{layer}: invalid padding string {padding!r}, should be one "
                                 f"of ['valid', 'same']")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{layer}: padding='same' is not supported for strided "
                                 f"convolutions (stride {self.stride})")
            self.padding = padding
        else:
            self.padding = _spatial_tuple(layer, "padding", padding, spatial, 0)
        self.groups = check.positive_int(layer, "groups", groups)
        if self.in_channels % self.groups != 0:
            raise ValueError(f"{layer}: in_channels ({self.in_channels}) must be divisible by "
                             f"groups ({self.groups})")
        if self.out_channels % self.groups != 0:
            raise ValueError(f"{layer}: out_channels ({self.out_channels}) must be divisible by "
                             f"groups ({self.groups})")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{layer}: padding_mode must be one of {list(_PADDING_MODES)}, "
                             f"got {padding_mode!r}")
        if padding_mode != "zeros":
            raise NotImplementedError(f"{layer}: padding_mode={padding_mode!r} is not "
                                      f"implemented yet; only 'zeros' is supported")
        self.padding_mode = padding_mode
        if not isinstance(bias, bool):
            raise TypeError(f"{layer}: bias must be True or False, got {bias!r}")
        dtype = check.float_dtype(layer, dtype)
        weight_shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(np.empty(weight_shape, dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty((self.out_channels,), dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw weight and bias from PyTorch's default distribution."""
        # kaiming_uniform_ with a=sqrt(5) gives bound = 1 / sqrt(fan_in) with
        # fan_in = in_channels / groups * prod(kernel_size); the bias uses the same bound.
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
            bound = 1.0 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def _padding_pairs(self) -> tuple:
        """(before, after) padding per spatial axis, as F's 'same' resolves it."""
        if self.padding == "valid":
            return ((0, 0),) * self._spatial
        if self.padding == "same":
            totals = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation)]
            return tuple((t // 2, t - t // 2) for t in totals)
        return tuple((p, p) for p in self.padding)

    def _check_input(self, input) -> None:
        """Rank, channels and kernel size against the input, with the layer in the message."""
        shape = tuple(getattr(input, "shape", ()))
        spatial = self._spatial
        layout = "(N, C, L) or (C, L)" if spatial == 1 else "(N, C, H, W) or (C, H, W)"
        if len(shape) not in (spatial + 1, spatial + 2):
            raise ValueError(f"{self!r}: expected a {spatial + 2}-D input {layout}, "
                             f"got shape {shape}")
        channels = shape[-spatial - 1]
        if channels != self.in_channels:
            raise ValueError(f"{self!r}: input of shape {shape} has {channels} channels, "
                             f"expected {self.in_channels} (in_channels)")
        sizes = shape[-spatial:]
        padded = [n + before + after for n, (before, after) in zip(sizes, self._padding_pairs())]
        extent = [d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation)]
        if any(e > p for e, p in zip(extent, padded)):
            raise ValueError(f"{self!r}: the kernel ({' x '.join(map(str, extent))} after "
                             f"dilation) is larger than the padded input "
                             f"({' x '.join(map(str, padded))}; input shape {shape})")

    def extra_repr(self) -> str:
        # PyTorch's format: optional arguments appear only when not at their defaults.
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * self._spatial:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._spatial:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv1d(_ConvNd):
    """1-D convolution over the last axis (e.g. motif scanning along one-hot DNA).

    y[n, k, l] = bias[k] + sum over c, s of weight[k, c, s] * x[n, g*C/groups + c,
    l * stride - padding + s * dilation], zero outside the sequence (g: filter k's group).

    Args:
        in_channels: channels of the input (4 for one-hot DNA).
        out_channels: number of filters.
        kernel_size: filter length (int or 1-tuple).
        stride: step between output positions (default 1).
        padding: zeros added at both ends (int or 1-tuple), or 'valid' (none) or 'same'
            (output length = input length; stride must be 1).
        dilation: spacing between filter taps (default 1).
        groups: split channels into groups convolved separately; in_channels and
            out_channels must be divisible by it (groups = in_channels: depthwise).
        bias: learn an additive bias per filter (default True).
        padding_mode: only 'zeros' ('reflect', 'replicate', 'circular' raise
            NotImplementedError).
        dtype: float32 (default) or float64.

    Shape:
        - Input: ``(N, C_in, L)`` or ``(C_in, L)``.
        - Output: ``(N, C_out, L_out)`` or ``(C_out, L_out)``, with
          L_out = (L + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1.

    Attributes:
        weight: ``(out_channels, in_channels / groups, kernel_size)``, drawn from
            U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels / groups * kernel_size
            (``kaiming_uniform_`` with ``a=sqrt(5)``, as PyTorch).
        bias: ``(out_channels,)`` from the same distribution, or None.

    Example:
        >>> conv = nn.Conv1d(4, 32, kernel_size=11, padding="same")
        >>> conv(ranvier.Tensor(np.zeros((16, 4, 200), np.float32))).shape
        (16, 32, 200)
    """

    _spatial = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, dtype)

    def forward(self, input):
        self._check_input(input)
        return F.conv1d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class Conv2d(_ConvNd):
    """2-D convolution (e.g. over microscopy image patches).

    y[n, k, p, q] = bias[k] + sum over c, r, s of weight[k, c, r, s] *
    x[n, g*C/groups + c, p * stride_h - pad_h + r * dilation_h, q * stride_w - pad_w + s * dilation_w],
    zero outside the image (g: filter k's group).

    Args:
        in_channels: channels of the input images.
        out_channels: number of filters.
        kernel_size: int or (kh, kw).
        stride: int or (sh, sw) (default 1).
        padding: int or (ph, pw) zeros on each side, or 'valid' (none) or 'same' (output size =
            input size; stride must be 1; an even kernel pads one more at the bottom/right).
        dilation: int or (dh, dw) spacing between filter taps (default 1).
        groups: split channels into groups convolved separately; in_channels and
            out_channels must be divisible by it (groups = in_channels: depthwise).
        bias: learn an additive bias per filter (default True).
        padding_mode: only 'zeros' ('reflect', 'replicate', 'circular' raise
            NotImplementedError).
        dtype: float32 (default) or float64.

    Shape:
        - Input: ``(N, C_in, H, W)`` or ``(C_in, H, W)``.
        - Output: ``(N, C_out, H_out, W_out)`` or ``(C_out, H_out, W_out)``, with
          H_out = (H + 2 * pad_h - dilation_h * (kh - 1) - 1) // stride_h + 1, likewise W_out.

    Attributes:
        weight: ``(out_channels, in_channels / groups, kh, kw)``, drawn from
            U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels / groups * kh * kw
            (``kaiming_uniform_`` with ``a=sqrt(5)``, as PyTorch).
        bias: ``(out_channels,)`` from the same distribution, or None.

    Example:
        >>> conv = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        >>> conv(ranvier.Tensor(np.zeros((32, 1, 8, 8), np.float32))).shape
        (32, 16, 8, 8)
    """

    _spatial = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, dtype)

    def forward(self, input):
        self._check_input(input)
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)
