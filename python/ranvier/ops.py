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

import math
import operator

import numpy as np

from . import _C
from ._arrays import (_as_array, array_module, check_float_dtype, contiguous, empty,
                      float_inputs, index_input, is_cuda_array, output)
from ._arrays import _cupy, resolve_device

# The non-float dtypes the ops return or compare with (empty() takes np.dtype objects).
_INT64 = np.dtype(np.int64)
_UINT8 = np.dtype(np.uint8)

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


# --- matmul and linear -------------------------------------------------------------------
# The kernels take 2-D matrices or 3-D stacks of them (contiguous); these functions flatten
# any leading batch dimensions into one and reshape the result back, so the results are
# those of np.matmul / torch.nn.functional.linear. linear's layout is PyTorch's:
# weight (out_features, in_features), y = x @ weight.T + bias.


def _matmul_dims(op, a, b, a_mat, b_mat, trans_a, trans_b):
    """(m, n) of op(a_mat) @ op(b_mat) over their last two dimensions, after checking that
    the inner dimensions agree; the error names a and b as the caller passed them."""
    m, k = (a_mat.shape[-1], a_mat.shape[-2]) if trans_a else a_mat.shape[-2:]
    k_b, n = (b_mat.shape[-1], b_mat.shape[-2]) if trans_b else b_mat.shape[-2:]
    if k != k_b:
        raise ValueError(f"{op}: a has shape {a.shape}{' (transposed)' if trans_a else ''} with "
                         f"{k} columns but b has shape {b.shape}{' (transposed)' if trans_b else ''} "
                         f"with {k_b} rows")
    return m, n


def _kernel_out(out, shape, op):
    """`out` (C-contiguous: output() checked it) reshaped to the kernel's `shape`, sharing its
    memory (the kernel writes into it)."""
    if out.shape == shape:  # already the kernel's shape (a 2-D layer output): no new view
        return out
    return out.reshape(shape)


def _stacked(x, lead, batch_shape, xp):
    """x (*lead, r, c) as the kernel wants it for a result with batch dims `batch_shape`:
    2-D when it is one matrix shared by the whole batch, else (batch, r, c)."""
    r, c = x.shape[-2:]
    if math.prod(lead) == 1:
        return x.reshape(r, c)
    if tuple(lead) != tuple(batch_shape):
        # Partial broadcasting, e.g. (2, 1, r, c) against (3, c, n): materialise the copies.
        x = xp.ascontiguousarray(xp.broadcast_to(x, tuple(batch_shape) + (r, c)))
    return x.reshape(math.prod(batch_shape), r, c)


def matmul(a, b, trans_a=False, trans_b=False, out=None):
    """Matrix product op(a) @ op(b), batched and broadcast like ``np.matmul``.

    op(a) is a with its last two axes swapped when ``trans_a`` (likewise b), so
    ``matmul(a, b, trans_b=True)`` is ``a @ b.swapaxes(-1, -2)`` without making the copy.

    Shape:
        a: (..., m, k), or (..., k, m) with trans_a.
        b: (..., k, n), or (..., n, k) with trans_b.
        result: (..., m, n), where ... is the broadcast of the two batch shapes. A 2-D
        operand (or one whose batch dims are all 1) is shared by the other's whole batch at
        no cost; other broadcasting (e.g. (2, 1, m, k) with (3, k, n)) copies the operand.
        As in np.matmul, a 1-D a (k,) is a row vector and a 1-D b (k,) a column vector, and
        that axis is dropped from the result; the trans flag of a 1-D operand is ignored.
        0-D operands raise ValueError.

    Example:
        >>> matmul(np.ones((3, 2, 4)), np.ones((5, 4)), trans_b=True).shape
        (3, 2, 5)
    """
    if out is None and type(a) is np.ndarray and type(b) is np.ndarray:
        # Two plain NumPy matrices of one float dtype, the commonest call: checked,
        # allocated and multiplied in one call into C++ (~4 us less at 64x64), which
        # returns None for anything else.
        c = _C.matmul_matrices(a, b, bool(trans_a), bool(trans_b))
        if c is not None:
            return c
    op = "matmul"
    # Checked before float_inputs, whose ascontiguousarray turns 0-D into 1-D.
    if _ndim(a) == 0 or _ndim(b) == 0:
        raise ValueError(f"{op}: a has shape {np.shape(a)} and b has shape {np.shape(b)}; 0-D "
                         "arrays are not matrices (multiply them instead)")
    xp, dtype, (a, b) = float_inputs(op, a=a, b=b)
    if a.ndim == 2 and b.ndim == 2:
        # Two matrices that the fast path above did not take (an `out` given, inputs that
        # needed converting): no batch dims to broadcast, so skip np.broadcast_shapes and
        # _stacked (~5 us of a 64x64 product's ~15 us).
        trans_a, trans_b = bool(trans_a), bool(trans_b)
        m, n = _matmul_dims(op, a, b, a, b, trans_a, trans_b)
        c = output(xp, (m, n), dtype, out, op)
        _C.matmul(a, b, _kernel_out(c, (m, n), op), trans_a, trans_b)
        return c
    a_vector, b_vector = a.ndim == 1, b.ndim == 1
    a_mat = a.reshape(1, -1) if a_vector else a    # (1, k): a row vector
    b_mat = b.reshape(-1, 1) if b_vector else b    # (k, 1): a column vector
    trans_a = bool(trans_a) and not a_vector
    trans_b = bool(trans_b) and not b_vector
    m, n = _matmul_dims(op, a, b, a_mat, b_mat, trans_a, trans_b)
    lead_a, lead_b = a_mat.shape[:-2], b_mat.shape[:-2]
    try:
        batch_shape = np.broadcast_shapes(lead_a, lead_b)
    except ValueError:
        raise ValueError(f"{op}: the batch dimensions of a {a.shape} and b {b.shape} do not "
                         "broadcast") from None
    a_kernel = _stacked(a_mat, lead_a, batch_shape, xp)
    b_kernel = _stacked(b_mat, lead_b, batch_shape, xp)
    batched = a_kernel.ndim == 3 or b_kernel.ndim == 3
    kernel_shape = (math.prod(batch_shape), m, n) if batched else (m, n)
    result_shape = tuple(batch_shape) + (() if a_vector else (m,)) + (() if b_vector else (n,))
    c = output(xp, result_shape, dtype, out, op)
    _C.matmul(a_kernel, b_kernel, _kernel_out(c, kernel_shape, op), trans_a, trans_b)
    return c


def _ndim(a):
    """np.ndim(a), without NumPy's function dispatch for the common case of an ndarray."""
    return a.ndim if type(a) is np.ndarray else np.ndim(a)


def _shape(a):
    """np.shape(a), without NumPy's function dispatch for the common case of an ndarray."""
    return a.shape if type(a) is np.ndarray else np.shape(a)


def _rows(x, features):
    """x (..., features) as (rows, features) without copying (x is contiguous)."""
    if x.ndim == 2:  # already (rows, features): the common case, no new view needed
        return x
    return x.reshape(math.prod(x.shape[:-1]), features)


def _check_weight(op, weight):
    if weight.ndim != 2:
        raise ValueError(f"{op}: weight must be 2-D (out_features, in_features), got shape "
                         f"{weight.shape}")


# Activations the fused linear layer applies in its output pass: name -> kernel code.
LINEAR_ACTIVATIONS = {"relu": _ACT.ReLU, "leaky_relu": _ACT.LeakyReLU, "sigmoid": _ACT.Sigmoid,
                      "tanh": _ACT.Tanh, "gelu": _ACT.GELU, "gelu_tanh": _ACT.GELUTanh}


def _linear_activation_code(op, activation):
    code = LINEAR_ACTIVATIONS.get(activation) if isinstance(activation, str) else None
    if code is None:
        raise ValueError(f"{op}: activation must be None or one of "
                         f"{', '.join(repr(name) for name in LINEAR_ACTIVATIONS)}, got {activation!r}")
    return code


def _linear_inputs(op, x, weight, bias):
    """Validated (xp, dtype, x, weight, bias, out_features, in_features) for linear's forward."""
    x_is_scalar = _ndim(x) == 0  # before float_inputs, which makes 0-D arrays 1-D
    xp, dtype, (x, weight, bias) = float_inputs(op, x=x, weight=weight, bias=bias)
    _check_weight(op, weight)
    out_features, in_features = weight.shape
    if x_is_scalar or x.shape[-1] != in_features:
        features = "no" if x_is_scalar else x.shape[-1]
        x_shape = () if x_is_scalar else x.shape
        raise ValueError(f"{op}: x has {features} features (shape {x_shape}) but weight expects "
                         f"{in_features} (shape {weight.shape})")
    if bias is not None and bias.shape != (out_features,):
        raise ValueError(f"{op}: bias has shape {bias.shape} but weight (shape {weight.shape}) "
                         f"has {out_features} outputs; expected ({out_features},)")
    return xp, dtype, x, weight, bias, out_features, in_features


def linear(x, weight, bias=None, out=None, activation=None, negative_slope=0.01):
    """Fully connected layer: x @ weight.T + bias (PyTorch's F.linear), optionally followed
    by an activation applied in the same output pass (no intermediate array).

    Args:
        activation: None, or one of ``'relu'``, ``'leaky_relu'`` (with ``negative_slope``),
            ``'sigmoid'``, ``'tanh'``, ``'gelu'``, ``'gelu_tanh'`` (GELU's tanh
            approximation): the result is then ``activation(x @ weight.T + bias)``.
            For training, ``linear_activation`` also returns what the backward needs.

    Shape:
        x: (..., in_features), any number of leading dims (flattened to rows).
        weight: (out_features, in_features).
        bias: (out_features,) or None.
        result: (..., out_features).
    """
    op = "linear"
    code = None if activation is None else _linear_activation_code(op, activation)
    xp, dtype, x, weight, bias, out_features, in_features = _linear_inputs(op, x, weight, bias)
    y = output(xp, x.shape[:-1] + (out_features,), dtype, out, op)
    x_rows = _rows(x, in_features)
    y_rows = _kernel_out(y, (x_rows.shape[0], out_features), op)
    if code is None:
        _C.linear_forward(x_rows, weight, bias, y_rows)
    else:
        _C.linear_activation_forward(code, x_rows, weight, bias, None, y_rows, float(negative_slope))
    return y


def linear_backward_input(grad_output, weight, out=None):
    """Gradient of linear with respect to x: grad_output @ weight.

    Shape:
        grad_output: (..., out_features).
        weight: (out_features, in_features).
        result: (..., in_features).
    """
    op = "linear_backward_input"
    dy_is_scalar = _ndim(grad_output) == 0  # before float_inputs, which makes 0-D arrays 1-D
    xp, dtype, (grad_output, weight) = float_inputs(op, grad_output=grad_output, weight=weight)
    _check_weight(op, weight)
    out_features, in_features = weight.shape
    if dy_is_scalar or grad_output.shape[-1] != out_features:
        features = "no" if dy_is_scalar else grad_output.shape[-1]
        dy_shape = () if dy_is_scalar else grad_output.shape
        raise ValueError(f"{op}: grad_output has {features} features (shape {dy_shape}) "
                         f"but weight has {out_features} outputs (shape {weight.shape})")
    dx = output(xp, grad_output.shape[:-1] + (in_features,), dtype, out, op)
    dy_rows = _rows(grad_output, out_features)
    _C.linear_backward_input(dy_rows, weight, _kernel_out(dx, (dy_rows.shape[0], in_features), op))
    return dx


def linear_backward_weight(grad_output, x, bias=True):
    """Gradients of linear with respect to weight and bias, summed over all leading dims.

    Shape:
        grad_output: (..., out_features).
        x: (..., in_features), the forward input, with the same leading dims.
        result: (grad_weight (out_features, in_features), grad_bias (out_features,)), or
        (grad_weight, None) when ``bias`` is False.
    """
    op = "linear_backward_weight"
    dy_shape, x_shape = _shape(grad_output), _shape(x)  # before float_inputs makes 0-D 1-D
    if not dy_shape or not x_shape or dy_shape[:-1] != x_shape[:-1]:
        raise ValueError(f"{op}: grad_output (shape {dy_shape}) and x (shape {x_shape}) must have "
                         "the same leading dimensions (..., features)")
    xp, dtype, (grad_output, x) = float_inputs(op, grad_output=grad_output, x=x)
    out_features, in_features = grad_output.shape[-1], x.shape[-1]
    grad_weight = empty(xp, (out_features, in_features), dtype)
    grad_bias = empty(xp, (out_features,), dtype) if bias else None
    _C.linear_backward_weight(_rows(grad_output, out_features), _rows(x, in_features),
                              grad_weight, grad_bias)
    return grad_weight, grad_bias


def linear_activation(x, weight, bias, activation, negative_slope=0.01):
    """The fused layer for training: ``(y, saved)`` with y = activation(x @ weight.T + bias).

    ``saved`` is what ``linear_activation_backward`` needs besides x and weight: y itself
    for 'relu', 'sigmoid' and 'tanh' (their derivatives follow from the output), the
    pre-activation x @ weight.T + bias for 'leaky_relu', 'gelu' and 'gelu_tanh'.

    Shape: x (..., in_features), weight (out_features, in_features), bias (out_features,)
    or None -> y and saved (..., out_features).
    """
    op = "linear_activation"
    code = _linear_activation_code(op, activation)
    xp, dtype, x, weight, bias, out_features, in_features = _linear_inputs(op, x, weight, bias)
    shape = x.shape[:-1] + (out_features,)
    y = empty(xp, shape, dtype)
    x_rows = _rows(x, in_features)
    kernel_shape = (x_rows.shape[0], out_features)
    flat = shape != kernel_shape  # batch dims other than one: the kernel sees (rows, out)
    if _C.linear_activation_backward_uses_output(code):
        _C.linear_activation_forward(code, x_rows, weight, bias, None,
                                     y.reshape(kernel_shape) if flat else y, float(negative_slope))
        return y, y
    pre = empty(xp, shape, dtype)
    _C.linear_activation_forward(code, x_rows, weight, bias,
                                 pre.reshape(kernel_shape) if flat else pre,
                                 y.reshape(kernel_shape) if flat else y, float(negative_slope))
    return y, pre


def linear_activation_backward(saved, grad_output, x, weight, activation, bias=True,
                               negative_slope=0.01, input_grad=True, weight_grad=True):
    """Gradients of ``linear_activation`` from the gradient of its output y.

    One pass computes grad_pre = activation'(.) * grad_output and the bias gradient (its
    sums over rows); two GEMMs give the input and weight gradients from grad_pre.

    Args:
        saved: the second result of ``linear_activation`` (y or the pre-activation).
        grad_output: gradient of the loss with respect to y.
        x, weight: the forward's input and weight.
        bias: whether to compute the bias gradient.
        input_grad, weight_grad: whether to compute the input / weight gradient.

    Returns ``(grad_x, grad_weight, grad_bias)``, None where not asked for.

    Shape: saved, grad_output (..., out_features); x (..., in_features) with the same
    leading dims; weight (out_features, in_features).
    """
    op = "linear_activation_backward"
    code = _linear_activation_code(op, activation)
    dy_shape, x_shape, saved_shape = _shape(grad_output), _shape(x), _shape(saved)
    if not dy_shape or not x_shape or dy_shape[:-1] != x_shape[:-1]:
        raise ValueError(f"{op}: grad_output (shape {dy_shape}) and x (shape {x_shape}) must "
                         "have the same leading dimensions (..., features)")
    if saved_shape != dy_shape:
        raise ValueError(f"{op}: saved has shape {saved_shape} but grad_output has shape "
                         f"{dy_shape}; they must match")
    xp, dtype, (saved, grad_output, x, weight) = float_inputs(
        op, saved=saved, grad_output=grad_output, x=x, weight=weight)
    _check_weight(op, weight)
    out_features, in_features = dy_shape[-1], x_shape[-1]
    if weight.shape != (out_features, in_features):
        raise ValueError(f"{op}: weight has shape {weight.shape}; grad_output and x imply "
                         f"({out_features}, {in_features})")
    dy_rows = _rows(grad_output, out_features)
    rows = dy_rows.shape[0]
    grad_pre = empty(xp, (rows, out_features), dtype)
    grad_x = empty(xp, x_shape, dtype) if input_grad else None
    grad_weight = empty(xp, (out_features, in_features), dtype) if weight_grad else None
    grad_bias = empty(xp, (out_features,), dtype) if bias else None
    _C.linear_activation_backward(code, _rows(saved, out_features), dy_rows, _rows(x, in_features),
                                  weight, grad_pre,
                                  None if grad_x is None else grad_x.reshape(rows, in_features),
                                  grad_weight, grad_bias, float(negative_slope))
    return grad_x, grad_weight, grad_bias


# --- convolution -------------------------------------------------------------------------
# conv1d and conv2d as PyTorch's F.conv1d / F.conv2d (cross-correlation): x (N, C, L) or
# (N, C, H, W), weight (K, C/groups, kernel...) -> (N, K, L_out) or (N, K, H_out, W_out).
# Unbatched inputs (C, L) / (C, H, W) give unbatched results. stride and dilation are an int
# or one int per spatial axis; padding is an int, one entry per spatial axis, 'valid' (none)
# or 'same' (the output has the input's size; stride must be 1; an odd total goes one more
# at the end, as PyTorch), and here each axis's entry may also be a pair (before, after).
# stride and dilation are parsed by the pooling section's _window_argument (a 1-tuple is
# repeated over the axes, as PyTorch). The shape checks (channels, groups, kernel larger
# than the padded input) are the binding's, shared with the kernels
# (_C.conv*d_output_shape). The backward functions take the same hyper-parameters as the
# forward, and the forward input's (or weight's) shape where the array itself is not needed.

def _conv_padding(op, padding, spatial, kernel, stride, dilation):
    """padding as the binding wants it: (before, after) for each spatial axis, flattened."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * (2 * spatial)
        if padding != "same":
            raise ValueError(f"{op}: padding must be 'valid', 'same', an int or a tuple, "
                             f"got {padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError(f"{op}: padding='same' is not supported for strided convolutions "
                             f"(stride {stride})")
        pairs = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            pairs += [total // 2, total - total // 2]  # the odd one at the end, as PyTorch
        return tuple(pairs)
    entries = (padding,) * spatial if isinstance(padding, (int, np.integer)) else padding
    try:
        entries = tuple(entries)
    except TypeError:
        entries = None
    message = (f"{op}: padding must be 'valid', 'same', an int, or one entry per spatial axis "
               f"(an int or a (before, after) pair), got {padding!r}")
    if entries is None or len(entries) != spatial:
        raise TypeError(message)
    pairs = []
    for entry in entries:
        pair = (entry, entry) if isinstance(entry, (int, np.integer)) else entry
        try:
            pair = tuple(pair)
        except TypeError:
            raise TypeError(message) from None
        if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                 for v in pair):
            raise TypeError(message)
        pairs += [int(v) for v in pair]
    return tuple(pairs)


def _conv_groups(op, groups):
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"{op}: groups must be an int, got {groups!r}")
    return int(groups)


def _conv_params(op, spatial, weight_shape, stride, padding, dilation, groups):
    """(stride, padding, dilation, groups) normalised for the binding. 'same' needs the
    kernel size, so weight_shape must have the right rank (else ValueError naming it)."""
    if len(weight_shape) != spatial + 2:
        layout = "(out_channels, in_channels/groups, kernel_size)" if spatial == 1 else \
            "(out_channels, in_channels/groups, kh, kw)"
        raise ValueError(f"{op}: weight must be {spatial + 2}-D {layout}, got shape "
                         f"{tuple(weight_shape)}")
    stride = _window_argument(op, "stride", stride, spatial)
    dilation = _window_argument(op, "dilation", dilation, spatial)
    padding = _conv_padding(op, padding, spatial, tuple(weight_shape[2:]), stride, dilation)
    return stride, padding, dilation, _conv_groups(op, groups)


def _conv_shape_argument(op, name, shape):
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{op}: {name} must be a tuple of ints, got {shape!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in shape):
        raise TypeError(f"{op}: {name} must be a tuple of ints, got {shape!r}")
    return tuple(int(v) for v in shape)


def _batched(op, name, shape, spatial):
    """True for (N, C, *spatial) inputs, False for unbatched (C, *spatial) ones."""
    if len(shape) not in (spatial + 1, spatial + 2):
        layout = "(N, C, L) or unbatched (C, L)" if spatial == 1 else \
            "(N, C, H, W) or unbatched (C, H, W)"
        raise ValueError(f"{op}: {name} must be {spatial + 2}-D or {spatial + 1}-D {layout}, got "
                         f"shape {tuple(shape)}")
    return len(shape) == spatial + 2


def _output_shape(op, spatial, x_shape, weight_shape, params, batched, x_name="x",
                  weight_name="weight"):
    """The kernels' (batched) output shape, after the binding's checks of every shape."""
    if not batched:  # the binding sees it with a batch of 1, and says so
        x_shape, x_name = (1,) + tuple(x_shape), x_name + " (unbatched, shown with a batch of 1)"
    return tuple(getattr(_C, f"conv{spatial}d_output_shape")(
        tuple(x_shape), tuple(weight_shape), *params, op=op, x_name=x_name,
        weight_name=weight_name))


def _conv_forward(op, spatial, x, weight, bias, stride, padding, dilation, groups, out):
    xp, dtype, (x, weight, bias) = float_inputs(op, x=x, weight=weight, bias=bias)
    params = _conv_params(op, spatial, weight.shape, stride, padding, dilation, groups)
    batched = _batched(op, "x", x.shape, spatial)
    y_shape = _output_shape(op, spatial, x.shape, weight.shape, params, batched)
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"{op}: bias has shape {bias.shape} but weight (shape {weight.shape}) "
                         f"has {weight.shape[0]} output channels; expected ({weight.shape[0]},)")
    y = output(xp, y_shape if batched else y_shape[1:], dtype, out, op)
    getattr(_C, f"conv{spatial}d_forward")(x if batched else x[None], weight, bias,
                                           _kernel_out(y, y_shape, op), *params)
    return y


def _conv_backward_input(op, spatial, grad_output, weight, input_shape, stride, padding,
                         dilation, groups, out):
    input_shape = _conv_shape_argument(op, "input_shape", input_shape)
    xp, dtype, (grad_output, weight) = float_inputs(op, grad_output=grad_output, weight=weight)
    params = _conv_params(op, spatial, weight.shape, stride, padding, dilation, groups)
    batched = _batched(op, "input_shape", input_shape, spatial)
    y_shape = _output_shape(op, spatial, input_shape, weight.shape, params, batched,
                            x_name="input_shape")
    expected = y_shape if batched else y_shape[1:]
    if tuple(grad_output.shape) != expected:
        raise ValueError(f"{op}: grad_output has shape {tuple(grad_output.shape)} but the "
                         f"convolution of an input {input_shape} with weight "
                         f"{tuple(weight.shape)} gives {expected}")
    dx = output(xp, input_shape, dtype, out, op)
    kernel_shape = input_shape if batched else (1,) + input_shape
    getattr(_C, f"conv{spatial}d_backward_input")(grad_output.reshape(y_shape), weight,
                                                  _kernel_out(dx, kernel_shape, op), *params)
    return dx


def _conv_backward_weight(op, spatial, grad_output, x, weight_shape, stride, padding,
                          dilation, groups, bias):
    weight_shape = _conv_shape_argument(op, "weight_shape", weight_shape)
    xp, dtype, (grad_output, x) = float_inputs(op, grad_output=grad_output, x=x)
    params = _conv_params(op, spatial, weight_shape, stride, padding, dilation, groups)
    batched = _batched(op, "x", x.shape, spatial)
    y_shape = _output_shape(op, spatial, x.shape, weight_shape, params, batched,
                            weight_name="weight_shape")
    expected = y_shape if batched else y_shape[1:]
    if tuple(grad_output.shape) != expected:
        raise ValueError(f"{op}: grad_output has shape {tuple(grad_output.shape)} but the "
                         f"convolution of x {tuple(x.shape)} with a weight of shape "
                         f"{weight_shape} gives {expected}")
    grad_weight = empty(xp, weight_shape, dtype)
    grad_bias = empty(xp, (weight_shape[0],), dtype) if bias else None
    getattr(_C, f"conv{spatial}d_backward_weight")(grad_output.reshape(y_shape),
                                                   x if batched else x[None], grad_weight,
                                                   grad_bias, *params)
    return grad_weight, grad_bias


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, out=None):
    """2-D convolution (cross-correlation), as PyTorch's F.conv2d.

    y[n, k, p, q] = bias[k] + sum over c, r, s of weight[k, c, r, s] *
    x[n, g * C/groups + c, p * stride_h - pad_top + r * dilation_h,
      q * stride_w - pad_left + s * dilation_w], with g the group of filter k and zeros
    outside the image.

    Shape:
        x: (N, C, H, W), or unbatched (C, H, W).
        weight: (K, C / groups, kh, kw).
        bias: (K,) or None.
        result: (N, K, H_out, W_out) (unbatched: (K, H_out, W_out)), where
        H_out = (H + pad_top + pad_bottom - dilation_h * (kh - 1) - 1) // stride_h + 1,
        likewise W_out.

    Example:
        >>> conv2d(np.ones((2, 3, 8, 8)), np.ones((4, 3, 3, 3)), padding=1).shape
        (2, 4, 8, 8)
    """
    return _conv_forward("conv2d", 2, x, weight, bias, stride, padding, dilation, groups, out)


def conv2d_backward_input(grad_output, weight, input_shape, stride=1, padding=0, dilation=1,
                          groups=1, out=None):
    """Gradient of conv2d with respect to its input x.

    Shape:
        grad_output: (N, K, H_out, W_out), the shape conv2d gave.
        weight: (K, C / groups, kh, kw).
        input_shape: x's shape, (N, C, H, W) or unbatched (C, H, W).
        result: an array of input_shape.
    """
    return _conv_backward_input("conv2d_backward_input", 2, grad_output, weight, input_shape,
                                stride, padding, dilation, groups, out)


def conv2d_backward_weight(grad_output, x, weight_shape, stride=1, padding=0, dilation=1,
                           groups=1, bias=True):
    """Gradients of conv2d with respect to weight and bias, summed over the batch.

    Shape:
        grad_output: (N, K, H_out, W_out), the shape conv2d gave.
        x: (N, C, H, W), the forward input (or unbatched (C, H, W)).
        weight_shape: (K, C / groups, kh, kw).
        result: (grad_weight of weight_shape, grad_bias (K,)), or (grad_weight, None) when
        ``bias`` is False.
    """
    return _conv_backward_weight("conv2d_backward_weight", 2, grad_output, x, weight_shape,
                                 stride, padding, dilation, groups, bias)


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, out=None):
    """1-D convolution (cross-correlation), as PyTorch's F.conv1d; computed by the conv2d
    kernels on images of height 1.

    Shape:
        x: (N, C, L), or unbatched (C, L).
        weight: (K, C / groups, kernel_size).
        bias: (K,) or None.
        result: (N, K, L_out) (unbatched: (K, L_out)), where
        L_out = (L + pad_left + pad_right - dilation * (kernel_size - 1) - 1) // stride + 1.

    Example:
        >>> conv1d(np.ones((2, 4, 200)), np.ones((16, 4, 9)), padding="same").shape
        (2, 16, 200)
    """
    return _conv_forward("conv1d", 1, x, weight, bias, stride, padding, dilation, groups, out)


def conv1d_backward_input(grad_output, weight, input_shape, stride=1, padding=0, dilation=1,
                          groups=1, out=None):
    """Gradient of conv1d with respect to its input x.

    Shape: grad_output (N, K, L_out), weight (K, C / groups, kernel_size), input_shape
    (N, C, L) or (C, L) -> an array of input_shape.
    """
    return _conv_backward_input("conv1d_backward_input", 1, grad_output, weight, input_shape,
                                stride, padding, dilation, groups, out)


def conv1d_backward_weight(grad_output, x, weight_shape, stride=1, padding=0, dilation=1,
                           groups=1, bias=True):
    """Gradients of conv1d with respect to weight and bias, summed over the batch.

    Shape: grad_output (N, K, L_out), x (N, C, L) or (C, L), weight_shape
    (K, C / groups, kernel_size) -> (grad_weight, grad_bias (K,) or None when bias is False).
    """
    return _conv_backward_weight("conv1d_backward_weight", 1, grad_output, x, weight_shape,
                                 stride, padding, dilation, groups, bias)


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
    return empty(xp, tuple(shape) if reduction == "none" else (), dtype)


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
    dpred = empty(xp, pred.shape, dtype)
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
    dprob = empty(xp, prob.shape, dtype)
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
    dlogits = empty(xp, logits.shape, dtype)
    _C.bce_with_logits_backward(logits, target, weight, pos_weight, grad_output, dlogits,
                                reduction)
    return dlogits




def _class_targets(op, target, xp):
    if (xp is np and type(target) is np.ndarray and target.dtype is _INT64
            and target.flags.c_contiguous):
        return target  # the common case: what index_input would return, unchanged
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
    drows = empty(xp, rows.shape, dtype)
    _C.cross_entropy_backward(rows, target, weight, grad_output, drows, ignore_index, reduction)
    if logits.ndim <= 2:
        return drows.reshape(logits.shape)
    moved_shape = (logits.shape[0],) + tuple(logits.shape[2:]) + (logits.shape[1],)
    return contiguous(xp, xp.moveaxis(drows.reshape(moved_shape), -1, 1))


# --- dropout and random numbers -------------------------------------------------------------
# Random numbers come from the counter-based Philox4x32-10 stream `seed`: element i of a
# call with `offset` is number offset + i of the stream, so a call is reproducible from
# (seed, offset) alone. Take both from ranvier.random.default_generator.philox_offset(n),
# which reserves the n numbers so that the next call draws fresh ones.

_STREAM_END = 1 << 64


def _stream_position(op, seed, offset, n):
    """seed and offset as Python ints, checked against the 64-bit counter range."""
    for name, value in (("seed", seed), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{op}: {name} must be an integer, got {type(value).__name__}")
    seed, offset = int(seed), int(offset)
    if not 0 <= seed < _STREAM_END:
        raise ValueError(f"{op}: seed must satisfy 0 <= seed < 2**64, got {seed}")
    if offset < 0 or offset + n > _STREAM_END:
        raise ValueError(f"{op}: offset must be >= 0 and offset + size <= 2**64, got offset {offset} "
                         f"for {n} numbers")
    return seed, offset


def _dropout_probability(op, p):
    try:
        p = float(p)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: p must be a number, got {type(p).__name__}") from None
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")
    return p


def dropout(x, p, seed, offset):
    """Zero each element with probability p and scale the rest by 1 / (1 - p).

    Element i is kept when number offset + i of Philox stream ``seed`` (uniform in [0, 1))
    is >= p. p == 0 returns a copy of x and an all-ones mask; p == 1 returns zeros and an
    all-zeros mask (no random numbers are drawn in either case).

    Shape: x (any) -> y (same shape and dtype), mask (same shape, uint8: 1 kept, 0 dropped).
    Returns (y, mask); pass mask and p to dropout_backward.
    """
    p = _dropout_probability("dropout", p)
    xp, dtype, (x,) = float_inputs("dropout", x=x)
    seed, offset = _stream_position("dropout", seed, offset, x.size)
    if p == 0.0:
        return x.copy(), xp.ones(x.shape, dtype=np.uint8)
    if p == 1.0:
        return xp.zeros(x.shape, dtype=dtype), xp.zeros(x.shape, dtype=np.uint8)
    y = empty(xp, x.shape, dtype)
    mask = empty(xp, x.shape, _UINT8)
    _C.dropout_forward(x, y, mask, p, seed, offset)
    return y, mask


def dropout_backward(grad_output, mask, p):
    """Gradient of dropout: grad_output * mask / (1 - p) (zeros when p == 1).

    Shape: grad_output (any), mask (same shape, uint8 from dropout) -> grad_input (same shape).
    """
    op = "dropout_backward"
    p = _dropout_probability(op, p)
    xp, dtype, (grad_output,) = float_inputs(op, grad_output=grad_output)
    mask = _as_array(mask, xp, op, "mask")
    if mask.dtype != np.uint8:
        raise TypeError(f"{op}: mask must have dtype uint8 (as returned by dropout), got {mask.dtype}")
    if tuple(mask.shape) != tuple(grad_output.shape):
        raise ValueError(f"{op}: mask has shape {tuple(mask.shape)} but grad_output has shape "
                         f"{tuple(grad_output.shape)}")
    if p == 1.0:
        return xp.zeros(grad_output.shape, dtype=dtype)
    mask = xp.ascontiguousarray(mask)
    grad_input = empty(xp, grad_output.shape, dtype)
    _C.dropout_backward(grad_output, mask, grad_input, p)
    return grad_input


def uniform(shape, seed, offset, dtype=np.float32, device="cpu"):
    """Uniform numbers in [0, 1): numbers offset .. offset + size - 1 of Philox stream ``seed``.

    Each has 24 random bits (exact in float32 and float64). The same numbers decide
    dropout's mask: dropout keeps element i when uniform(...)[i] >= p. ``device`` 'cpu'
    (a NumPy array) or 'cuda' / 'cuda:N' (a CuPy array on that GPU, filled there by the CUDA
    kernel): both give the very same numbers.

    Shape: ``shape`` (int or tuple of ints) -> array of that shape and ``dtype``.
    """
    op = "uniform"
    dtype = check_float_dtype(dtype, op, "dtype")
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in shape):
        raise ValueError(f"{op}: shape must be non-negative integers, got {shape}")
    shape = tuple(int(s) for s in shape)
    seed, offset = _stream_position(op, seed, offset, math.prod(shape))
    device = resolve_device(device, op)
    if device == "cpu":
        out = empty(np, shape, dtype)
        _C.uniform_fill(out, seed, offset)
        return out
    cupy = _cupy()
    with cupy.cuda.Device(int(device[5:])):  # allocate and fill on that GPU, as its current device
        out = cupy.empty(shape, dtype=dtype)
        _C.uniform_fill(out, seed, offset)
    return out


# --- optimizer updates ------------------------------------------------------------------------
# One fused, in-place update of a parameter array and its optimizer state, with PyTorch's
# single-tensor formulas (torch.optim.SGD, Adam, AdamW, RMSprop). param and the state
# buffers are written in place, so they are never converted or copied: each must be a
# C-contiguous, writable float32/float64 array of param's shape and dtype (else TypeError /
# ValueError). grad is only read and is converted to param's dtype if needed. The functions
# return None. ranvier.optim keeps the state and calls the multi-tensor forms below.


def _in_place_arrays(op, param, grad, **state):
    """Check param and the state buffers (never copied); return grad as param's dtype."""
    xp = array_module(param, grad, *state.values())
    for name, a in (("param", param), *state.items()):
        if a is None:
            continue
        if not (isinstance(a, np.ndarray) or is_cuda_array(a)):
            raise TypeError(f"{op}: {name} must be a NumPy or CuPy array (it is updated in place), "
                            f"got {type(a).__name__}")
        check_float_dtype(a.dtype, op, name)
        if name != "param":
            if a.dtype != param.dtype:
                raise TypeError(f"{op}: {name} has dtype {a.dtype} but param has dtype {param.dtype}; "
                                f"state buffers must have param's dtype")
            if tuple(a.shape) != tuple(param.shape):
                raise ValueError(f"{op}: {name} has shape {tuple(a.shape)} but param has shape "
                                 f"{tuple(param.shape)}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{op}: {name} of shape {tuple(a.shape)} is not C-contiguous; it is "
                             f"updated in place, so it cannot be copied")
        if not getattr(a.flags, "writeable", True):
            raise ValueError(f"{op}: {name} is read-only but it is updated in place")
    grad = _as_array(grad, xp, op, "grad")
    check_float_dtype(grad.dtype, op, "grad")
    if tuple(grad.shape) != tuple(param.shape):
        raise ValueError(f"{op}: grad has shape {tuple(grad.shape)} but param has shape {tuple(param.shape)}")
    return xp.ascontiguousarray(grad, dtype=param.dtype)


def _step_number(op, step):
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"{op}: step must be an integer, got {type(step).__name__}")
    return int(step)


def sgd_step(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, maximize=False, first_step=False):
    """In place: one torch.optim.SGD update of param (and momentum_buffer).

    g = grad (-grad if maximize) + weight_decay * param; with momentum != 0:
    buf = g when first_step else momentum * buf + (1 - dampening) * g, and the direction is
    g + momentum * buf (nesterov) or buf; param -= lr * direction.
    momentum_buffer is required when momentum != 0 (its contents are ignored on first_step).

    Shape: param, grad, momentum_buffer (any, all the same).
    """
    op = "sgd_step"
    grad = _in_place_arrays(op, param, grad, momentum_buffer=momentum_buffer)
    _C.sgd_step(param, grad, momentum_buffer, float(lr), float(momentum), float(dampening),
                float(weight_decay), bool(nesterov), bool(maximize), bool(first_step))


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr=1e-3, beta1=0.9,
              beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False,
              maximize=False):
    """In place: one torch.optim.Adam (or AdamW, decoupled_weight_decay=True) update.

    step is the update's number counted from 1 (for bias correction). Adam adds
    weight_decay * param to the gradient; AdamW multiplies param by 1 - lr * weight_decay.
    m = lerp(m, g, 1 - beta1); v = beta2 * v + (1 - beta2) * g^2; with amsgrad,
    max_exp_avg_sq = max(max_exp_avg_sq, v) replaces v (and is then required);
    param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps).

    Shape: param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (any, all the same).
    """
    op = "adam_step"
    step = _step_number(op, step)
    grad = _in_place_arrays(op, param, grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq,
                            max_exp_avg_sq=max_exp_avg_sq)
    _C.adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, float(lr), float(beta1), float(beta2),
                 float(eps), float(weight_decay), step, bool(decoupled_weight_decay), bool(amsgrad),
                 bool(maximize))


def rmsprop_step(param, grad, square_avg, momentum_buffer=None, grad_avg=None, *, lr=1e-2, alpha=0.99,
                 eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False):
    """In place: one torch.optim.RMSprop update.

    g = grad (-grad if maximize) + weight_decay * param; square_avg = alpha * square_avg +
    (1 - alpha) * g^2; avg = sqrt(square_avg - grad_avg^2) + eps when centered (grad_avg =
    lerp(grad_avg, g, 1 - alpha) first; then grad_avg is required), else sqrt(square_avg) + eps;
    momentum > 0: buf = momentum * buf + g / avg, param -= lr * buf (momentum_buffer required);
    else param -= lr * g / avg.

    Shape: param, grad, square_avg, momentum_buffer, grad_avg (any, all the same).
    """
    op = "rmsprop_step"
    grad = _in_place_arrays(op, param, grad, square_avg=square_avg, momentum_buffer=momentum_buffer,
                            grad_avg=grad_avg)
    _C.rmsprop_step(param, grad, square_avg, momentum_buffer, grad_avg, float(lr), float(alpha), float(eps),
                    float(weight_decay), float(momentum), bool(centered), bool(maximize))


# The multi-tensor forms update every parameter of a list in one call (one parallel loop on
# the CPU, one launch per up to 32 tensors on the GPU): all params of one call must share a
# dtype and a device. Each list holds one entry per parameter; each entry is checked as the
# single-tensor function checks it (messages say "<op>: parameter k: ...") and updated
# exactly as that function would update it, bit for bit. ranvier.optim uses these.


def _multi_grads(op, params, grads):
    """grads as a list, each converted to its param's dtype (as the single-tensor path does)."""
    params, grads = list(params), list(grads)
    if len(grads) != len(params):
        raise ValueError(f"{op}: grads has {len(grads)} entries but params has {len(params)}; give one per "
                         f"parameter")
    converted = []
    for k, (param, grad) in enumerate(zip(params, grads)):
        if (type(grad) is np.ndarray and type(param) is np.ndarray and grad.dtype == param.dtype
                and grad.flags.c_contiguous):
            converted.append(grad)  # the common case, with nothing to convert
        else:
            converted.append(_in_place_arrays(f"{op}: parameter {k}", param, grad))
    return params, converted


def _per_parameter(op, name, values, count):
    values = list(values)
    if len(values) != count:
        raise ValueError(f"{op}: {name} has {len(values)} entries but params has {count}; give one per parameter")
    return values


def sgd_step_multi(params, grads, momentum_buffers=None, *, first_steps=None, lr, momentum=0.0, dampening=0.0,
                   weight_decay=0.0, nesterov=False, maximize=False):
    """In place: sgd_step on every parameter of a list, in one call.

    momentum_buffers (one per parameter, or None when momentum == 0) and first_steps (one
    bool per parameter; default all False) are sgd_step's momentum_buffer and first_step.

    Shape: params[k], grads[k], momentum_buffers[k] (any, the same for each k).
    """
    op = "sgd_step_multi"
    params, grads = _multi_grads(op, params, grads)
    first_steps = [False] * len(params) if first_steps is None else \
        [bool(f) for f in _per_parameter(op, "first_steps", first_steps, len(params))]
    _C.sgd_step_multi(params, grads, None if momentum_buffers is None else list(momentum_buffers), first_steps,
                      float(lr), float(momentum), float(dampening), float(weight_decay), bool(nesterov),
                      bool(maximize))


def adam_step_multi(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs=None, *, steps, lr=1e-3, beta1=0.9,
                    beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False,
                    maximize=False):
    """In place: adam_step on every parameter of a list, in one call.

    steps holds each parameter's own step number (from 1): parameters that missed a step
    (no gradient) lag behind the others. max_exp_avg_sqs is needed with amsgrad only.

    Shape: params[k], grads[k], exp_avgs[k], exp_avg_sqs[k], max_exp_avg_sqs[k] (any, the
    same for each k).
    """
    op = "adam_step_multi"
    params, grads = _multi_grads(op, params, grads)
    steps = _per_parameter(op, "steps", steps, len(params))
    for step in steps:
        if type(step) is not int:  # plain ints (the optimizers') need no conversion
            steps = [_step_number(f"{op}: parameter {k}", step) for k, step in enumerate(steps)]
            break
    _C.adam_step_multi(params, grads, list(exp_avgs), list(exp_avg_sqs),
                       None if max_exp_avg_sqs is None else list(max_exp_avg_sqs), steps, float(lr), float(beta1),
                       float(beta2), float(eps), float(weight_decay), bool(decoupled_weight_decay), bool(amsgrad),
                       bool(maximize))


def rmsprop_step_multi(params, grads, square_avgs, momentum_buffers=None, grad_avgs=None, *, lr=1e-2, alpha=0.99,
                       eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False):
    """In place: rmsprop_step on every parameter of a list, in one call.

    momentum_buffers is needed when momentum > 0, grad_avgs when centered (one per parameter).

    Shape: params[k], grads[k], square_avgs[k], momentum_buffers[k], grad_avgs[k] (any, the
    same for each k).
    """
    op = "rmsprop_step_multi"
    params, grads = _multi_grads(op, params, grads)
    _C.rmsprop_step_multi(params, grads, list(square_avgs),
                          None if momentum_buffers is None else list(momentum_buffers),
                          None if grad_avgs is None else list(grad_avgs), float(lr), float(alpha), float(eps),
                          float(weight_decay), float(momentum), bool(centered), bool(maximize))

# --- pooling -------------------------------------------------------------------------------
# Max, average and adaptive average pooling with PyTorch's arguments and output sizes.
# Inputs are (N, C, L) for the 1-D functions and (N, C, H, W) for the 2-D ones, or unbatched
# (C, L) / (C, H, W) (the result is then unbatched too). kernel_size, stride, padding and
# dilation are an int or one int per spatial dimension; stride defaults to kernel_size;
# padding may be at most half the kernel size. The backward functions take the forward's
# input shape and return the gradient with respect to its input, of that shape.
# Max pooling's indices (int64, the output's shape) are the flat position of each window's
# maximum within its input plane (h * W + w; l in 1-D), as PyTorch returns them; the first
# maximum wins a tie and a NaN wins over every number.


def _window_argument(op, name, value, dims):
    """An int or a sequence of `dims` ints, as a tuple of `dims` ints."""
    values = (value,) * dims if isinstance(value, (int, np.integer)) else value
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a tuple of {dims} ints, got {value!r}") from None
    if len(values) == 1 and dims > 1:
        values = values * dims
    if len(values) != dims or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                  for v in values):
        raise TypeError(f"{op}: {name} must be an int or a tuple of {dims} ints, got {value!r}")
    return tuple(int(v) for v in values)


def _pool_window(op, dims, kernel_size, stride, padding, dilation=1):
    kernel = _window_argument(op, "kernel_size", kernel_size, dims)
    # PyTorch treats stride=None and stride=[] alike: the windows then tile the input.
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    stride = kernel if no_stride else _window_argument(op, "stride", stride, dims)
    return (kernel, stride, _window_argument(op, "padding", padding, dims),
            _window_argument(op, "dilation", dilation, dims))


def _pool_input(op, x, dims):
    """x as a contiguous float array with a batch axis; and whether it had none."""
    xp, dtype, (x,) = float_inputs(op, x=x)
    if x.ndim == dims + 1:
        return xp, dtype, x[None], True
    if x.ndim != dims + 2:
        spatial = "L" if dims == 1 else "H, W"
        raise ValueError(f"{op}: x of shape {tuple(x.shape)} must be {dims + 2}-D (N, C, {spatial}) "
                         f"or {dims + 1}-D unbatched (C, {spatial})")
    return xp, dtype, x, False


def _pool_grad_input(op, grad_output, input_shape, dims):
    """grad_output batched like input_shape, and the batched input shape."""
    try:
        input_shape = tuple(operator.index(s) for s in input_shape)
    except TypeError:
        raise TypeError(f"{op}: input_shape must be a tuple of ints, got {input_shape!r}") from None
    if len(input_shape) not in (dims + 1, dims + 2) or min(input_shape) < 0:
        raise ValueError(f"{op}: input_shape {input_shape} must be {dims + 2} (or {dims + 1} "
                         f"unbatched) non-negative sizes")
    xp, dtype, (grad_output,) = float_inputs(op, grad_output=grad_output)
    unbatched = len(input_shape) == dims + 1
    if grad_output.ndim != len(input_shape):
        raise ValueError(f"{op}: grad_output of shape {tuple(grad_output.shape)} and input_shape "
                         f"{input_shape} must have the same number of dimensions")
    if unbatched:
        return xp, dtype, grad_output[None], (1,) + input_shape, True
    return xp, dtype, grad_output, input_shape, False


def _max_pool(dims, x, kernel_size, stride, padding, dilation, ceil_mode):
    op = f"max_pool{dims}d"
    window = _pool_window(op, dims, kernel_size, stride, padding, dilation)
    xp, dtype, x, unbatched = _pool_input(op, x, dims)
    shape = _C.pool_output_shape("max", x.shape, *window, bool(ceil_mode))
    y = empty(xp, shape, dtype)
    indices = empty(xp, shape, _INT64)
    _C.max_pool_forward(x, y, indices, *window, bool(ceil_mode))
    return (y[0], indices[0]) if unbatched else (y, indices)


def _max_pool_backward(dims, grad_output, indices, input_shape, kernel_size, stride, padding, dilation,
                       ceil_mode):
    op = f"max_pool{dims}d_backward"
    # The forward's window, when given: checked against the shapes, and on the GPU it lets the
    # kernel gather each input's gradient (one thread per input) rather than walk each plane.
    window = {} if kernel_size is None else dict(zip(
        ("kernel_size", "stride", "padding", "dilation"),
        _pool_window(op, dims, kernel_size, stride, padding, dilation)), ceil_mode=bool(ceil_mode))
    xp, dtype, grad_output, input_shape, unbatched = _pool_grad_input(op, grad_output, input_shape, dims)
    indices = _as_array(indices, xp, op, "indices")
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be integers (as returned by max_pool{dims}d), got "
                        f"dtype {indices.dtype}")
    indices = contiguous(xp, indices, np.int64)
    if unbatched:
        indices = indices[None]
    if tuple(indices.shape) != tuple(grad_output.shape):
        raise ValueError(f"{op}: indices of shape {tuple(indices.shape)} and grad_output of shape "
                         f"{tuple(grad_output.shape)} must match")
    grad_input = empty(xp, input_shape, dtype)
    _C.max_pool_backward(grad_output, indices, grad_input, **window)
    return grad_input[0] if unbatched else grad_input


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Maximum over sliding windows along the last axis (PyTorch's F.max_pool1d).

    Shape: x (N, C, L) or (C, L) -> (y, indices), both (N, C, L_out) or (C, L_out) with
    L_out = floor((L + 2 padding - dilation (kernel_size - 1) - 1) / stride) + 1 (ceil with
    ceil_mode). indices (int64) holds the position l of each maximum, for max_pool1d_backward.
    """
    return _max_pool(1, x, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Maximum over sliding 2-D windows (PyTorch's F.max_pool2d with return_indices=True).

    Shape: x (N, C, H, W) or (C, H, W) -> (y, indices), both (N, C, H_out, W_out) (or
    unbatched), each output size as in max_pool1d. indices (int64) holds h * W + w of each
    maximum within its input plane, for max_pool2d_backward.

    Example:
        >>> y, idx = max_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2)
        >>> y[0, 0], idx[0, 0]
        (array([[ 5.,  7.], [13., 15.]]), array([[ 5,  7], [13, 15]]))
    """
    return _max_pool(2, x, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool1d_backward(grad_output, indices, input_shape, kernel_size=None, stride=None, padding=0,
                        dilation=1, ceil_mode=False):
    """Gradient of max_pool1d: each grad_output element goes to the input position in
    `indices`; positions that are the maximum of several windows get the sum.

    The forward's window arguments are optional: when kernel_size is given, the window is
    checked against the shapes, and CuPy arrays take the faster kernel that gathers each
    input's gradient (the indices must then be the forward's own). Results are the same.

    Shape: grad_output and indices (N, C, L_out), input_shape (N, C, L) -> (N, C, L)
    (or all unbatched).
    """
    return _max_pool_backward(1, grad_output, indices, input_shape, kernel_size, stride, padding, dilation,
                              ceil_mode)


def max_pool2d_backward(grad_output, indices, input_shape, kernel_size=None, stride=None, padding=0,
                        dilation=1, ceil_mode=False):
    """Gradient of max_pool2d (see max_pool1d_backward, also for the optional window).

    Shape: grad_output and indices (N, C, H_out, W_out), input_shape (N, C, H, W) ->
    (N, C, H, W) (or all unbatched).
    """
    return _max_pool_backward(2, grad_output, indices, input_shape, kernel_size, stride, padding, dilation,
                              ceil_mode)


def _divisor_override(op, divisor_override):
    if divisor_override is None:
        return 0
    if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)):
        raise TypeError(f"{op}: divisor_override must be a positive int or None, got {divisor_override!r}")
    if divisor_override <= 0:
        raise ValueError(f"{op}: divisor_override must be positive, got {divisor_override}")
    return int(divisor_override)


def _avg_pool(dims, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    op = f"avg_pool{dims}d"
    kernel, stride, padding, _ = _pool_window(op, dims, kernel_size, stride, padding)
    divisor = _divisor_override(op, divisor_override)
    xp, dtype, x, unbatched = _pool_input(op, x, dims)
    shape = _C.pool_output_shape("avg", x.shape, kernel, stride, padding, (1,) * dims, bool(ceil_mode))
    y = empty(xp, shape, dtype)
    _C.avg_pool_forward(x, y, kernel, stride, padding, bool(ceil_mode), bool(count_include_pad), divisor)
    return y[0] if unbatched else y


def _avg_pool_backward(dims, grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override):
    op = f"avg_pool{dims}d_backward"
    kernel, stride, padding, _ = _pool_window(op, dims, kernel_size, stride, padding)
    divisor = _divisor_override(op, divisor_override)
    xp, dtype, grad_output, input_shape, unbatched = _pool_grad_input(op, grad_output, input_shape, dims)
    grad_input = empty(xp, input_shape, dtype)
    _C.avg_pool_backward(grad_output, grad_input, kernel, stride, padding, bool(ceil_mode),
                         bool(count_include_pad), divisor)
    return grad_input[0] if unbatched else grad_input


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over sliding windows along the last axis (PyTorch's F.avg_pool1d).

    With count_include_pad (the default) the zero padding counts in each window's size;
    without, only the input elements do.

    Shape: x (N, C, L) or (C, L) -> (N, C, L_out) or (C, L_out), L_out as in max_pool1d
    with dilation 1.
    """
    return _avg_pool(1, x, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over sliding 2-D windows (PyTorch's F.avg_pool2d); divisor_override, when given,
    replaces every window's size as the divisor.

    Shape: x (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out) or (C, H_out, W_out).
    """
    return _avg_pool(2, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def avg_pool1d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True):
    """Gradient of avg_pool1d (same window arguments): each grad_output element is spread
    evenly over its window.

    Shape: grad_output (N, C, L_out), input_shape (N, C, L) -> (N, C, L) (or unbatched).
    """
    return _avg_pool_backward(1, grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                              count_include_pad, None)


def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None):
    """Gradient of avg_pool2d (same window arguments).

    Shape: grad_output (N, C, H_out, W_out), input_shape (N, C, H, W) -> (N, C, H, W)
    (or unbatched).
    """
    return _avg_pool_backward(2, grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                              count_include_pad, divisor_override)


def _adaptive_output_size(op, output_size, spatial_shape):
    """output_size (an int, or a tuple whose None entries keep the input's size) as a tuple."""
    dims = len(spatial_shape)
    sizes = (output_size,) * dims if output_size is None or isinstance(output_size, (int, np.integer)) \
        else output_size
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError(f"{op}: output_size must be an int or a tuple of {dims}, got {output_size!r}") from None
    if len(sizes) != dims or any(s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer)))
                                 for s in sizes):
        raise TypeError(f"{op}: output_size must be an int or a tuple of {dims} ints (or None), "
                        f"got {output_size!r}")
    sizes = tuple(int(n) if s is None else int(s) for s, n in zip(sizes, spatial_shape))
    if min(sizes) < 1:
        raise ValueError(f"{op}: output_size must be positive, got {output_size!r}")
    return sizes


def _adaptive_avg_pool(dims, x, output_size):
    op = f"adaptive_avg_pool{dims}d"
    xp, dtype, x, unbatched = _pool_input(op, x, dims)
    sizes = _adaptive_output_size(op, output_size, x.shape[2:])
    y = empty(xp, tuple(x.shape[:2]) + sizes, dtype)
    _C.adaptive_avg_pool_forward(x, y)
    return y[0] if unbatched else y


def _adaptive_avg_pool_backward(dims, grad_output, input_shape):
    op = f"adaptive_avg_pool{dims}d_backward"
    xp, dtype, grad_output, input_shape, unbatched = _pool_grad_input(op, grad_output, input_shape, dims)
    grad_input = empty(xp, input_shape, dtype)
    _C.adaptive_avg_pool_backward(grad_output, grad_input)
    return grad_input[0] if unbatched else grad_input


def adaptive_avg_pool1d(x, output_size):
    """Mean over output_size bins along the last axis (PyTorch's F.adaptive_avg_pool1d): bin i
    covers floor(i L / L_out) .. ceil((i + 1) L / L_out) - 1, so bins overlap when L_out does
    not divide L. output_size=1 is global average pooling.

    Shape: x (N, C, L) or (C, L) -> (N, C, output_size) or (C, output_size).
    """
    return _adaptive_avg_pool(1, x, output_size)


def adaptive_avg_pool2d(x, output_size):
    """Mean over an output_size grid of bins (PyTorch's F.adaptive_avg_pool2d; bins per axis
    as in adaptive_avg_pool1d). output_size is an int, or (H_out, W_out) where None keeps
    the input's size.

    Shape: x (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out) or (C, H_out, W_out).
    """
    return _adaptive_avg_pool(2, x, output_size)


def adaptive_avg_pool1d_backward(grad_output, input_shape):
    """Gradient of adaptive_avg_pool1d: each grad_output element spread evenly over its bin.

    Shape: grad_output (N, C, L_out), input_shape (N, C, L) -> (N, C, L) (or unbatched).
    """
    return _adaptive_avg_pool_backward(1, grad_output, input_shape)


def adaptive_avg_pool2d_backward(grad_output, input_shape):
    """Gradient of adaptive_avg_pool2d.

    Shape: grad_output (N, C, H_out, W_out), input_shape (N, C, H, W) -> (N, C, H, W)
    (or unbatched).
    """
    return _adaptive_avg_pool_backward(2, grad_output, input_shape)


# --- batch normalisation -------------------------------------------------------------------
# PyTorch's batch norm over axis 1 of x (N, C, *): each channel is normalised over its
# N * prod(*) values. Training mode uses the batch mean and biased variance, and updates
# running_mean / running_var IN PLACE (the variance unbiased, n / (n - 1)) with
# running = (1 - momentum) * running + momentum * batch. Evaluation mode uses the running
# statistics. Both return the statistics they used, (mean, 1 / sqrt(var + eps)), which
# batch_norm_backward takes. momentum=None (a cumulative average) is the layer's business:
# nn.BatchNorm* passes momentum = 1 / num_batches_tracked.


def _running_stat(op, name, a, dtype, xp, in_place):
    """A running statistic in the computation dtype: the array itself when it can be updated
    in place, else a converted copy (copied back after the update when in_place)."""
    if a is None:
        return None, False
    if in_place:
        if not (isinstance(a, np.ndarray) or is_cuda_array(a)):
            raise TypeError(f"{op}: {name} must be a NumPy or CuPy array (it is updated in place "
                            f"when training), got {type(a).__name__}")
        if not getattr(a.flags, "writeable", True):
            raise ValueError(f"{op}: {name} is read-only but it is updated in place when training")
    a = _as_array(a, xp, op, name)
    check_float_dtype(a.dtype, op, name)
    if a.dtype == dtype and a.flags.c_contiguous:
        return a, False
    return contiguous(xp, a, dtype), in_place


def _momentum_argument(op, momentum):
    if momentum is None:
        raise TypeError(f"{op}: momentum must be a number; momentum=None (cumulative average) "
                        "is handled by nn.BatchNorm*, which passes 1 / num_batches_tracked")
    return float(momentum)


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation: (x - mean) / sqrt(var + eps) * weight + bias per channel (axis 1).

    training=True: mean and (biased) var are the batch's, over every axis but 1; running_mean
    and running_var, when given, are updated in place (see above; var unbiased). Needs more
    than one value per channel. training=False: running_mean and running_var are required
    and used. weight and bias (C,) are optional (1 and 0). The statistics are computed in
    the dtype of x (float64 if x, weight or bias is float64); running statistics of another
    dtype are converted, and written back to their own dtype after the update.

    Shape: x (N, C, *), the rest (C,) -> (y (N, C, *), saved_mean (C,), saved_invstd (C,)).
    Pass x, saved_mean, saved_invstd, weight and the same `training` to batch_norm_backward.
    """
    op = "batch_norm"
    training = bool(training)
    momentum = _momentum_argument(op, momentum)
    xp, dtype, (x, weight, bias) = float_inputs(op, x=x, weight=weight, bias=bias)
    if x.ndim < 2:
        raise ValueError(f"{op}: x of shape {tuple(x.shape)} must have at least 2 dimensions "
                         "(N, C, ...): channels are axis 1")
    stats = [_running_stat(op, name, a, dtype, xp, in_place=training)
             for name, a in (("running_mean", running_mean), ("running_var", running_var))]
    (mean_work, mean_copied), (var_work, var_copied) = stats
    channels = x.shape[1]
    y = empty(xp, x.shape, dtype)
    saved_mean = empty(xp, (channels,), dtype)
    saved_invstd = empty(xp, (channels,), dtype)
    _C.batch_norm_forward(x, y, weight, bias, mean_work, var_work, saved_mean, saved_invstd,
                          training, momentum, float(eps))
    if mean_copied:
        running_mean[...] = mean_work
    if var_copied:
        running_var[...] = var_work
    return y, saved_mean, saved_invstd


def batch_norm_backward(grad_output, x, saved_mean, saved_invstd, weight=None, training=False):
    """Gradients of batch_norm with respect to x, weight and bias.

    With x_hat = (x - saved_mean) * saved_invstd and sums over every axis but 1 (n values
    per channel): grad_bias = sum(grad_output), grad_weight = sum(grad_output * x_hat);
    training=True differentiates through the batch statistics,
    grad_x = weight * saved_invstd * (grad_output - grad_bias / n - x_hat * grad_weight / n);
    training=False treats them as constants, grad_x = weight * saved_invstd * grad_output.

    Shape: grad_output and x (N, C, *), saved_mean, saved_invstd, weight (C,) ->
    (grad_x (N, C, *), grad_weight (C,), grad_bias (C,)).
    """
    op = "batch_norm_backward"
    xp, dtype, (grad_output, x, saved_mean, saved_invstd, weight) = float_inputs(
        op, grad_output=grad_output, x=x, saved_mean=saved_mean, saved_invstd=saved_invstd, weight=weight)
    if x.ndim < 2:
        raise ValueError(f"{op}: x of shape {tuple(x.shape)} must have at least 2 dimensions "
                         "(N, C, ...): channels are axis 1")
    channels = x.shape[1]
    grad_x = empty(xp, x.shape, dtype)
    grad_weight = empty(xp, (channels,), dtype)
    grad_bias = empty(xp, (channels,), dtype)
    _C.batch_norm_backward(grad_output, x, saved_mean, saved_invstd, weight, grad_x, grad_weight,
                           grad_bias, bool(training))
    return grad_x, grad_weight, grad_bias
