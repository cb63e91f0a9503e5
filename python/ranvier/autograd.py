"""Reverse-mode automatic differentiation: the graph, the backward walk and a gradient checker.

How it works, in one paragraph: every differentiable operation is a subclass of `Function`
with a `forward(ctx, *args)` that computes arrays (NumPy or CuPy, never Tensors) and saves
what its backward needs on `ctx`, and a `backward(ctx, grad_output)` that returns one
gradient array per forward argument (None where an argument is not differentiable).
`Function.apply(*args)` unwraps Tensor arguments to their arrays, runs `forward`, and - when
gradients are enabled and some Tensor argument requires one - records the call as a node:
the output Tensor's `grad_fn` is the ctx, which remembers the input Tensors.
`backward(tensor)` orders the nodes reachable from the tensor (reverse topological order,
iteratively, so graphs of any depth work), hands each node the sum of the gradients that
flowed into its output, and accumulates the results into the `.grad` of the leaf Tensors.
Unless ``retain_graph=True``, each node's saved arrays are released as it is used.
"""

from __future__ import annotations

import functools
import re
import threading

import numpy as np

from ._arrays import array_module, device_name, is_cuda_array

__all__ = ["Function", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
           "backward", "gradcheck", "GradcheckError"]


# --- grad mode ---------------------------------------------------------------------------
# Thread-local, as in PyTorch: a data-loading thread under no_grad does not switch off
# gradients for the training thread.

class _GradMode(threading.local):
    enabled = True  # each thread starts with gradients on; a plain attribute read per op


_grad_mode = _GradMode()


def is_grad_enabled() -> bool:
    """True when operations on Tensors are being recorded for backward()."""
    return _grad_mode.enabled


def _set_grad_enabled(enabled: bool) -> None:
    _grad_mode.enabled = bool(enabled)


class _GradModeSwitch:
    """Sets grad mode inside a ``with`` block or a decorated function, then restores it."""

    enabled: bool

    def __enter__(self):
        self._previous = is_grad_enabled()
        _set_grad_enabled(self.enabled)
        return self

    def __exit__(self, *exc_info):
        _set_grad_enabled(self._previous)
        return False

    def __call__(self, func):
        enabled = self.enabled

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            previous = is_grad_enabled()
            _set_grad_enabled(enabled)
            try:
                return func(*args, **kwargs)
            finally:
                _set_grad_enabled(previous)
        return wrapper


class no_grad(_GradModeSwitch):
    """Context manager and decorator: operations inside record no graph.

    Example:
        >>> with ranvier.no_grad():
        ...     w -= 0.1 * w.grad
    """

    enabled = False


class enable_grad(_GradModeSwitch):
    """Context manager and decorator: switch recording back on inside a ``no_grad`` block."""

    enabled = True


class set_grad_enabled(_GradModeSwitch):
    """``set_grad_enabled(mode)``: switch recording on or off, as a call, a context or a decorator.

    Like PyTorch, calling it sets the mode at once (so it also works as a plain function);
    leaving the ``with`` block restores the mode from before the call.
    """

    def __init__(self, mode: bool):
        self.enabled = bool(mode)
        self._previous = is_grad_enabled()
        _set_grad_enabled(self.enabled)

    def __enter__(self):
        return self  # the mode was already set in __init__

    def __call__(self, func):
        _set_grad_enabled(self._previous)  # used as a decorator: do not change the mode now
        return super().__call__(func)


# --- Function: one differentiable operation and its graph node ----------------------------

class Function:
    """Base class of differentiable operations; an instance is the ctx and the graph node.

    Subclasses define two static methods:

    ``forward(ctx, *args)``: ``args`` are the arguments of ``apply`` with every Tensor
    replaced by its array. Returns one array. Save what backward needs on ``ctx``
    (``ctx.save_for_backward(*arrays)`` or plain attributes).

    ``backward(ctx, grad_output)``: ``grad_output`` is the gradient of the loss with respect
    to the output (an array of the output's shape). Returns the gradients with respect to
    each forward argument, in order (a tuple, or a single array when there is one
    argument); None for arguments that are not differentiable or not needed
    (``ctx.needs_input_grad[i]`` says which are needed). A gradient may have the input's
    broadcast shape only if the op did the broadcasting itself and sums it back: the
    engine checks every gradient's shape against its input.
    """

    # Bookkeeping set by apply(); everything else on ctx belongs to the operation.
    inputs: tuple  # the apply() arguments that are Tensors requiring grad, else None
    needs_input_grad: tuple
    _released: bool = False

    def save_for_backward(self, *arrays):
        self.saved_arrays = arrays

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad_output):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        Tensor = _tensor_class()
        # One loop over the arguments (this runs for every op, so it is kept lean): the
        # arrays for forward and the graph edges (the Tensors needing a gradient, else None).
        arrays, edges, any_need, gpu = [], [], False, False
        for a in args:
            if isinstance(a, Tensor):
                data = a._data
                arrays.append(data)
                if a._requires_grad or a._grad_fn is not None:
                    any_need = True
                    edges.append(a)
                else:
                    edges.append(None)
            else:
                data = a
                arrays.append(a)
                edges.append(None)
            if (not gpu and type(data) not in _NOT_GPU_TYPES
                    and hasattr(data, "__cuda_array_interface__")):
                gpu = True
        # An op whose array arguments live on different devices is refused here, naming
        # both, before any array is touched: NumPy and CuPy would otherwise fail in their
        # own words, or a CPU kernel would get a GPU pointer. Without a GPU array among them
        # nothing can differ.
        if gpu:
            check_one_device(_op_name(cls), arrays)
        ctx = cls()
        record = any_need and _grad_mode.enabled
        ctx.needs_input_grad = tuple([e is not None for e in edges]) if record else (False,) * len(args)
        output = cls.forward(ctx, *arrays)
        # Only floating-point results carry gradients (comparisons, argmax... do not).
        if not record or output.dtype.kind != "f":
            return Tensor._from_array(output)
        ctx.inputs = tuple(edges)
        return Tensor._from_array(output, grad_fn=ctx)

    def _release(self):
        """Drop the saved arrays and the edges once backward has used them."""
        self.__dict__.clear()
        self._released = True

    def __repr__(self):
        return f"<{type(self).__name__.lstrip('_')}Backward>"


# Argument types that are never GPU arrays: apply skips the (failing, hence slow) attribute
# lookup for them.
_NOT_GPU_TYPES = frozenset({np.ndarray, type(None), bool, int, float, str, tuple, list, dict})

_tensor = None


def _tensor_class():
    """ranvier.tensor.Tensor, imported on first use (tensor.py imports this module)."""
    global _tensor
    if _tensor is None:
        from .tensor import Tensor
        _tensor = Tensor
    return _tensor


_op_names: dict = {}  # Function subclass -> its name in errors (computed once per class)


def _op_name(cls) -> str:
    """The name errors use for a Function: ``op_name`` if it sets one, else its class name in
    snake case without a leading underscore (Mul -> 'mul', _MSELoss -> 'mse_loss')."""
    name = _op_names.get(cls)
    if name is None:
        name = _op_names[cls] = _compute_op_name(cls)
    return name


def _compute_op_name(cls) -> str:
    name = getattr(cls, "op_name", None)
    if name is None:
        name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", cls.__name__.lstrip("_"))
        name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    return name


def check_one_device(op: str, arrays) -> None:
    """ValueError naming `op` and two devices when the arrays among `arrays` (other values
    are ignored) do not all live on one device."""
    first = None
    for a in arrays:
        if isinstance(a, np.ndarray) or is_cuda_array(a):
            device = device_name(a)
            if first is None:
                first = device
            elif device != first:
                raise ValueError(f"{op}: tensors are on {first} and {device}; move "
                                 f"them to one device first (tensor.to({device!r}) or "
                                 f"tensor.to({first!r}))")


# --- the backward walk ---------------------------------------------------------------------

def _topological_order(root):
    """The nodes reachable from `root`, each listed after every node that consumes its output.

    Iterative depth-first post-order (an explicit stack), so a chain of 100000 ops works.
    """
    order, visited = [], {id(root)}
    stack = [(root, iter(root.inputs))]
    while stack:
        node, children = stack[-1]
        for tensor in children:
            child = tensor._grad_fn if tensor is not None else None
            if child is not None and id(child) not in visited:
                if child._released:
                    _raise_released()
                visited.add(id(child))
                stack.append((child, iter(child.inputs)))
                break
        else:
            stack.pop()
            order.append(node)
    order.reverse()  # consumers first
    return order


def _raise_released():
    raise RuntimeError(
        "backward: trying to backward through the graph a second time, or through a part "
        "of it that an earlier backward() already freed; call backward(retain_graph=True) "
        "the first time if you need to backward through the same graph again")


def backward(tensor, gradient=None, retain_graph: bool = False) -> None:
    """Compute the gradient of `tensor` with respect to every leaf that requires grad.

    The gradients are added to the leaves' ``.grad`` (which is created on first use), so
    gradients of several backward calls accumulate, as in PyTorch. `gradient` is the
    gradient of some final scalar with respect to `tensor`; it may be omitted only when
    `tensor` holds a single element (it is then 1).
    """
    Tensor = _tensor_class()
    if not tensor.requires_grad:
        raise RuntimeError("backward: the tensor does not require grad and has no grad_fn "
                           "(no input of the computation requires grad, or it ran under no_grad)")
    data = tensor._data
    xp = np if type(data) is np.ndarray else array_module(data)
    if gradient is None:
        if data.size != 1:
            raise RuntimeError(f"backward: grad can be implicitly created only for scalar "
                               f"outputs; this tensor has shape {tuple(tensor.shape)}: pass "
                               f"gradient= of that shape (or call .sum() first)")
        if xp is not np:
            grad = xp.ones_like(data)
        elif data.ndim == 0:  # the usual loss: np.array is much cheaper than np.ones here
            grad = np.array(1, dtype=data.dtype)
        else:
            grad = np.ones(data.shape, dtype=data.dtype)
    else:
        grad = gradient.data if isinstance(gradient, Tensor) else xp.asarray(gradient)
        if tuple(grad.shape) != tuple(tensor.shape):
            raise ValueError(f"backward: gradient has shape {tuple(grad.shape)} but the tensor "
                             f"has shape {tuple(tensor.shape)}")
        grad = grad.astype(tensor.dtype, copy=False)

    root = tensor._grad_fn
    if root is None:  # backward on a leaf: its gradient is `grad` itself
        _accumulate_leaf(tensor, grad)
        return
    if root._released:
        _raise_released()

    pending = {id(root): grad}  # node -> sum of the gradients flowing into its output
    for node in _topological_order(root):
        grad_output = pending.pop(id(node), None)
        if grad_output is None:  # nothing flows here (possible only through None gradients)
            continue
        kind = type(node)
        grads = kind.backward(node, grad_output)
        if not isinstance(grads, tuple):
            grads = (grads,)
        inputs = node.inputs
        if len(grads) != len(inputs):
            raise RuntimeError(f"{kind.__name__}.backward returned {len(grads)} gradients "
                               f"for {len(inputs)} inputs")
        for tensor_in, grad_in in zip(inputs, grads):
            if tensor_in is None or grad_in is None:
                continue
            if type(grad_in) is not np.ndarray and isinstance(grad_in, np.generic):
                grad_in = np.asarray(grad_in)  # NumPy returns scalars from 0-d operations
            data_in = tensor_in._data
            if grad_in.shape != data_in.shape:  # tuples for NumPy and CuPy alike
                raise RuntimeError(f"{kind.__name__}.backward returned a gradient of shape "
                                   f"{tuple(grad_in.shape)} for an input of shape "
                                   f"{tuple(tensor_in.shape)}")
            if grad_in.dtype != data_in.dtype:  # e.g. float32 input promoted to float64
                grad_in = grad_in.astype(data_in.dtype)
            child = tensor_in._grad_fn
            if child is None:
                _accumulate_leaf(tensor_in, grad_in)
            else:
                # Not in place: grad arrays may be shared (Add hands the same one to both inputs).
                key = id(child)
                previous = pending.get(key)
                pending[key] = grad_in if previous is None else previous + grad_in
        if not retain_graph:
            node._release()


def _accumulate_leaf(tensor, grad):
    """Add `grad` (already of the tensor's shape, checked by the caller) to tensor.grad."""
    if tensor._grad is None:
        # A private contiguous copy: grad may alias another array (grad_output, a broadcast view).
        dtype = tensor._data.dtype
        if type(grad) is np.ndarray and grad.dtype is dtype:
            copy = grad.copy()  # C order: the same array as below, without the argument parsing
        else:
            xp = np if type(grad) is np.ndarray else array_module(grad)
            copy = xp.array(grad, dtype=dtype, order="C", copy=True)
        tensor._grad = _tensor_class()._from_array(copy)
    else:
        tensor.grad.data = tensor.grad.data + grad


# --- gradient checking -------------------------------------------------------------------

class GradcheckError(AssertionError):
    """The analytic gradient of a function disagrees with its finite-difference estimate."""


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3) -> bool:
    """Compare the backward of `fn` with central finite differences, element by element.

    Args:
        fn: a function of the Tensors in `inputs` returning a Tensor or a tuple of Tensors.
        inputs: a Tensor or a sequence of arguments; the float64 Tensors among them that
            require grad are checked (other arguments are passed through unchanged).
        eps: the finite-difference step.
        atol, rtol: an element passes when |analytic - numerical| <= atol + rtol * |numerical|.

    Returns True, or raises GradcheckError naming the worst mismatch (input, output,
    element indices, both values). The Jacobian is built one output element at a time, so
    keep the tensors small. Inputs that require grad must be float64: float32 differences
    are too coarse to tell a wrong gradient from rounding.
    """
    from .tensor import Tensor

    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    checked = [i for i, a in enumerate(inputs) if isinstance(a, Tensor) and a.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input is a Tensor that requires grad")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} has dtype {inputs[i].dtype}; gradcheck needs "
                            f"float64 inputs (use .double())")
        if not inputs[i].is_leaf:
            raise ValueError(f"gradcheck: input {i} is not a leaf tensor; pass leaves "
                             f"(e.g. x.detach().requires_grad_())")

    def outputs_of(result):
        result = result if isinstance(result, (tuple, list)) else (result,)
        return [r for r in result if isinstance(r, Tensor) and np.dtype(r.dtype).kind == "f"]

    saved_grads = [inputs[i].grad for i in checked]
    try:
        outputs = outputs_of(fn(*inputs))
        # analytic[k][j]: d output k / d input checked[j], shaped (output size, input size)
        analytic = []
        for out in outputs:
            xp = array_module(out.data)
            rows = [np.zeros((out.data.size, inputs[i].data.size)) for i in checked]
            if out.requires_grad:
                for e in range(out.data.size):
                    for i in checked:
                        inputs[i].grad = None
                    seed = xp.zeros(out.data.size, dtype=out.dtype)
                    seed[e] = 1
                    out.backward(seed.reshape(out.shape), retain_graph=True)
                    for j, i in enumerate(checked):
                        if inputs[i].grad is not None:
                            rows[j][e] = _to_numpy(inputs[i].grad.data).reshape(-1)
            analytic.append(rows)
    finally:
        for i, g in zip(checked, saved_grads):
            inputs[i].grad = g

    numerical = [[np.zeros((out.data.size, inputs[i].data.size)) for i in checked]
                 for out in outputs]
    with no_grad():
        for j, i in enumerate(checked):
            data = inputs[i].data
            for e in range(data.size):
                index = np.unravel_index(e, data.shape)
                original = data[index].item()
                data[index] = original + eps
                # Copies: an output may be a view of the input that is being perturbed.
                plus = [_flat_copy(o.data) for o in outputs_of(fn(*inputs))]
                data[index] = original - eps
                minus = [_flat_copy(o.data) for o in outputs_of(fn(*inputs))]
                data[index] = original
                for k in range(len(outputs)):
                    numerical[k][j][:, e] = (plus[k] - minus[k]) / (2 * eps)

    worst = None  # (excess over tolerance, description)
    for k, out in enumerate(outputs):
        for j, i in enumerate(checked):
            a, n = analytic[k][j], numerical[k][j]
            excess = np.abs(a - n) - (atol + rtol * np.abs(n))
            excess = np.where(np.isnan(excess), np.inf, excess)  # NaN on either side fails
            if excess.size and excess.max() > 0:
                e_out, e_in = np.unravel_index(int(np.argmax(excess)), excess.shape)
                if worst is None or excess.max() > worst[0]:
                    worst = (excess.max(), (
                        f"gradcheck: the gradient of output {k} with respect to input {i} is "
                        f"wrong at input element {_position(e_in, inputs[i].shape)}, "
                        f"output element {_position(e_out, out.shape)}: analytic "
                        f"{a[e_out, e_in]:.6g}, numerical {n[e_out, e_in]:.6g} "
                        f"(atol={atol}, rtol={rtol}; "
                        f"{int((excess > 0).sum())} of {excess.size} Jacobian entries differ)"))
    if worst is not None:
        raise GradcheckError(worst[1])
    return True


def _position(flat_index, shape):
    return tuple(int(i) for i in np.unravel_index(flat_index, shape))


def _flat_copy(array):
    return np.array(_to_numpy(array), dtype=np.float64).reshape(-1)


def _to_numpy(array):
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else array
