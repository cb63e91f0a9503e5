"""Sequential: modules applied one after the other."""

from __future__ import annotations

import numbers
from collections import OrderedDict
from collections.abc import Iterator

from .module import Module

__all__ = ["Sequential"]


class Sequential(Module):
    """A chain of modules: the output of each is the input of the next.

    Sub-modules are named ``"0"``, ``"1"``, ... (so the state-dict keys are ``"0.weight"``,
    ...), or by the keys of an ``OrderedDict`` given as the only argument.

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
        for module in self._modules.values():
            input = module(input)
        return input
