"""Module: the base class of every layer and model, with PyTorch's registration rules.

Assigning a ``Parameter`` to an attribute registers it as a parameter, assigning a ``Module``
registers a sub-module, and ``register_buffer`` registers an array that is state but not
learnable (running statistics, masks). Names nest with dots exactly as in PyTorch, so that
``Sequential(Linear(3, 4), ReLU(), Linear(4, 2)).state_dict()`` has the keys ``0.weight``,
``0.bias``, ``2.weight``, ``2.bias`` and PyTorch checkpoints of the same architecture load.

State-dict semantics (two differences from PyTorch, on purpose):
``state_dict()`` returns *copies* of the parameter and buffer arrays, not views, and always
as host NumPy arrays, also for a model on the GPU (so ``np.asarray``, ``ranvier.save`` and
plotting just work). A state dict taken after epoch 3 therefore still holds the epoch-3
weights after epoch 10 ("keep the best model" works without ``copy.deepcopy``). ``state_dict(keep_vars=True)`` returns the
Parameter objects themselves, as in PyTorch. ``load_state_dict`` copies values *into* the
existing arrays (casting to their dtype, copying to their device), so optimizers holding the
parameters keep working.

Devices: ``model.to('cuda')`` (or ``.cuda()``, ``.cpu()``, ``.to(ranvier.float64)``,
``.double()``, ``.float()``) moves or casts every parameter, gradient and buffer *in place of
the Parameter objects*: the same Parameter objects now hold arrays on the new device, so an
optimizer created before or after the move keeps working, as in PyTorch. Move the model
before the optimizer's first ``step()``: optimizer state is created on the parameters' device
at the first step and is not moved afterwards.
It checks everything before it changes anything: on error the module is left untouched.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from collections.abc import Iterator, Mapping

import numpy as np

from .._arrays import (array_module, is_cuda_array, is_device_index, names_dtype, parse_device,
                       resolve_device, to_device, to_host)
from ..tensor import Tensor
from .parameter import Parameter

__all__ = ["Module"]


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns: the keys it could not match (empty lists when all did)."""

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _add_indent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _array_of(value):
    """The array behind a Parameter, Tensor or array."""
    return value.data if isinstance(value, Tensor) else value


def _host_copy(array):
    """A NumPy copy of `array` (a GPU array is copied to the host)."""
    return to_host(array) if is_cuda_array(array) else array.copy()


def _check_module_dtype(dtype):
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"Module.to: {dtype!r} is not a dtype") from None
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"Module.to: only float32 and float64 are accepted as dtype, got {dtype} "
                        f"(integer buffers are never cast)")
    return dtype


def _check_name(kind: str, module: "Module", name) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
    if name == "":
        raise KeyError(f'{kind} name can\'t be empty string ""')
    if "." in name:
        raise KeyError(f'{kind} name can\'t contain ".", got {name!r}')


class Module:
    """Base class of all layers and models.

    Subclasses call ``super().__init__()`` first, assign their parameters and sub-modules as
    attributes, and define ``forward``. Calling the module calls ``forward``.

    Example:
        >>> class TwoLayer(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.hidden = nn.Linear(10, 32)
        ...         self.out = nn.Linear(32, 2)
        ...     def forward(self, x):
        ...         return self.out(nn.functional.relu(self.hidden(x)))
        >>> [name for name, _ in TwoLayer().named_parameters()]
        ['hidden.weight', 'hidden.bias', 'out.weight', 'out.bias']
    """

    training: bool

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())

    # ------------------------------------------------------------------ forward and call

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required '
                                  f'"forward" function')

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---------------------------------------------------------------------- registration

    def _require_init(self, what: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call "
                                 f"(call super().__init__() first in {type(self).__name__})")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or ``None``, a declared but absent parameter) under ``name``."""
        self._require_init("parameter")
        _check_name("parameter", self, name)
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter "
                            f"'{name}' (nn.Parameter or None required)")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Add a buffer: state that is saved but not learned (e.g. running statistics).

        Args:
            name: attribute name of the buffer.
            tensor: a NumPy/CuPy array (stored as given, no copy), a Tensor (its array is
                stored), anything ``np.asarray`` accepts, or ``None`` (declared but absent).
            persistent: whether the buffer is part of ``state_dict()``.

        Buffers are plain arrays, never Tensors: they take no part in autograd.
        """
        self._require_init("buffer")
        _check_name("buffer", self, name)
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        self._buffers[name] = self._as_buffer(name, tensor)
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    @staticmethod
    def _as_buffer(name: str, value):
        if value is None or isinstance(value, np.ndarray) or is_cuda_array(value):
            return value
        if isinstance(value, Tensor):
            return value.data
        if isinstance(value, Module):
            raise TypeError(f"cannot assign a Module as buffer '{name}'")
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"buffer '{name}' must be a numeric array, got dtype {array.dtype}")
        return array

    def add_module(self, name: str, module: "Module | None") -> None:
        """Add a sub-module under ``name`` (reachable as an attribute)."""
        self._require_init("module")
        _check_name("module", self, name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name: str, value) -> None:
        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            self._require_init("parameters")
            self._forget(name, keep="_parameters")
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                f"(nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            self._require_init("child module")
            self._forget(name, keep="_modules")
            self._modules[name] = value
        elif params is not None and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module "
                                f"'{name}' (nn.Module or None expected)")
            self._modules[name] = None
        elif params is not None and name in self._buffers:
            self._buffers[name] = self._as_buffer(name, value)
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str, keep: str) -> None:
        """Remove ``name`` from the other registries before it is registered in ``keep``
        (where re-assigning keeps its position, so the state-dict order does not change)."""
        self.__dict__.pop(name, None)
        for registry in ("_parameters", "_modules", "_buffers"):
            if registry != keep:
                getattr(self, registry).pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __getattr__(self, name: str):
        # Only called when normal lookup fails: look in the registries (unrolled: this runs
        # for every self.weight in a forward).
        attributes = self.__dict__
        items = attributes.get("_parameters")
        if items is not None and name in items:
            return items[name]
        items = attributes.get("_buffers")
        if items is not None and name in items:
            return items[name]
        items = attributes.get("_modules")
        if items is not None and name in items:
            return items[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for registry in ("_parameters", "_buffers", "_modules"):
            items = self.__dict__.get(registry)
            if items is not None and name in items:
                del items[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))

    # ------------------------------------------------------------------------ traversal

    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, "Module"]]:
        """``(dotted name, module)`` for this module (name ``prefix``) and all below it,
        depth first; a module reachable by two paths is yielded once (unless
        ``remove_duplicate=False``)."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            child_prefix = f"{prefix}.{name}" if prefix else name
            yield from module.named_modules(memo, child_prefix, remove_duplicate)

    def modules(self) -> Iterator["Module"]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        """``(name, module)`` for the direct sub-modules (each module once)."""
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator["Module"]:
        for _, module in self.named_children():
            yield module

    def _named_members(self, registry: str, prefix: str, recurse: bool,
                       remove_duplicate: bool = True):
        seen = set()
        modules = (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
                   if recurse else [(prefix, self)])
        for module_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None:
                    continue
                if remove_duplicate:
                    if id(value) in seen:
                        continue
                    seen.add(id(value))
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """``(dotted name, Parameter)`` in registration order; a parameter shared by two
        modules is yielded once, under the first name it is reached by."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """The learnable parameters (each once), e.g. for an optimizer."""
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, object]]:
        """``(dotted name, array)`` for the buffers, persistent or not."""
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[object]:
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    # ------------------------------------------------------------------------- modes

    def train(self, mode: bool = True) -> "Module":
        """Set training mode (``mode=True``) or evaluation mode on this module and all below
        it (Dropout drops only in training mode). Returns self."""
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be boolean, got {mode!r}")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode: same as ``train(False)``. Returns self."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Switch gradient computation on or off for every parameter (e.g. to freeze a
        pretrained part). Returns self."""
        for param in self.parameters():
            param.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all parameters: to ``None`` (default, as in PyTorch 2) or,
        with ``set_to_none=False``, fill the existing gradient arrays with zeros."""
        for param in self.parameters():
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                _array_of(param.grad)[...] = 0

    # ------------------------------------------------------------------------- devices

    def to(self, *args, device=None, dtype=None) -> "Module":
        """Move and/or cast every parameter, gradient and buffer; returns self.

        ``model.to('cuda')``, ``model.to('cuda:1')``, ``model.to(ranvier.float64)``,
        ``model.to('cpu', ranvier.float32)``, ``model.to(device=..., dtype=...)``. Devices
        are strings ('cpu', 'cuda', 'cuda:N'). The dtype must be floating and applies to the
        floating arrays only (integer buffers such as ``num_batches_tracked`` keep theirs),
        as in PyTorch. The Parameter objects stay the same objects (their arrays are
        replaced), so optimizers holding them keep working. Asking for a GPU when none can
        be used raises RuntimeError with the reason; nothing is changed then.
        """
        for arg in args:
            if isinstance(arg, Tensor):
                device, dtype = arg.device, arg.dtype
            elif isinstance(arg, str) and not names_dtype(arg):
                device = arg
            else:
                dtype = arg
        if dtype is not None:
            dtype = np.dtype(_check_module_dtype(dtype))
        if device is not None:
            device = resolve_device(device, "Module.to")

        def convert(array):
            if dtype is not None and np.dtype(array.dtype).kind == "f" and array.dtype != dtype:
                array = array.astype(dtype)
            if device is not None:
                array = to_device(array, device)
            return array

        self._replace_arrays(convert)
        return self

    def cuda(self, device=None) -> "Module":
        """Move everything to a GPU: the current one, or ``device`` (an index or 'cuda:N')."""
        if device is None:
            return self.to("cuda")
        return self.to(f"cuda:{int(device)}" if is_device_index(device) else parse_device(device, "cuda"))

    def cpu(self) -> "Module":
        """Move everything to the CPU (host NumPy arrays)."""
        return self.to("cpu")

    def float(self) -> "Module":
        """Cast the floating parameters and buffers to float32."""
        return self.to(np.float32)

    def double(self) -> "Module":
        """Cast the floating parameters and buffers to float64."""
        return self.to(np.float64)

    def _replace_arrays(self, convert) -> None:
        """Give every parameter (and its gradient) and buffer the array convert(array).

        Parameters keep their identity: only their array is replaced. Shared parameters and
        buffers are converted once and stay shared. Every conversion is done before any is
        stored, so a failure (e.g. out of GPU memory) leaves the module as it was.
        """
        converted = {}  # id(original array) -> new array

        def once(array):
            if id(array) not in converted:
                converted[id(array)] = (array, convert(array))  # keep the original alive
            return converted[id(array)][1]

        params, buffers = {}, []
        for module in self.modules():
            for param in module._parameters.values():
                if param is not None and id(param) not in params:
                    grad = param.grad
                    params[id(param)] = (param, once(param._data),
                                         None if grad is None else once(grad._data))
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    buffers.append((module, name, once(buffer)))
        for param, data, grad_data in params.values():
            param._data = data
            if grad_data is not None:
                param.grad._data = grad_data
        for module, name, buffer in buffers:
            module._buffers[name] = buffer

    def apply(self, fn) -> "Module":
        """Call ``fn(module)`` on every sub-module (children first) and then on self, e.g. for
        custom initialisation. Returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # --------------------------------------------------------------------- state dict

    def _state_items(self, prefix: str = ""):
        """``(key, owner module, kind, local name)`` for every entry of the state dict.

        Like PyTorch, a shared module or parameter appears under every name it has.
        """
        for name, param in self._parameters.items():
            if param is not None:
                yield prefix + name, self, "_parameters", name
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in self._non_persistent_buffers:
                yield prefix + name, self, "_buffers", name
        for name, module in self._modules.items():
            if module is not None:
                yield from module._state_items(prefix + name + ".")

    def state_dict(self, *, prefix: str = "", keep_vars: bool = False) -> "OrderedDict[str, object]":
        """An ordered dict of every parameter and persistent buffer by dotted name.

        Args:
            prefix: prepended to every key.
            keep_vars: return the Parameter objects and buffer arrays themselves instead of
                copies.

        Returns:
            ``OrderedDict`` with PyTorch's keys (``"0.weight"``, ``"encoder.bias"``, ...). The
            values are host NumPy copies of the arrays, also for a model on the GPU,
            detached from autograd: later training does not change them, and
            ``ranvier.save`` writes them as they are.

        Example:
            >>> ranvier.save(model.state_dict(), "model.safetensors")
        """
        destination = OrderedDict()
        for key, module, registry, name in self._state_items(prefix):
            value = getattr(module, registry)[name]
            destination[key] = value if keep_vars else _host_copy(_array_of(value))
        return destination

    def load_state_dict(self, state_dict: Mapping, strict: bool = True) -> _IncompatibleKeys:
        """Copy values from ``state_dict`` into this module's parameters and buffers.

        Args:
            state_dict: ``{dotted name: values}`` as made by ``state_dict()``, ``ranvier.load``
                or PyTorch (values may be NumPy/CuPy arrays, Tensors, or anything
                ``np.asarray`` accepts, e.g. CPU torch tensors).
            strict: if True, keys missing from ``state_dict`` or not used by this module are
                errors; if False they are reported in the return value.

        Values are cast to each parameter's dtype and copied into the existing arrays, so
        optimizers holding the parameters keep working. A shape mismatch is an error even
        when ``strict=False``. All problems are collected and raised together as one
        ``RuntimeError``, and nothing is changed unless the whole load succeeds.

        Returns:
            ``(missing_keys, unexpected_keys)`` named tuple.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        expected = {}
        for key, module, registry, name in self._state_items():
            expected.setdefault(key, (module, registry, name))
        missing = [key for key in expected if key not in state_dict]
        unexpected = [key for key in state_dict if key not in expected]

        errors, assignments = [], []
        for key, (module, registry, name) in expected.items():
            if key not in state_dict:
                continue
            target = _array_of(getattr(module, registry)[name])
            source = _array_of(state_dict[key])
            if not (isinstance(source, np.ndarray) or is_cuda_array(source)):
                try:
                    source = np.asarray(source)
                except Exception as exc:  # noqa: BLE001 - reported with the key, below
                    errors.append(f'While copying the parameter named "{key}", could not '
                                  f"convert a {type(state_dict[key]).__name__} to an array "
                                  f"({exc}).")
                    continue
            if source.dtype.kind not in "biuf":
                errors.append(f'While copying the parameter named "{key}", expected a numeric '
                              f"array but got dtype {source.dtype}.")
                continue
            if tuple(source.shape) != tuple(target.shape):
                errors.append(f"size mismatch for {key}: copying a param with shape "
                              f"{tuple(source.shape)} from checkpoint, the shape in current "
                              f"model is {tuple(target.shape)}.")
                continue
            assignments.append((target, source))

        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ". ")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ". ")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))

        for target, source in assignments:
            xp = array_module(target)
            if xp is np and is_cuda_array(source):
                source = source.get()  # a GPU checkpoint into a CPU model
            target[...] = xp.asarray(source).astype(target.dtype, copy=False)
        return _IncompatibleKeys(missing, unexpected)

    # --------------------------------------------------------------------------- repr

    def extra_repr(self) -> str:
        """The text inside this module's parentheses in ``repr`` (override in layers)."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + _add_indent(repr(module), 2)
                       for name, module in self._modules.items()]
        lines = extra_lines + child_lines
        text = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                text += extra_lines[0]
            else:
                text += "\n  " + "\n  ".join(lines) + "\n"
        return text + ")"
