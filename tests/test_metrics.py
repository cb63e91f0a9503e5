"""ranvier.metrics.roc_auc_score against a direct pair count and against scikit-learn."""

import numpy as np
import pytest

from ranvier.metrics import roc_auc_score


def auc_by_counting_pairs(y_true, y_score):
    """The definition: P(score of a positive > score of a negative), ties counting 1/2."""
    positives = [s for t, s in zip(y_true, y_score) if t]
    negatives = [s for t, s in zip(y_true, y_score) if not t]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def test_hand_made_cases():
    assert roc_auc_score([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc_score([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert roc_auc_score([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # 3 positives x 2 negatives: pairs (0.9>0.3, 0.9>0.6, 0.6=0.6 -> 1/2, 0.6>0.3, 0.2<both).
    assert roc_auc_score([1, 0, 1, 0, 1], [0.9, 0.3, 0.6, 0.6, 0.2]) == pytest.approx(3.5 / 6)


@pytest.mark.parametrize("n, ties", [(2, False), (7, True), (50, False), (301, True)])
def test_matches_pair_count_and_sklearn(rng, n, ties):
    y_true = rng.integers(0, 2, n)
    y_true[:2] = [0, 1]                                 # both classes present
    y_score = rng.integers(0, 5, n).astype(float) if ties else rng.normal(size=n)
    expected = auc_by_counting_pairs(y_true, y_score)
    assert roc_auc_score(y_true, y_score) == pytest.approx(expected, abs=1e-12)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    assert roc_auc_score(y_true, y_score) == pytest.approx(
        sklearn_metrics.roc_auc_score(y_true, y_score), abs=1e-12)


def test_label_conventions(rng):
    y = rng.integers(0, 2, 40)
    y[:2] = [0, 1]
    s = rng.normal(size=40)
    reference = roc_auc_score(y, s)
    assert roc_auc_score(y.astype(bool), s) == reference
    assert roc_auc_score(np.where(y == 1, 1, -1), s) == reference     # larger label positive
    assert roc_auc_score(y + 1.0, s.astype(np.float32)) == pytest.approx(reference)


def test_errors():
    with pytest.raises(ValueError, match="roc_auc_score: y_true must contain exactly two "
                                         "classes, got 1"):
        roc_auc_score([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="exactly two classes, got 3"):
        roc_auc_score([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"1-D of equal length, got shapes \(3,\) and \(2,\)"):
        roc_auc_score([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"got shapes \(2, 1\)"):
        roc_auc_score([[0], [1]], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN or infinite"):
        roc_auc_score([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="numeric or boolean"):
        roc_auc_score(["a", "b"], [0.1, 0.2])
