"""ranvier.metrics against scikit-learn (and, for ROC AUC, a direct pair count): functions,
accumulating metric objects, bad input, the confusion-matrix plot."""

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


# ===================================================================== the wider metric set

import warnings  # noqa: E402

import ranvier  # noqa: E402
from ranvier import metrics as rm  # noqa: E402


@pytest.fixture
def skm():
    return pytest.importorskip("sklearn.metrics")


def random_labels(rng, n, classes, missing_in_pred=()):
    y_true = rng.integers(0, classes, n)
    y_true[:classes] = np.arange(classes)            # every class present in y_true
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, classes, n))
    for c in missing_in_pred:
        y_pred[y_pred == c] = (c + 1) % classes
    return y_true, y_pred


PRF = [("precision_score", rm.precision_score), ("recall_score", rm.recall_score),
       ("f1_score", rm.f1_score)]


@pytest.mark.parametrize("classes, missing", [(2, ()), (3, ()), (5, (1,)), (7, (0, 3))])
@pytest.mark.parametrize("n", [9, 301])
def test_classification_functions_match_sklearn(skm, rng, classes, missing, n):
    y_true, y_pred = random_labels(rng, n, classes, missing)
    assert rm.accuracy_score(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert rm.accuracy_score(y_true, y_pred, normalize=False) == skm.accuracy_score(
        y_true, y_pred, normalize=False)
    np.testing.assert_array_equal(rm.confusion_matrix(y_true, y_pred),
                                  skm.confusion_matrix(y_true, y_pred))
    averages = ["macro", "weighted", "micro", None] + (["binary"] if classes == 2 else [])
    for name, ours in PRF:
        theirs = getattr(skm, name)
        for average in averages:
            for zero_division in (1, np.nan):      # 0 and 'warn': see the zero-division test
                expected = theirs(y_true, y_pred, average=average, zero_division=zero_division)
                got = ours(y_true, y_pred, average=average, zero_division=zero_division)
                np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0,
                                           err_msg=f"{name} {average} {zero_division}")
                if average is not None:
                    assert isinstance(got, float)


def test_zero_division_cases_match_sklearn(skm):
    # class 2 is never predicted, class 3 only predicted, class 4 absent from both (labels=)
    y_true = np.array([0, 1, 2, 2, 0, 1])
    y_pred = np.array([0, 1, 0, 3, 0, 0])
    labels = [0, 1, 2, 3, 4]
    for name, ours in PRF:
        theirs = getattr(skm, name)
        for average in ("macro", "weighted", "micro", None):
            for zero_division in (0, 1, np.nan):
                kwargs = dict(labels=labels, average=average, zero_division=zero_division)
                np.testing.assert_allclose(ours(y_true, y_pred, **kwargs),
                                           theirs(y_true, y_pred, **kwargs), rtol=1e-12,
                                           err_msg=f"{name} {average} {zero_division}")
    # binary with no positive predictions at all, and no positives at all
    for y_t, y_p in (([0, 1, 0, 1], [0, 0, 0, 0]), ([0, 0, 0], [0, 0, 1]), ([0, 0], [0, 0])):
        for name, ours in PRF:
            for zero_division in (0, 1):
                assert ours(y_t, y_p, zero_division=zero_division) == getattr(skm, name)(
                    y_t, y_p, zero_division=zero_division), (name, y_t, y_p)


def test_zero_division_warn():
    with pytest.warns(rm.UndefinedMetricWarning, match="precision_score: precision is "
                                                       "ill-defined and set to 0.0 for 1"):
        assert rm.precision_score([0, 1, 1], [0, 0, 0]) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rm.precision_score([0, 1, 1], [0, 0, 0], zero_division=1) == 1.0


def test_pos_label_labels_and_strings(skm, rng):
    y_true = rng.choice(np.array(["healthy", "tumour"]), 50)
    y_pred = rng.choice(np.array(["healthy", "tumour"]), 50)
    for name, ours in PRF:
        assert ours(y_true, y_pred, pos_label="tumour") == pytest.approx(
            getattr(skm, name)(y_true, y_pred, pos_label="tumour"))
    y_true, y_pred = random_labels(rng, 80, 4)
    for name, ours in PRF:
        np.testing.assert_allclose(ours(y_true, y_pred, labels=[3, 1], average=None),
                                   getattr(skm, name)(y_true, y_pred, labels=[3, 1],
                                                      average=None))
        assert ours(y_true, y_pred, labels=[2, 0], average="micro") == pytest.approx(
            getattr(skm, name)(y_true, y_pred, labels=[2, 0], average="micro"))
    np.testing.assert_array_equal(rm.confusion_matrix(y_true, y_pred, labels=[3, 0, 9]),
                                  skm.confusion_matrix(y_true, y_pred, labels=[3, 0, 9]))
    y_bin = (y_true > 1).astype(int)
    pred_bin = (y_pred > 1).astype(int)
    assert rm.f1_score(y_bin, pred_bin, pos_label=0) == pytest.approx(
        skm.f1_score(y_bin, pred_bin, pos_label=0))


def test_scores_are_argmaxed(rng):
    scores = rng.normal(size=(40, 3))
    y_true = rng.integers(0, 3, 40)
    labels = scores.argmax(axis=1)
    assert rm.accuracy_score(y_true, scores) == rm.accuracy_score(y_true, labels)
    assert rm.f1_score(y_true, scores, average="macro") == rm.f1_score(y_true, labels,
                                                                         average="macro")
    np.testing.assert_array_equal(rm.confusion_matrix(y_true, ranvier.tensor(scores)),
                                  rm.confusion_matrix(y_true, labels))


def test_classification_bad_input():
    with pytest.raises(ValueError, match=r"accuracy_score: y_true must be labels \(n,\) .*got "
                                         r"shapes \(3,\) and \(2,\)"):
        rm.accuracy_score([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="f1_score: y_true and y_pred are empty"):
        rm.f1_score([], [])
    with pytest.raises(ValueError, match="y_pred contains NaN"):
        rm.accuracy_score([0, 1], [0.0, np.nan])
    with pytest.raises(ValueError, match="y_pred scores contain NaN"):
        rm.accuracy_score([0, 1], [[0.2, np.nan], [0.1, 0.9]])
    with pytest.raises(ValueError, match=r"continuous values \(e.g. 0.3"):
        rm.precision_score([0, 1], [0.3, 0.9])
    with pytest.raises(ValueError, match="average='binary' needs at most two classes but the "
                                         "labels hold 3"):
        rm.f1_score([0, 1, 2], [0, 1, 1])
    with pytest.raises(ValueError, match=r"pos_label=1 is not one of the labels \['a', 'b'\]"):
        rm.recall_score(["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="average must be one of"):
        rm.f1_score([0, 1], [0, 1], average="samples")
    with pytest.raises(ValueError, match="zero_division must be 'warn', 0, 1 or np.nan"):
        rm.f1_score([0, 1], [0, 1], zero_division=0.5)
    with pytest.raises(ValueError, match="mix string and numeric labels"):
        rm.accuracy_score(["a", "b"], [0, 1])
    with pytest.raises(ValueError, match="none of labels"):
        rm.confusion_matrix([0, 1], [0, 1], labels=[5])
    with pytest.raises(ValueError, match="labels contains duplicates"):
        rm.confusion_matrix([0, 1], [0, 1], labels=[0, 0])


# ------------------------------------------------------------------------ ROC AUC (one-vs-rest)

def probabilities(rng, n, classes, ties=False):
    logits = rng.integers(0, 3, (n, classes)).astype(float) if ties else rng.normal(size=(n, classes))
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("n, classes, ties", [(12, 3, False), (60, 4, True), (203, 6, False)])
def test_roc_auc_multiclass_matches_sklearn(skm, rng, n, classes, ties):
    y_true = rng.integers(0, classes, n)
    y_true[:classes] = np.arange(classes)
    scores = probabilities(rng, n, classes, ties)
    for average in ("macro", "weighted"):
        assert rm.roc_auc_score(y_true, scores, average=average) == pytest.approx(
            skm.roc_auc_score(y_true, scores, multi_class="ovr", average=average), abs=1e-12)
    per_class = rm.roc_auc_score(y_true, scores, average=None)
    for c in range(classes):
        assert per_class[c] == pytest.approx(auc_by_counting_pairs(y_true == c, scores[:, c]))
    names = np.array(["b", "c", "a", "d", "e", "f"][:classes])
    order = np.argsort(names)             # scikit-learn wants labels sorted, we take any order
    assert rm.roc_auc_score(names[y_true], scores, labels=names) == pytest.approx(
        skm.roc_auc_score(names[y_true], scores[:, order], multi_class="ovr",
                          labels=names[order]))


def test_roc_auc_binary_two_columns(rng):
    y = rng.integers(0, 2, 30)
    y[:2] = [0, 1]
    p = probabilities(rng, 30, 2)
    assert rm.roc_auc_score(y, p) == rm.roc_auc_score(y, p[:, 1])
    assert rm.roc_auc_score(y, p[:, 1:]) == rm.roc_auc_score(y, p[:, 1])


def test_roc_auc_multiclass_errors(rng):
    scores = probabilities(rng, 6, 3)
    with pytest.raises(ValueError, match="y_score has 3 columns but y_true has 2 classes"):
        rm.roc_auc_score([0, 1, 0, 1, 0, 1], scores)
    with pytest.raises(ValueError, match="class 2 has no samples in y_true"):
        rm.roc_auc_score([0, 1, 0, 1, 0, 1], scores, labels=[0, 1, 2])
    with pytest.raises(ValueError, match=r"y_true holds labels not in labels: \[7\]"):
        rm.roc_auc_score([0, 1, 7, 1, 0, 1], scores, labels=[0, 1, 2])
    with pytest.raises(ValueError, match="average must be 'macro', 'weighted' or None"):
        rm.roc_auc_score([0, 1, 2, 1, 0, 1], scores, average="micro")
    with pytest.raises(ValueError, match=r"for more classes pass y_score of shape"):
        rm.roc_auc_score([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="y_score contains NaN"):
        rm.roc_auc_score([0, 1, 2], [[0.1, 0.2, np.nan]] * 3)
    with pytest.raises(ValueError, match="empty"):
        rm.roc_auc_score([], [])


# --------------------------------------------------------------------------------- regression

@pytest.mark.parametrize("shape", [(1,), (2,), (17,), (40, 3)])
def test_regression_functions_match_sklearn(skm, rng, shape):
    y_true = rng.normal(size=shape)
    y_pred = y_true + rng.normal(scale=0.5, size=shape)
    for ours, theirs in ((rm.mean_squared_error, skm.mean_squared_error),
                         (rm.mean_absolute_error, skm.mean_absolute_error),
                         (rm.r2_score, skm.r2_score)):
        if ours is rm.r2_score and shape[0] < 2:
            continue
        for multioutput in ("uniform_average", "raw_values"):
            np.testing.assert_allclose(ours(y_true, y_pred, multioutput=multioutput),
                                       theirs(y_true, y_pred, multioutput=multioutput),
                                       rtol=1e-12, atol=1e-15)


def test_regression_special_cases(skm):
    constant = np.full(5, 2.0)
    assert rm.r2_score(constant, constant) == skm.r2_score(constant, constant) == 1.0
    assert rm.r2_score(constant, constant + 1) == skm.r2_score(constant, constant + 1) == 0.0
    y = np.arange(6.0)
    assert rm.mean_squared_error(y, y[:, None] + 1) == 1.0            # (n,) against (n, 1)
    with pytest.raises(ValueError, match="r2_score: R\\^2 needs at least two samples, got 1"):
        rm.r2_score([1.0], [1.0])
    with pytest.raises(ValueError, match=r"mean_squared_error: y_true and y_pred must have "
                                         r"equal shapes .* got \(3,\) and \(2,\)"):
        rm.mean_squared_error([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="contains NaN or infinite"):
        rm.mean_absolute_error([1.0, 2.0], [np.nan, 2.0])
    with pytest.raises(ValueError, match="empty"):
        rm.mean_absolute_error(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="must be numeric"):
        rm.mean_squared_error(["a"], ["b"])


# ------------------------------------------------------------------------------ metric objects

def batches(n, rng, sizes=(1, 7, 32)):
    """Split range(n) into consecutive batches of random sizes."""
    edges, start = [], 0
    while start < n:
        stop = min(n, start + int(rng.choice(sizes)))
        edges.append(slice(start, stop))
        start = stop
    return edges


def accumulate(metric, y_true, y_pred, rng):
    metric.reset()
    for piece in batches(len(y_true), rng):
        metric.update(y_true[piece], y_pred[piece])
    return metric.compute()


def test_metric_objects_accumulate_to_the_one_shot_value(rng):
    n, classes = 157, 4
    y_true = rng.integers(0, classes, n)
    y_true[:classes] = np.arange(classes)
    logits = rng.normal(size=(n, classes)) + 1.5 * np.eye(classes)[y_true]
    labels = logits.argmax(axis=1)
    expected = {
        "accuracy": rm.accuracy_score(y_true, labels),
        "precision": rm.precision_score(y_true, labels, average="macro", zero_division=0),
        "recall": rm.recall_score(y_true, labels, average="macro", zero_division=0),
        "f1": rm.f1_score(y_true, labels, average="macro", zero_division=0),
    }
    for name, value in expected.items():
        metric = rm.get_metric(name)
        assert metric.name == name and metric.higher_is_better
        assert accumulate(metric, y_true, logits, rng) == pytest.approx(value, abs=1e-12)
        assert accumulate(metric, y_true, labels, rng) == pytest.approx(value, abs=1e-12)
        assert metric(y_true, logits) == pytest.approx(value, abs=1e-12)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    auc = rm.roc_auc_score(y_true, probs)
    assert accumulate(rm.get_metric("roc_auc"), y_true, probs, rng) == pytest.approx(auc)
    # logits are turned into the same probabilities ('auto' softmax)
    assert accumulate(rm.ROCAUC(), y_true, logits, rng) == pytest.approx(auc)
    one_hot = np.eye(classes)[y_true]
    assert accumulate(rm.Accuracy(), one_hot, logits, rng) == expected["accuracy"]
    assert accumulate(rm.F1(average="weighted"), y_true, logits, rng) == pytest.approx(
        rm.f1_score(y_true, labels, average="weighted", zero_division=0))


def test_binary_metric_objects_with_one_column_scores(rng):
    y = rng.integers(0, 2, 90)
    y[:2] = [0, 1]
    logit = rng.normal(size=(90, 1)) + y[:, None]
    predicted = (logit[:, 0] > 0).astype(int)
    assert accumulate(rm.F1(average="binary", threshold=0.0), y, logit, rng) == pytest.approx(
        rm.f1_score(y, predicted))
    assert accumulate(rm.Accuracy(threshold=0.0), y[:, None], logit, rng) == pytest.approx(
        rm.accuracy_score(y, predicted))
    assert accumulate(rm.ROCAUC(), y, logit, rng) == pytest.approx(rm.roc_auc_score(y, logit[:, 0]))


@pytest.mark.parametrize("outputs", [None, 3])
def test_regression_objects_accumulate(rng, outputs):
    shape = (133,) if outputs is None else (133, outputs)
    y_true = rng.normal(loc=1e4, size=shape)       # a large offset tests R2's stable merge
    y_pred = y_true + rng.normal(scale=0.3, size=shape)
    for name, function in (("mse", rm.mean_squared_error), ("mae", rm.mean_absolute_error),
                           ("r2", rm.r2_score)):
        metric = rm.get_metric(name)
        assert metric.higher_is_better == (name == "r2")
        assert accumulate(metric, y_true, y_pred, rng) == pytest.approx(
            function(y_true, y_pred), rel=1e-9)


def test_metric_call_leaves_state_alone(rng):
    metric = rm.Accuracy()
    metric.update([0, 1, 1], [0, 1, 0])
    assert metric([1, 1], [1, 1]) == 1.0
    assert metric.compute() == pytest.approx(2 / 3)
    f1 = rm.F1()
    f1.update([0, 1, 2], [0, 1, 1])
    before = f1.compute()
    f1([0, 0], [1, 1])
    assert f1.compute() == before


def test_metric_objects_bad_input():
    with pytest.raises(ValueError, match="Accuracy.compute: no samples were given"):
        rm.Accuracy().compute()
    with pytest.raises(ValueError, match="ROCAUC.compute: no samples"):
        rm.ROCAUC().compute()
    with pytest.raises(ValueError, match=r"F1.update: y_true must be labels \(n,\)"):
        rm.F1().update([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="ROCAUC.update: scores must be finite"):
        rm.ROCAUC().update([0, 1], [0.5, np.nan])
    auc = rm.ROCAUC()
    auc.update([0, 1], np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match=r"scores of shape \(2, 4\) after batches of \(3,\)"):
        auc.update([0, 1], np.ones((2, 4)) / 4)
    one_class = rm.ROCAUC()
    one_class.update([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match="exactly two classes, got 1"):
        one_class.compute()
    mse = rm.MSE()
    mse.update(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="MSE.update: 3 outputs after batches with 2"):
        mse.update(np.zeros((2, 3)), np.zeros((2, 3)))
    r2 = rm.R2()
    r2.update([1.0], [1.0])
    with pytest.raises(ValueError, match="R2.compute: R\\^2 needs at least two samples"):
        r2.compute()
    with pytest.raises(ValueError, match="get_metric: unknown metric 'auc'; known: accuracy"):
        rm.get_metric("auc")
    with pytest.raises(TypeError, match="get_metric: expected a metric name"):
        rm.get_metric(3)
    with pytest.raises(ValueError, match="F1: average must be one of"):
        rm.F1(average="samples")
    existing = rm.Recall(average="micro")
    assert rm.get_metric(existing) is existing


# ------------------------------------------------------------------------------------- plot

def test_plot_confusion_matrix_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 0]])
    path = tmp_path / "cm.png"
    figure = rm.plot_confusion_matrix(cm, class_names=["B", "T", "NK"], path=path,
                                      normalize=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = figure.axes[0].images[0].get_array()
    np.testing.assert_allclose(image[1], [0.2, 0.7, 0.1])
    np.testing.assert_array_equal(image[2], [0, 0, 0])             # empty row stays 0
    counts = rm.plot_confusion_matrix(cm)
    np.testing.assert_array_equal(counts.axes[0].images[0].get_array(), cm)


def test_plot_confusion_matrix_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"square \(k, k\) matrix, got shape \(2, 3\)"):
        rm.plot_confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="2 class_names for a 3x3 matrix"):
        rm.plot_confusion_matrix(np.eye(3), class_names=["a", "b"])
    with pytest.raises(ValueError, match="non-negative"):
        rm.plot_confusion_matrix(-np.eye(2))
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "ranvier\[plot\]"'):
        rm.plot_confusion_matrix(np.eye(2))
