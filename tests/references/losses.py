"""NumPy float64 references for the losses and their gradients, from PyTorch's definitions.

Element by element with `math`; reductions with math.fsum. The logits losses use the log of
the sigmoid directly (log sigmoid(z) = -log1p(exp(-z)), split by the sign of z), not the
kernels' rearranged formula; cross-entropy takes an explicit log-sum-exp per row.
"""

import math

import numpy as np


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def reduce(losses, reduction, divisor=None):
    losses = _f64(losses)
    if reduction == "none":
        return losses
    total = math.fsum(losses.ravel().tolist())
    if reduction == "sum":
        return np.float64(total)
    return np.float64(total / (losses.size if divisor is None else divisor))


def _grad_scale(grad_output, reduction, shape, divisor):
    """The factor each element's derivative is multiplied by."""
    if reduction == "none":
        return _f64(grad_output)
    g = float(grad_output)
    return np.full(shape, g / divisor if reduction == "mean" else g)


# --- mse ---

def mse_elements(pred, target):
    pred, target = _f64(pred), _f64(target)
    out = np.empty(pred.shape)
    for i in np.ndindex(pred.shape):
        out[i] = (pred[i] - target[i]) ** 2
    return out


def mse(pred, target, reduction="mean"):
    return reduce(mse_elements(pred, target), reduction)


def mse_grad(pred, target, grad_output, reduction="mean"):
    pred, target = _f64(pred), _f64(target)
    scale = _grad_scale(grad_output, reduction, pred.shape, pred.size)
    out = np.empty(pred.shape)
    for i in np.ndindex(pred.shape):
        out[i] = 2.0 * (pred[i] - target[i]) * scale[i]
    return out


# --- binary cross-entropy on probabilities ---

def _clamped_log(v):
    return -100.0 if v <= 0.0 else max(math.log(v), -100.0)


def bce_elements(prob, target, weight=None):
    prob, target = _f64(prob), _f64(target)
    weight = np.ones(prob.shape) if weight is None else np.broadcast_to(_f64(weight), prob.shape)
    out = np.empty(prob.shape)
    for i in np.ndindex(prob.shape):
        p, t = prob[i], target[i]
        out[i] = -weight[i] * (t * _clamped_log(p) + (1.0 - t) * _clamped_log(1.0 - p))
    return out


def bce(prob, target, weight=None, reduction="mean"):
    return reduce(bce_elements(prob, target, weight), reduction)


def bce_grad(prob, target, grad_output, weight=None, reduction="mean"):
    """-w (t / p - (1 - t) / (1 - p)); valid for p strictly inside (0, 1)."""
    prob, target = _f64(prob), _f64(target)
    weight = np.ones(prob.shape) if weight is None else np.broadcast_to(_f64(weight), prob.shape)
    scale = _grad_scale(grad_output, reduction, prob.shape, prob.size)
    out = np.empty(prob.shape)
    for i in np.ndindex(prob.shape):
        p, t = prob[i], target[i]
        out[i] = -weight[i] * (t / p - (1.0 - t) / (1.0 - p)) * scale[i]
    return out


# --- binary cross-entropy on logits ---

def _log_sigmoid(z):
    if z >= 0:
        return -math.log1p(math.exp(-z))
    return z - math.log1p(math.exp(z))


def _sigmoid(z):
    return math.exp(_log_sigmoid(z))


def _pos_weight_at(pos_weight, index, shape):
    if pos_weight is None:
        return 1.0
    pw = _f64(pos_weight).reshape(-1)
    last = index[-1] if len(shape) else 0
    return float(pw[last % pw.size])


def bce_logits_elements(logits, target, weight=None, pos_weight=None):
    logits, target = _f64(logits), _f64(target)
    weight = np.ones(logits.shape) if weight is None else np.broadcast_to(_f64(weight), logits.shape)
    out = np.empty(logits.shape)
    for i in np.ndindex(logits.shape):
        z, t = logits[i], target[i]
        pw = _pos_weight_at(pos_weight, i, logits.shape)
        # log(1 - sigmoid(z)) = log sigmoid(-z)
        out[i] = -weight[i] * (pw * t * _log_sigmoid(z) + (1.0 - t) * _log_sigmoid(-z))
    return out


def bce_logits(logits, target, weight=None, pos_weight=None, reduction="mean"):
    return reduce(bce_logits_elements(logits, target, weight, pos_weight), reduction)


def bce_logits_grad(logits, target, grad_output, weight=None, pos_weight=None, reduction="mean"):
    """d/dz of -w (pw t log s + (1 - t) log(1 - s)) = w (-pw t (1 - s) + (1 - t) s)."""
    logits, target = _f64(logits), _f64(target)
    weight = np.ones(logits.shape) if weight is None else np.broadcast_to(_f64(weight), logits.shape)
    scale = _grad_scale(grad_output, reduction, logits.shape, logits.size)
    out = np.empty(logits.shape)
    for i in np.ndindex(logits.shape):
        z, t = logits[i], target[i]
        pw = _pos_weight_at(pos_weight, i, logits.shape)
        s = _sigmoid(z)
        out[i] = weight[i] * (-pw * t * (1.0 - s) + (1.0 - t) * s) * scale[i]
    return out


# --- cross-entropy ---

def _as_rows(logits, target):
    """logits (C,), (N, C) or (N, C, d...) and target () / (N,) / (N, d...) as lists of
    (position in target, logit row)."""
    logits = _f64(logits)
    target = np.asarray(target)
    if logits.ndim == 1:
        return [((), logits)], target
    rows = []
    for index in np.ndindex(target.shape):
        n, rest = index[0], index[1:]
        rows.append((index, logits[(n, slice(None)) + rest]))
    return rows, target


def _log_sum_exp(row):
    m = max(float(v) for v in row)
    return m + math.log(math.fsum(math.exp(float(v) - m) for v in row))


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean"):
    rows, target = _as_rows(logits, target)
    losses = np.zeros(target.shape)
    weights = []
    for index, row in rows:
        t = int(target[index])
        if t == ignore_index:
            continue
        w = 1.0 if weight is None else float(weight[t])
        losses[index] = w * (_log_sum_exp(row) - float(row[t]))
        weights.append(w)
    divisor = math.fsum(weights)
    if reduction == "mean" and divisor == 0:
        return np.float64(np.nan)
    return reduce(losses, reduction, divisor)


def cross_entropy_grad(logits, target, grad_output, weight=None, ignore_index=-100,
                       reduction="mean"):
    rows, target = _as_rows(logits, target)
    logits = _f64(logits)
    grad = np.zeros(logits.shape)
    weights = [1.0 if weight is None else float(weight[int(target[index])])
               for index, _ in rows if int(target[index]) != ignore_index]
    divisor = math.fsum(weights)
    for index, row in rows:
        t = int(target[index])
        if t == ignore_index:
            continue
        w = 1.0 if weight is None else float(weight[t])
        if reduction == "none":
            g = float(_f64(grad_output)[index])
        elif reduction == "mean":
            g = float(grad_output) / divisor
        else:
            g = float(grad_output)
        lse = _log_sum_exp(row)
        drow = np.array([math.exp(float(v) - lse) for v in row])
        drow[t] -= 1.0
        drow *= w * g
        if logits.ndim == 1:
            grad[:] = drow
        else:
            n, rest = index[0], index[1:]
            grad[(n, slice(None)) + rest] = drow
    return grad
