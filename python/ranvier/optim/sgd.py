"""SGD, optionally with momentum, dampening, Nesterov momentum and weight decay."""

from __future__ import annotations

from .. import ops
from .optimizer import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``.

    g = grad (negated when maximize) + weight_decay * param; with momentum:
    buf = g on the first step, then momentum * buf + (1 - dampening) * g, and the step
    direction is g + momentum * buf (nesterov) or buf; param -= lr * direction.

    Args:
        params: parameters (Tensors) or parameter groups (dicts) to optimize.
        lr: learning rate (default 1e-3).
        momentum: momentum factor (default 0).
        dampening: dampening of the momentum (default 0).
        weight_decay: L2 penalty (default 0).
        nesterov: use Nesterov momentum (needs momentum > 0 and dampening 0).
        maximize: maximize the objective instead of minimizing it.

    State per parameter: ``'momentum_buffer'`` (only when momentum != 0).

    Example::

        optimizer = ranvier.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _check_options(self, options):
        if not 0.0 <= options["lr"]:
            raise ValueError(f"Invalid learning rate: {options['lr']}")
        if not 0.0 <= options["momentum"]:
            raise ValueError(f"Invalid momentum value: {options['momentum']}")
        if not 0.0 <= options["weight_decay"]:
            raise ValueError(f"Invalid weight_decay value: {options['weight_decay']}")
        if options["nesterov"] and (options["momentum"] <= 0 or options["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def step(self, closure=None):
        """One update of every parameter with a gradient; returns closure()'s loss, if given."""
        loss = self._evaluate_closure(closure)
        for group in self.param_groups:
            momentum = group["momentum"]
            for batch in self._update_batches(group):
                buffers, first_steps = None, None
                if momentum != 0:
                    buffers, first_steps = [], []
                    for p, _ in batch:
                        buffer = self.state[p].get("momentum_buffer")
                        first_steps.append(buffer is None)
                        # A new buffer's contents do not matter: the kernel fills it with the first g.
                        buffers.append(self._zeros_like_param(p) if buffer is None else buffer)
                ops.sgd_step_multi([p.data for p, _ in batch], [grad for _, grad in batch], buffers,
                                   first_steps=first_steps, lr=group["lr"], momentum=momentum,
                                   dampening=group["dampening"], weight_decay=group["weight_decay"],
                                   nesterov=group["nesterov"], maximize=group["maximize"])
                if momentum != 0:
                    for (p, _), buffer in zip(batch, buffers):
                        self.state[p]["momentum_buffer"] = buffer
        return loss
