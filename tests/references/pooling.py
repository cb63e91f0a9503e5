"""NumPy float64 references for max, average and adaptive average pooling and their gradients.

Direct loops over every output element and every window position, written from PyTorch's
documented definitions (output sizes, count_include_pad, adaptive bins); nothing here calls
ranvier. The 1-D functions are the 2-D ones on an (N, C, 1, L) view.
"""

import math

import numpy as np


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def output_length(size, kernel, stride, padding, dilation=1, ceil_mode=False):
    """The number of windows: by enumeration of their start positions."""
    extent = dilation * (kernel - 1) + 1
    span = size + 2 * padding - extent  # the last start (in the padded input) that fits
    count = 0
    o = 0
    while True:
        if ceil_mode:
            # A window may run past the right padding, if it starts inside input or left padding.
            fits = o * stride < span + stride and o * stride - padding < size
        else:
            fits = o * stride <= span
        if not fits:
            break
        count += 1
        o += 1
    return count


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(y, indices): indices is h * W + w of each window's maximum (first one on ties; a NaN
    wins over every number, the last NaN when there are several)."""
    x = np.asarray(x, dtype=np.float64)
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride if stride is not None else kernel_size)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    n, c, h, w = x.shape
    oh_n = output_length(h, kh, sh, ph, dh, ceil_mode)
    ow_n = output_length(w, kw, sw, pw, dw, ceil_mode)
    y = np.empty((n, c, oh_n, ow_n))
    idx = np.empty((n, c, oh_n, ow_n), dtype=np.int64)
    for b in range(n):
        for ch in range(c):
            for oh in range(oh_n):
                for ow in range(ow_n):
                    cells = []
                    for i in range(kh):
                        for j in range(kw):
                            r, s = oh * sh - ph + i * dh, ow * sw - pw + j * dw
                            if 0 <= r < h and 0 <= s < w:
                                cells.append((float(x[b, ch, r, s]), r * w + s))
                    nans = [cell for cell in cells if math.isnan(cell[0])]
                    if nans:
                        best = nans[-1]
                    else:
                        best = cells[0]
                        for cell in cells[1:]:
                            if cell[0] > best[0]:
                                best = cell
                    y[b, ch, oh, ow], idx[b, ch, oh, ow] = best
    return y, idx


def max_pool2d_grad(x, grad_output, **window):
    """Gradient of sum(grad_output * max_pool2d(x)) with respect to x."""
    _, idx = max_pool2d(x, **window)
    x = np.asarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    n, c, h, w = x.shape
    for b in range(n):
        for ch in range(c):
            for o in np.ndindex(idx.shape[2:]):
                flat = idx[(b, ch) + o]
                grad[b, ch, flat // w, flat % w] += grad_output[(b, ch) + o]
    return grad


def _avg_windows(h, w, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """For each output (oh, ow): the input cells of its window and its divisor."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride if stride is not None else kernel_size)
    ph, pw = _pair(padding)
    oh_n = output_length(h, kh, sh, ph, 1, ceil_mode)
    ow_n = output_length(w, kw, sw, pw, 1, ceil_mode)
    windows = {}
    for oh in range(oh_n):
        for ow in range(ow_n):
            cells, padded_cells = [], 0
            for i in range(kh):
                for j in range(kw):
                    r, s = oh * sh - ph + i, ow * sw - pw + j
                    if -ph <= r < h + ph and -pw <= s < w + pw:
                        padded_cells += 1  # inside the padded input
                    if 0 <= r < h and 0 <= s < w:
                        cells.append((r, s))
            if divisor_override:
                divisor = divisor_override
            else:
                divisor = padded_cells if count_include_pad else len(cells)
            windows[oh, ow] = (cells, divisor)
    return (oh_n, ow_n), windows


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    out_shape, windows = _avg_windows(h, w, kernel_size, stride, padding, ceil_mode,
                                      count_include_pad, divisor_override)
    y = np.empty((n, c) + out_shape)
    for b in range(n):
        for ch in range(c):
            for (oh, ow), (cells, divisor) in windows.items():
                y[b, ch, oh, ow] = math.fsum(x[b, ch, r, s] for r, s in cells) / divisor
    return y


def avg_pool2d_grad(x, grad_output, kernel_size, stride=None, padding=0, ceil_mode=False,
                    count_include_pad=True, divisor_override=None):
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    _, windows = _avg_windows(h, w, kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override)
    grad = np.zeros_like(x)
    for b in range(n):
        for ch in range(c):
            for (oh, ow), (cells, divisor) in windows.items():
                for r, s in cells:
                    grad[b, ch, r, s] += grad_output[b, ch, oh, ow] / divisor
    return grad


def _bins(size, out):
    """PyTorch's adaptive bins [floor(i size / out), ceil((i + 1) size / out)), in integers."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def adaptive_avg_pool2d(x, output_size):
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    oh_n, ow_n = _pair(output_size)
    y = np.empty((n, c, oh_n, ow_n))
    for b in range(n):
        for ch in range(c):
            for oh, (h0, h1) in enumerate(_bins(h, oh_n)):
                for ow, (w0, w1) in enumerate(_bins(w, ow_n)):
                    values = [x[b, ch, r, s] for r in range(h0, h1) for s in range(w0, w1)]
                    y[b, ch, oh, ow] = math.fsum(values) / len(values)
    return y


def adaptive_avg_pool2d_grad(x, grad_output):
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    oh_n, ow_n = grad_output.shape[2:]
    grad = np.zeros_like(x)
    for b in range(n):
        for ch in range(c):
            for oh, (h0, h1) in enumerate(_bins(h, oh_n)):
                for ow, (w0, w1) in enumerate(_bins(w, ow_n)):
                    share = grad_output[b, ch, oh, ow] / ((h1 - h0) * (w1 - w0))
                    grad[b, ch, h0:h1, w0:w1] += share
    return grad


# --- 1-D: the 2-D references on (N, C, 1, L) with a window of height 1 --------------------

def _one(v):
    return v[0] if isinstance(v, (tuple, list)) else v


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    stride = kernel_size if stride is None else stride
    y, idx = max_pool2d(np.asarray(x)[:, :, None, :], (1, _one(kernel_size)), (1, _one(stride)),
                        (0, _one(padding)), (1, _one(dilation)), ceil_mode)
    return y[:, :, 0], idx[:, :, 0]


def max_pool1d_grad(x, grad_output, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    stride = kernel_size if stride is None else stride
    grad = max_pool2d_grad(np.asarray(x)[:, :, None, :], np.asarray(grad_output)[:, :, None, :],
                           kernel_size=(1, _one(kernel_size)), stride=(1, _one(stride)),
                           padding=(0, _one(padding)), dilation=(1, _one(dilation)), ceil_mode=ceil_mode)
    return grad[:, :, 0]


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    stride = kernel_size if stride is None else stride
    return avg_pool2d(np.asarray(x)[:, :, None, :], (1, _one(kernel_size)), (1, _one(stride)),
                      (0, _one(padding)), ceil_mode, count_include_pad)[:, :, 0]


def avg_pool1d_grad(x, grad_output, kernel_size, stride=None, padding=0, ceil_mode=False,
                    count_include_pad=True):
    stride = kernel_size if stride is None else stride
    return avg_pool2d_grad(np.asarray(x)[:, :, None, :], np.asarray(grad_output)[:, :, None, :],
                           (1, _one(kernel_size)), (1, _one(stride)), (0, _one(padding)), ceil_mode,
                           count_include_pad)[:, :, 0]


def adaptive_avg_pool1d(x, output_size):
    return adaptive_avg_pool2d(np.asarray(x)[:, :, None, :], (1, _one(output_size)))[:, :, 0]


def adaptive_avg_pool1d_grad(x, grad_output):
    return adaptive_avg_pool2d_grad(np.asarray(x)[:, :, None, :],
                                    np.asarray(grad_output)[:, :, None, :])[:, :, 0]
