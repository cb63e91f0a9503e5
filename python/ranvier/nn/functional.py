"""Layers and losses as functions of Tensors, with PyTorch's names and arguments.

Each function is one autograd Function whose forward calls a ranvier.ops kernel and whose
backward calls the matching ``ops.*_backward`` kernel. Targets, class weights and masks are
not differentiated (except the target of ``mse_loss``, whose gradient is minus the input's).

Example:
    >>> import ranvier
    >>> import ranvier.nn.functional as F
    >>> x = ranvier.randn(4, 3, requires_grad=True)
    >>> loss = F.cross_entropy(x, ranvier.tensor([0, 2, 1, 2]))
    >>> loss.backward()
"""

from __future__ import annotations

import numpy as np

from .. import ops
from .._arrays import array_module
from ..autograd import Function
from ..random import default_generator
from ..tensor import Tensor

__all__ = ["linear", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax",
           "dropout", "mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
           "cross_entropy"]


def _data(value):
    return value.data if isinstance(value, Tensor) else value


def _check_tensor(op, name, value):
    if not isinstance(value, Tensor):
        raise TypeError(f"{op}: {name} must be a ranvier Tensor, got {type(value).__name__}")


# --- linear ------------------------------------------------------------------------------

class _Linear(Function):
    # x (..., in), weight (out, in), bias (out) or None -> (..., out)
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return ops.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_arrays
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = ops.linear_backward_input(grad, weight) if need_x else None
        grad_w = grad_b = None
        if need_w or need_b:
            grad_w, grad_b = ops.linear_backward_weight(grad, x, bias=ctx.has_bias)
        return grad_x, (grad_w if need_w else None), (grad_b if need_b else None)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = input @ weight.T + bias.

    Shape: input (*, in_features), weight (out_features, in_features), bias (out_features)
    -> (*, out_features).
    """
    _check_tensor("linear", "input", input)
    return _Linear.apply(input, weight, bias)


class _LinearActivation(Function):
    """activation(x @ weight.T + bias) in one kernel call each way (ops.linear_activation).
    x (..., in), weight (out, in), bias (out) or None -> (..., out). What nn.Sequential runs
    for a Linear followed directly by an activation layer."""

    op_name = "linear"

    @staticmethod
    def forward(ctx, x, weight, bias, activation, negative_slope):
        if not any(ctx.needs_input_grad):  # not recorded: nothing to save
            return ops.linear(x, weight, bias, activation=activation, negative_slope=negative_slope)
        y, saved = ops.linear_activation(x, weight, bias, activation, negative_slope)
        ctx.save_for_backward(x, weight, saved)
        ctx.activation, ctx.negative_slope = activation, negative_slope
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, saved = ctx.saved_arrays
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grads = ops.linear_activation_backward(
            saved, grad, x, weight, ctx.activation, bias=need_b,
            negative_slope=ctx.negative_slope, input_grad=need_x, weight_grad=need_w)
        return grads + (None, None)


def _linear_activation(input: Tensor, weight: Tensor, bias: Tensor | None, activation: str,
                       negative_slope: float = 0.01) -> Tensor:
    """activation(linear(input, weight, bias)) fused: the same values and gradients (to
    rounding) as the two functions in turn, in one kernel call each way. ``activation`` is
    a name of ops.LINEAR_ACTIVATIONS. Used by nn.Sequential; not part of PyTorch's API."""
    _check_tensor("linear", "input", input)
    return _LinearActivation.apply(input, weight, bias, activation, negative_slope)


# --- convolution -------------------------------------------------------------------------
# One Function per rank; backward calls the ops backward kernels with the forward's
# hyper-parameters. ops handles unbatched inputs and checks every shape.

__all__ += ["conv1d", "conv2d"]


class _Conv(Function):
    """x (N, C, *spatial), weight (K, C/groups, *kernel), bias (K) or None -> (N, K, *out).
    Subclasses name their three ops kernels (forward, backward_input, backward_weight)."""

    kernels: tuple

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.params = (stride, padding, dilation, groups)
        return type(ctx).kernels[0](x, weight, bias, *ctx.params)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_arrays
        _, backward_input, backward_weight = type(ctx).kernels
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = backward_input(grad, weight, x.shape, *ctx.params) if need_x else None
        grad_w = grad_b = None
        if need_w or need_b:
            grad_w, grad_b = backward_weight(grad, x, weight.shape, *ctx.params,
                                             bias=ctx.has_bias and need_b)
        return grad_x, (grad_w if need_w else None), grad_b, None, None, None, None


class _Conv1d(_Conv):
    kernels = (ops.conv1d, ops.conv1d_backward_input, ops.conv1d_backward_weight)


class _Conv2d(_Conv):
    kernels = (ops.conv2d, ops.conv2d_backward_input, ops.conv2d_backward_weight)


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """1-D convolution (cross-correlation) over the last axis, as PyTorch's F.conv1d.

    Args:
        stride, dilation: an int or a 1-tuple.
        padding: an int, a 1-tuple, 'valid' (no padding) or 'same' (output length = input
            length; needs stride 1).
        groups: split the channels into this many groups, each convolved with its own
            filters (groups = in_channels gives a depthwise convolution).

    Shape: input (N, C, L) or (C, L), weight (out_channels, C/groups, kernel_size), bias
    (out_channels) -> (N, out_channels, L_out) or (out_channels, L_out).
    """
    _check_tensor("conv1d", "input", input)
    return _Conv1d.apply(input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation), as PyTorch's F.conv2d.

    Args:
        stride, dilation: an int or a (height, width) tuple.
        padding: an int, a (height, width) tuple, 'valid' (no padding) or 'same' (output
            size = input size; needs stride 1).
        groups: split the channels into this many groups, each convolved with its own
            filters (groups = in_channels gives a depthwise convolution).

    Shape: input (N, C, H, W) or (C, H, W), weight (out_channels, C/groups, kh, kw), bias
    (out_channels) -> (N, out_channels, H_out, W_out) or (out_channels, H_out, W_out).

    Example:
        >>> x = ranvier.randn(8, 3, 32, 32)
        >>> w = ranvier.randn(16, 3, 3, 3, requires_grad=True)
        >>> F.conv2d(x, w, padding=1).shape
        (8, 16, 32, 32)
    """
    _check_tensor("conv2d", "input", input)
    return _Conv2d.apply(input, weight, bias, stride, padding, dilation, groups)


# --- activations -------------------------------------------------------------------------

class _FromInput(Function):
    """An activation whose backward kernel takes the forward input x (relu, leaky_relu, gelu)."""

    @staticmethod
    def forward(ctx, x, forward, backward, options):
        ctx.save_for_backward(x)
        ctx.backward_kernel, ctx.options = backward, options
        return forward(x, **options)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_arrays
        return ctx.backward_kernel(x, grad, **ctx.options), None, None, None


class _FromOutput(Function):
    """An activation whose backward kernel takes the forward output y (sigmoid, tanh)."""

    @staticmethod
    def forward(ctx, x, forward, backward):
        y = forward(x)
        ctx.save_for_backward(y)
        ctx.backward_kernel = backward
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_arrays
        return ctx.backward_kernel(y, grad), None, None


def relu(input: Tensor) -> Tensor:
    """max(input, 0) elementwise. Shape: any."""
    _check_tensor("relu", "input", input)
    return _FromInput.apply(input, ops.relu, ops.relu_backward, {})


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """input where input >= 0, negative_slope * input elsewhere. Shape: any."""
    _check_tensor("leaky_relu", "input", input)
    return _FromInput.apply(input, ops.leaky_relu, ops.leaky_relu_backward,
                            {"negative_slope": float(negative_slope)})


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """input * Phi(input), or the tanh approximation with approximate='tanh'. Shape: any."""
    _check_tensor("gelu", "input", input)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _FromInput.apply(input, ops.gelu, ops.gelu_backward, {"approximate": approximate})


def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + exp(-input)) elementwise. Shape: any."""
    _check_tensor("sigmoid", "input", input)
    return _FromOutput.apply(input, ops.sigmoid, ops.sigmoid_backward)


def tanh(input: Tensor) -> Tensor:
    """Hyperbolic tangent elementwise. Shape: any."""
    _check_tensor("tanh", "input", input)
    return _FromOutput.apply(input, ops.tanh, ops.tanh_backward)


class _Softmax(Function):
    @staticmethod
    def forward(ctx, x, axis, log):
        y = (ops.log_softmax if log else ops.softmax)(x, axis=axis)
        ctx.save_for_backward(y)
        ctx.axis, ctx.log = axis, log
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_arrays
        kernel = ops.log_softmax_backward if ctx.log else ops.softmax_backward
        return kernel(y, grad, axis=ctx.axis), None, None


def _softmax_axis(op, input, dim):
    _check_tensor(op, "input", input)
    if dim is None:
        raise TypeError(f"{op}: dim must be given (the axis that sums to one), e.g. "
                        f"{op}(x, dim=-1)")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    rank = max(input.ndim, 1)
    if not -rank <= dim < rank:
        raise IndexError(f"{op}: dim {dim} is out of range for input of shape {input.shape}")
    return int(dim) % rank if input.ndim else -1


def softmax(input: Tensor, dim: int | None = None) -> Tensor:
    """exp(input) / sum(exp(input)) along `dim`. Shape: any; the output has the input's shape."""
    axis = _softmax_axis("softmax", input, dim)
    if input.ndim == 0:
        return _Softmax.apply(input.reshape(1), axis, False).reshape(())
    return _Softmax.apply(input, axis, False)


def log_softmax(input: Tensor, dim: int | None = None) -> Tensor:
    """log(softmax(input, dim)), computed stably. Shape: any."""
    axis = _softmax_axis("log_softmax", input, dim)
    if input.ndim == 0:
        return _Softmax.apply(input.reshape(1), axis, True).reshape(())
    return _Softmax.apply(input, axis, True)


# --- dropout -----------------------------------------------------------------------------

class _Dropout(Function):
    @staticmethod
    def forward(ctx, x, p):
        seed, offset = default_generator.philox_offset(x.size)
        y, mask = ops.dropout(x, p, seed, offset)
        ctx.save_for_backward(mask)
        ctx.p = p
        return y

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_arrays
        return ops.dropout_backward(grad, mask, ctx.p), None


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p), when training.

    The mask comes from ranvier's default generator (ranvier.manual_seed makes it
    reproducible). With training=False (or p=0) the input is returned unchanged.
    Shape: any.
    """
    _check_tensor("dropout", "input", input)
    p = float(p)
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"dropout: probability p must be between 0 and 1, got {p}")
    if not training or p == 0.0:
        return input
    return _Dropout.apply(input, p)


# --- losses ------------------------------------------------------------------------------

def _check_reduction(op, reduction):
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _check_same_shape(op, input, target):
    target_shape = tuple(target.shape) if hasattr(target, "shape") else np.shape(target)
    if tuple(input.shape) != target_shape:
        raise ValueError(f"{op}: input has shape {tuple(input.shape)} but target has shape "
                         f"{target_shape}; they must match")


class _MSELoss(Function):
    @staticmethod
    def forward(ctx, pred, target, reduction):
        ctx.save_for_backward(pred, target)
        ctx.reduction = reduction
        return ops.mse_loss(pred, target, reduction=reduction)

    @staticmethod
    def backward(ctx, grad):
        pred, target = ctx.saved_arrays
        grad_pred = ops.mse_loss_backward(pred, target, grad, reduction=ctx.reduction)
        # (pred - target)^2 is symmetric: the target's gradient is minus the prediction's.
        grad_target = -grad_pred if ctx.needs_input_grad[1] else None
        return (grad_pred if ctx.needs_input_grad[0] else None), grad_target, None


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean squared error (input - target)^2, reduced by 'mean' (default), 'sum' or 'none'.

    Shape: input and target of the same shape; the result is a scalar, or input's shape
    for reduction='none'. Both input and target may require grad.
    """
    _check_tensor("mse_loss", "input", input)
    _check_reduction("mse_loss", reduction)
    _check_same_shape("mse_loss", input, target)
    return _MSELoss.apply(input, target, reduction)


class _BCELoss(Function):
    @staticmethod
    def forward(ctx, prob, target, weight, reduction):
        ctx.save_for_backward(prob, target, weight)
        ctx.reduction = reduction
        return ops.binary_cross_entropy(prob, target, weight=weight, reduction=reduction)

    @staticmethod
    def backward(ctx, grad):
        prob, target, weight = ctx.saved_arrays
        grad_prob = ops.binary_cross_entropy_backward(prob, target, grad, weight=weight,
                                                      reduction=ctx.reduction)
        return grad_prob, None, None, None


def binary_cross_entropy(input: Tensor, target, weight=None, reduction: str = "mean") -> Tensor:
    """-weight * (target * log(input) + (1 - target) * log(1 - input)) on probabilities.

    Shape: input (probabilities in [0, 1]) and target of the same shape; weight broadcast
    to it. The target is not differentiated.
    """
    _check_tensor("binary_cross_entropy", "input", input)
    _check_reduction("binary_cross_entropy", reduction)
    _check_same_shape("binary_cross_entropy", input, _data(target))
    return _BCELoss.apply(input, _data(target),
                          _weight_array("binary_cross_entropy", weight, input), reduction)


def _weight_array(op, weight, input):
    """Per-element weights broadcast to the input's shape (the kernels take one per element)."""
    if weight is None:
        return None
    weight = _data(weight)
    if not hasattr(weight, "shape"):  # a list or number: on the input's device
        weight = array_module(input.data).asarray(weight)
    if tuple(weight.shape) != tuple(input.shape):
        try:
            weight = array_module(weight).broadcast_to(weight, input.shape)
        except ValueError:
            raise ValueError(f"{op}: weight of shape {tuple(weight.shape)} cannot be broadcast "
                             f"to the input's shape {tuple(input.shape)}") from None
    return weight


class _BCEWithLogitsLoss(Function):
    @staticmethod
    def forward(ctx, logits, target, weight, pos_weight, reduction):
        ctx.save_for_backward(logits, target, weight, pos_weight)
        ctx.reduction = reduction
        return ops.binary_cross_entropy_with_logits(logits, target, weight=weight,
                                                    pos_weight=pos_weight, reduction=reduction)

    @staticmethod
    def backward(ctx, grad):
        logits, target, weight, pos_weight = ctx.saved_arrays
        grad_logits = ops.binary_cross_entropy_with_logits_backward(
            logits, target, grad, weight=weight, pos_weight=pos_weight, reduction=ctx.reduction)
        return grad_logits, None, None, None, None


def binary_cross_entropy_with_logits(input: Tensor, target, weight=None,
                                     reduction: str = "mean", pos_weight=None) -> Tensor:
    """Binary cross-entropy on logits (sigmoid folded in, stable for large |input|).

    Shape: input (logits) and target of the same shape; weight broadcast to it; pos_weight
    (C,) weights the positive term of each class along the last axis.
    """
    _check_tensor("binary_cross_entropy_with_logits", "input", input)
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    _check_same_shape("binary_cross_entropy_with_logits", input, _data(target))
    return _BCEWithLogitsLoss.apply(
        input, _data(target), _weight_array("binary_cross_entropy_with_logits", weight, input),
        _data(pos_weight), reduction)


class _CrossEntropyLoss(Function):
    # logits (N, C) and class targets (N,): the kernels' layout. cross_entropy() moves the
    # class axis of other layouts last and flattens before calling this.
    @staticmethod
    def forward(ctx, logits, target, weight, ignore_index, reduction):
        ctx.save_for_backward(logits, target, weight)
        ctx.ignore_index, ctx.reduction = ignore_index, reduction
        return ops.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index,
                                 reduction=reduction)

    @staticmethod
    def backward(ctx, grad):
        logits, target, weight = ctx.saved_arrays
        grad_logits = ops.cross_entropy_backward(logits, target, grad, weight=weight,
                                                 ignore_index=ctx.ignore_index,
                                                 reduction=ctx.reduction)
        return grad_logits, None, None, None, None


def cross_entropy(input: Tensor, target, weight=None, ignore_index: int = -100,
                  reduction: str = "mean") -> Tensor:
    """Cross-entropy between logits and integer class targets (log_softmax + NLL in one).

    Shape: input (N, C) with target (N,); or (N, C, d1, ...) with target (N, d1, ...)
    (the class axis is axis 1, as PyTorch); or unbatched (C,) with a 0-d target. The
    result is a scalar, or target's shape for reduction='none'. weight (C,) rescales each
    class; targets equal to ignore_index count for nothing. The mean divides by the sum of
    the targets' weights.
    """
    op = "cross_entropy"
    _check_tensor(op, "input", input)
    _check_reduction(op, reduction)
    target = _data(target)
    if not hasattr(target, "shape"):  # a list or number: on the input's device
        target = array_module(input.data).asarray(target)
    if np.dtype(target.dtype).kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices (int64), got dtype "
                        f"{target.dtype}; probability targets are not supported")
    shape = input.shape
    ndim = len(shape)
    if ndim == 0:
        raise ValueError(f"{op}: input must have a class axis, got a 0-d tensor")
    expected = shape[:1] + shape[2:] if ndim > 1 else ()
    target_shape = tuple(target.shape)
    if target_shape != expected:
        raise ValueError(f"{op}: input of shape {shape} needs a target of shape "
                         f"{expected}, got {target_shape}")
    classes = shape[1] if ndim > 1 else shape[0]
    # (N, C, d1, ...) -> (N * d1 * ..., C); (C,) -> (1, C)
    if ndim == 1:
        logits = input.reshape(1, classes)
    elif ndim == 2:
        logits = input
    else:
        logits = input.permute(0, *range(2, ndim), 1).reshape(-1, classes)
    # A 1-D target is already flat: no new view needed.
    flat_target = target if len(target_shape) == 1 else target.reshape(-1)
    loss = _CrossEntropyLoss.apply(logits, flat_target, _data(weight), int(ignore_index),
                                   reduction)
    if reduction == "none":
        loss = loss.reshape(target.shape)
    return loss


# --- pooling -----------------------------------------------------------------------------
# One Function per pooling kind. The kernels handle 1-D and 2-D alike (the rank of the
# input tells them apart); unbatched inputs (C, L) / (C, H, W) are handled by ops.

__all__ += ["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
            "adaptive_avg_pool2d", "batch_norm"]


class _MaxPool(Function):
    # x (N, C, *in) -> y (N, C, *out); the arg-max indices are kept for backward
    @staticmethod
    def forward(ctx, x, dims, window, indices_out):
        forward = ops.max_pool1d if dims == 1 else ops.max_pool2d
        y, indices = forward(x, *window)
        ctx.save_for_backward(indices)
        ctx.dims, ctx.window, ctx.input_shape = dims, window, tuple(x.shape)
        indices_out.append(indices)  # for return_indices (ctx is not kept without a graph)
        return y

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved_arrays
        backward = ops.max_pool1d_backward if ctx.dims == 1 else ops.max_pool2d_backward
        # With the window, CUDA arrays take the gather kernel (one thread per input element).
        return backward(grad, indices, ctx.input_shape, *ctx.window), None, None, None


def _max_pool(dims, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    _check_tensor(f"max_pool{dims}d", "input", input)
    indices = []
    output = _MaxPool.apply(input, dims, (kernel_size, stride, padding, dilation, bool(ceil_mode)), indices)
    return (output, Tensor._from_array(indices[0])) if return_indices else output


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Maximum over sliding windows along the last axis.

    Shape: input (N, C, L) or (C, L) -> (N, C, L_out) or (C, L_out), with
    L_out = floor((L + 2 padding - dilation (kernel_size - 1) - 1) / stride) + 1 (ceil with
    ceil_mode). stride defaults to kernel_size; padding <= kernel_size / 2. With
    return_indices, also the int64 positions of the maxima (not differentiable).
    """
    return _max_pool(1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Maximum over sliding 2-D windows; arguments are ints or (h, w) pairs.

    Shape: input (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out) or unbatched, each size as
    in max_pool1d. With return_indices, also the int64 flat positions h * W + w of the maxima.

    Example:
        >>> F.max_pool2d(ranvier.randn(8, 3, 28, 28), 2).shape
        (8, 3, 14, 14)
    """
    return _max_pool(2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


class _AvgPool(Function):
    @staticmethod
    def forward(ctx, x, dims, window):
        ctx.dims, ctx.window, ctx.input_shape = dims, window, tuple(x.shape)
        if dims == 1:
            return ops.avg_pool1d(x, *window[:5])
        return ops.avg_pool2d(x, *window)

    @staticmethod
    def backward(ctx, grad):
        if ctx.dims == 1:
            return ops.avg_pool1d_backward(grad, ctx.input_shape, *ctx.window[:5]), None, None
        return ops.avg_pool2d_backward(grad, ctx.input_shape, *ctx.window), None, None


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """Mean over sliding windows along the last axis; with count_include_pad (default) the
    zero padding counts in each window's size.

    Shape: input (N, C, L) or (C, L) -> (N, C, L_out) or (C, L_out), L_out as in max_pool1d.
    """
    _check_tensor("avg_pool1d", "input", input)
    return _AvgPool.apply(input, 1, (kernel_size, stride, padding, bool(ceil_mode),
                                     bool(count_include_pad), None))


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None) -> Tensor:
    """Mean over sliding 2-D windows; divisor_override, when given, replaces the window size
    as the divisor.

    Shape: input (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out) or (C, H_out, W_out).
    """
    _check_tensor("avg_pool2d", "input", input)
    return _AvgPool.apply(input, 2, (kernel_size, stride, padding, bool(ceil_mode),
                                     bool(count_include_pad), divisor_override))


class _AdaptiveAvgPool(Function):
    @staticmethod
    def forward(ctx, x, dims, output_size):
        ctx.dims, ctx.input_shape = dims, tuple(x.shape)
        return (ops.adaptive_avg_pool1d if dims == 1 else ops.adaptive_avg_pool2d)(x, output_size)

    @staticmethod
    def backward(ctx, grad):
        backward = ops.adaptive_avg_pool1d_backward if ctx.dims == 1 else ops.adaptive_avg_pool2d_backward
        return backward(grad, ctx.input_shape), None, None


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    """Mean over output_size bins along the last axis (bin i covers floor(i L / L_out) ..
    ceil((i + 1) L / L_out) - 1); output_size=1 is global average pooling.

    Shape: input (N, C, L) or (C, L) -> (N, C, output_size) or (C, output_size).
    """
    _check_tensor("adaptive_avg_pool1d", "input", input)
    return _AdaptiveAvgPool.apply(input, 1, output_size)


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Mean over an output_size grid of bins: an int, or (H_out, W_out) where None keeps the
    input's size.

    Shape: input (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out) or (C, H_out, W_out).
    """
    _check_tensor("adaptive_avg_pool2d", "input", input)
    return _AdaptiveAvgPool.apply(input, 2, output_size)


# --- batch normalisation -----------------------------------------------------------------

class _BatchNorm(Function):
    # x (N, C, *), weight/bias (C) or None; running stats (C) arrays, updated in place when training
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
        y, mean, invstd = ops.batch_norm(x, running_mean, running_var, weight, bias,
                                         training=training, momentum=momentum, eps=eps)
        ctx.save_for_backward(x, mean, invstd, weight)
        ctx.training, ctx.has_weight, ctx.has_bias = training, weight is not None, bias is not None
        return y

    @staticmethod
    def backward(ctx, grad):
        x, mean, invstd, weight = ctx.saved_arrays
        grad_x, grad_weight, grad_bias = ops.batch_norm_backward(grad, x, mean, invstd, weight,
                                                                 training=ctx.training)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        return ((grad_x if need_x else None), (grad_weight if need_w and ctx.has_weight else None),
                (grad_bias if need_b and ctx.has_bias else None), None, None, None, None, None)


def batch_norm(input: Tensor, running_mean, running_var, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1,
               eps: float = 1e-5) -> Tensor:
    """Normalise each channel (axis 1) to zero mean and unit variance, then scale by weight
    and shift by bias.

    training=True uses the batch's statistics (more than one value per channel needed) and
    updates running_mean / running_var in place when given (the variance unbiased):
    running = (1 - momentum) * running + momentum * batch. training=False uses
    running_mean and running_var (required). The running statistics are arrays (or
    Tensors, whose arrays are used); they are not differentiated.

    Shape: input (N, C, *), running_mean, running_var, weight, bias (C,) -> input's shape.
    """
    op = "batch_norm"
    _check_tensor(op, "input", input)
    if input.ndim < 2:
        raise ValueError(f"{op}: input of shape {input.shape} must have at least 2 dimensions "
                         "(N, C, ...): channels are axis 1")
    if training and input.numel() // max(input.shape[1], 1) == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                         f"{tuple(input.shape)}")
    return _BatchNorm.apply(input, weight, bias, _data(running_mean), _data(running_var),
                            bool(training), momentum, eps)
