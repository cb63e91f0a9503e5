"""ranvier.ops losses (mse, binary cross-entropy on probabilities and on logits,
cross-entropy) and their backward passes against the float64 references in
references/losses.py."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import tol

from ranvier import _C, ops
from references import losses as ref
from references.finite_difference import numeric_grad

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "mean", "sum"]
SHAPES = [(1,), (7,), (1, 1), (5, 13), (3, 17, 5), (97,), (4, 33), (2, 3, 1, 11)]


def loss_tol(dtype):
    # Reduced float32 losses are sums rounded once to float32; elementwise ones too.
    return tol(dtype)


def grad_output_for(reduction, loss_shape, dtype, rng):
    if reduction == "none":
        return rng.standard_normal(loss_shape).astype(dtype)
    return np.asarray(rng.uniform(0.5, 2.0), dtype=dtype)


def weighted_sum(loss, grad_output):
    """The scalar whose gradient the backward passes compute: sum(loss * grad_output)."""
    return float(np.sum(np.asarray(loss, dtype=np.float64) * np.asarray(grad_output, dtype=np.float64)))


# =========================================================================================
# mse

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_forward_and_backward_match_reference(dtype, shape, reduction, rng):
    pred = rng.standard_normal(shape).astype(dtype)
    target = rng.standard_normal(shape).astype(dtype)
    loss = ops.mse_loss(pred, target, reduction=reduction)
    assert loss.dtype == dtype and loss.shape == (shape if reduction == "none" else ())
    np.testing.assert_allclose(loss, ref.mse(pred, target, reduction), **loss_tol(dtype))
    g = grad_output_for(reduction, shape, dtype, rng)
    dpred = ops.mse_loss_backward(pred, target, g, reduction=reduction)
    assert dpred.dtype == dtype and dpred.shape == shape
    np.testing.assert_allclose(dpred, ref.mse_grad(pred, target, g, reduction), **tol(dtype))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_backward_matches_finite_differences(reduction, rng):
    pred, target = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    g = grad_output_for(reduction, pred.shape, np.float64, rng)
    numeric = numeric_grad(lambda p: weighted_sum(ops.mse_loss(p, target, reduction), g), pred)
    analytic = ops.mse_loss_backward(pred, target, g, reduction)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_large_reduction_is_accurate_and_repeatable(dtype, rng):
    n = 100_003  # several reduction blocks, several threads
    pred = rng.standard_normal(n).astype(dtype)
    target = rng.standard_normal(n).astype(dtype)
    for reduction in ("mean", "sum"):
        first = ops.mse_loss(pred, target, reduction)
        np.testing.assert_allclose(first, ref.mse(pred, target, reduction), rtol=1e-6 if dtype == np.float32 else 1e-12)
        for _ in range(3):
            assert ops.mse_loss(pred, target, reduction) == first


def test_mse_grad_output_as_python_number_keeps_float32(rng):
    pred = rng.standard_normal(5).astype(np.float32)
    target = rng.standard_normal(5).astype(np.float32)
    d = ops.mse_loss_backward(pred, target, 1.0)
    assert d.dtype == np.float32
    np.testing.assert_allclose(d, ref.mse_grad(pred, target, 1.0), **tol(np.float32))


def test_mse_zero_dimensional(rng):
    loss = ops.mse_loss(np.float64(3.0), np.float64(1.0), reduction="none")
    assert loss.shape == () and loss == 4.0
    assert ops.mse_loss(np.float64(3.0), np.float64(1.0)) == 4.0
    assert ops.mse_loss_backward(np.float64(3.0), np.float64(1.0), 1.0).shape == ()


def test_mse_non_contiguous_and_mixed_dtypes(rng):
    pred = rng.standard_normal((6, 8))
    target = rng.standard_normal((8, 6)).astype(np.float32)
    loss = ops.mse_loss(pred[:, ::2], target.T[:, ::2], "sum")
    assert loss.dtype == np.float64
    np.testing.assert_allclose(loss, ref.mse(pred[:, ::2], target.T[:, ::2], "sum"), **tol(np.float64))


# =========================================================================================
# binary cross-entropy on probabilities

WEIGHT_SHAPES = [None, "full", "last", "scalar"]


def make_weight(kind, shape, dtype, rng):
    if kind is None:
        return None
    if kind == "full":
        return rng.uniform(0.2, 2.0, shape).astype(dtype)
    if kind == "last":
        return rng.uniform(0.2, 2.0, shape[-1:]).astype(dtype)
    return np.asarray(rng.uniform(0.2, 2.0), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (5, 13), (3, 17, 5), (97,)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_kind", WEIGHT_SHAPES)
@pytest.mark.parametrize("hard_targets", [True, False])
def test_bce_forward_and_backward_match_reference(dtype, shape, reduction, weight_kind, hard_targets, rng):
    prob = rng.uniform(0.01, 0.99, shape).astype(dtype)
    target = (rng.integers(0, 2, shape) if hard_targets else rng.uniform(0, 1, shape)).astype(dtype)
    weight = make_weight(weight_kind, shape, dtype, rng)
    loss = ops.binary_cross_entropy(prob, target, weight=weight, reduction=reduction)
    assert loss.dtype == dtype and loss.shape == (shape if reduction == "none" else ())
    np.testing.assert_allclose(loss, ref.bce(prob, target, weight, reduction), **loss_tol(dtype))
    g = grad_output_for(reduction, shape, dtype, rng)
    dprob = ops.binary_cross_entropy_backward(prob, target, g, weight=weight, reduction=reduction)
    assert dprob.dtype == dtype and dprob.shape == shape
    np.testing.assert_allclose(dprob, ref.bce_grad(prob, target, g, weight, reduction),
                               rtol=tol(dtype)["rtol"] * 5, atol=tol(dtype)["atol"] * 10)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_backward_matches_finite_differences(reduction, weighted, rng):
    prob = rng.uniform(0.05, 0.95, (4, 3))
    target = rng.uniform(0, 1, (4, 3))
    weight = rng.uniform(0.5, 2, 3) if weighted else None
    g = grad_output_for(reduction, prob.shape, np.float64, rng)
    numeric = numeric_grad(lambda p: weighted_sum(ops.binary_cross_entropy(p, target, weight, reduction), g),
                           prob, eps=1e-7)
    analytic = ops.binary_cross_entropy_backward(prob, target, g, weight, reduction)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_at_zero_and_one_is_clamped_like_pytorch(dtype):
    prob = np.array([0.0, 1.0, 0.0, 1.0], dtype=dtype)
    target = np.array([1.0, 0.0, 0.0, 1.0], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        loss = ops.binary_cross_entropy(prob, target, reduction="none")
        grad = ops.binary_cross_entropy_backward(prob, target, np.ones(4, dtype=dtype), reduction="none")
    np.testing.assert_array_equal(loss, [100.0, 100.0, 0.0, 0.0])
    # PyTorch: grad = (p - t) / max(p (1 - p), 1e-12)
    np.testing.assert_allclose(grad, [-1e12, 1e12, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(loss, ref.bce(prob, target, reduction="none"), **tol(dtype))


# =========================================================================================
# binary cross-entropy on logits

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (5, 13), (3, 2, 5), (97,), (4, 33)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_kind", [None, "full", "last"])
@pytest.mark.parametrize("with_pos_weight", [False, True])
def test_bce_with_logits_forward_and_backward_match_reference(dtype, shape, reduction, weight_kind,
                                                              with_pos_weight, rng):
    logits = (rng.standard_normal(shape) * 4).astype(dtype)
    target = rng.uniform(0, 1, shape).astype(dtype)
    target[..., ::2] = np.round(target[..., ::2])
    weight = make_weight(weight_kind, shape, dtype, rng)
    pos_weight = rng.uniform(0.3, 4.0, shape[-1]).astype(dtype) if with_pos_weight else None
    loss = ops.binary_cross_entropy_with_logits(logits, target, weight, pos_weight, reduction)
    assert loss.dtype == dtype and loss.shape == (shape if reduction == "none" else ())
    np.testing.assert_allclose(loss, ref.bce_logits(logits, target, weight, pos_weight, reduction), **loss_tol(dtype))
    g = grad_output_for(reduction, shape, dtype, rng)
    dlogits = ops.binary_cross_entropy_with_logits_backward(logits, target, g, weight, pos_weight, reduction)
    assert dlogits.dtype == dtype and dlogits.shape == shape
    np.testing.assert_allclose(dlogits, ref.bce_logits_grad(logits, target, g, weight, pos_weight, reduction),
                               **tol(dtype))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("with_pos_weight", [False, True])
def test_bce_with_logits_backward_matches_finite_differences(reduction, with_pos_weight, rng):
    logits = rng.standard_normal((3, 4)) * 3
    target = rng.uniform(0, 1, (3, 4))
    weight = rng.uniform(0.5, 2, (3, 4))
    pos_weight = rng.uniform(0.3, 3, 4) if with_pos_weight else None
    g = grad_output_for(reduction, logits.shape, np.float64, rng)
    numeric = numeric_grad(
        lambda z: weighted_sum(ops.binary_cross_entropy_with_logits(z, target, weight, pos_weight, reduction), g),
        logits)
    analytic = ops.binary_cross_entropy_with_logits_backward(logits, target, g, weight, pos_weight, reduction)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_is_stable_for_huge_logits(dtype):
    logits = np.array([1000.0, -1000.0, 1000.0, -1000.0, 88.0, -88.0], dtype=dtype)
    target = np.array([0.0, 1.0, 1.0, 0.0, 0.0, 1.0], dtype=dtype)
    pos_weight = np.array([2.5], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        loss = ops.binary_cross_entropy_with_logits(logits, target, reduction="none")
        loss_pw = ops.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
        grad = ops.binary_cross_entropy_with_logits_backward(logits, target, np.ones_like(logits), reduction="none")
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(loss_pw)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, [1000.0, 1000.0, 0.0, 0.0, 88.0, 88.0], rtol=1e-6)
    np.testing.assert_allclose(loss_pw, ref.bce_logits(logits, target, pos_weight=pos_weight, reduction="none"),
                               **tol(dtype))
    np.testing.assert_allclose(grad, [1.0, -1.0, 0.0, 0.0, 1.0, -1.0], atol=1e-6)


def test_bce_with_logits_scalar_pos_weight_broadcasts(rng):
    logits, target = rng.standard_normal((4, 3)), rng.uniform(0, 1, (4, 3))
    expected = ref.bce_logits(logits, target, pos_weight=np.full(3, 2.0))
    for pw in (np.array(2.0), np.array([2.0])):
        np.testing.assert_allclose(ops.binary_cross_entropy_with_logits(logits, target, pos_weight=pw),
                                   expected, **tol(np.float64))


def test_bce_with_logits_matches_bce_of_sigmoid(rng):
    logits, target = rng.standard_normal(50), rng.uniform(0, 1, 50)
    np.testing.assert_allclose(ops.binary_cross_entropy_with_logits(logits, target),
                               ops.binary_cross_entropy(ops.sigmoid(logits), target), rtol=1e-12)


# =========================================================================================
# cross-entropy

CE_SHAPES = [((1, 1), (1,)), ((1, 5), (1,)), ((7, 3), (7,)), ((13, 10), (13,)), ((2, 1), (2,)),
             ((64, 37), (64,)), ((2, 3, 4), (2, 4)), ((2, 5, 3, 2), (2, 3, 2)), ((6,), ())]


def make_targets(target_shape, classes, rng, ignore_index=None, ignore_fraction=0.0):
    target = rng.integers(0, classes, target_shape)
    if ignore_index is not None and target.size:
        mask = rng.uniform(0, 1, target_shape) < ignore_fraction
        target = np.where(mask, ignore_index, target)
    return np.asarray(target, dtype=np.int64)


def class_axis_size(logits_shape):
    return logits_shape[1] if len(logits_shape) >= 2 else logits_shape[0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", CE_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 0])
def test_cross_entropy_forward_and_backward_match_reference(dtype, shapes, reduction, weighted, ignore_index, rng):
    logits_shape, target_shape = shapes
    classes = class_axis_size(logits_shape)
    logits = (rng.standard_normal(logits_shape) * 3).astype(dtype)
    target = make_targets(target_shape, classes, rng, ignore_index, 0.25)
    weight = rng.uniform(0.2, 2.0, classes).astype(dtype) if weighted else None
    expected = ref.cross_entropy(logits, target, weight, ignore_index, reduction)
    loss = ops.cross_entropy(logits, target, weight, ignore_index, reduction)
    assert loss.dtype == dtype and loss.shape == (target_shape if reduction == "none" else ())
    if np.isnan(expected).all():
        assert np.isnan(loss)  # every position ignored: mean is 0/0
    else:
        np.testing.assert_allclose(loss, expected, **loss_tol(dtype))
    g = grad_output_for(reduction, target_shape, dtype, rng)
    dlogits = ops.cross_entropy_backward(logits, target, g, weight, ignore_index, reduction)
    assert dlogits.dtype == dtype and dlogits.shape == logits_shape
    np.testing.assert_allclose(dlogits, ref.cross_entropy_grad(logits, target, g, weight, ignore_index, reduction),
                               **tol(dtype))


@pytest.mark.parametrize("shapes", [((4, 5), (4,)), ((2, 3, 4), (2, 4)), ((3,), ())])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_backward_matches_finite_differences(shapes, reduction, weighted, rng):
    logits_shape, target_shape = shapes
    classes = class_axis_size(logits_shape)
    logits = rng.standard_normal(logits_shape) * 2
    target = make_targets(target_shape, classes, rng)
    if target.ndim:
        target.flat[0] = -100  # one ignored position
    weight = rng.uniform(0.5, 2, classes) if weighted else None
    g = grad_output_for(reduction, target_shape, np.float64, rng)
    numeric = numeric_grad(lambda z: weighted_sum(ops.cross_entropy(z, target, weight, -100, reduction), g), logits)
    analytic = ops.cross_entropy_backward(logits, target, g, weight, -100, reduction)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_large_batch_is_accurate_and_repeatable(dtype, rng):
    logits = (rng.standard_normal((2000, 37)) * 3).astype(dtype)  # many blocks and threads
    target = make_targets((2000,), 37, rng, -100, 0.1)
    weight = rng.uniform(0.2, 2.0, 37).astype(dtype)
    for reduction in ("mean", "sum"):
        first = ops.cross_entropy(logits, target, weight, reduction=reduction)
        np.testing.assert_allclose(first, ref.cross_entropy(logits, target, weight, reduction=reduction),
                                   rtol=1e-6 if dtype == np.float32 else 1e-12)
        for _ in range(3):
            assert ops.cross_entropy(logits, target, weight, reduction=reduction) == first
    g = np.asarray(1.5, dtype=dtype)
    np.testing.assert_allclose(ops.cross_entropy_backward(logits, target, g, weight),
                               ref.cross_entropy_grad(logits, target, g, weight), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_is_stable_for_huge_logits(dtype):
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [1000.0, 1000.0, -1000.0]],
                      dtype=dtype)
    target = np.array([1, 2, 0])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        loss = ops.cross_entropy(logits, target, reduction="none")
        grad = ops.cross_entropy_backward(logits, target, np.ones(3, dtype=dtype), reduction="none")
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, [2000.0, np.log(3.0), np.log(2.0)], rtol=1e-6)
    np.testing.assert_allclose(loss, ref.cross_entropy(logits, target, reduction="none"), **tol(dtype))
    np.testing.assert_allclose(grad, ref.cross_entropy_grad(logits, target, np.ones(3), reduction="none"),
                               **tol(dtype))


def test_cross_entropy_all_ignored():
    logits = np.ones((3, 4))
    target = np.full(3, -100)
    assert np.isnan(ops.cross_entropy(logits, target))
    assert ops.cross_entropy(logits, target, reduction="sum") == 0.0
    np.testing.assert_array_equal(ops.cross_entropy(logits, target, reduction="none"), np.zeros(3))
    np.testing.assert_array_equal(ops.cross_entropy_backward(logits, target, 1.0), np.zeros((3, 4)))


def test_cross_entropy_weighted_mean_divides_by_summed_weights():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    target = np.array([0, 0, -100])
    weight = np.array([3.0, 0.5])
    per_row = [np.log1p(np.exp(-2.0)), 2.0 + np.log1p(np.exp(-2.0))]
    expected = (3.0 * per_row[0] + 3.0 * per_row[1]) / 6.0
    np.testing.assert_allclose(ops.cross_entropy(logits, target, weight), expected, rtol=1e-14)


@pytest.mark.parametrize("target_dtype", [np.int8, np.int16, np.int32, np.uint8, np.uint16, np.int64])
def test_cross_entropy_accepts_any_integer_targets(target_dtype, rng):
    logits = rng.standard_normal((5, 4))
    target = np.array([0, 3, 1, 2, 1], dtype=target_dtype)
    np.testing.assert_allclose(ops.cross_entropy(logits, target), ref.cross_entropy(logits, target.astype(np.int64)),
                               **tol(np.float64))


def test_cross_entropy_non_contiguous_inputs(rng):
    logits = rng.standard_normal((8, 6))
    target = np.array([0, 1, 2, 3, 4, 5, 0, 1, 2, 3])[::2]
    expected = ref.cross_entropy(np.ascontiguousarray(logits.T[:, :5].T), target)
    np.testing.assert_allclose(ops.cross_entropy(logits.T[:, :5].T, target), expected, **tol(np.float64))


# =========================================================================================
# empty inputs

@pytest.mark.parametrize("name", ["mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"])
def test_empty_elementwise_losses(name):
    forward = getattr(ops, name)
    backward = getattr(ops, name + "_backward")
    empty = np.empty((0, 3))
    with pytest.raises(ValueError, match=rf"{name}: reduction='mean' of an empty batch \(input shape \(0, 3\)\)"):
        forward(empty, empty)
    with pytest.raises(ValueError, match=rf"{name}_backward: reduction='mean' of an empty batch"):
        backward(empty, empty, 1.0)
    assert forward(empty, empty, reduction="sum") == 0.0
    assert forward(empty, empty, reduction="none").shape == (0, 3)
    assert backward(empty, empty, np.empty((0, 3)), reduction="none").shape == (0, 3)
    assert backward(empty, empty, 1.0, reduction="sum").shape == (0, 3)


def test_empty_cross_entropy():
    logits = np.empty((0, 4))
    target = np.empty(0, dtype=np.int64)
    with pytest.raises(ValueError, match=r"cross_entropy: reduction='mean' of an empty batch \(input shape \(0, 4\)\)"):
        ops.cross_entropy(logits, target)
    with pytest.raises(ValueError, match="cross_entropy_backward: reduction='mean' of an empty batch"):
        ops.cross_entropy_backward(logits, target, 1.0)
    assert ops.cross_entropy(logits, target, reduction="sum") == 0.0
    assert ops.cross_entropy(logits, target, reduction="none").shape == (0,)
    assert ops.cross_entropy_backward(logits, target, 1.0, reduction="sum").shape == (0, 4)
    assert ops.cross_entropy(np.empty((2, 4, 0)), np.empty((2, 0), dtype=np.int64), reduction="sum") == 0.0


# =========================================================================================
# bad input

ELEMENTWISE = ["mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"]
FIRST_ARG = {"mse_loss": "pred", "binary_cross_entropy": "prob", "binary_cross_entropy_with_logits": "logits"}


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_shape_mismatch_is_not_broadcast(name):
    first = FIRST_ARG[name]
    a = np.full((4, 1), 0.5)
    b = np.full((4, 3), 0.5)
    with pytest.raises(ValueError, match=rf"{name}: {first} has shape \(4, 1\) but target has shape \(4, 3\); "
                                         "they must match exactly"):
        getattr(ops, name)(a, b)
    with pytest.raises(ValueError, match=rf"{name}_backward: {first} has shape \(4, 3\) but target has shape \(3,\)"):
        getattr(ops, name + "_backward")(b, np.full(3, 0.5), 1.0)


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("bad", [np.arange(4), np.ones(4, dtype=np.int32), np.ones(4, dtype=bool),
                                 np.ones(4, dtype=np.float16), np.array(["a", "b", "c", "d"])])
def test_bad_dtypes(name, bad):
    good = np.full(4, 0.5)
    with pytest.raises(TypeError, match=rf"{name}: {FIRST_ARG[name]} has dtype"):
        getattr(ops, name)(bad, good)
    with pytest.raises(TypeError, match=rf"{name}: target has dtype"):
        getattr(ops, name)(good, bad)
    with pytest.raises(TypeError, match=rf"{name}_backward: grad_output has dtype"):
        getattr(ops, name + "_backward")(good, good, bad, reduction="none")


@pytest.mark.parametrize("name", ELEMENTWISE + ["cross_entropy"])
@pytest.mark.parametrize("reduction", ["avg", "Mean", "", None, 1])
def test_bad_reduction(name, reduction):
    if name == "cross_entropy":
        args = (np.ones((2, 3)), np.array([0, 1]))
    else:
        args = (np.full(3, 0.5), np.full(3, 0.5))
    with pytest.raises(ValueError, match=rf"{name}: reduction must be 'none', 'mean' or 'sum', got"):
        getattr(ops, name)(*args, reduction=reduction)
    with pytest.raises(ValueError, match=rf"{name}_backward: reduction must be"):
        getattr(ops, name + "_backward")(*args, 1.0, reduction=reduction)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_bad_grad_output_shape(name):
    x = np.full((2, 3), 0.5)
    backward = getattr(ops, name + "_backward")
    with pytest.raises(ValueError, match=rf"{name}_backward: grad_output has shape \(2, 3\), expected \(\) "
                                         r"\(a scalar for reduction='mean'\)"):
        backward(x, x, np.ones((2, 3)))
    with pytest.raises(ValueError, match=rf"{name}_backward: grad_output has shape \(\), expected \(2, 3\)"):
        backward(x, x, 1.0, reduction="none")


@pytest.mark.parametrize("bad_value, where", [(1.5, r"\[1, 0\]"), (-0.1, r"\[1, 0\]"), (np.nan, r"\[1, 0\]")])
@pytest.mark.parametrize("backward", [False, True])
def test_bce_rejects_probabilities_outside_unit_interval(bad_value, where, backward):
    prob = np.full((2, 3), 0.5)
    prob[1, 0] = bad_value
    target = np.zeros((2, 3))
    op = "binary_cross_entropy_backward" if backward else "binary_cross_entropy"
    with pytest.raises(ValueError, match=rf"{op}: prob must hold probabilities in \[0, 1\], but prob{where} = "):
        if backward:
            ops.binary_cross_entropy_backward(prob, target, 1.0)
        else:
            ops.binary_cross_entropy(prob, target)


def test_bce_weight_that_does_not_broadcast():
    x = np.full((4, 3), 0.5)
    with pytest.raises(ValueError, match=r"binary_cross_entropy: weight of shape \(4,\) does not broadcast to "
                                         r"the input shape \(4, 3\)"):
        ops.binary_cross_entropy(x, x, weight=np.ones(4))
    with pytest.raises(ValueError, match="binary_cross_entropy_with_logits_backward: weight of shape"):
        ops.binary_cross_entropy_with_logits_backward(x, x, 1.0, weight=np.ones((2, 3)))
    with pytest.raises(TypeError, match="binary_cross_entropy: weight has dtype int64"):
        ops.binary_cross_entropy(x, x, weight=np.ones(3, dtype=np.int64))


def test_bad_pos_weight():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: pos_weight has shape \(4,\) but must "
                                         r"have shape \(3,\)"):
        ops.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones(4))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits_backward: pos_weight has shape \(1, 3\)"):
        ops.binary_cross_entropy_with_logits_backward(x, x, 1.0, pos_weight=np.ones((1, 3)))


def test_cross_entropy_targets_out_of_range():
    logits = np.zeros((4, 5))
    with pytest.raises(IndexError, match=r"cross_entropy: target\[2\] = 5 is not a class index in \[0, 5\) "
                                         r"for logits with 5 classes"):
        ops.cross_entropy(logits, np.array([0, 1, 5, 2]))
    with pytest.raises(IndexError, match=r"cross_entropy: target\[1\] = -1 is not a class index"):
        ops.cross_entropy(logits, np.array([0, -1, 3, 2]))
    with pytest.raises(IndexError, match=r"cross_entropy_backward: target\[3\] = -100 .* ignore_index = -1"):
        ops.cross_entropy_backward(logits, np.array([0, 1, 3, -100]), 1.0, ignore_index=-1)
    with pytest.raises(IndexError, match=r"cross_entropy: target\[1, 0, 2\] = 7 .* 3 classes"):
        target = np.zeros((2, 2, 3), dtype=np.int64)
        target[1, 0, 2] = 7
        ops.cross_entropy(np.zeros((2, 3, 2, 3)), target)
    with pytest.raises(IndexError, match=r"cross_entropy: target\[0\] = 2 .* 2 classes"):
        ops.cross_entropy(np.zeros((1, 2)), np.array([2], dtype=np.uint8))


def test_cross_entropy_rejects_float_and_bool_targets():
    logits = np.zeros((3, 4))
    with pytest.raises(TypeError, match="cross_entropy: target has dtype float64; class probabilities as "
                                        "targets are not supported"):
        ops.cross_entropy(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="cross_entropy_backward: target has dtype float32; class probabilities"):
        ops.cross_entropy_backward(logits, np.eye(3, 4, dtype=np.float32), 1.0)
    with pytest.raises(TypeError, match="cross_entropy: target must hold integer class indices, got dtype bool"):
        ops.cross_entropy(logits, np.array([True, False, True]))
    with pytest.raises(TypeError, match="cross_entropy: target must hold integer class indices"):
        ops.cross_entropy(logits, np.array(["a", "b", "c"]))


def test_cross_entropy_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match=r"cross_entropy: target has shape \(4,\) but logits of shape \(3, 5\) "
                                         r"need target shape \(3,\)"):
        ops.cross_entropy(np.zeros((3, 5)), np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: target has shape \(2, 4\) but logits of shape "
                                         r"\(2, 3, 5\) need target shape \(2, 5\)"):
        ops.cross_entropy(np.zeros((2, 3, 5)), np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: logits must have a class axis"):
        ops.cross_entropy(np.float64(1.0), np.int64(0))
    with pytest.raises(ValueError, match=r"cross_entropy: weight has shape \(4,\) but must have shape \(5,\)"):
        ops.cross_entropy(np.zeros((3, 5)), np.zeros(3, dtype=np.int64), weight=np.ones(4))
    with pytest.raises(TypeError, match="cross_entropy: logits has dtype int64"):
        ops.cross_entropy(np.zeros((3, 5), dtype=np.int64), np.zeros(3, dtype=np.int64))
    with pytest.raises(TypeError, match="cross_entropy: logits has dtype float16"):
        ops.cross_entropy(np.zeros((3, 5), dtype=np.float16), np.zeros(3, dtype=np.int64))
    with pytest.raises(TypeError, match="cross_entropy: ignore_index must be an integer, got 1.5"):
        ops.cross_entropy(np.zeros((3, 5)), np.zeros(3, dtype=np.int64), ignore_index=1.5)
    with pytest.raises(ValueError, match="cross_entropy: ignore_index 1180591620717411303424 does not fit in int64"):
        ops.cross_entropy(np.zeros((3, 5)), np.zeros(3, dtype=np.int64), ignore_index=2**70)
    with pytest.raises(ValueError, match=r"cross_entropy_backward: grad_output has shape \(\), expected \(3,\)"):
        ops.cross_entropy_backward(np.zeros((3, 5)), np.zeros(3, dtype=np.int64), 1.0, reduction="none")


# --- the binding layer on its own: it trusts nothing ----------------------------------

def test_binding_checks_shapes_outputs_and_devices():
    x = np.full(4, 0.5)
    with pytest.raises(ValueError, match=r"mse_loss: out has shape \(4,\), expected \(\)"):
        _C.mse_loss_forward(x, x, np.empty(4), "mean")
    with pytest.raises(ValueError, match="mse_loss: out is read-only"):
        out = np.empty(())
        out.flags.writeable = False
        _C.mse_loss_forward(x, x, out, "sum")
    with pytest.raises(ValueError, match="mse_loss: reduction must be 'mean', 'sum' or 'none', got 'max'"):
        _C.mse_loss_forward(x, x, np.empty(()), "max")
    with pytest.raises(TypeError, match=r"mse_loss: pred \(float64\) and target \(float32\) must have the same dtype"):
        _C.mse_loss_forward(x, x.astype(np.float32), np.empty(()), "sum")
    buffer = np.zeros(8)
    with pytest.raises(ValueError, match="binary_cross_entropy: out partially overlaps prob"):
        _C.bce_loss_forward(buffer[:4], x, None, buffer[2:6], "none")
    with pytest.raises(ValueError, match=r"cross_entropy: logits must be 2-D, got shape \(2, 3, 4\)"):
        _C.cross_entropy_forward(np.zeros((2, 3, 4)), np.zeros(2, dtype=np.int64), None, np.empty(()), -100, "sum")
    with pytest.raises(TypeError, match="cross_entropy: target has dtype int32"):
        _C.cross_entropy_forward(np.zeros((2, 3)), np.zeros(2, dtype=np.int32), None, np.empty(()), -100, "sum")
    with pytest.raises(TypeError, match="cross_entropy: target must hold int64 class indices, got dtype float64"):
        _C.cross_entropy_forward(np.zeros((2, 3)), np.zeros(2), None, np.empty(()), -100, "sum")
    with pytest.raises(ValueError, match=r"cross_entropy: target of shape \(3,\) has 3 elements but logits \(2, 3\)"):
        _C.cross_entropy_forward(np.zeros((2, 3)), np.zeros(3, dtype=np.int64), None, np.empty(()), -100, "sum")
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError, match="cross_entropy_backward: out must not share memory with logits"):
        _C.cross_entropy_backward(logits, np.zeros(2, dtype=np.int64), None, np.ones(()), logits, -100, "sum")

    class FakeCudaArray:
        __cuda_array_interface__ = {"shape": (4,), "typestr": "<f8", "data": (0, False),
                                    "version": 3, "strides": None}

    # The losses have CUDA twins (tests/test_cuda_ops.py): device arrays are accepted, but never
    # mixed with host ones; the check comes before any pointer is used.
    for call, message in (
            (lambda: _C.mse_loss_forward(FakeCudaArray(), x, np.empty(()), "sum"),
             "mse_loss: pred is on cuda but target is on cpu"),
            (lambda: _C.bce_with_logits_forward(x, x, None, None, FakeCudaArray(), "none"),
             "binary_cross_entropy_with_logits: logits is on cpu but out is on cuda"),
            (lambda: _C.cross_entropy_forward(np.zeros((4, 2)), np.zeros(4, dtype=np.int64), FakeCudaArray(),
                                              np.empty(()), -100, "sum"),
             "cross_entropy: logits is on cpu but weight is on cuda")):
        with pytest.raises(ValueError, match=message):
            call()


def test_matches_pytorch_if_available(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    logits = rng.standard_normal((6, 5, 3))
    target = rng.integers(0, 5, (6, 3))
    target[0, 0] = -100
    weight = rng.uniform(0.5, 2, 5)
    expected = F.cross_entropy(torch.tensor(logits), torch.tensor(target), weight=torch.tensor(weight))
    np.testing.assert_allclose(ops.cross_entropy(logits, target, weight), expected.numpy(), rtol=1e-12)
    z, t, pw = rng.standard_normal((4, 3)), rng.uniform(0, 1, (4, 3)), rng.uniform(0.5, 3, 3)
    expected = F.binary_cross_entropy_with_logits(torch.tensor(z), torch.tensor(t), pos_weight=torch.tensor(pw))
    np.testing.assert_allclose(ops.binary_cross_entropy_with_logits(z, t, pos_weight=pw), expected.numpy(), rtol=1e-12)


def test_reductions_do_not_depend_on_the_thread_count():
    """The block sums are fixed by the problem size, not by the threads: one thread and
    several give bit-identical losses."""
    script = (
        "import numpy as np\n"
        "from ranvier import ops\n"
        "rng = np.random.default_rng(7)\n"
        "x = rng.standard_normal(200_003).astype(np.float32)\n"
        "t = rng.standard_normal(200_003).astype(np.float32)\n"
        "z = rng.standard_normal((3000, 37))\n"
        "k = rng.integers(0, 37, 3000)\n"
        "values = [ops.mse_loss(x, t), ops.binary_cross_entropy_with_logits(x, (t > 0).astype(np.float32), "
        "reduction='sum'), ops.cross_entropy(z, k)]\n"
        "print(' '.join(np.asarray(v).tobytes().hex() for v in values))\n"
    )
    results = set()
    for threads in ("1", "2", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        results.add(run.stdout.strip())
    assert len(results) == 1
