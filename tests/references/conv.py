"""Convolution from its definition, in float64, for any number of spatial axes.

    y[n, k, o] = bias[k] + sum over c, t of w[k, c, t] * x_padded[n, g*Cg + c, o*stride + t*dilation]

(o and t run over the spatial positions of the output and of the kernel, g = k // (K/groups),
Cg = C / groups). Every output element is one explicit sum over its receptive window, and
the gradients scatter each dy[n, k, o] back over the same window: no column buffer, no
matrix multiply, so nothing is shared with the im2col + GEMM (CPU) and implicit GEMM (CUDA)
kernels under test.

padding is ((before, after), ...) per spatial axis; stride and dilation one int per axis.
"""

import itertools

import numpy as np


def _padded(x, padding):
    return np.pad(x, ((0, 0), (0, 0)) + tuple(tuple(p) for p in padding))


def _output_size(padded_size, kernel, stride, dilation):
    return [(n - d * (k - 1) - 1) // s + 1
            for n, k, s, d in zip(padded_size, kernel, stride, dilation)]


def _windows(x_padded_shape, w_shape, stride, dilation, groups):
    """Yields (n, k, o, index): output element (n, k, *o) and the index of its receptive
    window in the padded input, a (C/groups, *kernel) block."""
    batch, k_total = x_padded_shape[0], w_shape[0]
    group_in, kernel = w_shape[1], w_shape[2:]
    group_out = k_total // groups
    out = _output_size(x_padded_shape[2:], kernel, stride, dilation)
    for n, k in itertools.product(range(batch), range(k_total)):
        g = k // group_out
        channels = slice(g * group_in, (g + 1) * group_in)
        for o in itertools.product(*(range(size) for size in out)):
            taps = tuple(slice(o_a * s, o_a * s + d * (k_a - 1) + 1, d)
                         for o_a, k_a, s, d in zip(o, kernel, stride, dilation))
            yield n, k, o, (n, channels) + taps


def conv_forward(x, w, bias, stride, padding, dilation, groups):
    """x (N, C, *size), w (K, C/groups, *kernel), bias (K,) or None -> y (N, K, *out)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    xp = _padded(x, padding)
    out = _output_size(xp.shape[2:], w.shape[2:], stride, dilation)
    y = np.zeros((x.shape[0], w.shape[0], *out))
    for n, k, o, window in _windows(xp.shape, w.shape, stride, dilation, groups):
        y[(n, k) + o] = np.sum(xp[window] * w[k])
    if bias is not None:
        y += np.asarray(bias, np.float64).reshape((1, -1) + (1,) * len(out))
    return y


def conv_backward(x, w, grad_output, stride, padding, dilation, groups):
    """Gradients of sum(conv_forward(x, w, b, ...) * grad_output) with respect to x, w and b:
    (dx (N, C, *size), dw (K, C/groups, *kernel), db (K,))."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    dy = np.asarray(grad_output, np.float64)
    xp = _padded(x, padding)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for n, k, o, window in _windows(xp.shape, w.shape, stride, dilation, groups):
        g = dy[(n, k) + o]
        dxp[window] += g * w[k]
        dw[k] += g * xp[window]
    crop = (slice(None), slice(None)) + tuple(slice(before, before + size)
                                              for (before, _), size in zip(padding, x.shape[2:]))
    db = dy.sum(axis=(0,) + tuple(range(2, dy.ndim)))
    return dxp[crop], dw, db
