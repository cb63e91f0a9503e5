"""The array floor: ranvier's kernels as functions on NumPy (CPU) or CuPy (GPU) arrays.

No autograd here: each function validates its inputs, allocates its output and calls the
compiled kernel for the arrays' device and dtype. Code written for NumPy gets our kernels
by calling these, and ranvier's autograd floor is built on them.

Input rules (see ranvier._arrays): float32 and float64 are computed natively; a call that
mixes them is computed in float64; other dtypes raise TypeError; strided inputs are copied
once to contiguous memory; read-only inputs are fine. Results are new contiguous arrays
unless ``out=`` is given (it must be contiguous, writable and of the result's shape and dtype).

Backward functions take the forward's saved arrays and ``grad_output`` (the gradient of
the loss with respect to the forward's output) and return the gradient(s) of its inputs.
"""

from __future__ import annotations

import operator

import numpy as np

from . import _C
from ._arrays import contiguous, float_inputs, index_input, output

# --- activations -------------------------------------------------------------------------
# The backward of relu, leaky_relu and gelu takes the forward input x; the backward of
# sigmoid and tanh takes the forward output y (their derivatives are cheapest from y).

_ACT = _C.Activation


def _activation(op, code, x, alpha=0.0, out=None):
    xp, dtype, (x,) = float_inputs(op, x=x)
    y = output(xp, x.shape, dtype, out, op)
    _C.activation_forward(code, x, y, alpha)
    return y


def _activation_backward(op, code, saved, grad_output, alpha=0.0, out=None):
    xp, dtype, (saved, grad_output) = float_inputs(op, saved=saved, grad_output=grad_output)
    if saved.shape != grad_output.shape:
        raise ValueError(f"{op}: grad_output has shape {grad_output.shape} but the forward "
                         f"array has shape {saved.shape}")
    dx = output(xp, saved.shape, dtype, out, op)
    _C.activation_backward(code, saved, grad_output, dx, alpha)
    return dx


def relu(x, out=None):
    """max(x, 0) elementwise."""
    return _activation("relu", _ACT.ReLU, x, out=out)


def relu_backward(x, grad_output, out=None):
    return _activation_backward("relu_backward", _ACT.ReLU, x, grad_output, out=out)


def leaky_relu(x, negative_slope=0.01, out=None):
    """x where x >= 0, negative_slope * x elsewhere."""
    return _activation("leaky_relu", _ACT.LeakyReLU, x, float(negative_slope), out=out)


def leaky_relu_backward(x, grad_output, negative_slope=0.01, out=None):
    return _activation_backward("leaky_relu_backward", _ACT.LeakyReLU, x, grad_output,
                                float(negative_slope), out=out)


def sigmoid(x, out=None):
    """1 / (1 + exp(-x)), computed without overflow."""
    return _activation("sigmoid", _ACT.Sigmoid, x, out=out)


def sigmoid_backward(y, grad_output, out=None):
    """Gradient of sigmoid from its output y: grad_output * y * (1 - y)."""
    return _activation_backward("sigmoid_backward", _ACT.Sigmoid, y, grad_output, out=out)


def tanh(x, out=None):
    return _activation("tanh", _ACT.Tanh, x, out=out)


def tanh_backward(y, grad_output, out=None):
    """Gradient of tanh from its output y: grad_output * (1 - y^2)."""
    return _activation_backward("tanh_backward", _ACT.Tanh, y, grad_output, out=out)


def _gelu_code(op, approximate):
    if approximate == "none":
        return _ACT.GELU
    if approximate == "tanh":
        return _ACT.GELUTanh
    raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got {approximate!r}")


def gelu(x, approximate="none", out=None):
    """x * Phi(x) (exact, through erf), or PyTorch's tanh approximation with approximate='tanh'."""
    return _activation("gelu", _gelu_code("gelu", approximate), x, out=out)


def gelu_backward(x, grad_output, approximate="none", out=None):
    return _activation_backward("gelu_backward", _gelu_code("gelu_backward", approximate), x,
                                grad_output, out=out)


# --- softmax -----------------------------------------------------------------------------
# softmax and log_softmax along one axis. Their backward takes the forward OUTPUT y (both
# derivatives are cheapest from it):
#   softmax:      dx = y * (dy - sum(dy * y, axis))
#   log_softmax:  dx = dy - exp(y) * sum(dy, axis)


def _axis_argument(op, axis):
    try:
        return operator.index(axis)
    except TypeError:
        raise TypeError(f"{op}: axis must be an integer, got {axis!r}") from None


def _softmax(op, x, axis, out, log):
    axis = _axis_argument(op, axis)
    xp, dtype, (x,) = float_inputs(op, x=x)
    y = output(xp, x.shape, dtype, out, op)
    _C.softmax_forward(x, y, axis, log)
    return y


def _softmax_backward(op, y, grad_output, axis, out, log):
    axis = _axis_argument(op, axis)
    xp, dtype, (y, grad_output) = float_inputs(op, y=y, grad_output=grad_output)
    if y.shape != grad_output.shape:
        raise ValueError(f"{op}: grad_output has shape {grad_output.shape} but the forward "
                         f"output y has shape {y.shape}")
    dx = output(xp, y.shape, dtype, out, op)
    _C.softmax_backward(y, grad_output, dx, axis, log)
    return dx


def softmax(x, axis=-1, out=None):
    """exp(x - max) / sum(exp(x - max)) along `axis`; y has x's shape.

    A slice that is all -inf, or holds +inf or NaN, gives NaN, as in PyTorch.
    """
    return _softmax("softmax", x, axis, out, log=False)


def softmax_backward(y, grad_output, axis=-1, out=None):
    """Gradient of softmax from its output y (any shape) and grad_output (y's shape)."""
    return _softmax_backward("softmax_backward", y, grad_output, axis, out, log=False)


def log_softmax(x, axis=-1, out=None):
    """x - max - log(sum(exp(x - max))) along `axis`; y has x's shape."""
    return _softmax("log_softmax", x, axis, out, log=True)


def log_softmax_backward(y, grad_output, axis=-1, out=None):
    """Gradient of log_softmax from its output y (any shape) and grad_output (y's shape)."""
    return _softmax_backward("log_softmax_backward", y, grad_output, axis, out, log=True)


# --- losses ------------------------------------------------------------------------------
# PyTorch's losses and reductions. Forward returns a 0-d array for reduction 'mean' or
# 'sum' and the per-element losses for 'none'. Backward takes the forward's inputs and
# grad_output (a scalar for 'mean'/'sum', the per-element shape for 'none') and returns the
# gradient with respect to the first argument, of its shape. Inputs and targets must have
# exactly the same shape (PyTorch only warns when they broadcast; we refuse). 'mean' of an
# empty batch raises ValueError.

_REDUCTIONS = ("none", "mean", "sum")


def _reduction_argument(op, reduction):
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return reduction


def _check_not_empty_mean(op, reduction, n, shape):
    if reduction == "mean" and n == 0:
        raise ValueError(f"{op}: reduction='mean' of an empty batch (input shape {tuple(shape)}) "
                         "is undefined; use reduction='sum' or 'none'")


def _check_same_shape(op, name, a, target):
    if a.shape != target.shape:
        raise ValueError(f"{op}: {name} has shape {a.shape} but target has shape {target.shape}; "
                         "they must match exactly (no broadcasting)")


def _is_python_scalar(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _loss_inputs(op, grad_output=None, **arrays):
    """float_inputs for a loss; a Python number as grad_output takes the inputs' dtype."""
    scalar_grad = _is_python_scalar(grad_output)
    xp, dtype, converted = float_inputs(op, **arrays,
                                        grad_output=None if scalar_grad else grad_output)
    *converted, grad = converted
    if scalar_grad:
        grad = xp.asarray(grad_output, dtype=dtype)
    return xp, dtype, converted, grad


def _check_grad_output(op, grad_output, reduction, loss_shape):
    if grad_output is None:
        raise TypeError(f"{op}: grad_output is required")
    expected = tuple(loss_shape) if reduction == "none" else ()
    if tuple(grad_output.shape) != expected:
        what = "the per-element loss shape" if reduction == "none" else "a scalar"
        raise ValueError(f"{op}: grad_output has shape {tuple(grad_output.shape)}, expected "
                         f"{expected} ({what} for reduction={reduction!r})")


def _broadcast_weight(op, name, weight, shape, xp):
    if weight is None:
        return None
    try:
        return contiguous(xp, xp.broadcast_to(weight, shape))
    except ValueError:
        raise ValueError(f"{op}: {name} of shape {weight.shape} does not broadcast to the "
                         f"input shape {tuple(shape)}") from None


def _loss_out(xp, shape, dtype, reduction):
    return xp.empty(tuple(shape) if reduction == "none" else (), dtype=dtype)


def mse_loss(pred, target, reduction="mean"):
    """Mean squared error (pred - target)^2.

    Shape: pred and target any shape, equal; result () or pred's shape for 'none'.
    """
    op = "mse_loss"
    reduction = _reduction_argument(op, reduction)
    xp, dtype, (pred, target), _ = _loss_inputs(op, pred=pred, target=target)
    _check_same_shape(op, "pred", pred, target)
    _check_not_empty_mean(op, reduction, pred.size, pred.shape)
    out = _loss_out(xp, pred.shape, dtype, reduction)
    _C.mse_loss_forward(pred, target, out, reduction)
    return out


def mse_loss_backward(pred, target, grad_output, reduction="mean"):
    """Gradient of mse_loss with respect to pred (pred's shape): 2 (pred - target) * g."""
    op = "mse_loss_backward"
    reduction = _reduction_argument(op, reduction)
    xp, dtype, (pred, target), grad_output = _loss_inputs(op, pred=pred, target=target,
                                                          grad_output=grad_output)
    _check_same_shape(op, "pred", pred, target)
    _check_not_empty_mean(op, reduction, pred.size, pred.shape)
    _check_grad_output(op, grad_output, reduction, pred.shape)
    dpred = xp.empty(pred.shape, dtype=dtype)
    _C.mse_loss_backward(pred, target, grad_output, dpred, reduction)
    return dpred


def binary_cross_entropy(prob, target, weight=None, reduction="mean"):
    """-weight * (t log p + (1 - t) log(1 - p)), each log clamped at -100 as in PyTorch.

    Shape: prob and target any shape, equal; weight broadcasts to it; result () or prob's
    shape for 'none'. Probabilities outside [0, 1] (or NaN) raise ValueError.
    """
    op = "binary_cross_entropy"
    reduction = _reduction_argument(op, reduction)
    xp, dtype, (prob, target, weight), _ = _loss_inputs(op, prob=prob, target=target,
                                                        weight=weight)
    _check_same_shape(op, "prob", prob, target)
    weight = _broadcast_weight(op, "weight", weight, prob.shape, xp)
    _check_not_empty_mean(op, reduction, prob.size, prob.shape)
    out = _loss_out(xp, prob.shape, dtype, reduction)
    _C.bce_loss_forward(prob, target, weight, out, reduction)
    return out


def binary_cross_entropy_backward(prob, target, grad_output, weight=None, reduction="mean"):
    """Gradient of binary_cross_entropy with respect to prob (prob's shape):
    weight * (p - t) / max(p (1 - p), 1e-12) * g, as PyTorch computes it."""
    op = "binary_cross_entropy_backward"
    reduction = _reduction_argument(op, reduction)
    xp, dtype, (prob, target, weight), grad_output = _loss_inputs(
        op, prob=prob, target=target, weight=weight, grad_output=grad_output)
    _check_same_shape(op, "prob", prob, target)
    weight = _broadcast_weight(op, "weight", weight, prob.shape, xp)
    _check_not_empty_mean(op, reduction, prob.size, prob.shape)
    _check_grad_output(op, grad_output, reduction, prob.shape)
    dprob = xp.empty(prob.shape, dtype=dtype)
    _C.bce_loss_backward(prob, target, weight, grad_output, dprob, reduction)
    return dprob


def _pos_weight(op, pos_weight, logits, xp):
    if pos_weight is None:
        return None
    classes = logits.shape[-1] if logits.ndim else 1
    if pos_weight.ndim > 1 or pos_weight.size not in (1, classes):
        raise ValueError(f"{op}: pos_weight has shape {pos_weight.shape} but must have shape "
                         f"({classes},), one weight per entry of the last axis of logits "
                         f"{logits.shape}")
    return contiguous(xp, xp.broadcast_to(pos_weight.reshape(-1), (classes,)))


def binary_cross_entropy_with_logits(logits, target, weight=None, pos_weight=None,
                                     reduction="mean"):
    """Binary cross-entropy of sigmoid(logits), computed stably from the logits:
    -weight * (pos_weight * t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))).

    Shape: logits and target any shape, equal; weight broadcasts to it; pos_weight (C,)
    where C is the size of the last axis (applied to positives, per class); result () or
    logits' shape for 'none'.
    """
    op = "binary_cross_entropy_with_logits"
    reduction = _reduction_argument(op, reduction)
    xp, dtype, (logits, target, weight, pos_weight), _ = _loss_inputs(
        op, logits=logits, target=target, weight=weight, pos_weight=pos_weight)
    _check_same_shape(op, "logits", logits, target)
    weight = _broadcast_weight(op, "weight", weight, logits.shape, xp)
    pos_weight = _pos_weight(op, pos_weight, logits, xp)
    _check_not_empty_mean(op, reduction, logits.size, logits.shape)
    out = _loss_out(xp, logits.shape, dtype, reduction)
    _C.bce_with_logits_forward(logits, target, weight, pos_weight, out, reduction)
    return out


def binary_cross_entropy_with_logits_backward(logits, target, grad_output, weight=None,
                                              pos_weight=None, reduction="mean"):
    """Gradient of binary_cross_entropy_with_logits with respect to logits (their shape):
    weight * ((1 + (pos_weight - 1) t) sigmoid(z) - pos_weight t) * g."""
    op = "binary_cross_entropy_with_logits_backward"
    reduction = _reduction_argument(op, reduction)
    xp, dtype, (logits, target, weight, pos_weight), grad_output = _loss_inputs(
        op, logits=logits, target=target, weight=weight, pos_weight=pos_weight,
        grad_output=grad_output)
    _check_same_shape(op, "logits", logits, target)
    weight = _broadcast_weight(op, "weight", weight, logits.shape, xp)
    pos_weight = _pos_weight(op, pos_weight, logits, xp)
    _check_not_empty_mean(op, reduction, logits.size, logits.shape)
    _check_grad_output(op, grad_output, reduction, logits.shape)
    dlogits = xp.empty(logits.shape, dtype=dtype)
    _C.bce_with_logits_backward(logits, target, weight, pos_weight, grad_output, dlogits,
                                reduction)
    return dlogits


def _class_targets(op, target, xp):
    if not hasattr(target, "dtype"):
        target = np.asarray(target)
    if target.dtype.kind in "fc":
        raise TypeError(f"{op}: target has dtype {target.dtype}; class probabilities as targets "
                        "are not supported, pass integer class indices")
    return index_input(op, "target", target, xp)


def _cross_entropy_rows(op, logits, target, xp):
    """(logits as (rows, C), the expected target shape) for logits (C,), (N, C) or (N, C, d1, ...)."""
    if logits.ndim == 0:
        raise ValueError(f"{op}: logits must have a class axis: shape (C,), (N, C) or "
                         "(N, C, d1, ...), got shape ()")
    if logits.ndim == 1:
        expected = ()
        rows = logits.reshape(1, -1)
    elif logits.ndim == 2:
        expected = (logits.shape[0],)
        rows = logits
    else:
        expected = (logits.shape[0],) + tuple(logits.shape[2:])
        # Move the class axis last so that each (n, d1, ...) position is one row.
        rows = contiguous(xp, xp.moveaxis(logits, 1, -1)).reshape(-1, logits.shape[1])
    if tuple(target.shape) != expected:
        raise ValueError(f"{op}: target has shape {tuple(target.shape)} but logits of shape "
                         f"{tuple(logits.shape)} need target shape {expected}")
    return rows


def _ignore_index_argument(op, ignore_index):
    try:
        ignore_index = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"{op}: ignore_index must be an integer, got {ignore_index!r}") from None
    if not -(2**63) <= ignore_index < 2**63:
        raise ValueError(f"{op}: ignore_index {ignore_index} does not fit in int64")
    return ignore_index


def _check_class_weight(op, weight, logits):
    classes = logits.shape[1] if logits.ndim >= 2 else logits.shape[0]
    if weight is not None and tuple(weight.shape) != (classes,):
        raise ValueError(f"{op}: weight has shape {tuple(weight.shape)} but must have shape "
                         f"({classes},), one weight per class of logits {tuple(logits.shape)}")


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean"):
    """Cross-entropy of softmax(logits) against integer class indices:
    -weight[t] * log_softmax(logits)[t] per position.

    Shape: logits (N, C) with target (N,), or (N, C, d1, ...) with target (N, d1, ...), or
    (C,) with target (); target of any integer dtype (class probabilities are not
    supported). weight (C,). Positions whose target equals ignore_index add nothing, and
    'mean' divides by the summed weight of the other positions (NaN if all are ignored, as
    PyTorch). Result () or target's shape for 'none'.
    """
    op = "cross_entropy"
    reduction = _reduction_argument(op, reduction)
    ignore_index = _ignore_index_argument(op, ignore_index)
    xp, dtype, (logits, weight), _ = _loss_inputs(op, logits=logits, weight=weight)
    target = _class_targets(op, target, xp)
    rows = _cross_entropy_rows(op, logits, target, xp)
    _check_class_weight(op, weight, logits)
    _check_not_empty_mean(op, reduction, rows.shape[0], logits.shape)
    out = _loss_out(xp, target.shape, dtype, reduction)
    _C.cross_entropy_forward(rows, target, weight, out, ignore_index, reduction)
    return out


def cross_entropy_backward(logits, target, grad_output, weight=None, ignore_index=-100,
                           reduction="mean"):
    """Gradient of cross_entropy with respect to logits (their shape):
    weight[t] * (softmax(logits) - onehot(t)) * g along the class axis; 0 where ignored."""
    op = "cross_entropy_backward"
    reduction = _reduction_argument(op, reduction)
    ignore_index = _ignore_index_argument(op, ignore_index)
    xp, dtype, (logits, weight), grad_output = _loss_inputs(op, logits=logits, weight=weight,
                                                            grad_output=grad_output)
    target = _class_targets(op, target, xp)
    rows = _cross_entropy_rows(op, logits, target, xp)
    _check_class_weight(op, weight, logits)
    _check_not_empty_mean(op, reduction, rows.shape[0], logits.shape)
    _check_grad_output(op, grad_output, reduction, target.shape)
    drows = xp.empty(rows.shape, dtype=dtype)
    _C.cross_entropy_backward(rows, target, weight, grad_output, drows, ignore_index, reduction)
    if logits.ndim <= 2:
        return drows.reshape(logits.shape)
    moved_shape = (logits.shape[0],) + tuple(logits.shape[2:]) + (logits.shape[1],)
    return contiguous(xp, xp.moveaxis(drows.reshape(moved_shape), -1, 1))
