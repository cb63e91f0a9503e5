"""Adam and AdamW."""

from __future__ import annotations

from .. import ops
from .optimizer import Optimizer


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), as ``torch.optim.Adam``.

    m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2 (with g the
    gradient, negated when maximize, plus weight_decay * param);
    param -= lr * m_hat / (sqrt(v_hat) + eps) with bias-corrected m_hat, v_hat. amsgrad
    keeps the running maximum of v. decoupled_weight_decay=True is AdamW.

    Args:
        params: parameters (Tensors) or parameter groups (dicts) to optimize.
        lr: learning rate (default 1e-3).
        betas: decay rates of the running averages of the gradient and its square
            (default (0.9, 0.999)).
        eps: added to the denominator for numerical stability (default 1e-8).
        weight_decay: L2 penalty added to the gradient (default 0).
        amsgrad: use the AMSGrad variant (default False).
        maximize: maximize the objective instead of minimizing it.
        decoupled_weight_decay: shrink the parameter by lr * weight_decay instead (AdamW).

    State per parameter: ``'step'``, ``'exp_avg'``, ``'exp_avg_sq'`` and, with amsgrad,
    ``'max_exp_avg_sq'``.

    Example::

        optimizer = ranvier.optim.Adam(model.parameters(), lr=1e-3)
        optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _check_options(self, options):
        if not 0.0 <= options["lr"]:
            raise ValueError(f"Invalid learning rate: {options['lr']}")
        if not 0.0 <= options["eps"]:
            raise ValueError(f"Invalid epsilon value: {options['eps']}")
        betas = options["betas"]
        if len(betas) != 2:
            raise ValueError(f"Invalid betas: expected two values, got {betas}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= options["weight_decay"]:
            raise ValueError(f"Invalid weight_decay value: {options['weight_decay']}")

    def step(self, closure=None):
        """One update of every parameter with a gradient; returns closure()'s loss, if given."""
        loss = self._evaluate_closure(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            amsgrad = group["amsgrad"]
            buffer_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if amsgrad else ("exp_avg", "exp_avg_sq")
            for batch in self._update_batches(group):
                states = self._states_with_buffers(batch, buffer_names)
                # Each parameter's own step: one that had no gradient in some step lags behind.
                # The counters advance only after a successful update, so that a rejected call
                # (bad gradient) leaves the state as it was.
                steps = [state["step"] + 1 for state in states]
                ops.adam_step_multi([p.data for p, _ in batch], [grad for _, grad in batch],
                                    [state["exp_avg"] for state in states],
                                    [state["exp_avg_sq"] for state in states],
                                    [state["max_exp_avg_sq"] for state in states] if amsgrad else None,
                                    steps=steps, lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                                    weight_decay=group["weight_decay"],
                                    decoupled_weight_decay=group["decoupled_weight_decay"],
                                    amsgrad=amsgrad, maximize=group["maximize"])
                for state, step in zip(states, steps):
                    state["step"] = step
        return loss


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``: Adam with decoupled
    weight decay, param *= 1 - lr * weight_decay before the Adam update.

    Args are Adam's, with weight_decay defaulting to 1e-2.

    Example::

        optimizer = ranvier.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=True)
