"""Evaluation metrics on NumPy arrays (or CuPy arrays, Tensors, lists): functions with
scikit-learn's names and semantics, and accumulating metric objects for mini-batches.

Functions (tested against scikit-learn in tests/test_metrics.py)
    Classification: ``accuracy_score``, ``precision_score``, ``recall_score``, ``f1_score``,
    ``confusion_matrix``, ``roc_auc_score`` (binary and multi-class one-vs-rest).
    Regression: ``mean_squared_error``, ``mean_absolute_error``, ``r2_score``.
    Plot: ``plot_confusion_matrix`` (needs matplotlib: ``pip install "ranvier[plot]"``).

    - Labels may be integers, booleans, integral floats or strings. Classes are the sorted
      union of the labels in ``y_true`` and ``y_pred`` (as in scikit-learn).
    - Where scikit-learn takes predicted labels, these functions also take ``(n, C)`` scores
      (logits or probabilities): the prediction is the argmax over the last axis, i.e. a class
      index ``0..C-1``, so ``y_true`` must then hold class indices.
    - ``average``: ``'binary'`` (the default of the precision/recall/F1 functions: the score
      of ``pos_label``; an error for more than two classes), ``'macro'`` (unweighted mean over
      classes), ``'weighted'`` (weighted by each class's support in ``y_true``), ``'micro'``
      (from the pooled counts; equals accuracy when every class is counted) or ``None``
      (an array with one score per class).
    - ``zero_division``: the value of a ratio whose denominator is zero (precision of a class
      never predicted, recall of a class absent from ``y_true``, F1 of a class absent from
      both): ``'warn'`` (0.0 and an ``UndefinedMetricWarning``), ``0``, ``1`` or ``np.nan``
      (such classes are then left out of the averages). F1 is computed as
      ``2 tp / (2 tp + fp + fn)``, so it is 0, not undefined, when precision and recall are 0.
    - Bad input (different lengths, no samples, NaN, continuous values given as labels,
      mixed strings and numbers) raises ``ValueError`` naming the function and the shapes.

Metric objects (for training loops and ``ranvier.train.fit``)
    ``Metric`` with ``update(y_true, y_pred)``, ``compute()``, ``reset()``; ``Accuracy``,
    ``Precision``, ``Recall``, ``F1``, ``ROCAUC``, ``MSE``, ``MAE``, ``R2``; ``get_metric(name)``.
    Updating batch by batch and computing at the end gives the same value as the function
    on all samples at once. Classification metric objects take, as ``y_pred``, labels
    ``(n,)``, scores ``(n, C)`` with ``C >= 2`` (argmax over the last axis), or one-column
    scores ``(n, 1)`` (class 1 where the score exceeds ``threshold``, default 0.5 for
    sigmoid probabilities; pass 0.0 for logits). ``y_true`` may be labels ``(n,)`` or
    ``(n, 1)``, or one-hot rows ``(n, C)``.
"""

from __future__ import annotations

import copy
import numbers
import warnings

import numpy as np

from .tensor import Tensor

__all__ = [
    "accuracy_score", "precision_score", "recall_score", "f1_score", "confusion_matrix",
    "roc_auc_score", "mean_squared_error", "mean_absolute_error", "r2_score",
    "plot_confusion_matrix", "UndefinedMetricWarning",
    "Metric", "Accuracy", "Precision", "Recall", "F1", "ROCAUC", "MSE", "MAE", "R2",
    "get_metric",
]


class UndefinedMetricWarning(UserWarning):
    """A ratio had a zero denominator and ``zero_division='warn'`` replaced it with 0."""


def _host_array(values) -> np.ndarray:
    """A NumPy array from NumPy/CuPy arrays, Tensors, lists."""
    if isinstance(values, Tensor):
        values = values.data
    if hasattr(values, "get") and hasattr(values, "__cuda_array_interface__"):
        values = values.get()
    return np.asarray(values)


# ------------------------------------------------------------------------ label handling

def _check_labels(op: str, name: str, labels: np.ndarray) -> np.ndarray:
    """Validate a 1-D array of class labels (numbers, booleans or strings)."""
    if labels.dtype.kind == "O":
        if all(isinstance(v, str) for v in labels.tolist()):
            labels = labels.astype(str)
        else:
            raise ValueError(f"{op}: {name} must hold numbers, booleans or strings, got "
                             f"objects ({labels[:3].tolist()}...)")
    if labels.dtype.kind not in "biufU":
        raise ValueError(f"{op}: {name} must hold numbers, booleans or strings, got dtype "
                         f"{labels.dtype}")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise ValueError(f"{op}: {name} contains NaN or infinite values")
        if not np.array_equal(labels, np.round(labels)):
            raise ValueError(f"{op}: {name} holds continuous values (e.g. "
                             f"{labels[labels != np.round(labels)][0]}), not class labels; "
                             f"pass labels, or (n, classes) scores as y_pred")
    return labels


def _predicted_labels(op: str, y_pred: np.ndarray) -> np.ndarray:
    """Labels from labels (n,) or from scores (n, C) with C >= 2 (argmax)."""
    if y_pred.ndim == 2 and y_pred.shape[1] >= 2:
        if y_pred.dtype.kind not in "biuf":
            raise ValueError(f"{op}: scores y_pred of shape {y_pred.shape} must be numeric, "
                             f"got dtype {y_pred.dtype}")
        if not np.isfinite(y_pred).all():
            raise ValueError(f"{op}: y_pred scores contain NaN or infinite values")
        return np.argmax(y_pred, axis=-1)
    return y_pred


def _classification_inputs(op: str, y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) as checked 1-D label arrays of equal, non-zero length."""
    y_true = _host_array(y_true)
    y_pred = _host_array(y_pred)
    original_pred_shape = y_pred.shape
    y_pred = _predicted_labels(op, y_pred)
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        y_true = y_true[:, 0]
    if y_pred.ndim == 2 and y_pred.shape[1] == 1:
        y_pred = y_pred[:, 0]
    if y_true.ndim != 1 or y_pred.ndim != 1 or y_true.shape != y_pred.shape:
        raise ValueError(f"{op}: y_true must be labels (n,) and y_pred labels (n,) or scores "
                         f"(n, classes), got shapes {y_true.shape} and {original_pred_shape}")
    if y_true.size == 0:
        raise ValueError(f"{op}: y_true and y_pred are empty; the metric needs samples")
    y_true = _check_labels(op, "y_true", y_true)
    y_pred = _check_labels(op, "y_pred", y_pred)
    if (y_true.dtype.kind == "U") != (y_pred.dtype.kind == "U"):
        raise ValueError(f"{op}: y_true and y_pred mix string and numeric labels (dtypes "
                         f"{y_true.dtype} and {y_pred.dtype})")
    return y_true, y_pred


def _label_indices(values: np.ndarray, sorted_labels: np.ndarray) -> np.ndarray:
    return np.searchsorted(sorted_labels, values)


def _full_confusion(y_true: np.ndarray, y_pred: np.ndarray, extra_labels=None):
    """(sorted labels, confusion matrix) over the union of all labels seen (and extra ones)."""
    pieces = [y_true, y_pred] + ([extra_labels] if extra_labels is not None else [])
    labels = np.unique(np.concatenate(pieces))
    k = labels.size
    flat = _label_indices(y_true, labels) * k + _label_indices(y_pred, labels)
    return labels, np.bincount(flat, minlength=k * k).reshape(k, k)


def _explicit_labels(op: str, labels, y_true: np.ndarray) -> np.ndarray:
    labels = _check_labels(op, "labels", np.asarray(labels).reshape(-1))
    if labels.size == 0:
        raise ValueError(f"{op}: labels must contain at least one label")
    if np.unique(labels).size != labels.size:
        raise ValueError(f"{op}: labels contains duplicates: {labels.tolist()}")
    if (labels.dtype.kind == "U") != (y_true.dtype.kind == "U"):
        raise ValueError(f"{op}: labels and y_true mix string and numeric labels")
    return labels


def _select(full_labels: np.ndarray, matrix: np.ndarray, labels: np.ndarray) -> np.ndarray:
    index = _label_indices(labels, full_labels)
    return matrix[np.ix_(index, index)]


# ------------------------------------------------------------------ classification metrics

def accuracy_score(y_true, y_pred, *, normalize: bool = True) -> float:
    """Fraction (or with ``normalize=False`` the number) of samples predicted correctly.

    Args:
        y_true: ``(n,)`` labels. y_pred: ``(n,)`` labels or ``(n, C)`` scores (argmax).
    """
    y_true, y_pred = _classification_inputs("accuracy_score", y_true, y_pred)
    correct = int(np.count_nonzero(y_true == y_pred))
    return correct / y_true.size if normalize else float(correct)


def confusion_matrix(y_true, y_pred, *, labels=None) -> np.ndarray:
    """Counts ``C[i, j]`` of samples of true class ``labels[i]`` predicted as ``labels[j]``.

    Args:
        y_true: ``(n,)`` labels. y_pred: ``(n,)`` labels or ``(n, C)`` scores (argmax).
        labels: the classes and their order; default the sorted union of both label arrays.
            Samples whose true or predicted label is not in ``labels`` are not counted.

    Returns:
        int64 array ``(k, k)``, rows true classes, columns predicted classes.
    """
    op = "confusion_matrix"
    y_true, y_pred = _classification_inputs(op, y_true, y_pred)
    if labels is None:
        return _full_confusion(y_true, y_pred)[1].astype(np.int64)
    labels = _explicit_labels(op, labels, y_true)
    if not np.isin(labels, y_true).any():
        raise ValueError(f"{op}: none of labels {labels.tolist()[:10]} occurs in y_true")
    full_labels, full = _full_confusion(y_true, y_pred, labels)
    return _select(full_labels, full, labels).astype(np.int64)


_AVERAGES = ("binary", "macro", "weighted", "micro", None)


def _zero_division_value(op: str, zero_division) -> float:
    if isinstance(zero_division, str):
        if zero_division == "warn":
            return 0.0
    elif isinstance(zero_division, numbers.Real) and not isinstance(zero_division, bool):
        if np.isnan(zero_division) or zero_division in (0, 1):
            return float(zero_division)
    raise ValueError(f"{op}: zero_division must be 'warn', 0, 1 or np.nan, got {zero_division!r}")


def _divide(op: str, numerator, denominator, zero_division, what: str) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    undefined = denominator == 0
    result = numerator / np.where(undefined, 1.0, denominator)
    if undefined.any():
        result[undefined] = _zero_division_value(op, zero_division)
        if zero_division == "warn":
            warnings.warn(f"{op}: {what} is ill-defined and set to 0.0 for "
                          f"{int(undefined.sum())} class(es); pass zero_division= to choose "
                          f"the value and silence this warning", UndefinedMetricWarning,
                          stacklevel=4)
    return result


def _nan_average(values: np.ndarray, weights) -> float:
    """Average of the values that are not NaN (NaN from zero_division=np.nan)."""
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    if weights is None or np.sum(np.asarray(weights)[keep]) == 0:
        return float(np.mean(values[keep]))
    return float(np.average(values[keep], weights=np.asarray(weights)[keep]))


def _precision_recall_f1(op: str, y_true, y_pred, labels, pos_label, average, zero_division):
    """(precision, recall, f1) averaged as asked: floats, or arrays for average=None."""
    if average not in _AVERAGES:
        raise ValueError(f"{op}: average must be one of 'binary', 'macro', 'weighted', "
                         f"'micro' or None, got {average!r}")
    _zero_division_value(op, zero_division)  # validate early
    y_true, y_pred = _classification_inputs(op, y_true, y_pred)
    present = np.unique(np.concatenate([y_true, y_pred]))
    if average == "binary":
        if present.size > 2:
            raise ValueError(f"{op}: average='binary' needs at most two classes but the labels "
                             f"hold {present.size} ({present.tolist()[:10]}); choose "
                             f"average='macro', 'weighted', 'micro' or None")
        if pos_label not in present.tolist() and present.size == 2:
            raise ValueError(f"{op}: pos_label={pos_label!r} is not one of the labels "
                             f"{present.tolist()}")
        labels = _explicit_labels(op, [pos_label], y_true)
    elif labels is None:
        labels = present
    else:
        labels = _explicit_labels(op, labels, y_true)
    full_labels, full = _full_confusion(y_true, y_pred, labels)
    index = _label_indices(labels, full_labels)
    true_positives = np.diag(full)[index]
    predicted = full.sum(axis=0)[index]        # tp + fp
    actual = full.sum(axis=1)[index]           # tp + fn, the support
    if average == "micro":
        true_positives, predicted, actual = (np.array([v.sum()]) for v in
                                             (true_positives, predicted, actual))
    precision = _divide(op, true_positives, predicted, zero_division, "precision")
    recall = _divide(op, true_positives, actual, zero_division, "recall")
    f1 = _divide(op, 2 * true_positives, predicted + actual, zero_division, "F1")
    if average is None:
        return precision, recall, f1
    weights = actual if average == "weighted" else None
    return tuple(_nan_average(v, weights) for v in (precision, recall, f1))


_PRF_DOC = """

    Args:
        y_true: ``(n,)`` labels. y_pred: ``(n,)`` labels or ``(n, C)`` scores (argmax).
        labels: the classes to score (and average over) for averages other than
            ``'binary'``; default the sorted union of the labels in ``y_true`` and ``y_pred``.
        pos_label: the positive class for ``average='binary'``.
        average: ``'binary'``, ``'macro'``, ``'weighted'``, ``'micro'`` or ``None``
            (one score per class, in the order of ``labels``).
        zero_division: ``'warn'``, ``0``, ``1`` or ``np.nan``: the value where the
            denominator is zero (see the module docstring).
    """


def precision_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary",
                    zero_division="warn"):
    return _precision_recall_f1("precision_score", y_true, y_pred, labels, pos_label, average,
                                zero_division)[0]


def recall_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary",
                 zero_division="warn"):
    return _precision_recall_f1("recall_score", y_true, y_pred, labels, pos_label, average,
                                zero_division)[1]


def f1_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary",
             zero_division="warn"):
    return _precision_recall_f1("f1_score", y_true, y_pred, labels, pos_label, average,
                                zero_division)[2]


precision_score.__doc__ = "Precision ``tp / (tp + fp)`` (scikit-learn's semantics)." + _PRF_DOC
recall_score.__doc__ = "Recall (sensitivity) ``tp / (tp + fn)`` (scikit-learn's semantics)." + _PRF_DOC
f1_score.__doc__ = ("F1 ``2 tp / (2 tp + fp + fn)``, the harmonic mean of precision and recall "
                    "(scikit-learn's semantics)." + _PRF_DOC)


# ---------------------------------------------------------------------------------- ROC AUC

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


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC of boolean `positive` (both classes present) against `scores`."""
    n_positive = int(positive.sum())
    n_negative = positive.size - n_positive
    ranks = _average_ranks(scores.astype(np.float64))
    rank_sum = ranks[positive].sum()
    return float((rank_sum - n_positive * (n_positive + 1) / 2.0) / (n_positive * n_negative))


def roc_auc_score(y_true, y_score, *, average="macro", labels=None):
    """Area under the ROC curve: binary, or multi-class one-vs-rest.

    Computed as the Mann-Whitney statistic: the probability that a randomly drawn positive gets
    a higher score than a randomly drawn negative, ties counting one half. This equals the
    trapezoidal area under the ROC curve (as scikit-learn computes it).

    Args:
        y_true: ``(n,)`` labels.
        y_score: binary: ``(n,)`` scores, higher meaning more likely the positive class,
            which is the larger of the two labels (``1`` of ``{0, 1}``, ``True`` of booleans,
            ``1`` of ``{-1, 1}``); ``(n, 2)`` scores use column 1. Multi-class: ``(n, C)``
            scores, column ``j`` for class ``labels[j]``; each class's AUC against the rest
            ranks the samples by its column (pass probabilities to match scikit-learn, which
            insists on them; any scores are accepted here).
        average: multi-class only: ``'macro'`` (mean over classes), ``'weighted'`` (weighted
            by each class's prevalence in ``y_true``) or ``None`` (an array, one AUC per class).
        labels: multi-class only: the classes in column order; default the sorted classes of
            ``y_true``, which must then number ``C``.

    Raises:
        ValueError: shapes that do not fit, non-finite scores, labels that are not numbers or
            booleans (binary), a single class in ``y_true``, a class without samples.
    """
    op = "roc_auc_score"
    y_true = _host_array(y_true)
    y_score = _host_array(y_score)
    if y_true.ndim != 1 or y_score.ndim not in (1, 2) or y_true.shape[0] != y_score.shape[0]:
        raise ValueError(f"{op}: y_true and y_score must be 1-D of equal length, got shapes "
                         f"{y_true.shape} and {y_score.shape} (y_score may also be "
                         f"(n, classes))")
    if y_score.dtype.kind not in "biuf":
        raise ValueError(f"{op}: y_score must be numeric, got dtype {y_score.dtype}")
    if y_true.size == 0:
        raise ValueError(f"{op}: y_true and y_score are empty; the metric needs samples")
    if not np.isfinite(y_score).all():
        raise ValueError(f"{op}: y_score contains NaN or infinite values")
    if y_score.ndim == 2 and y_score.shape[1] <= 2 and labels is None:
        y_score = y_score[:, -1]                  # (n, 1) or (n, 2): the positive column
    if y_score.ndim == 1:
        if y_true.dtype.kind not in "biuf":
            raise ValueError(f"{op}: y_true and y_score must be numeric or boolean, got dtypes "
                             f"{y_true.dtype} and {y_score.dtype}")
        if y_true.dtype.kind == "f" and not np.isfinite(y_true).all():
            raise ValueError(f"{op}: y_true contains NaN or infinite values")
        classes = np.unique(y_true)
        if classes.size != 2:
            raise ValueError(f"{op}: y_true must contain exactly two classes, got "
                             f"{classes.size} ({classes[:5].tolist()}); ROC AUC is undefined"
                             + (" (for more classes pass y_score of shape (n, classes))"
                                if classes.size > 2 else ""))
        return _binary_auc(y_true == classes[1], y_score)
    # multi-class, one-vs-rest
    if average not in ("macro", "weighted", None):
        raise ValueError(f"{op}: average must be 'macro', 'weighted' or None for multi-class "
                         f"ROC AUC, got {average!r}")
    y_true = _check_labels(op, "y_true", y_true)
    n_columns = y_score.shape[1]
    if labels is None:
        labels = np.unique(y_true)
        if labels.size != n_columns:
            raise ValueError(f"{op}: y_score has {n_columns} columns but y_true has "
                             f"{labels.size} classes ({labels.tolist()[:10]}); pass labels= "
                             f"naming the class of each column")
    else:
        labels = _explicit_labels(op, labels, y_true)
        if labels.size != n_columns:
            raise ValueError(f"{op}: labels has {labels.size} entries but y_score has "
                             f"{n_columns} columns")
        unknown = np.setdiff1d(y_true, labels)
        if unknown.size:
            raise ValueError(f"{op}: y_true holds labels not in labels: {unknown.tolist()[:10]}")
    aucs = np.empty(n_columns)
    prevalence = np.empty(n_columns)
    for column, label in enumerate(labels):
        positive = y_true == label
        prevalence[column] = positive.sum()
        if prevalence[column] in (0, y_true.size):
            raise ValueError(f"{op}: class {label.item()!r} has "
                             f"{'no' if prevalence[column] == 0 else 'all the'} samples in "
                             f"y_true; its one-vs-rest ROC AUC is undefined")
        aucs[column] = _binary_auc(positive, y_score[:, column])
    if average is None:
        return aucs
    return float(np.average(aucs, weights=prevalence if average == "weighted" else None))


# ------------------------------------------------------------------------ regression metrics

_MULTIOUTPUT = ("uniform_average", "raw_values")


def _regression_inputs(op: str, y_true, y_pred, multioutput) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) as float64 arrays of shape (n, outputs)."""
    if multioutput not in _MULTIOUTPUT:
        raise ValueError(f"{op}: multioutput must be 'uniform_average' or 'raw_values', got "
                         f"{multioutput!r}")
    y_true = _host_array(y_true)
    y_pred = _host_array(y_pred)
    shapes = (y_true.shape, y_pred.shape)
    # (n,) against (n, 1): a model's single output column is the same target.
    if y_true.ndim == 1:
        y_true = y_true[:, None]
    if y_pred.ndim == 1:
        y_pred = y_pred[:, None]
    if y_true.ndim != 2 or y_true.shape != y_pred.shape:
        raise ValueError(f"{op}: y_true and y_pred must have equal shapes (n,) or "
                         f"(n, outputs), got {shapes[0]} and {shapes[1]}")
    if y_true.dtype.kind not in "biuf" or y_pred.dtype.kind not in "biuf":
        raise ValueError(f"{op}: y_true and y_pred must be numeric, got dtypes {y_true.dtype} "
                         f"and {y_pred.dtype}")
    if y_true.shape[0] == 0:
        raise ValueError(f"{op}: y_true and y_pred are empty; the metric needs samples")
    y_true = y_true.astype(np.float64)
    y_pred = y_pred.astype(np.float64)
    if not (np.isfinite(y_true).all() and np.isfinite(y_pred).all()):
        raise ValueError(f"{op}: y_true or y_pred contains NaN or infinite values")
    return y_true, y_pred


def _output_average(values: np.ndarray, multioutput):
    return values if multioutput == "raw_values" else float(np.mean(values))


def mean_squared_error(y_true, y_pred, *, multioutput="uniform_average"):
    """Mean of ``(y_true - y_pred)**2`` per output, averaged over outputs.

    Args:
        y_true, y_pred: ``(n,)`` or ``(n, outputs)`` (``(n,)`` against ``(n, 1)`` is fine).
        multioutput: ``'uniform_average'`` (a float) or ``'raw_values'`` (one per output).
    """
    y_true, y_pred = _regression_inputs("mean_squared_error", y_true, y_pred, multioutput)
    return _output_average(np.mean((y_true - y_pred) ** 2, axis=0), multioutput)


def mean_absolute_error(y_true, y_pred, *, multioutput="uniform_average"):
    """Mean of ``|y_true - y_pred|`` per output, averaged over outputs (arguments as MSE)."""
    y_true, y_pred = _regression_inputs("mean_absolute_error", y_true, y_pred, multioutput)
    return _output_average(np.mean(np.abs(y_true - y_pred), axis=0), multioutput)


def _r2_from_sums(residual_ss: np.ndarray, total_ss: np.ndarray) -> np.ndarray:
    """1 - SS_res / SS_tot; a constant target scores 1.0 if predicted exactly, else 0.0
    (scikit-learn's force_finite convention)."""
    constant = total_ss == 0
    r2 = 1.0 - residual_ss / np.where(constant, 1.0, total_ss)
    r2[constant] = np.where(residual_ss[constant] == 0, 1.0, 0.0)
    return r2


def r2_score(y_true, y_pred, *, multioutput="uniform_average"):
    """Coefficient of determination ``1 - SS_res / SS_tot`` per output, averaged over outputs.

    A constant ``y_true`` column scores 1.0 when predicted exactly and 0.0 otherwise (as in
    scikit-learn). Needs at least two samples. Arguments as ``mean_squared_error``.
    """
    op = "r2_score"
    y_true, y_pred = _regression_inputs(op, y_true, y_pred, multioutput)
    if y_true.shape[0] < 2:
        raise ValueError(f"{op}: R^2 needs at least two samples, got {y_true.shape[0]}")
    residual_ss = np.sum((y_true - y_pred) ** 2, axis=0)
    total_ss = np.sum((y_true - y_true.mean(axis=0)) ** 2, axis=0)
    return _output_average(_r2_from_sums(residual_ss, total_ss), multioutput)


# ------------------------------------------------------------------------------------- plot

def plot_confusion_matrix(cm, class_names=None, path=None, normalize: bool = False,
                          title: str | None = None):
    """Draw a confusion matrix as a heat map with the value in each cell.

    Args:
        cm: ``(k, k)`` counts, rows true classes and columns predicted (``confusion_matrix``).
        class_names: ``k`` names for the ticks; default ``0..k-1``.
        path: where to save the figure (PNG, PDF, SVG by extension); ``None`` saves nothing.
        normalize: divide each row by its total, showing the fraction of each true class
            (recall on the diagonal); rows without samples stay 0.
        title: the figure title.

    Returns:
        the matplotlib ``Figure`` (made without pyplot, so no window opens).

    Raises:
        ImportError: matplotlib is not installed (``pip install "ranvier[plot]"``).
        ValueError: ``cm`` not square, negative or non-finite, or names of the wrong number.
    """
    op = "plot_confusion_matrix"
    cm = _host_array(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"{op}: cm must be a non-empty square (k, k) matrix, got shape "
                         f"{cm.shape}")
    if cm.dtype.kind not in "biuf" or not np.isfinite(cm).all() or (cm < 0).any():
        raise ValueError(f"{op}: cm must hold finite non-negative counts")
    k = cm.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"{op}: {len(names)} class_names for a {k}x{k} matrix")
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f'{op} needs matplotlib: pip install "ranvier[plot]" '
                          f"(or pip install matplotlib)") from None
    values = cm.astype(np.float64)
    if normalize:
        totals = values.sum(axis=1, keepdims=True)
        values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
    size = max(4.0, 0.6 * k + 2.0)
    figure = Figure(figsize=(size + 1.0, size))
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(k), labels=names, rotation=45, ha="right")
    axes.set_yticks(range(k), labels=names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title or ("confusion matrix (rows normalised)" if normalize
                             else "confusion matrix"))
    if k <= 30:  # beyond that the numbers are unreadable anyway
        threshold = values.max() / 2.0 if values.size else 0.0
        for i in range(k):
            for j in range(k):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(round(cm[i, j]))}"
                axes.text(j, i, text, ha="center", va="center", fontsize=8,
                          color="white" if values[i, j] > threshold else "black")
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure


# ---------------------------------------------------------------------- metric objects

class Metric:
    """A metric accumulated over mini-batches: ``update`` per batch, ``compute`` at the end.

    Subclasses set ``name`` (the key in a training history) and ``higher_is_better`` (for
    early stopping and checkpointing on the metric), and define ``reset``, ``update`` and
    ``compute``. Calling a metric, ``metric(y_true, y_pred)``, computes it on those arrays
    alone and leaves the accumulated state untouched.

    Example:
        >>> f1 = F1(average="macro")
        >>> for x, y in loader:
        ...     f1.update(y, model(x))
        >>> f1.compute()
    """

    name = "metric"
    higher_is_better = True

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define reset")

    def update(self, y_true, y_pred) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define update")

    def compute(self) -> float:
        raise NotImplementedError(f"{type(self).__name__} must define compute")

    def __call__(self, y_true, y_pred):
        fresh = copy.copy(self)
        fresh.reset()          # reset() rebinds the state, so self's state is not shared
        fresh.update(y_true, y_pred)
        return fresh.compute()

    def _nothing_yet(self):
        return ValueError(f"{type(self).__name__}.compute: no samples were given (call "
                          f"update first)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _batch_labels(op: str, y_true, y_pred, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels from a batch: y_pred labels, (n, C>=2) scores or (n, 1) scores; y_true labels
    (n,) / (n, 1) or one-hot (n, C)."""
    y_true = _host_array(y_true)
    y_pred = _host_array(y_pred)
    if y_true.ndim == 2 and y_true.shape[1] >= 2:
        y_true = np.argmax(y_true, axis=-1)
    if y_pred.ndim == 2 and y_pred.shape[1] == 1:
        if y_pred.dtype.kind not in "biuf" or not np.isfinite(y_pred).all():
            raise ValueError(f"{op}: one-column scores y_pred must be finite numbers")
        y_pred = (y_pred[:, 0] > threshold).astype(np.int64)
    return _classification_inputs(op, y_true, y_pred)


class _LabelMetric(Metric):
    """Keeps every batch's labels; compute() calls the one-shot function on all of them."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = float(threshold)
        super().__init__()

    def reset(self) -> None:
        self._true, self._pred = [], []

    def update(self, y_true, y_pred) -> None:
        y_true, y_pred = _batch_labels(f"{type(self).__name__}.update", y_true, y_pred,
                                       self.threshold)
        self._true.append(y_true)
        self._pred.append(y_pred)

    def _all_labels(self):
        if not self._true:
            raise self._nothing_yet()
        return np.concatenate(self._true), np.concatenate(self._pred)


class Accuracy(_LabelMetric):
    """Fraction of samples predicted correctly, over all batches (see ``accuracy_score``)."""

    name = "accuracy"

    def reset(self) -> None:
        self._correct = 0
        self._total = 0

    def update(self, y_true, y_pred) -> None:
        y_true, y_pred = _batch_labels("Accuracy.update", y_true, y_pred, self.threshold)
        self._correct += int(np.count_nonzero(y_true == y_pred))
        self._total += y_true.size

    def compute(self) -> float:
        if self._total == 0:
            raise self._nothing_yet()
        return self._correct / self._total


class _PRFMetric(_LabelMetric):
    _function = None

    def __init__(self, average="macro", *, labels=None, pos_label=1, zero_division=0,
                 threshold: float = 0.5):
        if average not in _AVERAGES:
            raise ValueError(f"{type(self).__name__}: average must be one of 'binary', 'macro', "
                             f"'weighted', 'micro' or None, got {average!r}")
        _zero_division_value(type(self).__name__, zero_division)
        self.average, self.labels, self.pos_label = average, labels, pos_label
        self.zero_division = zero_division
        super().__init__(threshold)

    def compute(self):
        y_true, y_pred = self._all_labels()
        return type(self)._function(y_true, y_pred, labels=self.labels, pos_label=self.pos_label,
                                    average=self.average, zero_division=self.zero_division)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(average={self.average!r})"


class Precision(_PRFMetric):
    """Precision over all batches (see ``precision_score``; default ``average='macro'``,
    ``zero_division=0``)."""

    name = "precision"
    _function = staticmethod(precision_score)


class Recall(_PRFMetric):
    """Recall over all batches (see ``recall_score``; default ``average='macro'``,
    ``zero_division=0``)."""

    name = "recall"
    _function = staticmethod(recall_score)


class F1(_PRFMetric):
    """F1 over all batches (see ``f1_score``; default ``average='macro'``, ``zero_division=0``).

    Macro F1 is the default because it is defined for any number of classes and does not
    let a large class hide a badly predicted small one; ``F1(average='binary')`` gives the
    F1 of ``pos_label`` for two-class problems.
    """

    name = "f1"
    _function = staticmethod(f1_score)


def _is_probability_rows(scores: np.ndarray) -> bool:
    return bool(((scores >= 0) & (scores <= 1)).all()
                and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4))


class ROCAUC(Metric):
    """ROC AUC over all batches (see ``roc_auc_score``): binary or one-vs-rest.

    ``y_pred`` is scores: ``(n,)`` or ``(n, 1)`` for binary problems, ``(n, C)`` otherwise.
    With ``softmax='auto'`` (default), ``(n, C)`` scores whose rows are not probability
    distributions are taken as logits and turned into probabilities with a softmax before
    ranking (as scikit-learn expects probabilities); ``True`` always applies it, ``False``
    never.
    """

    name = "roc_auc"

    def __init__(self, average="macro", *, labels=None, softmax="auto"):
        if softmax not in ("auto", True, False):
            raise ValueError(f"ROCAUC: softmax must be 'auto', True or False, got {softmax!r}")
        if average not in ("macro", "weighted", None):
            raise ValueError(f"ROCAUC: average must be 'macro', 'weighted' or None, got "
                             f"{average!r}")
        self.average, self.labels, self.softmax = average, labels, softmax
        super().__init__()

    def reset(self) -> None:
        self._true, self._scores = [], []

    def update(self, y_true, y_pred) -> None:
        op = "ROCAUC.update"
        y_true = _host_array(y_true)
        scores = _host_array(y_pred)
        if y_true.ndim == 2 and y_true.shape[1] == 1:
            y_true = y_true[:, 0]
        if y_true.ndim == 2 and y_true.shape[1] >= 2:
            y_true = np.argmax(y_true, axis=-1)
        if scores.ndim == 2 and scores.shape[1] == 1:
            scores = scores[:, 0]
        if y_true.ndim != 1 or scores.ndim not in (1, 2) or scores.shape[0] != y_true.shape[0]:
            raise ValueError(f"{op}: expected labels (n,) and scores (n,) or (n, classes), got "
                             f"shapes {y_true.shape} and {scores.shape}")
        if scores.dtype.kind not in "biuf" or not np.isfinite(scores).all():
            raise ValueError(f"{op}: scores must be finite numbers (got NaN, infinite or "
                             f"dtype {scores.dtype})")
        if self._scores and self._scores[0].shape[1:] != scores.shape[1:]:
            raise ValueError(f"{op}: scores of shape {scores.shape} after batches of "
                             f"{self._scores[0].shape[1:]} per sample")
        if scores.ndim == 2 and (self.softmax is True or
                                 (self.softmax == "auto" and not _is_probability_rows(scores))):
            shifted = scores - scores.max(axis=1, keepdims=True)
            exp = np.exp(shifted.astype(np.float64))
            scores = exp / exp.sum(axis=1, keepdims=True)
        self._true.append(y_true)
        self._scores.append(scores)

    def compute(self):
        if not self._true:
            raise self._nothing_yet()
        return roc_auc_score(np.concatenate(self._true), np.concatenate(self._scores),
                             average=self.average, labels=self.labels)


class _RegressionMetric(Metric):
    higher_is_better = False

    def _batch(self, y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
        y_true, y_pred = _regression_inputs(f"{type(self).__name__}.update", y_true, y_pred,
                                            "uniform_average")
        if self._outputs is not None and y_true.shape[1] != self._outputs:
            raise ValueError(f"{type(self).__name__}.update: {y_true.shape[1]} outputs after "
                             f"batches with {self._outputs}")
        self._outputs = y_true.shape[1]
        return y_true, y_pred


class MSE(_RegressionMetric):
    """Mean squared error over all batches (see ``mean_squared_error``)."""

    name = "mse"

    def reset(self) -> None:
        self._outputs = None
        self._sum = 0.0
        self._count = 0

    def _error(self, difference):
        return difference ** 2

    def update(self, y_true, y_pred) -> None:
        y_true, y_pred = self._batch(y_true, y_pred)
        self._sum += float(np.sum(self._error(y_true - y_pred)))
        self._count += y_true.size

    def compute(self) -> float:
        if self._count == 0:
            raise self._nothing_yet()
        # Every output has the same number of samples, so the mean over all entries is the
        # mean over outputs of the per-output means.
        return self._sum / self._count


class MAE(MSE):
    """Mean absolute error over all batches (see ``mean_absolute_error``)."""

    name = "mae"

    def _error(self, difference):
        return np.abs(difference)


class R2(_RegressionMetric):
    """R² over all batches (see ``r2_score``), uniform average over outputs.

    Keeps per output the count, mean and sum of squared deviations of ``y_true`` (merged
    batch by batch with Chan's parallel formula, which is stable where the textbook
    ``sum(y**2) - n * mean**2`` cancels) and the residual sum of squares.
    """

    name = "r2"
    higher_is_better = True

    def reset(self) -> None:
        self._outputs = None
        self._count = 0
        self._mean = None
        self._deviation_ss = None
        self._residual_ss = None

    def update(self, y_true, y_pred) -> None:
        y_true, y_pred = self._batch(y_true, y_pred)
        n_batch = y_true.shape[0]
        batch_mean = y_true.mean(axis=0)
        batch_deviation_ss = np.sum((y_true - batch_mean) ** 2, axis=0)
        batch_residual_ss = np.sum((y_true - y_pred) ** 2, axis=0)
        if self._count == 0:
            self._mean, self._deviation_ss = batch_mean, batch_deviation_ss
            self._residual_ss = batch_residual_ss
        else:
            total = self._count + n_batch
            delta = batch_mean - self._mean
            self._deviation_ss = (self._deviation_ss + batch_deviation_ss
                                  + delta ** 2 * self._count * n_batch / total)
            self._mean = self._mean + delta * n_batch / total
            self._residual_ss = self._residual_ss + batch_residual_ss
        self._count += n_batch

    def compute(self) -> float:
        if self._count == 0:
            raise self._nothing_yet()
        if self._count < 2:
            raise ValueError(f"R2.compute: R^2 needs at least two samples, got {self._count}")
        return float(np.mean(_r2_from_sums(self._residual_ss, self._deviation_ss)))


_METRICS = {"accuracy": Accuracy, "precision": Precision, "recall": Recall, "f1": F1,
            "roc_auc": ROCAUC, "mse": MSE, "mae": MAE, "r2": R2}


def get_metric(name) -> Metric:
    """A fresh metric object by name: ``'accuracy'``, ``'precision'``, ``'recall'``, ``'f1'``
    (macro averages), ``'roc_auc'``, ``'mse'``, ``'mae'``, ``'r2'``. A ``Metric`` instance
    is returned as it is."""
    if isinstance(name, Metric):
        return name
    if not isinstance(name, str):
        raise TypeError(f"get_metric: expected a metric name or a Metric, got "
                        f"{type(name).__name__}")
    try:
        return _METRICS[name.lower()]()
    except KeyError:
        raise ValueError(f"get_metric: unknown metric {name!r}; known: "
                         f"{', '.join(_METRICS)}") from None
