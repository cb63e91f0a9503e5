"""NumPy float64 references for softmax and log_softmax along an axis, and their gradients.

Every slice along the axis is handled in an explicit loop with `math`; the gradients go
through the full Jacobian of each slice (no shortcut formula).
"""

import math

import numpy as np


def _slices(x, axis):
    """(moved array with the axis last, index tuples of its slices)."""
    moved = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    return moved, list(np.ndindex(moved.shape[:-1]))


def softmax(x, axis=-1, log=False):
    moved, slices = _slices(x, axis)
    out = np.empty_like(moved)
    for index in slices:
        row = [float(v) for v in moved[index]]
        m = max(row)
        total = math.fsum(math.exp(v - m) for v in row)
        if log:
            out[index] = [v - m - math.log(total) for v in row]
        else:
            out[index] = [math.exp(v - m) / total for v in row]
    return np.moveaxis(out, -1, axis)


def log_softmax(x, axis=-1):
    return softmax(x, axis, log=True)


def softmax_grad(x, grad_output, axis=-1, log=False):
    """d(sum(grad_output * f(x))) / dx for f = softmax or log_softmax along axis."""
    p = np.moveaxis(softmax(x, axis), axis, -1)
    g = np.moveaxis(np.asarray(grad_output, dtype=np.float64), axis, -1)
    out = np.empty_like(p)
    for index in np.ndindex(p.shape[:-1]):
        row, dy = p[index], g[index]
        n = row.shape[0]
        # jacobian[i, j] = d f_i / d x_j
        jacobian = np.empty((n, n))
        for i in range(n):
            for j in range(n):
                delta = 1.0 if i == j else 0.0
                jacobian[i, j] = (delta - row[j]) if log else row[i] * (delta - row[j])
        out[index] = [math.fsum(dy[i] * jacobian[i, j] for i in range(n)) for j in range(n)]
    return np.moveaxis(out, -1, axis)


def log_softmax_grad(x, grad_output, axis=-1):
    return softmax_grad(x, grad_output, axis, log=True)
