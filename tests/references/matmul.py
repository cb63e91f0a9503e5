"""float64 references for matmul and linear, from the definitions with explicit loops.

C[i, j] = sum over p of A[i, p] * B[p, j] is computed entry by entry for small problems
(a true triple loop) and, for the large ones, as an explicit loop over p of rank-1 updates
(outer products), which is the same sum in another order: neither calls a matrix product.
"""

import numpy as np

# Above this many multiply-adds the entry-by-entry triple loop is too slow in Python.
_TRIPLE_LOOP_LIMIT = 20_000


def matrix_product(a, b):
    """C (m, n) = A (m, k) @ B (k, n) in float64, by explicit loops."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    m, k = a.shape
    k_b, n = b.shape
    assert k == k_b
    c = np.zeros((m, n))
    if m * n * k <= _TRIPLE_LOOP_LIMIT:
        for i in range(m):
            for j in range(n):
                total = 0.0
                for p in range(k):
                    total += a[i, p] * b[p, j]
                c[i, j] = total
    else:
        for p in range(k):
            c += a[:, p, None] * b[None, p, :]
    return c


def matmul(a, b, trans_a=False, trans_b=False):
    """op(a) @ op(b) for 2-D or 3-D operands (3-D = batch; a 2-D operand is shared by the batch)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if trans_a:
        a = a.swapaxes(-1, -2)
    if trans_b:
        b = b.swapaxes(-1, -2)
    if a.ndim == 2 and b.ndim == 2:
        return matrix_product(a, b)
    batch = a.shape[0] if a.ndim == 3 else b.shape[0]
    return np.stack([matrix_product(a[i] if a.ndim == 3 else a, b[i] if b.ndim == 3 else b)
                     for i in range(batch)]).reshape(batch, a.shape[-2], b.shape[-1])


def linear(x, weight, bias=None):
    """y[..., o] = sum over i of x[..., i] * weight[o, i] + bias[o]."""
    x = np.asarray(x, dtype=np.float64)
    rows = x.reshape(-1, x.shape[-1])
    y = matrix_product(rows, np.asarray(weight, dtype=np.float64).T)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)[None, :]
    return y.reshape(x.shape[:-1] + (weight.shape[0],))


def linear_backward_input(grad_output, weight):
    """dL/dx[..., i] = sum over o of grad_output[..., o] * weight[o, i]."""
    dy = np.asarray(grad_output, dtype=np.float64)
    dx = matrix_product(dy.reshape(-1, dy.shape[-1]), np.asarray(weight, dtype=np.float64))
    return dx.reshape(dy.shape[:-1] + (weight.shape[1],))


def linear_backward_weight(grad_output, x):
    """dL/dweight[o, i] = sum over rows r of grad_output[r, o] * x[r, i];
    dL/dbias[o] = sum over rows r of grad_output[r, o]."""
    dy = np.asarray(grad_output, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    dy_rows = dy.reshape(-1, dy.shape[-1])
    x_rows = x.reshape(-1, x.shape[-1])
    grad_weight = matrix_product(dy_rows.T, x_rows)
    grad_bias = np.zeros(dy_rows.shape[1])
    for r in range(dy_rows.shape[0]):
        grad_bias += dy_rows[r]
    return grad_weight, grad_bias
