"""The Optimizer base class: parameter groups, per-parameter state, state dicts.

The layout is PyTorch's, so that code and habits carry over:
- ``param_groups``: a list of dicts, each with ``'params'`` (a list of Tensors) and every
  option of the optimizer (``'lr'``, ...); a group's own options override the defaults.
- ``state``: a dict keyed by parameter (Tensors hash by identity) holding that parameter's
  buffers (NumPy or CuPy arrays, like the parameter) and, for Adam and RMSprop, ``'step'``.
- ``state_dict()``: ``{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]}``
  where parameters are numbered 0, 1, ... in group order.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict

import numpy as np

from .._arrays import array_module, device_name, is_cuda_array, to_host
from ..autograd import enable_grad
from ..tensor import Tensor

# Group entries that learning-rate schedulers add (ranvier.optim.lr_scheduler), accepted by
# add_param_group and load_state_dict besides the optimizer's own options, as in PyTorch.
_SCHEDULER_KEYS = frozenset({"initial_lr"})

_SET_MESSAGE = ("optimizer parameters need to be organized in ordered collections, but the ordering of "
                "tensors in sets will change between runs. Please use a list instead.")


class Optimizer:
    """Base class of all optimizers.

    Args:
        params: an iterable of Tensors, or of dicts defining parameter groups (each with a
            ``'params'`` entry and any options that differ from ``defaults``).
        defaults: the optimizer's options, used where a group does not set them.

    Subclasses implement ``step()`` and ``_check_options(options)`` (raising PyTorch's
    "Invalid ..." ValueErrors).
    """

    def __init__(self, params, defaults: dict):
        self._check_options(defaults)
        self.defaults = defaults
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors "
                            "or dicts, but got ranvier.Tensor")
        if isinstance(params, dict):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors "
                            "or dicts, but got a single dict; wrap it in a list")
        if isinstance(params, (set, frozenset)):
            raise TypeError(_SET_MESSAGE)
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for param_group in param_groups:
            self.add_param_group(param_group)

    # -- options ---------------------------------------------------------------------------
    def _check_options(self, options: dict) -> None:
        """Raise ValueError for an invalid option value (subclasses override)."""

    # -- parameter groups ------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own options (e.g. a new layer to fine-tune)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("param_group must have a 'params' entry holding its parameters")
        param_group = dict(param_group)
        params = param_group["params"]
        if isinstance(params, Tensor):
            param_group["params"] = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(_SET_MESSAGE)
        else:
            param_group["params"] = list(params)
        for param in param_group["params"]:
            if not isinstance(param, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is "
                                f"{type(param).__module__}.{type(param).__name__}")
            if not param.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        unknown = sorted(set(param_group) - set(self.defaults) - {"params"} - _SCHEDULER_KEYS)
        if unknown:
            raise ValueError(f"param_group has unknown options {unknown}; {type(self).__name__} takes "
                             f"{sorted(self.defaults)}")
        for name, default in self.defaults.items():
            param_group.setdefault(name, default)
        self._check_options(param_group)

        params = param_group["params"]
        if len(params) != len({id(p) for p in params}):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; "
                          "in future, this will cause an error", UserWarning, stacklevel=3)
        existing = {id(p) for group in self.param_groups for p in group["params"]}
        if any(id(p) in existing for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    # -- the training loop's calls -----------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient: to None (default), or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if p.grad.grad_fn is not None:
                        p.grad = p.grad.detach()
                    p.grad.data[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a gradient; returns closure()'s loss, if given."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    @staticmethod
    def _evaluate_closure(closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    @staticmethod
    def _update_batches(group):
        """The group's (parameter, gradient array) pairs, split into lists that one
        multi-tensor update can take: one list per (device, dtype), in group order.

        A parameter listed twice in a group (PyTorch warns, and updates it twice) goes into a
        later list the second time, so that its two updates run one after the other.
        """
        pairs, dtypes = [], set()
        for p in group["params"]:
            grad = p.grad
            if grad is not None:
                pairs.append((p, grad.data))
                data = p.data
                dtypes.add(data.dtype if type(data) is np.ndarray else None)
        # The common case, checked first because it is cheap: host parameters of one dtype,
        # each listed once, make one list.
        if len(dtypes) == 1 and None not in dtypes and len({id(p) for p, _ in pairs}) == len(pairs):
            return [pairs]
        batches, occurrences = {}, {}
        for p, grad in pairs:
            occurrence = occurrences.get(id(p), 0)
            occurrences[id(p)] = occurrence + 1
            data = p.data
            device = "cpu" if type(data) is np.ndarray else device_name(data)
            key = (occurrence, device, data.dtype)
            batch = batches.get(key)
            if batch is None:
                batches[key] = batch = []
            batch.append((p, grad))
        return list(batches.values())

    def _states_with_buffers(self, batch, buffer_names):
        """The state dict of each parameter of a batch, in order. A parameter's first state
        gets ``'step'`` 0; every buffer in buffer_names that a state lacks starts as zeros."""
        states = []
        state_of = self.state
        for p, _ in batch:
            state = state_of[p]
            if not state:
                state["step"] = 0
            for name in buffer_names:
                if name not in state:
                    state[name] = self._zeros_like_param(p)
            states.append(state)
        return states

    @staticmethod
    def _zeros_like_param(p):
        """A state buffer for p: zeros of p's shape and dtype, on p's device."""
        xp = array_module(p.data)
        return xp.zeros(p.data.shape, dtype=p.data.dtype)

    # -- state dicts -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The optimizer's state in PyTorch's layout, with copies of the state arrays.

        ``{'state': {index: {'step': int, name: array, ...}}, 'param_groups': [{option:
        value, ..., 'params': [index, ...]}]}``; parameters are numbered in group order. The
        arrays are host NumPy copies (also when the parameters are on the GPU), so a saved
        state dict does not change as training goes on and ``ranvier.save`` takes it as is;
        ``load_state_dict`` puts them back on the parameters' device.
        """
        index_of = {}
        param_groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index_of.setdefault(id(p), len(index_of))
            packed["params"] = [index_of[id(p)] for p in group["params"]]
            param_groups.append(packed)
        state = {}
        for p, param_state in self.state.items():
            if id(p) in index_of:
                state[index_of[id(p)]] = {k: (_host_copy(v) if _is_array(v) else v)
                                          for k, v in param_state.items()}
        return {"state": dict(sorted(state.items())), "param_groups": param_groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore state saved by state_dict(), for an optimizer over the same parameters.

        The groups must match in number and size. State arrays are copied onto each
        parameter's device and dtype (and must have its shape); the groups' options are
        taken from the saved dict.
        """
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("load_state_dict: expected a dict with 'state' and 'param_groups' "
                             "(as returned by Optimizer.state_dict())")
        groups = self.param_groups
        saved_groups = list(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError(f"loaded state dict has a different number of parameter groups "
                             f"({len(saved_groups)}) than the optimizer ({len(groups)})")
        for i, (group, saved) in enumerate(zip(groups, saved_groups)):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(f"loaded state dict contains a parameter group that doesn't match the size "
                                 f"of optimizer's group: group {i} has {len(saved['params'])} parameters "
                                 f"in the state dict and {len(group['params'])} in the optimizer")
        param_of = {}
        for group, saved in zip(groups, saved_groups):
            for index, p in zip(saved["params"], group["params"]):
                param_of[index] = p
        new_groups = []
        for group, saved in zip(groups, saved_groups):
            options = {k: v for k, v in saved.items() if k != "params"}
            unknown = sorted(set(options) - set(self.defaults) - _SCHEDULER_KEYS)
            if unknown:
                raise ValueError(f"load_state_dict: the saved parameter groups have options {unknown} "
                                 f"that {type(self).__name__} does not take")
            new_group = {**self.defaults, **options, "params": group["params"]}
            self._check_options(new_group)
            new_groups.append(new_group)
        new_state = defaultdict(dict)
        for index, saved_state in state_dict["state"].items():
            if index not in param_of:
                raise ValueError(f"load_state_dict: the state dict has state for parameter {index}, which "
                                 f"is in none of its parameter groups")
            p = param_of[index]
            new_state[p] = {name: _restore_value(p, index, name, value) for name, value in saved_state.items()}
        self.param_groups = new_groups
        self.state = new_state

    # -- printing ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        text = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            text += f"\nParameter Group {i}\n"
            for key in sorted(group):
                if key != "params":
                    text += f"    {key}: {group[key]}\n"
        return text + ")"


def _host_copy(array):
    """A NumPy copy of a state array (a GPU array is copied to the host)."""
    return to_host(array) if is_cuda_array(array) else array.copy()


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) or is_cuda_array(value)


def _restore_value(p, index, name, value):
    """A saved state value for parameter p: arrays copied to p's device and dtype."""
    if name == "step":
        try:
            step = float(value.data if isinstance(value, Tensor) else value)
        except (TypeError, ValueError):
            step = float("nan")
        if not (math.isfinite(step) and step >= 0 and step == int(step)):
            raise ValueError(f"load_state_dict: parameter {index} has step {value!r}; expected a "
                             f"non-negative integer")
        return int(step)
    if value is None:
        return None
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, (list, tuple)):  # e.g. a state dict that went through JSON
        value = np.asarray(value)
    if not _is_array(value):
        raise TypeError(f"load_state_dict: parameter {index} has state {name!r} of type "
                        f"{type(value).__name__}; expected an array")
    xp = array_module(p.data)
    if xp is np and is_cuda_array(value):
        value = value.get()  # a CuPy array saved from a GPU run, restored on the CPU
    if xp is np:
        array = np.array(value, dtype=p.data.dtype, order="C")  # always a copy
    else:
        with xp.cuda.Device(p.data.device.id):  # p's GPU, which need not be the current one
            array = xp.array(value, dtype=p.data.dtype, order="C")
    if tuple(array.shape) != tuple(p.data.shape):
        raise ValueError(f"load_state_dict: parameter {index} has state {name!r} of shape "
                         f"{tuple(array.shape)} but the parameter has shape {tuple(p.data.shape)}")
    return array
