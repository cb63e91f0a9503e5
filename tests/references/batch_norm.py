"""NumPy float64 references for batch normalisation, forward and backward.

Per-channel loops with math.fsum; the training-mode gradient goes through the explicit
Jacobian of each channel's normalisation (d y_i / d x_j, an n x n matrix), not the compact
formula the kernel uses. Nothing here calls ranvier.
"""

import math

import numpy as np


def _channel_values(x, c):
    """The n = N * prod(spatial) values of channel c, as a flat list, and their positions."""
    x = np.asarray(x, dtype=np.float64)
    positions = [index for index in np.ndindex(x.shape) if index[1] == c]
    return [float(x[p]) for p in positions], positions


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """(y, mean used, invstd used, new running_mean, new running_var); running stats are
    returned updated (copies) when training, unchanged otherwise."""
    x = np.asarray(x, dtype=np.float64)
    channels = x.shape[1]
    y = np.empty_like(x)
    means, invstds = np.empty(channels), np.empty(channels)
    new_mean = None if running_mean is None else np.array(running_mean, dtype=np.float64)
    new_var = None if running_var is None else np.array(running_var, dtype=np.float64)
    for c in range(channels):
        values, positions = _channel_values(x, c)
        n = len(values)
        if training:
            mean = math.fsum(values) / n
            var = math.fsum((v - mean) ** 2 for v in values) / n
            if new_mean is not None:
                new_mean[c] = (1 - momentum) * new_mean[c] + momentum * mean
            if new_var is not None:
                new_var[c] = (1 - momentum) * new_var[c] + momentum * var * n / (n - 1)
        else:
            mean, var = float(running_mean[c]), float(running_var[c])
        invstd = 1.0 / math.sqrt(var + eps)
        scale = 1.0 if weight is None else float(weight[c])
        shift = 0.0 if bias is None else float(bias[c])
        for v, p in zip(values, positions):
            y[p] = (v - mean) * invstd * scale + shift
        means[c], invstds[c] = mean, invstd
    return y, means, invstds, new_mean, new_var


def batch_norm_grad(x, grad_output, weight=None, training=False, running_mean=None,
                    running_var=None, eps=1e-5):
    """(grad_x, grad_weight, grad_bias) of sum(grad_output * batch_norm(x)) for the given mode."""
    x = np.asarray(x, dtype=np.float64)
    grad_output = np.asarray(grad_output, dtype=np.float64)
    channels = x.shape[1]
    grad_x = np.zeros_like(x)
    grad_weight, grad_bias = np.empty(channels), np.empty(channels)
    for c in range(channels):
        values, positions = _channel_values(x, c)
        g = [float(grad_output[p]) for p in positions]
        n = len(values)
        if training:
            mean = math.fsum(values) / n
            var = math.fsum((v - mean) ** 2 for v in values) / n
        else:
            mean, var = float(running_mean[c]), float(running_var[c])
        invstd = 1.0 / math.sqrt(var + eps)
        x_hat = [(v - mean) * invstd for v in values]
        scale = 1.0 if weight is None else float(weight[c])
        grad_bias[c] = math.fsum(g)
        grad_weight[c] = math.fsum(gi * xi for gi, xi in zip(g, x_hat))
        for j, p in enumerate(positions):
            if training:
                # d y_i / d x_j = scale * invstd * (delta_ij - 1/n - x_hat_i x_hat_j / n)
                terms = [g[i] * scale * invstd * ((1.0 if i == j else 0.0) - 1.0 / n
                                                 - x_hat[i] * x_hat[j] / n) for i in range(n)]
                grad_x[p] = math.fsum(terms)
            else:
                grad_x[p] = g[j] * scale * invstd
    return grad_x, grad_weight, grad_bias
