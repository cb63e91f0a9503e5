"""History: what fit() returns, the per-epoch values of the loss and the metrics."""

from __future__ import annotations

import os

__all__ = ["History"]

_PLOT_HINT = 'History.plot needs matplotlib; install it with: pip install "ranvier[plot]"'


class History:
    """Per-epoch training record, as Keras' ``History``.

    Attributes:
        history: ``{name: [value per epoch]}`` with ``'loss'``, each metric by name and, with
            validation data, ``'val_loss'`` and ``'val_' + metric``.
        epoch: the indices (0-based) of the epochs recorded.
    """

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def record(self, epoch: int, logs: dict) -> None:
        """Append one epoch's values (``logs``: name -> float)."""
        self.epoch.append(int(epoch))
        for name, value in logs.items():
            self.history.setdefault(name, []).append(float(value))

    def state_dict(self) -> dict:
        return {"history": {k: list(v) for k, v in self.history.items()}, "epoch": list(self.epoch)}

    def load_state_dict(self, state: dict) -> None:
        try:
            self.history = {str(k): [float(x) for x in v] for k, v in state["history"].items()}
            self.epoch = [int(e) for e in state["epoch"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"History.load_state_dict: not a History state ({exc!r})") from None

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"

    def plot(self, path, *, dpi: int = 100) -> None:
        """Draw the curves to a PNG: one panel per quantity (loss first, then each metric),
        the training values and, where recorded, the validation ones (``val_`` twins).

        matplotlib is imported here, lazily (the ``plot`` extra); without it an ImportError
        says how to install it.

        Args:
            path: the PNG file to write.
            dpi: resolution.
        """
        try:
            # A bare Figure renders without pyplot, leaving the user's backend alone.
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError(_PLOT_HINT) from None
        if not self.epoch:
            raise ValueError("History.plot: nothing recorded yet (no epoch has finished)")
        names = [name for name in self.history if not name.startswith("val_")]
        names += [name[4:] for name in self.history
                  if name.startswith("val_") and name[4:] not in self.history]
        names.sort(key=lambda name: (name != "loss", name))
        figure = Figure(figsize=(4.5 * len(names), 3.5))
        axes = figure.subplots(1, len(names), squeeze=False)[0]
        epochs = [e + 1 for e in self.epoch]
        for ax, name in zip(axes, names):
            for key, label in ((name, "train"), ("val_" + name, "validation")):
                values = self.history.get(key)
                if values:
                    ax.plot(epochs[-len(values):], values, marker="o", markersize=3, label=label)
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.legend()
        figure.tight_layout()
        figure.savefig(os.fspath(path), dpi=dpi, format="png")
