"""Learning-rate schedules with PyTorch's names, arguments and semantics.

Each scheduler wraps an optimizer and sets ``group['lr']`` of its parameter groups. As in
``torch.optim.lr_scheduler``:

- constructing a scheduler records each group's ``'initial_lr'`` (once, so that several
  schedulers can share an optimizer) and performs the first ``step()``, which leaves the
  learning rate at its initial value (``last_epoch == 0``);
- ``step()`` is called once per epoch *after* ``optimizer.step()``; ``ReduceLROnPlateau.step``
  takes the monitored value (``scheduler.step(val_loss)``);
- ``get_last_lr()`` returns the learning rates the last ``step()`` set, one per group;
- ``state_dict()`` holds every attribute except the optimizer (JSON-serialisable: numbers,
  strings, lists), ``load_state_dict()`` restores them.

StepLR and CosineAnnealingLR update the rate recursively from the current ``group['lr']``
exactly as PyTorch does (so that they chain with other changes to the rate); their values
equal the closed forms ``base_lr * gamma ** (epoch // step_size)`` and
``eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2`` up to rounding.

Example::

    optimizer = ranvier.optim.SGD(model.parameters(), lr=0.1)
    scheduler = ranvier.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.1)
    for epoch in range(100):
        train_one_epoch(...)        # calls optimizer.step()
        scheduler.step()
"""

from __future__ import annotations

import math
import numbers

from .optimizer import Optimizer

__all__ = ["LRScheduler", "StepLR", "CosineAnnealingLR", "ReduceLROnPlateau"]


def _check_optimizer(name: str, optimizer) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{name}: {type(optimizer).__name__} is not an Optimizer")


def _real(name: str, argument: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}: {argument} must be a finite number, got {value!r}")
    return float(value)


def _integer(name: str, argument: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: {argument} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class LRScheduler:
    """Base class of the epoch-indexed schedulers: subclasses implement ``get_lr()``.

    Args:
        optimizer: the wrapped optimizer.
        last_epoch: index of the last epoch; -1 (default) starts a new schedule. Resuming
            with ``last_epoch >= 0`` requires ``'initial_lr'`` in every group, as in PyTorch.
    """

    def __init__(self, optimizer, last_epoch: int = -1):
        name = type(self).__name__
        _check_optimizer(name, optimizer)
        self.optimizer = optimizer
        last_epoch = _integer(name, "last_epoch", last_epoch, -1)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] "
                                   f"when resuming an optimizer")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()

    def get_lr(self) -> list[float]:
        """The learning rates for epoch ``self.last_epoch`` (subclasses implement)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last ``step()``, one per parameter group."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one epoch and set the optimizer's learning rates."""
        self._step_count += 1
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """Every attribute but the optimizer, as a dict of plain values."""
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a ``state_dict()``; the optimizer's rates are restored with the optimizer's
        own state dict."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"{type(self).__name__}.load_state_dict: expected a dict, got "
                            f"{type(state_dict).__name__}")
        unknown = sorted(set(state_dict) - set(self.state_dict()))
        if unknown:
            raise ValueError(f"{type(self).__name__}.load_state_dict: unknown entries {unknown} "
                             f"(a state dict of another scheduler?)")
        self.__dict__.update(state_dict)


class StepLR(LRScheduler):
    """Multiplies each group's learning rate by ``gamma`` every ``step_size`` epochs.

    ``lr(epoch) = base_lr * gamma ** (epoch // step_size)``.

    Args:
        optimizer: the wrapped optimizer.
        step_size: period of the decay, in epochs (>= 1).
        gamma: multiplicative factor (default 0.1).
        last_epoch: see ``LRScheduler``.

    Example:
        >>> scheduler = StepLR(optimizer, step_size=30, gamma=0.1)  # 0.05 -> 0.005 at epoch 30
    """

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size = _integer("StepLR", "step_size", step_size, 1)
        self.gamma = _real("StepLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class CosineAnnealingLR(LRScheduler):
    """Anneals each group's learning rate from its initial value to ``eta_min`` along half a
    cosine over ``T_max`` epochs (SGDR without restarts), as ``torch.optim.lr_scheduler``.

    ``lr(epoch) = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``; past
    ``T_max`` the rate climbs back along the cosine, as in PyTorch.

    Args:
        optimizer: the wrapped optimizer.
        T_max: number of epochs of the half period (>= 1).
        eta_min: the minimum learning rate (default 0).
        last_epoch: see ``LRScheduler``.
    """

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        self.T_max = _integer("CosineAnnealingLR", "T_max", T_max, 1)
        self.eta_min = _real("CosineAnnealingLR", "eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        epoch, period = self.last_epoch, self.T_max
        if epoch == 0:
            return [group["lr"] for group in groups]
        if self._step_count == 1 and epoch > 0:  # constructed with last_epoch >= 0
            return [self.eta_min + (base - self.eta_min) * (1 + math.cos(epoch * math.pi / period)) / 2
                    for base in self.base_lrs]
        if (epoch - 1 - period) % (2 * period) == 0:  # the bottom of the cosine: climb back
            return [group["lr"] + (base - self.eta_min) * (1 - math.cos(math.pi / period)) / 2
                    for base, group in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * epoch / period))
                / (1 + math.cos(math.pi * (epoch - 1) / period))
                * (group["lr"] - self.eta_min) + self.eta_min
                for group in groups]


class ReduceLROnPlateau:
    """Reduces the learning rate when a monitored value has stopped improving, as
    ``torch.optim.lr_scheduler.ReduceLROnPlateau``.

    Call ``step(value)`` once per epoch with the monitored value (e.g. the validation loss).
    After more than ``patience`` epochs without improvement, each group's rate becomes
    ``max(lr * factor, min_lr)`` (a change smaller than ``eps`` is skipped), then ``cooldown``
    epochs pass before bad epochs are counted again.

    Args:
        optimizer: the wrapped optimizer.
        mode: ``'min'`` (the value should decrease) or ``'max'``.
        factor: multiplies the rate on a plateau, 0 <= factor < 1 (default 0.1).
        patience: epochs without improvement tolerated before reducing (default 10).
        threshold: the least change that counts as an improvement (default 1e-4).
        threshold_mode: ``'rel'``: better than ``best * (1 -+ threshold)``; ``'abs'``: better
            than ``best -+ threshold``.
        cooldown: epochs to wait after a reduction before counting again (default 0).
        min_lr: a lower bound on the rate, one number or one per group (default 0).
        eps: the smallest reduction applied (default 1e-8).
    """

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr=0, eps: float = 1e-8):
        name = "ReduceLROnPlateau"
        _check_optimizer(name, optimizer)
        factor = _real(name, "factor", factor)
        if not 0.0 <= factor < 1.0:
            raise ValueError("Factor should be < 1.0.")
        if mode not in ("min", "max"):
            raise ValueError(f"mode {mode!r} is unknown!")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold mode {threshold_mode!r} is unknown!")
        self.optimizer = optimizer
        groups = optimizer.param_groups
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(groups):
                raise ValueError(f"expected {len(groups)} min_lrs, got {len(min_lr)}")
            self.min_lrs = [_real(name, "min_lr", value) for value in min_lr]
        else:
            self.min_lrs = [_real(name, "min_lr", min_lr)] * len(groups)
        self.mode = mode
        self.factor = factor
        self.patience = _integer(name, "patience", patience, 0)
        self.threshold = _real(name, "threshold", threshold)
        self.threshold_mode = threshold_mode
        self.cooldown = _integer(name, "cooldown", cooldown, 0)
        self.eps = _real(name, "eps", eps)
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in groups]
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def is_better(self, current: float, best: float) -> bool:
        """Whether ``current`` improves on ``best`` by more than the threshold."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return current < best * (1.0 - self.threshold)
        if self.mode == "min":
            return current < best - self.threshold
        if self.threshold_mode == "rel":
            return current > best * (self.threshold + 1.0)
        return current > best + self.threshold

    def step(self, metrics) -> None:
        """Record one epoch's monitored value and reduce the rate on a plateau."""
        try:
            current = float(metrics)
        except (TypeError, ValueError):
            raise TypeError(f"ReduceLROnPlateau.step: expected the monitored value as a number, "
                            f"got {metrics!r}") from None
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _reduce_lr(self) -> None:
        for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    def get_last_lr(self) -> list[float]:
        """The learning rates after the last ``step()``, one per parameter group."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Every attribute but the optimizer (``best`` may be +-inf: store it as JSON with
        ``allow_nan``, as ranvier's checkpoints do)."""
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        if not isinstance(state_dict, dict):
            raise TypeError(f"ReduceLROnPlateau.load_state_dict: expected a dict, got "
                            f"{type(state_dict).__name__}")
        unknown = sorted(set(state_dict) - set(self.state_dict()))
        if unknown:
            raise ValueError(f"ReduceLROnPlateau.load_state_dict: unknown entries {unknown}")
        self.__dict__.update(state_dict)
