"""NumPy float64 references for PyTorch's optimizer updates (never calls ranvier).

Written from the algorithms in the torch.optim documentation (SGD, Adam, AdamW, RMSprop),
one step at a time over a dict of state. As in PyTorch's code, `maximize` negates the
gradient first, before weight decay is added. Each function returns the new parameter and
updates `state` (a dict of float64 arrays, empty before the first step).
"""

from __future__ import annotations

import numpy as np


def sgd(param, grad, state, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
        maximize=False):
    theta = np.array(param, dtype=np.float64)
    g = -np.asarray(grad, np.float64) if maximize else np.asarray(grad, np.float64)
    if weight_decay != 0:
        g = g + weight_decay * theta
    if momentum != 0:
        if "momentum_buffer" not in state:  # t == 1
            b = g.copy()
        else:
            b = momentum * state["momentum_buffer"] + (1 - dampening) * g
        state["momentum_buffer"] = b
        g = g + momentum * b if nesterov else b
    return theta - lr * g


def adam(param, grad, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
         maximize=False, decoupled=False):
    """Adam; AdamW with decoupled=True (theta <- theta - lr * weight_decay * theta first)."""
    beta1, beta2 = betas
    theta = np.array(param, dtype=np.float64)
    g = -np.asarray(grad, np.float64) if maximize else np.asarray(grad, np.float64)
    t = state.get("step", 0) + 1
    state["step"] = t
    if weight_decay != 0:
        if decoupled:
            theta = theta - lr * weight_decay * theta
        else:
            g = g + weight_decay * theta
    m = beta1 * state.get("exp_avg", np.zeros_like(theta)) + (1 - beta1) * g
    v = beta2 * state.get("exp_avg_sq", np.zeros_like(theta)) + (1 - beta2) * g * g
    state["exp_avg"], state["exp_avg_sq"] = m, v
    m_hat = m / (1 - beta1**t)
    if amsgrad:
        # As PyTorch's code (its docs write the max over bias-corrected values): the running
        # max is kept of the raw second moment and bias-corrected with the current step.
        v_max = np.maximum(state.get("max_exp_avg_sq", np.zeros_like(theta)), v)
        state["max_exp_avg_sq"] = v_max
        v_hat = v_max / (1 - beta2**t)
    else:
        v_hat = v / (1 - beta2**t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps)


def adamw(param, grad, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
          maximize=False):
    return adam(param, grad, state, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                maximize=maximize, decoupled=True)


def rmsprop(param, grad, state, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
            centered=False, maximize=False):
    theta = np.array(param, dtype=np.float64)
    g = -np.asarray(grad, np.float64) if maximize else np.asarray(grad, np.float64)
    if weight_decay != 0:
        g = g + weight_decay * theta
    v = alpha * state.get("square_avg", np.zeros_like(theta)) + (1 - alpha) * g * g
    state["square_avg"] = v
    v_tilde = v
    if centered:
        g_ave = alpha * state.get("grad_avg", np.zeros_like(theta)) + (1 - alpha) * g
        state["grad_avg"] = g_ave
        v_tilde = v - g_ave * g_ave
    denom = np.sqrt(v_tilde) + eps
    if momentum > 0:
        b = momentum * state.get("momentum_buffer", np.zeros_like(theta)) + g / denom
        state["momentum_buffer"] = b
        return theta - lr * b
    return theta - lr * g / denom
