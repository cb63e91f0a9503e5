"""ranvier.ops batch_norm and batch_norm_backward against the float64 loop references in
references/batch_norm.py (training and evaluation, running statistics over several steps),
finite differences, gradchecks through nn.functional.batch_norm, and bad input."""

import numpy as np
import pytest
from conftest import tol

import ranvier
import ranvier.nn.functional as F
from ranvier import _C, ops
from ranvier.autograd import gradcheck
from references import batch_norm as ref
from references.finite_difference import numeric_grad

DTYPES = [np.float32, np.float64]
# (N, C), (N, C, L) and (N, C, H, W): batch 1 with L > 1, odd and prime sizes, C = 1.
SHAPES = [(2, 3), (7, 5), (1, 4, 6), (3, 2, 11), (2, 3, 5, 7), (1, 1, 3, 3), (5, 17, 2, 1)]


def _params(rng, channels, dtype, affine=True):
    if not affine:
        return None, None
    return ((rng.random(channels) + 0.5).astype(dtype), rng.standard_normal(channels).astype(dtype))


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_training_forward_matches_reference(shape, dtype, affine, rng):
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    channels = shape[1]
    weight, bias = _params(rng, channels, dtype, affine)
    running_mean = rng.standard_normal(channels).astype(dtype)
    running_var = (rng.random(channels) + 0.5).astype(dtype)
    rm_start, rv_start = running_mean.copy(), running_var.copy()
    y, mean, invstd = ops.batch_norm(x, running_mean, running_var, weight, bias, training=True,
                                     momentum=0.3, eps=1e-3)
    y_ref, mean_ref, invstd_ref, rm_ref, rv_ref = ref.batch_norm(
        x, rm_start, rv_start, weight, bias, training=True, momentum=0.3, eps=1e-3)
    assert y.dtype == dtype and y.shape == shape and mean.shape == invstd.shape == (channels,)
    rtol, atol = (1e-4, 1e-5) if dtype == np.float32 else (1e-10, 1e-12)
    np.testing.assert_allclose(y, y_ref, rtol=rtol, atol=atol)
    np.testing.assert_allclose(mean, mean_ref, **tol(dtype))
    np.testing.assert_allclose(invstd, invstd_ref, rtol=rtol)
    np.testing.assert_allclose(running_mean, rm_ref, **tol(dtype))
    np.testing.assert_allclose(running_var, rv_ref, rtol=rtol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [(1, 3)])
def test_eval_forward_uses_running_statistics(shape, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    channels = shape[1]
    weight, bias = _params(rng, channels, dtype)
    running_mean = rng.standard_normal(channels).astype(dtype)
    running_var = (rng.random(channels) + 0.5).astype(dtype)
    before = running_mean.copy(), running_var.copy()
    y, mean, invstd = ops.batch_norm(x, running_mean, running_var, weight, bias, training=False)
    y_ref, _, invstd_ref, _, _ = ref.batch_norm(x, running_mean, running_var, weight, bias)
    np.testing.assert_allclose(y, y_ref, **tol(dtype))
    np.testing.assert_array_equal(mean, running_mean)
    np.testing.assert_allclose(invstd, invstd_ref, **tol(dtype))
    np.testing.assert_array_equal(running_mean, before[0])  # evaluation never updates them
    np.testing.assert_array_equal(running_var, before[1])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3), (7, 5), (1, 4, 6), (3, 2, 5), (2, 3, 3, 4)])
def test_backward_matches_reference(shape, dtype, training, rng):
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    channels = shape[1]
    weight, bias = _params(rng, channels, dtype)
    running_mean = rng.standard_normal(channels).astype(dtype)
    running_var = (rng.random(channels) + 0.5).astype(dtype)
    rm, rv = running_mean.copy(), running_var.copy()
    _, mean, invstd = ops.batch_norm(x, running_mean, running_var, weight, bias, training=training)
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dw, db = ops.batch_norm_backward(dy, x, mean, invstd, weight, training=training)
    dx_ref, dw_ref, db_ref = ref.batch_norm_grad(x, dy, weight, training=training,
                                                 running_mean=rm, running_var=rv)
    rtol, atol = (2e-4, 2e-5) if dtype == np.float32 else (1e-9, 1e-11)
    np.testing.assert_allclose(dx, dx_ref, rtol=rtol, atol=atol)
    np.testing.assert_allclose(dw, dw_ref, rtol=rtol, atol=atol)
    np.testing.assert_allclose(db, db_ref, rtol=rtol, atol=atol)


def test_running_statistics_over_several_steps(rng):
    running_mean, running_var = np.zeros(4, np.float32), np.ones(4, np.float32)
    rm_ref, rv_ref = np.zeros(4), np.ones(4)
    for step in range(5):
        x = (rng.standard_normal((6, 4, 3)) * (step + 1) + step).astype(np.float32)
        ops.batch_norm(x, running_mean, running_var, training=True, momentum=0.2)
        _, _, _, rm_ref, rv_ref = ref.batch_norm(x, rm_ref, rv_ref, training=True, momentum=0.2)
    np.testing.assert_allclose(running_mean, rm_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(running_var, rv_ref, rtol=1e-5)


def test_statistics_are_accurate_far_from_zero(rng):
    # float32 values 1e4 + N(0, 1): E[x^2] - E[x]^2 would lose every digit; two passes in
    # double keep the variance to float32 precision.
    x = (1e4 + rng.standard_normal((500, 2, 8))).astype(np.float32)
    _, mean, invstd = ops.batch_norm(x, training=True, eps=0.0)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2)), rtol=1e-7)
    np.testing.assert_allclose(invstd, 1 / x64.std(axis=(0, 2)), rtol=1e-5)


def test_many_channels_on_several_threads_match_reference(rng):
    x = rng.standard_normal((40, 64, 30)).astype(np.float32)
    y, mean, invstd = ops.batch_norm(x, training=True)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=(0, 2)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(y.astype(np.float64).mean(axis=(0, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(y.astype(np.float64).std(axis=(0, 2)), 1, rtol=1e-3)


def test_running_statistics_of_another_dtype_or_layout_are_written_back(rng):
    x = rng.standard_normal((4, 3, 5))  # float64
    running_mean = np.zeros(3, np.float32)
    strided_var = np.ones(6)[::2]  # non-contiguous view
    ops.batch_norm(x, running_mean, strided_var, training=True, momentum=1.0)
    np.testing.assert_allclose(running_mean, x.mean(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(strided_var, x.var(axis=(0, 2), ddof=1), rtol=1e-12)


def test_backward_matches_finite_differences(rng):
    x = rng.standard_normal((3, 2, 4))
    weight, bias = rng.random(2) + 0.5, rng.standard_normal(2)
    running_mean, running_var = rng.standard_normal(2), rng.random(2) + 0.5
    dy = rng.standard_normal(x.shape)
    for training in (True, False):
        def loss_x(v):
            y, _, _ = ops.batch_norm(v, running_mean.copy(), running_var.copy(), weight, bias, training=training)
            return np.sum(y * dy)

        def loss_w(w):
            y, _, _ = ops.batch_norm(x, running_mean.copy(), running_var.copy(), w, bias, training=training)
            return np.sum(y * dy)

        _, mean, invstd = ops.batch_norm(x, running_mean.copy(), running_var.copy(), weight, bias,
                                         training=training)
        dx, dw, db = ops.batch_norm_backward(dy, x, mean, invstd, weight, training=training)
        np.testing.assert_allclose(dx, numeric_grad(loss_x, x), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(dw, numeric_grad(loss_w, weight), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(db, dy.sum(axis=(0, 2)), rtol=1e-12)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck_through_functional(training, affine, rng):
    x = ranvier.Tensor(rng.standard_normal((3, 2, 2, 2)), requires_grad=True)
    weight = ranvier.Tensor(rng.random(2) + 0.5, requires_grad=True) if affine else None
    bias = ranvier.Tensor(rng.standard_normal(2), requires_grad=True) if affine else None
    running_mean, running_var = rng.standard_normal(2), rng.random(2) + 0.5
    inputs = [x] + ([weight, bias] if affine else [])

    def fn(x, weight=None, bias=None):
        # Fresh copies: training updates the running statistics at every call.
        return F.batch_norm(x, running_mean.copy(), running_var.copy(), weight, bias,
                            training=training, momentum=0.1, eps=1e-3)

    assert gradcheck(fn, inputs)


def test_functional_training_without_running_statistics(rng):
    x = ranvier.Tensor(rng.standard_normal((5, 3)))
    y = F.batch_norm(x, None, None, training=True)
    np.testing.assert_allclose(y.numpy().mean(axis=0), 0, atol=1e-6)


# --- bad input ---------------------------------------------------------------------------

def test_one_value_per_channel_when_training_is_an_error(rng):
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training, got input of shape \(1, 3\)"):
        ops.batch_norm(np.ones((1, 3)), training=True)
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training, got input size \(1, 3, 1\)"):
        F.batch_norm(ranvier.Tensor(np.ones((1, 3, 1))), None, None, training=True)
    with pytest.raises(ValueError, match="batch_norm: cannot compute batch statistics of an empty input"):
        ops.batch_norm(np.ones((0, 3)), training=True)
    assert ops.batch_norm(np.ones((1, 3)), np.zeros(3), np.ones(3))[0].shape == (1, 3)  # eval is fine


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(x=np.ones(3)), ValueError, r"batch_norm: x of shape \(3,\) must have at least 2 dimensions"),
    (dict(training=False), ValueError, "batch_norm: running_mean and running_var are required in evaluation"),
    (dict(running_mean=np.zeros(4)), ValueError,
     r"batch_norm: running_mean has shape \(4,\) but the input of shape \(2, 3, 4\) has 3 channels"),
    (dict(weight=np.ones((3, 1))), ValueError, r"batch_norm: weight has shape \(3, 1\) but the input"),
    (dict(bias=np.ones(2)), ValueError, r"batch_norm: bias has shape \(2,\)"),
    (dict(x=np.ones((2, 3, 4), np.int64)), TypeError, "batch_norm: x has dtype int64"),
    (dict(x=np.ones((2, 3, 4), np.float16)), TypeError, "batch_norm: x has dtype float16"),
    (dict(weight=np.array(["a", "b", "c"])), TypeError, "batch_norm: weight has dtype <U1"),
    (dict(running_mean=np.zeros(3, np.int64)), TypeError, "batch_norm: running_mean has dtype int64"),
    (dict(running_mean=[0.0, 0.0, 0.0]), TypeError, "batch_norm: running_mean must be a NumPy or CuPy array"),
    (dict(momentum=None), TypeError, "batch_norm: momentum must be a number"),
    (dict(momentum=float("nan")), ValueError, "batch_norm: momentum must be finite"),
    (dict(eps=-1.0), ValueError, "batch_norm: eps must be finite and >= 0"),
])
def test_bad_input_raises(kwargs, error, match):
    args = dict(x=np.ones((2, 3, 4)), running_mean=np.zeros(3), running_var=np.ones(3), training=True)
    if kwargs.get("training") is False:
        args.update(running_mean=None, running_var=None)
    args.update(kwargs)
    x = args.pop("x")
    with pytest.raises(error, match=match):
        ops.batch_norm(x, **args)


def test_read_only_running_statistics_are_rejected_when_training():
    running_var = np.ones(3)
    running_var.flags.writeable = False
    with pytest.raises(ValueError, match="batch_norm: running_var is read-only"):
        ops.batch_norm(np.ones((2, 3)), np.zeros(3), running_var, training=True)
    ops.batch_norm(np.ones((2, 3)), np.zeros(3), running_var, training=False)  # only read


def test_backward_bad_input(rng):
    x = rng.standard_normal((2, 3, 4))
    _, mean, invstd = ops.batch_norm(x, training=True)
    with pytest.raises(ValueError, match=r"batch_norm_backward: x \(2, 3, 4\) and grad_output \(2, 3, 5\) must have the same shape"):
        ops.batch_norm_backward(np.ones((2, 3, 5)), x, mean, invstd, training=True)
    with pytest.raises(ValueError, match=r"batch_norm_backward: save_invstd has shape \(2,\)"):
        ops.batch_norm_backward(np.ones_like(x), x, mean, invstd[:2], training=True)
    with pytest.raises(ValueError, match="batch_norm_backward: training-mode batch statistics need more than 1 value"):
        ops.batch_norm_backward(np.ones((1, 3)), np.ones((1, 3)), mean, invstd, training=True)


def test_binding_rejects_cuda_like_and_shared_memory():
    class FakeCudaArray:
        __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f8", "data": (0, False),
                                    "version": 3, "strides": None}

    c = lambda: np.empty(3)  # noqa: E731
    # batch norm has a CUDA twin: a device array is accepted, but never mixed with a host one
    # (refused before any pointer is used, so the fake pointer is never touched).
    with pytest.raises(ValueError, match="batch_norm: x is on cuda but out is on cpu; move both to one device"):
        _C.batch_norm_forward(FakeCudaArray(), np.empty((2, 3)), None, None, None, None, c(), c(),
                              True, 0.1, 1e-5)
    x = np.ones((2, 3))
    stats = np.empty(6)
    with pytest.raises(ValueError, match="batch_norm: save_mean must not share memory with save_invstd"):
        _C.batch_norm_forward(x, np.empty((2, 3)), None, None, None, None, stats[:3], stats[:3],
                              True, 0.1, 1e-5)
    running = np.zeros(3)
    with pytest.raises(ValueError, match="batch_norm: .*must not share memory"):
        _C.batch_norm_forward(x, np.empty((2, 3)), running, None, running, None, c(), c(),
                              True, 0.1, 1e-5)
