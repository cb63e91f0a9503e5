"""A small network trained for a few steps with each optimizer matches a pure-NumPy version.

The NumPy side writes the MLP's forward and backward and each optimizer's update rule out by
hand (following PyTorch's documented algorithms), so this checks the whole stack at once:
linear, tanh, cross-entropy, autograd, and the fused optimizer kernels.
"""

import numpy as np
import pytest

import ranvier
from ranvier import nn, optim

IN, HIDDEN, CLASSES, BATCH, STEPS = 5, 7, 3, 11, 6


def numpy_mlp_loss_and_grads(params, x, y):
    """Forward and backward of Linear-Tanh-Linear + mean cross-entropy, in float64."""
    w1, b1, w2, b2 = params
    h = x @ w1.T + b1
    a = np.tanh(h)
    z = a @ w2.T + b2
    z_shift = z - z.max(axis=1, keepdims=True)
    p = np.exp(z_shift) / np.exp(z_shift).sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(len(y)), y]))
    dz = p.copy()
    dz[np.arange(len(y)), y] -= 1.0
    dz /= len(y)
    da = dz @ w2
    dh = da * (1.0 - a * a)
    return loss, [dh.T @ x, dh.sum(axis=0), dz.T @ a, dz.sum(axis=0)]


class NumpySGD:
    def __init__(self, lr, momentum, dampening, weight_decay, nesterov):
        self.lr, self.mu, self.damp, self.wd, self.nesterov = lr, momentum, dampening, weight_decay, nesterov
        self.buf = None

    def step(self, params, grads):
        if self.buf is None:
            self.buf = [None] * len(params)
        for i, (p, g) in enumerate(zip(params, grads)):
            g = g + self.wd * p
            if self.mu:
                self.buf[i] = g.copy() if self.buf[i] is None else self.mu * self.buf[i] + (1 - self.damp) * g
                g = g + self.mu * self.buf[i] if self.nesterov else self.buf[i]
            p -= self.lr * g


class NumpyAdam:
    def __init__(self, lr, betas, eps, weight_decay, decoupled, amsgrad):
        self.lr, (self.b1, self.b2), self.eps, self.wd = lr, betas, eps, weight_decay
        self.decoupled, self.amsgrad, self.t, self.m, self.v, self.vmax = decoupled, amsgrad, 0, None, None, None

    def step(self, params, grads):
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
            self.vmax = [np.zeros_like(p) for p in params]
        self.t += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.decoupled:
                p *= 1 - self.lr * self.wd
            else:
                g = g + self.wd * p
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g * g
            v = self.v[i]
            if self.amsgrad:
                self.vmax[i] = np.maximum(self.vmax[i], self.v[i])
                v = self.vmax[i]
            m_hat = self.m[i] / (1 - self.b1 ** self.t)
            v_hat = v / (1 - self.b2 ** self.t)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class NumpyRMSprop:
    def __init__(self, lr, alpha, eps, weight_decay, momentum, centered):
        self.lr, self.alpha, self.eps, self.wd, self.mu, self.centered = lr, alpha, eps, weight_decay, momentum, centered
        self.sq = None

    def step(self, params, grads):
        if self.sq is None:
            self.sq = [np.zeros_like(p) for p in params]
            self.gavg = [np.zeros_like(p) for p in params]
            self.buf = [np.zeros_like(p) for p in params]
        for i, (p, g) in enumerate(zip(params, grads)):
            g = g + self.wd * p
            self.sq[i] = self.alpha * self.sq[i] + (1 - self.alpha) * g * g
            if self.centered:
                self.gavg[i] = self.alpha * self.gavg[i] + (1 - self.alpha) * g
                avg = np.sqrt(self.sq[i] - self.gavg[i] ** 2) + self.eps
            else:
                avg = np.sqrt(self.sq[i]) + self.eps
            if self.mu > 0:
                self.buf[i] = self.mu * self.buf[i] + g / avg
                p -= self.lr * self.buf[i]
            else:
                p -= self.lr * g / avg


CASES = {
    "sgd": (lambda ps: optim.SGD(ps, lr=0.1), lambda: NumpySGD(0.1, 0.0, 0.0, 0.0, False)),
    "sgd_momentum_nesterov_wd": (
        lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True),
        lambda: NumpySGD(0.05, 0.9, 0.0, 1e-2, True)),
    "sgd_dampening": (lambda ps: optim.SGD(ps, lr=0.05, momentum=0.8, dampening=0.3),
                      lambda: NumpySGD(0.05, 0.8, 0.3, 0.0, False)),
    "adam": (lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=1e-3),
             lambda: NumpyAdam(1e-2, (0.9, 0.999), 1e-8, 1e-3, False, False)),
    "adam_amsgrad": (lambda ps: optim.Adam(ps, lr=1e-2, betas=(0.8, 0.99), amsgrad=True),
                     lambda: NumpyAdam(1e-2, (0.8, 0.99), 1e-8, 0.0, False, True)),
    "adamw": (lambda ps: optim.AdamW(ps, lr=1e-2), lambda: NumpyAdam(1e-2, (0.9, 0.999), 1e-8, 1e-2, True, False)),
    "rmsprop": (lambda ps: optim.RMSprop(ps, lr=1e-2), lambda: NumpyRMSprop(1e-2, 0.99, 1e-8, 0.0, 0.0, False)),
    "rmsprop_centered_momentum_wd": (
        lambda ps: optim.RMSprop(ps, lr=1e-2, alpha=0.9, momentum=0.5, centered=True, weight_decay=1e-3),
        lambda: NumpyRMSprop(1e-2, 0.9, 1e-8, 1e-3, 0.5, True)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", sorted(CASES))
def test_training_steps_match_numpy(case, dtype, rng):
    make_ours, make_reference = CASES[case]
    x = rng.standard_normal((BATCH, IN))
    y = rng.integers(0, CLASSES, size=BATCH)
    reference_params = [rng.standard_normal((HIDDEN, IN)) * 0.5, rng.standard_normal(HIDDEN) * 0.1,
                        rng.standard_normal((CLASSES, HIDDEN)) * 0.5, rng.standard_normal(CLASSES) * 0.1]

    model = nn.Sequential(nn.Linear(IN, HIDDEN, dtype=dtype), nn.Tanh(), nn.Linear(HIDDEN, CLASSES, dtype=dtype))
    model.load_state_dict({"0.weight": reference_params[0], "0.bias": reference_params[1],
                           "2.weight": reference_params[2], "2.bias": reference_params[3]})
    optimizer = make_ours(model.parameters())
    reference_optimizer = make_reference()
    loss_fn = nn.CrossEntropyLoss()
    inputs, targets = ranvier.tensor(x.astype(dtype)), ranvier.tensor(y)

    tolerance = dict(rtol=1e-9, atol=1e-11) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        optimizer.step()

        reference_loss, grads = numpy_mlp_loss_and_grads(reference_params, x, y)
        reference_optimizer.step(reference_params, grads)

        np.testing.assert_allclose(loss.item(), reference_loss, **tolerance)
        ours = model.state_dict()
        for key, expected in zip(["0.weight", "0.bias", "2.weight", "2.bias"], reference_params):
            np.testing.assert_allclose(np.asarray(ours[key]), expected, **tolerance, err_msg=key)
