"""RMSprop."""

from __future__ import annotations

from .. import ops
from .optimizer import Optimizer


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e), as ``torch.optim.RMSprop``.

    square_avg = alpha * square_avg + (1 - alpha) * g^2 (g: the gradient, negated when
    maximize, plus weight_decay * param); the step is g / (sqrt(square_avg) + eps), or with
    centered=True g / (sqrt(square_avg - grad_avg^2) + eps) where grad_avg is the running
    mean of g; with momentum the step feeds a momentum buffer. param -= lr * step.

    Args:
        params: parameters (Tensors) or parameter groups (dicts) to optimize.
        lr: learning rate (default 1e-2).
        alpha: smoothing constant (default 0.99).
        eps: added to the denominator for numerical stability (default 1e-8).
        weight_decay: L2 penalty (default 0).
        momentum: momentum factor (default 0).
        centered: normalise by the estimated variance of the gradient (default False).
        maximize: maximize the objective instead of minimizing it.

    State per parameter: ``'step'``, ``'square_avg'``, ``'momentum_buffer'`` (momentum > 0),
    ``'grad_avg'`` (centered).

    Example::

        optimizer = ranvier.optim.RMSprop(model.parameters(), lr=1e-2)
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
                 maximize=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    def _check_options(self, options):
        if not 0.0 <= options["lr"]:
            raise ValueError(f"Invalid learning rate: {options['lr']}")
        if not 0.0 <= options["eps"]:
            raise ValueError(f"Invalid epsilon value: {options['eps']}")
        if not 0.0 <= options["momentum"]:
            raise ValueError(f"Invalid momentum value: {options['momentum']}")
        if not 0.0 <= options["weight_decay"]:
            raise ValueError(f"Invalid weight_decay value: {options['weight_decay']}")
        if not 0.0 <= options["alpha"]:
            raise ValueError(f"Invalid alpha value: {options['alpha']}")

    def step(self, closure=None):
        """One update of every parameter with a gradient; returns closure()'s loss, if given."""
        loss = self._evaluate_closure(closure)
        for group in self.param_groups:
            use_momentum, centered = group["momentum"] > 0, group["centered"]
            buffer_names = ("square_avg",) + (("momentum_buffer",) if use_momentum else ()) + \
                (("grad_avg",) if centered else ())
            for batch in self._update_batches(group):
                states = self._states_with_buffers(batch, buffer_names)
                ops.rmsprop_step_multi([p.data for p, _ in batch], [grad for _, grad in batch],
                                       [state["square_avg"] for state in states],
                                       [state["momentum_buffer"] for state in states] if use_momentum else None,
                                       [state["grad_avg"] for state in states] if centered else None,
                                       lr=group["lr"], alpha=group["alpha"], eps=group["eps"],
                                       weight_decay=group["weight_decay"], momentum=group["momentum"],
                                       centered=centered, maximize=group["maximize"])
                for state in states:
                    state["step"] += 1
        return loss
