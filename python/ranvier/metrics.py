"""Evaluation metrics on NumPy arrays (or anything ``np.asarray`` accepts, Tensors included).

So far: ``roc_auc_score`` for binary problems. Accuracy, precision/recall/F1, one-vs-rest AUC and
the rest join this module with the training workflow.
"""

from __future__ import annotations

import numpy as np

__all__ = ["roc_auc_score"]


def _host_array(values) -> np.ndarray:
    """A NumPy array from NumPy/CuPy arrays, Tensors, lists."""
    if hasattr(values, "get") and hasattr(values, "__cuda_array_interface__"):
        values = values.get()
    return np.asarray(values)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-D array, tied values sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start of each run of equal values in sorted order, and the run each element is in.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    run_of_sorted = np.cumsum(np.r_[True, sorted_values[1:] != sorted_values[:-1]]) - 1
    ends = np.r_[starts[1:], values.size]                 # exclusive
    mean_rank_of_run = (starts + 1 + ends) / 2.0          # mean of ranks starts+1 .. ends
    ranks = np.empty(values.size)
    ranks[order] = mean_rank_of_run[run_of_sorted]
    return ranks


def roc_auc_score(y_true, y_score) -> float:
    """Area under the ROC curve of a binary classifier.

    Computed as the Mann-Whitney statistic: the probability that a randomly drawn positive gets
    a higher score than a randomly drawn negative, ties counting one half. This equals the
    trapezoidal area under the ROC curve (as scikit-learn computes it).

    Args:
        y_true: ``(n,)`` labels with exactly two distinct values; the larger one is the positive
            class (``1`` of ``{0, 1}``, ``True`` of booleans, ``1`` of ``{-1, 1}``).
        y_score: ``(n,)`` scores, higher meaning more likely positive (probabilities, logits).

    Raises:
        ValueError: shapes that are not ``(n,)`` and equal, a single class in ``y_true``,
            non-finite scores, or labels that are not numbers or booleans.
    """
    op = "roc_auc_score"
    y_true = _host_array(y_true)
    y_score = _host_array(y_score)
    if y_true.ndim != 1 or y_score.ndim != 1 or y_true.shape != y_score.shape:
        raise ValueError(f"{op}: y_true and y_score must be 1-D of equal length, got shapes "
                         f"{y_true.shape} and {y_score.shape}")
    if y_true.dtype.kind not in "biuf" or y_score.dtype.kind not in "biuf":
        raise ValueError(f"{op}: y_true and y_score must be numeric or boolean, got dtypes "
                         f"{y_true.dtype} and {y_score.dtype}")
    if not np.isfinite(y_score).all():
        raise ValueError(f"{op}: y_score contains NaN or infinite values")
    classes = np.unique(y_true)
    if classes.size != 2:
        raise ValueError(f"{op}: y_true must contain exactly two classes, got "
                         f"{classes.size} ({classes[:5].tolist()}); ROC AUC is undefined")
    positive = y_true == classes[1]
    n_positive = int(positive.sum())
    n_negative = y_true.size - n_positive
    ranks = _average_ranks(y_score.astype(np.float64))
    rank_sum = ranks[positive].sum()
    return float((rank_sum - n_positive * (n_positive + 1) / 2.0) / (n_positive * n_negative))
