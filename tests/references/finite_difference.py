"""Central finite differences, for checking analytic backward passes in float64."""

import numpy as np


def numeric_grad(f, x, eps=1e-6):
    """d f / d x by central differences, where f maps a float64 array of x's shape to a
    scalar. Each element is perturbed by +-eps in turn."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + eps
        f_plus = float(f(x.copy()))
        x[index] = original - eps
        f_minus = float(f(x.copy()))
        x[index] = original
        grad[index] = (f_plus - f_minus) / (2 * eps)
    return grad
