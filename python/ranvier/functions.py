"""The differentiable operations behind Tensor's operators and methods.

Each operation is a Function (see ranvier.autograd) with its gradient rule right below its
forward. Forward and backward see arrays (NumPy or CuPy), never Tensors. Elementwise math
uses the array module directly (NumPy and CuPy agree on it); matrix products go through
ranvier.ops so that they run on our kernels. Broadcasting binary ops sum each gradient back
to its input's shape (`sum_to`).
"""

from __future__ import annotations

import contextlib

import numpy as np

from . import ops
from ._arrays import array_module, device_name, to_device
from .autograd import Function


def sum_to(grad, shape):
    """Sum a broadcast gradient back to `shape`: over leading axes, and axes where shape has 1."""
    shape = tuple(shape)
    if tuple(grad.shape) == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and grad.shape[lead + i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _shape(value):
    return tuple(np.shape(value)) if not hasattr(value, "shape") else tuple(value.shape)


def _xp(*values):
    return array_module(*[v for v in values if hasattr(v, "shape") and not np.isscalar(v)])


def _quiet(xp):
    """Silence NumPy's divide/invalid warnings: like PyTorch, 1/0 is inf and log(-1) nan quietly."""
    return np.errstate(all="ignore") if xp is np else contextlib.nullcontext()


# --- arithmetic (broadcasting) -----------------------------------------------------------

class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = _shape(a), _shape(b)
        return a + b

    @staticmethod
    def backward(ctx, grad):
        shape_a, shape_b = ctx.shapes
        return sum_to(grad, shape_a), sum_to(grad, shape_b)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = _shape(a), _shape(b)
        return a - b

    @staticmethod
    def backward(ctx, grad):
        shape_a, shape_b = ctx.shapes
        return sum_to(grad, shape_a), (sum_to(-grad, shape_b) if ctx.needs_input_grad[1] else None)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_arrays
        grad_a = sum_to(grad * b, _shape(a)) if ctx.needs_input_grad[0] else None
        grad_b = sum_to(grad * a, _shape(b)) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        with _quiet(_xp(a, b)):
            return a / b

    @staticmethod
    def backward(ctx, grad):
        # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        a, b = ctx.saved_arrays
        with _quiet(_xp(grad)):
            grad_a = sum_to(grad / b, _shape(a)) if ctx.needs_input_grad[0] else None
            grad_b = sum_to(-grad * a / (b * b), _shape(b)) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Pow(Function):
    """base ** exponent, either of which may be a Tensor or a plain number/array."""

    @staticmethod
    def forward(ctx, base, exponent):
        xp = _xp(base, exponent)
        with _quiet(xp):
            out = base ** exponent
        ctx.save_for_backward(base, exponent, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        base, exponent, out = ctx.saved_arrays
        xp = _xp(grad)
        grad_base = grad_exponent = None
        with _quiet(xp):
            if ctx.needs_input_grad[0]:
                # d/db b^e = e * b^(e-1); defined as 0 where e == 0 (so 0^0 has gradient 0).
                local = xp.where(exponent == 0, 0, exponent * base ** (exponent - 1))
                grad_base = sum_to(grad * local, _shape(base))
            if ctx.needs_input_grad[1]:
                # d/de b^e = b^e * log(b); 0 where b == 0 and e >= 0 (the limit), as PyTorch.
                local = xp.where((base == 0) & (exponent >= 0), 0, out * xp.log(base))
                grad_exponent = sum_to(grad * local, _shape(exponent))
        return grad_base, grad_exponent


def _matmul_nd(a, b, trans_a=False, trans_b=False):
    """op(a) @ op(b) for a, b of >= 2 dims with NumPy's batch broadcasting, through ops.matmul.

    a (..., m, k) (or (..., k, m) with trans_a), b (..., k, n) (or (..., n, k)) -> (..., m, n).
    """
    if a.ndim == 2 and b.ndim == 2:
        return ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    if b.ndim == 2 and not trans_a:
        # The common (batch, rows, in) @ (in, out) case: fold the batch into rows, no copies.
        rows = int(np.prod(a.shape[:-1]))
        out = ops.matmul(a.reshape(rows, a.shape[-1]), b, trans_b=trans_b)
        return out.reshape(a.shape[:-1] + out.shape[-1:])
    xp = array_module(a, b)
    batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    count = int(np.prod(batch))
    a3 = xp.broadcast_to(a, batch + a.shape[-2:]).reshape((count,) + a.shape[-2:])
    b3 = xp.broadcast_to(b, batch + b.shape[-2:]).reshape((count,) + b.shape[-2:])
    out = ops.matmul(a3, b3, trans_a=trans_a, trans_b=trans_b)
    return out.reshape(batch + out.shape[-2:])


class MatMul(Function):
    """torch.matmul semantics: 1-D operands are promoted to a row (a) or a column (b) and
    that axis is removed from the result; other leading axes broadcast as batch axes."""

    op_name = "matmul"

    @staticmethod
    def forward(ctx, a, b):
        a, b = (np.asarray(v) if not hasattr(v, "ndim") else v for v in (a, b))
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes "
                             f"{tuple(a.shape)} and {tuple(b.shape)} (use * for scalars)")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be "
                             f"multiplied ({a.shape[-1]} != {b.shape[-2 if b.ndim > 1 else 0]})")
        ctx.save_for_backward(a, b)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        out = _matmul_nd(a2, b2)
        if b.ndim == 1:
            out = out[..., 0]
        if a.ndim == 1:
            out = out[..., 0, :] if b.ndim > 1 else out[..., 0]
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_arrays
        a2 = a[None, :] if a.ndim == 1 else a    # (..., m, k)
        b2 = b[:, None] if b.ndim == 1 else b    # (..., k, n)
        if b.ndim == 1:
            grad = grad[..., None]
        if a.ndim == 1:
            grad = grad[..., None, :]             # grad (..., m, n)
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            # dL/da = grad @ b^T, summed over the batch axes that a was broadcast along
            grad_a = sum_to(_matmul_nd(grad, b2, trans_b=True), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            # dL/db = a^T @ grad
            if b2.ndim == 2 and a2.ndim > 2:  # sum over the batch inside one GEMM
                rows = int(np.prod(a2.shape[:-1]))
                flat = ops.matmul(a2.reshape(rows, a2.shape[-1]),
                                  grad.reshape(rows, grad.shape[-1]), trans_a=True)
                grad_b = flat.reshape(b.shape)
            else:
                grad_b = sum_to(_matmul_nd(a2, grad, trans_a=True), b2.shape).reshape(b.shape)
        return grad_a, grad_b


# --- elementwise math --------------------------------------------------------------------

class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        with _quiet(_xp(x)):
            y = _xp(x).exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_arrays
        return grad * y


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        with _quiet(_xp(x)):
            return _xp(x).log(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_arrays
        with _quiet(_xp(x)):
            return grad / x


class Sqrt(Function):
    @staticmethod
    def forward(ctx, x):
        with _quiet(_xp(x)):
            y = _xp(x).sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_arrays
        with _quiet(_xp(y)):
            return grad / (2 * y)


class Abs(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _xp(x).abs(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_arrays
        return grad * _xp(x).sign(x)  # 0 at x == 0, as PyTorch


class Clamp(Function):
    @staticmethod
    def forward(ctx, x, min, max):
        xp = _xp(x)
        y = x
        if min is not None:
            y = xp.maximum(y, xp.asarray(min, dtype=x.dtype))
        if max is not None:
            y = xp.minimum(y, xp.asarray(max, dtype=x.dtype))
        # The gradient passes where x lies inside [min, max] (boundaries included).
        inside = xp.ones(x.shape, dtype=bool)
        if min is not None:
            inside &= x >= min
        if max is not None:
            inside &= x <= max
        ctx.save_for_backward(inside)
        return y

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_arrays
        return grad * inside, None, None


class Cast(Function):
    """A copy in another dtype (or the same one: clone); the gradient is cast back."""

    @staticmethod
    def forward(ctx, x, dtype):
        ctx.dtype = x.dtype
        return x.astype(dtype, copy=True)

    @staticmethod
    def backward(ctx, grad):
        return grad.astype(ctx.dtype, copy=False), None


class ToDevice(Function):
    """Copy an array to another device ('cpu' or 'cuda:N'); the gradient is copied back."""

    @staticmethod
    def forward(ctx, x, device):
        ctx.device = device_name(x)
        return to_device(x, device)

    @staticmethod
    def backward(ctx, grad):
        return to_device(grad, ctx.device), None


# --- reductions ----------------------------------------------------------------------------

def normalize_dims(dim, ndim, op):
    """dim (None, an int or a sequence of ints, negatives allowed) -> sorted tuple of axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    rank = max(ndim, 1)  # a 0-d tensor accepts dim 0 / -1, as PyTorch
    axes = []
    for d in dims:
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool):
            raise TypeError(f"{op}: dim must be an int or a tuple of ints, got {dim!r}")
        if not -rank <= d < rank:
            raise IndexError(f"{op}: dim {d} is out of range for a tensor with {ndim} dimensions "
                             f"(expected -{rank} <= dim < {rank})")
        axes.append(int(d) % rank)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: dim {dim!r} names an axis twice")
    return tuple(sorted(axes)) if ndim > 0 else ()


def _expand_reduced(grad, shape, axes, keepdim):
    """Broadcast the gradient of a reduction over `axes` back to the input `shape`."""
    xp = array_module(grad)
    if not keepdim and axes:
        grad = xp.expand_dims(grad, axes)
    return xp.broadcast_to(grad, shape)


class Sum(Function):
    @staticmethod
    def forward(ctx, x, axes, keepdim):
        ctx.shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
        return _xp(x).sum(x, axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        return _expand_reduced(grad, ctx.shape, ctx.axes, ctx.keepdim), None, None


class Mean(Function):
    @staticmethod
    def forward(ctx, x, axes, keepdim):
        ctx.shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
        ctx.count = int(np.prod([x.shape[a] for a in axes]))
        with _quiet(_xp(x)):
            return _xp(x).mean(x, axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        with _quiet(_xp(grad)):
            grad = grad / ctx.count
        return _expand_reduced(grad, ctx.shape, ctx.axes, ctx.keepdim), None, None


class MaxAll(Function):
    """max or min over all elements; the gradient is shared evenly by tied extreme elements."""

    @staticmethod
    def forward(ctx, x, largest):
        xp = _xp(x)
        if x.size == 0:
            raise ValueError(f"{'max' if largest else 'min'}: the tensor is empty; give dim= or "
                             f"check the input")
        y = x.max() if largest else x.min()
        ctx.save_for_backward(x == y)
        return xp.asarray(y)

    @staticmethod
    def backward(ctx, grad):
        (ties,) = ctx.saved_arrays
        return grad * ties / ties.sum(), None


class MaxDim(Function):
    """max or min along one axis; the gradient goes to the arg-max (the first one on ties)."""

    @staticmethod
    def forward(ctx, x, axis, keepdim, largest):
        xp = _xp(x)
        if x.shape[axis] == 0:
            raise ValueError(f"{'max' if largest else 'min'}: cannot reduce axis {axis} of "
                             f"length 0 (shape {tuple(x.shape)})")
        index = (x.argmax if largest else x.argmin)(axis=axis)
        index = xp.expand_dims(index, axis)
        ctx.shape, ctx.axis, ctx.keepdim = x.shape, axis, keepdim
        ctx.save_for_backward(index)
        values = xp.take_along_axis(x, index, axis=axis)
        return values if keepdim else values.squeeze(axis)

    @staticmethod
    def backward(ctx, grad):
        (index,) = ctx.saved_arrays
        xp = _xp(grad)
        if not ctx.keepdim:
            grad = xp.expand_dims(grad, ctx.axis)
        positions = xp.arange(ctx.shape[ctx.axis]).reshape(
            [-1 if a == ctx.axis else 1 for a in range(len(ctx.shape))])
        return xp.where(positions == index, grad, xp.zeros((), dtype=grad.dtype)), None, None, None


# --- shapes and indexing -----------------------------------------------------------------

class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape), None


class Permute(Function):
    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = axes
        return x.transpose(axes)

    @staticmethod
    def backward(ctx, grad):
        return grad.transpose(tuple(np.argsort(ctx.axes))), None


def _is_basic_index(index):
    """True when indexing uses only ints, slices, None and Ellipsis (each element at most once)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, slice)
               or (isinstance(p, (int, np.integer)) and not isinstance(p, bool)) for p in parts)


def _scatter_add(xp, target, index, values):
    """target[index] += values, accumulating repeated indices (np.add.at; on the GPU
    cupy.add.at where this CuPy has it, else cupyx.scatter_add, its older name)."""
    if xp is np or hasattr(xp.add, "at"):
        xp.add.at(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)


class Index(Function):
    @staticmethod
    def forward(ctx, x, index):
        ctx.shape, ctx.index = x.shape, index
        return x[index]

    @staticmethod
    def backward(ctx, grad):
        xp = _xp(grad)
        grad_x = xp.zeros(ctx.shape, dtype=grad.dtype)
        if _is_basic_index(ctx.index):
            grad_x[ctx.index] = grad
        else:
            # Integer arrays may repeat an element: add.at accumulates where x[i] = g would not.
            _scatter_add(xp, grad_x, ctx.index, grad)
        return grad_x, None
