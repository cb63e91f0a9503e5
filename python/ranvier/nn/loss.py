"""Loss modules: the functional losses with their options stored on the module.

``reduction`` is ``'mean'`` (default), ``'sum'`` or ``'none'`` (one loss per element or
sample). Class and positive weights are registered as buffers, as in PyTorch, so they move
with the model and appear in its state dict.
"""

from __future__ import annotations

import numbers

from . import _validation as check
from . import functional as F
from .module import Module

__all__ = ["MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss"]


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = check.reduction(type(self).__name__, reduction)

    def extra_repr(self) -> str:
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, reduction: str = "mean"):
        super().__init__(reduction)
        self.register_buffer("weight", weight)


class MSELoss(_Loss):
    """Mean squared error: (input - target)**2, reduced.

    Args:
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Shape:
        - Input: ``(*)``. Target: ``(*)``, the same shape.
        - Output: scalar, or ``(*)`` with ``reduction='none'``.

    Example:
        >>> loss = nn.MSELoss()(prediction, target)
    """

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """Binary cross-entropy of probabilities:
    -weight * (target * log(input) + (1 - target) * log(1 - input)), reduced.

    Prefer ``BCEWithLogitsLoss`` on raw scores: it is numerically stable.

    Args:
        weight: optional rescaling weight, broadcast against the input.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Shape:
        - Input: ``(*)`` probabilities in [0, 1]. Target: ``(*)``, the same shape.
        - Output: scalar, or ``(*)`` with ``reduction='none'``.

    Example:
        >>> loss = nn.BCELoss()(nn.functional.sigmoid(scores), labels)
    """

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, weight=self.weight,
                                      reduction=self.reduction)


class BCEWithLogitsLoss(_WeightedLoss):
    """Sigmoid followed by binary cross-entropy, computed stably from logits x:
    -weight * (pos_weight * target * log(sigmoid(x)) + (1 - target) * log(1 - sigmoid(x))).

    Args:
        weight: optional rescaling weight, broadcast against the input.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        pos_weight: optional weight of positive examples, one per class (last dimension), e.g.
            ``negatives / positives`` to balance rare positive labels.

    Shape:
        - Input: ``(*)`` logits. Target: ``(*)``, the same shape, values in [0, 1].
        - Output: scalar, or ``(*)`` with ``reduction='none'``.

    Example:
        >>> criterion = nn.BCEWithLogitsLoss(pos_weight=np.array([3.0]))
        >>> loss = criterion(model(x), y)
    """

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None):
        super().__init__(weight, reduction)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, weight=self.weight,
                                                  reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class CrossEntropyLoss(_WeightedLoss):
    """Cross-entropy of class scores (logits) and integer class targets:
    log_softmax over the class dimension followed by the negative log-likelihood.

    Args:
        weight: optional weight per class, shape ``(C,)``.
        ignore_index: targets equal to this value contribute nothing, neither to the loss
            nor to the mean's denominator (default -100).
        reduction: ``'mean'`` (weighted mean over the non-ignored targets) | ``'sum'`` |
            ``'none'``.

    Shape:
        - Input: ``(N, C)`` or ``(N, C, d1, ...)`` logits.
        - Target: ``(N)`` or ``(N, d1, ...)`` integer class indices in [0, C).
        - Output: scalar, or the target's shape with ``reduction='none'``.

    Example:
        >>> loss = nn.CrossEntropyLoss()(logits, labels)   # logits (N, C), labels (N,)
    """

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(weight, reduction)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(f"CrossEntropyLoss: ignore_index must be an integer, got "
                            f"{ignore_index!r}")
        self.ignore_index = int(ignore_index)

    def forward(self, input, target):
        return F.cross_entropy(input, target, weight=self.weight,
                               ignore_index=self.ignore_index, reduction=self.reduction)
