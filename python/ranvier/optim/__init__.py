"""ranvier.optim: optimizers with PyTorch's names, arguments, state and state-dict layout.

Each optimizer updates the parameters' arrays in place with one fused multi-tensor call per
parameter group, device and dtype (ranvier.ops.sgd_step_multi / adam_step_multi /
rmsprop_step_multi), following torch.optim's update rules.

Example::

    optimizer = ranvier.optim.Adam(model.parameters(), lr=1e-3)
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
"""

from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop"]

# --- training workflow (issue 6): learning-rate schedules ---
from . import lr_scheduler

__all__ += ["lr_scheduler"]
