"""Tensor: an array (NumPy on the CPU, CuPy on the GPU), its gradient, and the op that made it.

``ranvier.tensor(data)`` follows PyTorch's dtype rules: Python floats (and lists holding
any) become float32, Python ints int64, bools bool; NumPy arrays keep their dtype. Only
float32 and float64 tensors can require gradients; float16 is not supported at all.

Arithmetic follows NumPy's broadcasting and type promotion (a float32 tensor times a
Python float stays float32). Every differentiable operation is a Function in
ranvier.functions (or ranvier.nn.functional for the activations), recorded while gradients
are enabled; ``backward()`` (ranvier.autograd) fills the ``.grad`` of the leaves.

In-place operations (``zero_``, ``add_``, ``+=``, ``x[i] = v``...) are refused on a leaf
that requires grad unless they run under ``ranvier.no_grad()`` (parameter updates), and on
any tensor that is part of a graph. There is no version counter: modifying in place an
array that a recorded op has saved (through ``.data`` or a detached alias) before calling
backward() gives wrong gradients without an error, so do not.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from . import autograd
from . import functions as fn
from ._arrays import (array_module, device_name, is_cuda_array, is_device_index, names_dtype,
                      resolve_device, to_device)
from .autograd import is_grad_enabled
from .random import default_generator

__all__ = ["Tensor", "tensor", "from_numpy", "zeros", "ones", "zeros_like", "ones_like", "full",
           "empty", "randn", "rand", "arange"]

ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


# --- dtype rules -------------------------------------------------------------------------

def check_dtype(dtype, op: str) -> np.dtype:
    """A dtype ranvier tensors can hold (float32/64, integers, bool), or a clear TypeError."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{op}: {dtype!r} is not a dtype") from None
    if dtype == np.float16:
        raise TypeError(f"{op}: float16 is not supported; use float32 (ranvier's kernels "
                        f"compute in float32 or float64)")
    if dtype.kind == "f" and dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: dtype {dtype} is not supported; use float32 or float64")
    if dtype.kind not in "fiub":
        raise TypeError(f"{op}: dtype {dtype} is not supported; use float32, float64, an "
                        f"integer type or bool")
    return dtype


def _is_array(data) -> bool:
    return isinstance(data, (np.ndarray, np.generic)) or hasattr(data, "__cuda_array_interface__")


def _as_array(data, dtype, copy: bool, op: str):
    """data (a Tensor, an array or nested Python numbers) -> an array under the dtype rules."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        dtype = check_dtype(dtype, op)
    if _is_array(data):
        xp = array_module(data)
        array = xp.array(data, dtype=dtype, copy=True) if copy else xp.asarray(data, dtype=dtype)
    else:
        try:
            array = np.asarray(data)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"{op}: cannot make a tensor from this data ({exc})") from None
        if array.dtype.kind == "O":
            raise TypeError(f"{op}: cannot make a tensor from an object of type "
                            f"{type(data).__name__}")
        if dtype is None:  # PyTorch's defaults for Python numbers
            if array.dtype.kind == "f":
                dtype = np.dtype(np.float32)
            elif array.dtype.kind in "iu":
                dtype = np.dtype(np.int64)
        if dtype is not None:
            array = array.astype(dtype)
    if isinstance(array, np.generic):
        array = np.asarray(array)
    check_dtype(array.dtype, op)
    return array


def _check_can_require_grad(dtype, op):
    if np.dtype(dtype).kind != "f":
        raise TypeError(f"{op}: only floating-point tensors can require gradients; this tensor "
                        f"has dtype {np.dtype(dtype)} (convert with .float() first)")


def _unwrap(value):
    return value.data if isinstance(value, Tensor) else value


def _operand(value, like):
    """The other operand of a binary op: a Tensor, a Python number, or an array on like's device."""
    if isinstance(value, Tensor) or isinstance(value, (bool, int, float)):
        return value
    if _is_array(value):
        return value
    return array_module(like).asarray(value)


# --- the Tensor --------------------------------------------------------------------------

class Tensor:
    """An n-dimensional array that can record the operations applied to it for backward().

    ``Tensor(data, requires_grad=False, dtype=None)`` wraps an array without copying it
    when it already has an accepted dtype (like ``torch.as_tensor``); use ``ranvier.tensor``
    for a copy. Attributes: ``data`` (the array), ``grad`` (None or a Tensor of the same
    shape), ``grad_fn`` (the Function that made it, None for leaves), ``requires_grad``.
    """

    # ndarray + Tensor must reach Tensor.__radd__ rather than NumPy treating the Tensor as
    # an array and dropping the graph.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self._data = _as_array(data, dtype, copy=False, op="Tensor")
        self._grad = None
        self._grad_fn = None
        self._requires_grad = False
        if requires_grad:
            self.requires_grad = True

    @classmethod
    def _from_array(cls, array, grad_fn=None):
        """Wrap the array an op produced (no checks, no copy)."""
        if type(array) is not np.ndarray and isinstance(array, np.generic):
            array = np.asarray(array)  # NumPy returns scalars from 0-d operations
        t = object.__new__(Tensor)
        t._data, t._grad, t._grad_fn, t._requires_grad = array, None, grad_fn, False
        return t

    # -- attributes -------------------------------------------------------------------
    @property
    def data(self):
        """The underlying array (NumPy or CuPy); changing it bypasses autograd."""
        return self._data

    @data.setter
    def data(self, value):
        self._data = _as_array(value, None, copy=False, op="Tensor.data")

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            value = value if isinstance(value, Tensor) else Tensor(value)
            if tuple(value.shape) != tuple(self.shape):
                raise ValueError(f"grad: assigned gradient has shape {tuple(value.shape)} but the "
                                 f"tensor has shape {tuple(self.shape)}")
        self._grad = value

    @property
    def grad_fn(self):
        return self._grad_fn

    @property
    def is_leaf(self) -> bool:
        return self._grad_fn is None

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad or self._grad_fn is not None

    @requires_grad.setter
    def requires_grad(self, value: bool):
        if not self.is_leaf:
            raise RuntimeError("requires_grad: only leaf tensors can change requires_grad; use "
                               ".detach() to get a leaf from this result")
        if value:
            _check_can_require_grad(self.dtype, "requires_grad")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        self.requires_grad = requires_grad
        return self

    @property
    def shape(self) -> tuple:
        return tuple(self._data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._data.dtype)

    @property
    def device(self) -> str:
        """Where the array lives: 'cpu' or 'cuda:N' (a plain string; ranvier has no device
        class, and every ``device=`` argument takes 'cpu', 'cuda' or 'cuda:N')."""
        return device_name(self._data)

    @property
    def is_cuda(self) -> bool:
        return is_cuda_array(self._data)

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    def size(self, dim=None):
        """The shape, or the length of axis `dim`."""
        if dim is None:
            return self.shape
        (axis,) = fn.normalize_dims(dim, self.ndim, "size") or (0,)
        return self.shape[axis] if self.ndim else 1

    def numel(self) -> int:
        return int(self._data.size)

    @property
    def T(self) -> "Tensor":
        if self.ndim > 2:
            raise ValueError(f"T: only for tensors of at most 2 dimensions, got shape "
                             f"{self.shape}; use permute() or transpose(dim0, dim1)")
        return self.permute(*reversed(range(self.ndim)))

    # -- autograd -----------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's .grad (see ranvier.autograd.backward)."""
        autograd.backward(self, gradient, retain_graph=retain_graph)

    def detach(self) -> "Tensor":
        """A new leaf sharing this tensor's array, cut from the graph."""
        return Tensor._from_array(self._data)

    # -- conversion -------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The array itself (shared, not a copy), for a CPU tensor that does not require grad."""
        if self.requires_grad:
            raise RuntimeError("numpy: can't call numpy() on a tensor that requires grad; use "
                               "tensor.detach().numpy()")
        if self.is_cuda:
            raise TypeError(f"numpy: the tensor is on {self.device}; use tensor.cpu().numpy()")
        return self._data

    def __array__(self, dtype=None, copy=None):
        # np.asarray(tensor) for leaves (parameters, state dicts) and detached tensors.
        if not self.is_leaf:
            raise RuntimeError("np.asarray: the tensor is part of an autograd graph; use "
                               "tensor.detach() first")
        if self.is_cuda:
            raise TypeError(f"np.asarray: the tensor is on {self.device}; use tensor.cpu() first")
        array = self._data if dtype is None else self._data.astype(dtype, copy=False)
        return array.copy() if copy else array

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self._data.size != 1:
            raise ValueError(f"item: only one-element tensors can be converted to Python "
                             f"scalars, got shape {self.shape}")
        return self._data.reshape(()).item()

    def tolist(self):
        data = self._data.get() if self.is_cuda else self._data
        return data.tolist()

    def to(self, *args, dtype=None, device=None) -> "Tensor":
        """A tensor with another dtype and/or device; self when nothing changes.

        ``t.to(ranvier.float64)``, ``t.to('cuda')``, ``t.to('cuda:1')``,
        ``t.to(device='cpu', dtype='float32')``, ``t.to(other)`` (other's dtype and device).
        Devices are strings: 'cpu', 'cuda' (the current GPU) or 'cuda:N'. Differentiable,
        as PyTorch's: the gradient comes back in the original dtype and device. Asking for
        a GPU when none can be used raises RuntimeError with the reason
        (``ranvier.cuda.unavailable_reason()``); an unknown device string a ValueError.
        """
        for arg in args:
            if isinstance(arg, Tensor):
                dtype, device = arg.dtype, arg.device
            elif isinstance(arg, str) and not names_dtype(arg):
                device = arg
            else:
                dtype = arg
        if dtype is not None:
            dtype = check_dtype(dtype, "to")
        result = self
        if device is not None:
            device = resolve_device(device, "to")
            if device != self.device:
                result = fn.ToDevice.apply(result, device)
        if dtype is not None and dtype != result.dtype:
            result = fn.Cast.apply(result, dtype)
        return result

    def cpu(self) -> "Tensor":
        """This tensor on the CPU (self if it is there already)."""
        return self.to("cpu")

    def cuda(self, device=None) -> "Tensor":
        """This tensor on a GPU: the current one, or ``device`` (an index or 'cuda:N')."""
        if device is None:
            return self.to("cuda")
        return self.to(f"cuda:{int(device)}" if is_device_index(device) else device)

    def float(self) -> "Tensor":
        return self.to(np.float32)

    def double(self) -> "Tensor":
        return self.to(np.float64)

    def long(self) -> "Tensor":
        return self.to(np.int64)

    def int(self) -> "Tensor":
        return self.to(np.int32)

    def bool(self) -> "Tensor":
        return self.to(np.bool_)

    def clone(self) -> "Tensor":
        """A copy with its own array; differentiable (the gradient passes straight through)."""
        return fn.Cast.apply(self, self.dtype)

    # -- Python protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise ValueError(f"the truth value of a tensor with {self._data.size} elements is "
                             f"ambiguous; use .any() or .all()")
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only one-element integer tensors can be used as an index")
        return int(self.item())

    __hash__ = object.__hash__  # identity, as PyTorch (== is elementwise)

    def __repr__(self) -> str:
        data = self._data.get() if self.is_cuda else self._data
        body = np.array2string(data, separator=", ", prefix="tensor(", threshold=1000,
                               precision=4)
        extras = []
        if self.dtype not in (np.float32, np.int64, np.bool_):
            extras.append(f"dtype={self.dtype}")
        if self.is_cuda:
            extras.append(f"device='{self.device}'")
        if self._grad_fn is not None:
            extras.append(f"grad_fn=<{type(self._grad_fn).__name__.lstrip('_')}Backward>")
        elif self._requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    # -- arithmetic --------------------------------------------------------------------
    def __add__(self, other):
        return fn.Add.apply(self, _operand(other, self._data))

    def __radd__(self, other):
        return fn.Add.apply(_operand(other, self._data), self)

    def __sub__(self, other):
        return fn.Sub.apply(self, _operand(other, self._data))

    def __rsub__(self, other):
        return fn.Sub.apply(_operand(other, self._data), self)

    def __mul__(self, other):
        return fn.Mul.apply(self, _operand(other, self._data))

    def __rmul__(self, other):
        return fn.Mul.apply(_operand(other, self._data), self)

    def __truediv__(self, other):
        return fn.Div.apply(self, _operand(other, self._data))

    def __rtruediv__(self, other):
        return fn.Div.apply(_operand(other, self._data), self)

    def __pow__(self, other):
        return fn.Pow.apply(self, _operand(other, self._data))

    def __rpow__(self, other):
        return fn.Pow.apply(_operand(other, self._data), self)

    def __matmul__(self, other):
        return fn.MatMul.apply(self, _operand(other, self._data))

    def __rmatmul__(self, other):
        return fn.MatMul.apply(_operand(other, self._data), self)

    def __neg__(self):
        return fn.Neg.apply(self)

    def __pos__(self):
        return self

    add = __add__
    sub = __sub__
    mul = __mul__
    div = __truediv__
    pow = __pow__
    matmul = __matmul__
    neg = __neg__

    # Comparisons: boolean tensors outside the graph.
    def _compare(self, other, op, name):
        other = _unwrap(_operand(other, self._data))
        autograd.check_one_device(name, (self._data, other))
        return Tensor._from_array(array_module(self._data).asarray(op(self._data, other)))

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b, "lt")

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b, "le")

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b, "gt")

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b, "ge")

    def __eq__(self, other):
        return self._compare(other, lambda a, b: a == b, "eq")

    def __ne__(self, other):
        return self._compare(other, lambda a, b: a != b, "ne")

    def any(self) -> "Tensor":
        return Tensor._from_array(array_module(self._data).asarray(self._data.any()))

    def all(self) -> "Tensor":
        return Tensor._from_array(array_module(self._data).asarray(self._data.all()))

    # -- elementwise math -------------------------------------------------------------
    def exp(self):
        return fn.Exp.apply(self)

    def log(self):
        return fn.Log.apply(self)

    def sqrt(self):
        return fn.Sqrt.apply(self)

    def abs(self):
        return fn.Abs.apply(self)

    __abs__ = abs

    def clamp(self, min=None, max=None):
        """Limit the values to [min, max] (either may be None); gradient 1 inside, 0 outside."""
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return fn.Clamp.apply(self, _unwrap(min), _unwrap(max))

    clip = clamp

    # Activations: one implementation, in ranvier.nn.functional (imported late: nn builds on us).
    def relu(self):
        return _functional().relu(self)

    def sigmoid(self):
        return _functional().sigmoid(self)

    def tanh(self):
        return _functional().tanh(self)

    def softmax(self, dim):
        return _functional().softmax(self, dim)

    def log_softmax(self, dim):
        return _functional().log_softmax(self, dim)

    # -- reductions -------------------------------------------------------------------
    def sum(self, dim=None, keepdim: bool = False):
        """Sum over all elements, one axis or a tuple of axes."""
        return fn.Sum.apply(self, fn.normalize_dims(dim, self.ndim, "sum"), bool(keepdim))

    def mean(self, dim=None, keepdim: bool = False):
        """Mean over all elements, one axis or a tuple of axes."""
        if self.dtype.kind != "f":
            raise TypeError(f"mean: needs a floating-point tensor, got dtype {self.dtype}")
        return fn.Mean.apply(self, fn.normalize_dims(dim, self.ndim, "mean"), bool(keepdim))

    def _extreme(self, dim, keepdim, largest):
        op = "max" if largest else "min"
        if dim is None:
            return fn.MaxAll.apply(self, largest)
        if not isinstance(dim, (int, np.integer)):
            raise TypeError(f"{op}: dim must be an int, got {dim!r}")
        (axis,) = fn.normalize_dims(dim, self.ndim, op) or (0,)
        if self.ndim == 0:
            index = array_module(self._data).zeros((), dtype=np.int64)
            return ValuesIndices(self.clone(), Tensor._from_array(index))
        values = fn.MaxDim.apply(self, axis, bool(keepdim), largest)
        indices = (self._data.argmax if largest else self._data.argmin)(axis=axis)
        if keepdim:
            indices = array_module(indices).expand_dims(indices, axis)
        return ValuesIndices(values, Tensor._from_array(indices.astype(np.int64)))

    def max(self, dim=None, keepdim: bool = False):
        """The largest element; with `dim`, (values, indices) along that axis (as PyTorch)."""
        return self._extreme(dim, keepdim, True)

    def min(self, dim=None, keepdim: bool = False):
        """The smallest element; with `dim`, (values, indices) along that axis (as PyTorch)."""
        return self._extreme(dim, keepdim, False)

    def argmax(self, dim=None, keepdim: bool = False):
        return self._arg_extreme(dim, keepdim, True)

    def argmin(self, dim=None, keepdim: bool = False):
        return self._arg_extreme(dim, keepdim, False)

    def _arg_extreme(self, dim, keepdim, largest):
        xp = array_module(self._data)
        pick = self._data.argmax if largest else self._data.argmin
        if dim is None:
            index = xp.asarray(pick())
            if keepdim:
                index = index.reshape((1,) * self.ndim)
        else:
            (axis,) = fn.normalize_dims(dim, self.ndim, "argmax") or (0,)
            index = pick(axis=axis) if self.ndim else xp.asarray(0)
            if keepdim and self.ndim:
                index = xp.expand_dims(index, axis)
        return Tensor._from_array(xp.asarray(index).astype(np.int64))

    # -- shapes -------------------------------------------------------------------------
    def reshape(self, *shape):
        """A tensor with the same elements in another shape (one entry may be -1)."""
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        try:
            return fn.Reshape.apply(self, tuple(int(s) for s in shape))
        except ValueError as exc:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {self.shape} into "
                             f"{tuple(shape)} ({exc})") from None

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        """Merge the axes start_dim..end_dim (inclusive) into one."""
        if self.ndim == 0:
            return self.reshape(1)
        start, end = (fn.normalize_dims(d, self.ndim, "flatten")[0] for d in (start_dim, end_dim))
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        shape = self.shape
        merged = int(np.prod(shape[start:end + 1]))
        return self.reshape(shape[:start] + (merged,) + shape[end + 1:])

    def permute(self, *dims):
        """Reorder the axes: result axis i is input axis dims[i]."""
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        if len(dims) != self.ndim:
            raise ValueError(f"permute: got {len(dims)} dims {tuple(dims)} for a tensor of shape "
                             f"{self.shape}")
        axes = tuple((fn.normalize_dims(d, self.ndim, "permute") or (0,))[0] for d in dims)
        if len(set(axes)) != len(axes):
            raise ValueError(f"permute: dims {tuple(dims)} repeat an axis")
        return fn.Permute.apply(self, axes)

    def transpose(self, dim0: int, dim1: int):
        """Swap two axes."""
        if self.ndim == 0:
            return self
        axes = list(range(self.ndim))
        a = fn.normalize_dims(dim0, self.ndim, "transpose")[0]
        b = fn.normalize_dims(dim1, self.ndim, "transpose")[0]
        axes[a], axes[b] = axes[b], axes[a]
        return fn.Permute.apply(self, tuple(axes))

    def unsqueeze(self, dim: int):
        """Insert an axis of length 1 at position dim (negative dims count from the new end)."""
        rank = self.ndim + 1
        if not -rank <= dim < rank:
            raise IndexError(f"unsqueeze: dim {dim} is out of range for a result with {rank} "
                             f"dimensions")
        dim %= rank
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim=None):
        """Remove axes of length 1 (all of them, or those among `dim` that have length 1)."""
        if dim is None:
            axes = [a for a, n in enumerate(self.shape) if n == 1]
        else:
            axes = [a for a in fn.normalize_dims(dim, self.ndim, "squeeze") if self.shape[a] == 1]
        return self.reshape(tuple(n for a, n in enumerate(self.shape) if a not in axes))

    def __getitem__(self, index):
        """NumPy indexing: ints, slices, None, ..., integer and boolean arrays or tensors."""
        if isinstance(index, tuple):
            index = tuple(_unwrap(i) for i in index)
        else:
            index = _unwrap(index)
        return fn.Index.apply(self, index)

    # -- in place -----------------------------------------------------------------------
    def _check_inplace(self, op):
        if not self.is_leaf:
            raise RuntimeError(f"{op}: this tensor is the result of a recorded op; modifying it "
                               f"in place would corrupt backward(); use the out-of-place op or "
                               f"work on .detach()")
        if self._requires_grad and is_grad_enabled():
            raise RuntimeError(f"{op}: a leaf tensor that requires grad cannot be modified in "
                               f"place while gradients are recorded; do it under "
                               f"`with ranvier.no_grad():`")

    def zero_(self):
        self._check_inplace("zero_")
        self._data[...] = 0
        return self

    def fill_(self, value):
        self._check_inplace("fill_")
        self._data[...] = _unwrap(value)
        return self

    def copy_(self, source):
        """Copy `source`'s values (broadcast to this shape) into this tensor's array; as in
        PyTorch, `source` may be on another device (it is copied over first)."""
        self._check_inplace("copy_")
        source = _unwrap(source)
        if _is_array(source) and not isinstance(source, np.generic):
            source = to_device(source, self.device)
        self._data[...] = source
        return self

    def add_(self, other, alpha=1):
        self._check_inplace("add_")
        other = _unwrap(other)
        autograd.check_one_device("add_", (self._data, other))
        self._data += other if alpha == 1 else alpha * other
        return self

    def sub_(self, other, alpha=1):
        self._check_inplace("sub_")
        other = _unwrap(other)
        autograd.check_one_device("sub_", (self._data, other))
        self._data -= other if alpha == 1 else alpha * other
        return self

    def mul_(self, other):
        self._check_inplace("mul_")
        autograd.check_one_device("mul_", (self._data, _unwrap(other)))
        self._data *= _unwrap(other)
        return self

    def div_(self, other):
        self._check_inplace("div_")
        autograd.check_one_device("div_", (self._data, _unwrap(other)))
        self._data /= _unwrap(other)
        return self

    def uniform_(self, a=0.0, b=1.0):
        """Fill with uniform numbers in [a, b) from ranvier's default generator."""
        self._check_inplace("uniform_")
        values = default_generator.numpy.uniform(a, b, size=self.shape)
        self._data[...] = array_module(self._data).asarray(values, dtype=self.dtype)
        return self

    def normal_(self, mean=0.0, std=1.0):
        """Fill with normal numbers from ranvier's default generator."""
        self._check_inplace("normal_")
        values = default_generator.numpy.normal(mean, std, size=self.shape)
        self._data[...] = array_module(self._data).asarray(values, dtype=self.dtype)
        return self

    def __setitem__(self, index, value):
        """x[index] = value; as with copy_, an array value on another device is copied over."""
        self._check_inplace("__setitem__")
        index = tuple(_unwrap(i) for i in index) if isinstance(index, tuple) else _unwrap(index)
        value = _unwrap(value)
        if _is_array(value) and not isinstance(value, np.generic):
            value = to_device(value, self.device)
        self._data[index] = value

    # x += y on a result inside a graph (out = out + residual in a forward pass) rebinds x to
    # the out-of-place result, so the graph stays correct; other names for the old tensor
    # keep the old values. On leaves it is a true in-place update, under the rules above.
    def __iadd__(self, other):
        return self + other if not self.is_leaf else self.add_(other)

    def __isub__(self, other):
        return self - other if not self.is_leaf else self.sub_(other)

    def __imul__(self, other):
        return self * other if not self.is_leaf else self.mul_(other)

    def __itruediv__(self, other):
        return self / other if not self.is_leaf else self.div_(other)


def _functional():
    from .nn import functional
    return functional


# --- construction ------------------------------------------------------------------------

def tensor(data, requires_grad: bool = False, dtype=None, device=None) -> Tensor:
    """A new leaf tensor holding a copy of `data` (nested lists, numbers, arrays or a Tensor).

    dtype defaults follow PyTorch: Python floats -> float32, ints -> int64, bools -> bool;
    NumPy/CuPy arrays keep theirs. ``requires_grad=True`` needs a float dtype. ``device``
    ('cpu', 'cuda' or 'cuda:N') defaults to where `data` is (the CPU for lists and NumPy).
    """
    t = Tensor._from_array(_as_array(data, dtype, copy=True, op="tensor"))
    if device is not None:
        t = t.to(resolve_device(device, "tensor"))
    if requires_grad:
        t.requires_grad_(True)
    return t


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing `array`'s memory (no copy); changes to one show in the other."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor._from_array(_as_array(array, None, copy=False, op="from_numpy"))


def _size_args(size, op):
    size = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
    try:
        size = tuple(int(n) for n in size)
    except TypeError:
        raise TypeError(f"{op}: size must be ints or a tuple of ints, got {size!r}") from None
    if any(n < 0 for n in size):
        raise ValueError(f"{op}: negative size in {size}")
    return size


def _new(array, requires_grad, device, op):
    """A leaf from a freshly made array, moved to `device`, requiring grad if asked."""
    check_dtype(array.dtype, op)
    t = Tensor._from_array(array)
    if device is not None:  # made on the host, then copied: simple, and factories are not hot
        t = t.to(resolve_device(device, op))
    return t.requires_grad_(requires_grad)


def _float_dtype(dtype, op):
    return np.dtype(np.float32) if dtype is None else check_dtype(dtype, op)


def zeros(*size, dtype=None, requires_grad=False, device=None) -> Tensor:
    """A tensor of zeros, float32 unless dtype is given: ``zeros(2, 3)`` or ``zeros((2, 3))``."""
    return _new(np.zeros(_size_args(size, "zeros"), _float_dtype(dtype, "zeros")),
                requires_grad, device, "zeros")


def ones(*size, dtype=None, requires_grad=False, device=None) -> Tensor:
    return _new(np.ones(_size_args(size, "ones"), _float_dtype(dtype, "ones")),
                requires_grad, device, "ones")


def empty(*size, dtype=None, requires_grad=False, device=None) -> Tensor:
    """A tensor whose values are whatever the memory held: overwrite every element before use."""
    return _new(np.empty(_size_args(size, "empty"), _float_dtype(dtype, "empty")),
                requires_grad, device, "empty")


def full(size, fill_value, dtype=None, requires_grad=False, device=None) -> Tensor:
    """A tensor filled with fill_value; dtype from fill_value (float -> float32, int -> int64)."""
    if dtype is None:
        dtype = _as_array(fill_value, None, copy=False, op="full").dtype
    return _new(np.full(_size_args((size,), "full"), fill_value, check_dtype(dtype, "full")),
                requires_grad, device, "full")


def zeros_like(input: Tensor, dtype=None, requires_grad=False, device=None) -> Tensor:
    """Zeros of input's shape, with input's dtype and device unless given."""
    xp = array_module(_unwrap(input))
    dtype = input.dtype if dtype is None else check_dtype(dtype, "zeros_like")
    return _new(xp.zeros(input.shape, dtype), requires_grad, device, "zeros_like")


def ones_like(input: Tensor, dtype=None, requires_grad=False, device=None) -> Tensor:
    """Ones of input's shape, with input's dtype and device unless given."""
    xp = array_module(_unwrap(input))
    dtype = input.dtype if dtype is None else check_dtype(dtype, "ones_like")
    return _new(xp.ones(input.shape, dtype), requires_grad, device, "ones_like")


def randn(*size, dtype=None, requires_grad=False, device=None) -> Tensor:
    """Standard normal numbers from ranvier's default generator (seed with ranvier.manual_seed)."""
    dtype = _float_dtype(dtype, "randn")
    if dtype.kind != "f":
        raise TypeError(f"randn: needs a float dtype, got {dtype}")
    values = default_generator.numpy.standard_normal(_size_args(size, "randn"), dtype=dtype)
    return _new(np.asarray(values), requires_grad, device, "randn")


def rand(*size, dtype=None, requires_grad=False, device=None) -> Tensor:
    """Uniform numbers in [0, 1) from ranvier's default generator."""
    dtype = _float_dtype(dtype, "rand")
    if dtype.kind != "f":
        raise TypeError(f"rand: needs a float dtype, got {dtype}")
    values = default_generator.numpy.random(_size_args(size, "rand"), dtype=dtype)
    return _new(np.asarray(values), requires_grad, device, "rand")


def arange(start, end=None, step=1, dtype=None, requires_grad=False, device=None) -> Tensor:
    """``arange(end)`` or ``arange(start, end, step)``: int64 when all are ints, else float32."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if dtype is None:
        all_ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                       for v in (start, end, step))
        dtype = np.int64 if all_ints else np.float32
    dtype = check_dtype(dtype, "arange")
    return _new(np.arange(start, end, step).astype(dtype), requires_grad, device, "arange")
