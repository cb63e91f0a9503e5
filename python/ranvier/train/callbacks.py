"""Callbacks for fit(): hooks called around epochs and batches, Keras-style.

``fit`` calls, on each callback in the order given (ModelCheckpoint instances last, so that
the checkpoint holds the other callbacks' state after the epoch):

    on_train_begin(logs)            once, before the first epoch (also when resuming)
    on_epoch_begin(epoch, logs)     epoch is 0-based
    on_batch_end(batch, logs)       logs: {"loss": this batch's loss, "size": its samples}
    on_epoch_end(epoch, logs)       logs: the epoch's "loss", metrics, "val_loss", "val_" metrics
    on_train_end(logs)

Before training, ``fit`` sets ``callback.trainer``: an object with ``model``, ``optimizer``,
``history`` (the History so far), ``epochs`` and ``stop_training``; a callback stops training
after the current epoch by setting ``self.trainer.stop_training = True``.
``state_dict()``/``load_state_dict()`` hold what a resumed run needs (JSON values and arrays).
"""

from __future__ import annotations

import math
import os

from ..optim.lr_scheduler import ReduceLROnPlateau

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler"]


class Callback:
    """Base class: override the hooks you need (all do nothing here)."""

    trainer = None

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def state_dict(self) -> dict:
        """What a resumed run needs to carry on as if never stopped (default: nothing)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _monitor_mode(name: str, monitor: str, mode: str) -> str:
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"{name}: monitor must be a non-empty string, got {monitor!r}")
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{name}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    # Losses and errors decrease; ranvier.metrics says for its metrics; the rest increase.
    base = monitor[4:] if monitor.startswith("val_") else monitor
    from .. import metrics
    try:
        return "max" if metrics.get_metric(base).higher_is_better else "min"
    except (ValueError, TypeError):
        pass
    lower_is_better = base in ("loss", "mse", "mae", "mean_squared_error", "mean_absolute_error") \
        or base.endswith("loss") or base.endswith("error")
    return "min" if lower_is_better else "max"


def _monitored_value(name: str, monitor: str, logs: dict | None) -> float:
    if not logs or monitor not in logs:
        available = ", ".join(sorted(logs or {})) or "none"
        raise KeyError(f"{name}: the monitored quantity {monitor!r} is not in the epoch's logs "
                       f"(available: {available}; 'val_' names need validation_data)")
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Stop training when a monitored quantity has stopped improving.

    Args:
        monitor: the name in the epoch logs to watch (default ``'val_loss'``).
        patience: epochs without improvement before stopping (default 0: stop at the first).
        min_delta: the least change that counts as an improvement (absolute, >= 0).
        mode: ``'min'``, ``'max'`` or ``'auto'`` (min for losses and errors, max otherwise).
        restore_best_weights: at the end, put back the weights of the best epoch.

    After training, ``stopped_epoch`` is the 0-based epoch at which it stopped (or None) and
    ``best_epoch`` the best one.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False):
        self.mode = _monitor_mode("EarlyStopping", monitor, mode)
        self.monitor = monitor
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or not math.isfinite(min_delta):
            raise ValueError(f"EarlyStopping: min_delta must be a finite number, got {min_delta!r}")
        self.patience = patience
        self.min_delta = abs(float(min_delta))
        self.restore_best_weights = bool(restore_best_weights)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.stopped_epoch = None
        self.best_weights = None

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        value = _monitored_value("EarlyStopping", self.monitor, logs)
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.trainer.model.state_dict()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.trainer.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict:
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.wait = int(state["wait"])
        self.best = float(state["best"])
        self.best_epoch = state["best_epoch"]
        self.stopped_epoch = state["stopped_epoch"]
        weights = state.get("best_weights")
        self.best_weights = dict(weights) if weights is not None else None


class ModelCheckpoint(Callback):
    """Save a checkpoint at the end of epochs: the model, the optimizer and everything fit
    needs to resume exactly (``fit(..., resume=path)``); see ``ranvier.train.checkpoint``.

    Args:
        path: the file; ``{epoch}`` (1-based) and any logged name (``{val_loss:.3f}``) are
            filled in with ``str.format``. Written atomically: the previous file stays
            intact until the new one is complete.
        monitor: the quantity compared when ``save_best_only`` (default ``'val_loss'``).
        save_best_only: save only when ``monitor`` improved on the best so far.
        mode: ``'min'``, ``'max'`` or ``'auto'``, as for EarlyStopping.

    ``last_path`` is the file written last (None before the first save).
    """

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto"):
        self.path = os.fspath(path)
        self.mode = _monitor_mode("ModelCheckpoint", monitor, mode)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.last_path = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = _monitored_value("ModelCheckpoint", self.monitor, logs)
            better = value < self.best if self.mode == "min" else value > self.best
            if not better:
                return
            self.best = value
        try:
            path = self.path.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint: cannot fill in the path {self.path!r} "
                             f"({exc!r}); use {{epoch}} or names from the logs "
                             f"({', '.join(sorted(logs))})") from None
        self.last_path = path
        self.trainer.save_checkpoint(path, epoch)

    def state_dict(self) -> dict:
        return {"best": self.best, "last_path": self.last_path}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.last_path = state["last_path"]


class LearningRateScheduler(Callback):
    """Step a learning-rate scheduler at the end of every epoch.

    Args:
        scheduler: a ``ranvier.optim.lr_scheduler`` scheduler over fit's optimizer.
            ``ReduceLROnPlateau`` is stepped with the monitored value, the others with
            ``step()``.
        monitor: the logged quantity for ReduceLROnPlateau (default ``'val_loss'``).

    The epoch logs gain ``'lr'`` (the first group's rate used during that epoch).
    """

    def __init__(self, scheduler, monitor: str = "val_loss"):
        if not (hasattr(scheduler, "step") and hasattr(scheduler, "get_last_lr")):
            raise TypeError(f"LearningRateScheduler: expected a learning-rate scheduler, got "
                            f"{type(scheduler).__name__}")
        self.scheduler = scheduler
        self.monitor = monitor

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(self.scheduler.optimizer.param_groups[0]["lr"])
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(_monitored_value("LearningRateScheduler", self.monitor, logs))
        else:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
