"""Sequential: modules applied one after the other."""

from __future__ import annotations

import numbers
from collections import OrderedDict
from collections.abc import Iterator

from . import functional as F
from .activation import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .linear import Linear
from .module import Module
from .pooling import MaxPool1d, MaxPool2d

__all__ = ["Sequential"]


def _fused_activation(module):
    """(name, negative_slope) of the fused linear kernel's activation for an activation
    layer that it can replace, else None. Exact types only: a subclass may change forward."""
    kind = type(module)
    if kind is ReLU:
        return "relu", 0.0
    if kind is Sigmoid:
        return "sigmoid", 0.0
    if kind is Tanh:
        return "tanh", 0.0
    if kind is GELU:
        return ("gelu" if module.approximate == "none" else "gelu_tanh"), 0.0
    if kind is LeakyReLU:
        return "leaky_relu", module.negative_slope
    return None


def _pools_before_relu(relu, pool) -> bool:
    """Whether ``relu`` followed by ``pool`` may run as pool, then ReLU on its (smaller)
    output: exact ReLU and MaxPool1d/2d layers that run their own forward, the pool
    returning values only. max(relu(window)) is relu(max(window)) for every window, and the
    gradients agree too: where a window's maximum is positive it is the same element either
    way (ReLU leaves positive values as they are), and where it is not, ReLU's gradient is
    zero whichever element the pool picked. A NaN is the pool's pick either way and passes
    through both. (The one difference is a zero's sign: a window of -1 and -0.0 gives +0.0
    in the written order and -0.0 in this one.)"""
    return (_runs_own_forward(relu, ReLU)
            and any(_runs_own_forward(pool, kind) for kind in (MaxPool1d, MaxPool2d))
            and not pool.return_indices)


def _runs_own_forward(module, kind) -> bool:
    """Whether calling `module` runs `kind`'s forward unchanged: its exact type, no forward
    replaced on the instance, and no forward hooks (should Module ever get them)."""
    attributes = module.__dict__
    return (type(module) is kind and "forward" not in attributes
            and not attributes.get("_forward_hooks"))


class Sequential(Module):
    """A chain of modules: the output of each is the input of the next.

    Sub-modules are named ``"0"``, ``"1"``, ... (so the state-dict keys are ``"0.weight"``,
    ...), or by the keys of an ``OrderedDict`` given as the only argument.

    A ``Linear`` followed directly by ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh`` or
    ``GELU`` (exactly these classes, forward not replaced) runs as one fused kernel: bias
    and activation are applied in the GEMM's output pass, and the backward is one call. The
    results and gradients are those of running the two modules in turn, to rounding.
    Likewise a ``ReLU`` followed directly by ``MaxPool1d`` or ``MaxPool2d`` (without
    ``return_indices``) runs as the pooling, then the ReLU on the pooled values: the same
    values and gradients (the sign of a zero aside), with the ReLU's work cut to the size of
    the pooled output.

    Args:
        *modules: the modules in order, or one ``OrderedDict`` of name -> module.

    Shape:
        - Input: what the first module takes. Output: what the last module returns.

    Example:
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> list(model.state_dict())
        ['0.weight', '0.bias', '2.weight', '2.bias']
        >>> model[0], len(model)
        (Linear(in_features=3, out_features=4, bias=True), 3)
    """

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, module in args[0].items():
                self._add_checked(name, module)
        else:
            for index, module in enumerate(args):
                self._add_checked(str(index), module)

    def _add_checked(self, name: str, module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: element {name!r} is a {type(module).__name__}, "
                            f"not a Module")
        self.add_module(name, module)

    def _key_at(self, index) -> str:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"Sequential indices must be integers or slices, not "
                            f"{type(index).__name__}")
        size = len(self._modules)
        if not -size <= index < size:
            raise IndexError(f"index {index} is out of range for a Sequential of length {size}")
        return list(self._modules)[index % size]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return self._modules[self._key_at(index)]

    def __setitem__(self, index, module) -> None:
        key = self._key_at(index)
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: cannot set element {index} to a "
                            f"{type(module).__name__}, not a Module")
        self._modules[key] = module

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> "Sequential":
        """Add ``module`` at the end (named by its position). Returns self."""
        self._add_checked(str(len(self)), module)
        return self

    def forward(self, input):
        # A Linear followed directly by ReLU, LeakyReLU, Sigmoid, Tanh or GELU runs as one
        # fused kernel (bias and activation in the GEMM's output pass, one backward call):
        # the same values and gradients to rounding, fewer passes and Python calls.
        modules = list(self._modules.values())
        index, count = 0, len(modules)
        while index < count:
            module = modules[index]
            if index + 1 < count and _runs_own_forward(module, Linear):
                following = modules[index + 1]
                fused = _fused_activation(following)
                if fused is not None and _runs_own_forward(following, type(following)):
                    module._check_input(input)
                    params = module._parameters
                    input = F._linear_activation(input, params["weight"], params["bias"], *fused)
                    index += 2
                    continue
            if index + 1 < count and _pools_before_relu(module, modules[index + 1]):
                # ReLU then max pooling, as CNNs are written, runs as pooling then ReLU: the
                # ReLU's passes (forward and backward) then cover a quarter of the elements
                # for 2x2 windows, and its full-size output is never made.
                input = module(modules[index + 1](input))
                index += 2
                continue
            input = module(input)
            index += 1
        return input
