"""Independent float64 NumPy references for the nn layers (direct formulas; never ranvier)."""

import math

import numpy as np


def linear(x, weight, bias=None):
    # x (..., in), weight (out, in), bias (out,) -> (..., out), as an explicit sum over `in`.
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    out = np.zeros(x.shape[:-1] + (weight.shape[0],))
    for k in range(weight.shape[1]):
        out += x[..., k:k + 1] * weight[:, k]
    if bias is not None:
        out += np.asarray(bias, np.float64)
    return out


def relu(x):
    return np.where(x > 0, x, 0.0)


def leaky_relu(x, slope):
    return np.where(x >= 0, x, slope * x)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def gelu_exact(x):
    flat = [0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in np.ravel(x).astype(float)]
    return np.array(flat).reshape(np.shape(x))


def gelu_tanh(x):
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def softmax(x, dim):
    x = np.asarray(x, np.float64)
    shifted = np.exp(x - x.max(axis=dim, keepdims=True))
    return shifted / shifted.sum(axis=dim, keepdims=True)


def log_softmax(x, dim):
    x = np.asarray(x, np.float64)
    m = x.max(axis=dim, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=dim, keepdims=True))
