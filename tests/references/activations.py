"""NumPy float64 references for the elementwise activations and their derivatives.

Each value is computed element by element with the `math` module from the definitions;
sigmoid goes through tanh (sigmoid(x) = (1 + tanh(x / 2)) / 2), a different route from the
kernels' exp-based formula and free of overflow.
"""

import math

import numpy as np


def _map(f, x):
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        out[index] = f(float(x[index]))
    return out


def relu(x):
    return _map(lambda v: v if v > 0 else (v if math.isnan(v) else 0.0), x)


def relu_grad(x):
    """d relu / dx; 0 at x = 0 as in PyTorch."""
    return _map(lambda v: 1.0 if v > 0 else 0.0, x)


def leaky_relu(x, slope):
    return _map(lambda v: v if v >= 0 or math.isnan(v) else slope * v, x)


def leaky_relu_grad(x, slope):
    """d leaky_relu / dx; `slope` at x = 0 as in PyTorch."""
    return _map(lambda v: 1.0 if v > 0 else slope, x)


def sigmoid(x):
    return _map(lambda v: 0.5 * (1.0 + math.tanh(0.5 * v)), x)


def sigmoid_grad(x):
    def grad(v):
        s = 0.5 * (1.0 + math.tanh(0.5 * v))
        return s * (1.0 - s)
    return _map(grad, x)


def tanh(x):
    return _map(math.tanh, x)


def tanh_grad(x):
    return _map(lambda v: 1.0 / math.cosh(v) ** 2 if abs(v) < 350 else 0.0, x)


def _normal_cdf(v):
    return 0.5 * (1.0 + math.erf(v / math.sqrt(2.0)))


def _normal_pdf(v):
    return math.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi)


def gelu(x):
    return _map(lambda v: v * _normal_cdf(v), x)


def gelu_grad(x):
    return _map(lambda v: _normal_cdf(v) + v * _normal_pdf(v), x)


_C = math.sqrt(2.0 / math.pi)


def gelu_tanh(x):
    return _map(lambda v: 0.5 * v * (1.0 + math.tanh(_C * (v + 0.044715 * v ** 3))), x)


def gelu_tanh_grad(x):
    def grad(v):
        u = _C * (v + 0.044715 * v ** 3)
        du = _C * (1.0 + 3 * 0.044715 * v * v)
        sech2 = 1.0 / math.cosh(u) ** 2 if abs(u) < 350 else 0.0
        return 0.5 * (1.0 + math.tanh(u)) + 0.5 * v * sech2 * du
    return _map(grad, x)
