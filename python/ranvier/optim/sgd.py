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
            for p, grad in self._params_with_grad(group):
                buffer, first_step = None, False
                if momentum != 0:
                    state = self.state[p]
                    buffer = state.get("momentum_buffer")
                    if buffer is None:  # the kernel fills it with the first gradient
                        buffer, first_step = self._zeros_like_param(p), True
                ops.sgd_step(p.data, grad, buffer, lr=group["lr"], momentum=momentum,
                             dampening=group["dampening"], weight_decay=group["weight_decay"],
                             nesterov=group["nesterov"], maximize=group["maximize"], first_step=first_step)
                if momentum != 0:
                    state["momentum_buffer"] = buffer
        return loss
