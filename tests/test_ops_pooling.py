"""ranvier.ops pooling (max, average, adaptive average; 1-D and 2-D) and its backward passes
against the float64 loop references in references/pooling.py, finite differences, gradchecks
through nn.functional, and bad input."""

import numpy as np
import pytest
from conftest import tol

import ranvier
import ranvier.nn.functional as F
from ranvier import _C, ops
from ranvier.autograd import gradcheck
from references import pooling as ref
from references.finite_difference import numeric_grad

DTYPES = [np.float32, np.float64]

# (input shape, window arguments): batch 1, odd and prime sizes, stride > kernel, padding,
# overlapping windows (stride < kernel), rectangular windows, dilation, ceil_mode. Max
# pooling's 2x2, 3x3, 2, 3 and 4 windows take a fast path when all of them lie inside the input
# (kernels/cpu/pooling.cpp): the cases with neither padding nor dilation nor ceil_mode's cut
# windows go through it.
MAX2D_CASES = [
    ((1, 1, 4, 4), dict(kernel_size=2)),
    ((2, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 13, 11), dict(kernel_size=(3, 2), stride=(1, 3), padding=(1, 0))),
    ((3, 1, 11, 17), dict(kernel_size=2, stride=5)),
    ((2, 2, 9, 8), dict(kernel_size=3, stride=1)),
    ((1, 3, 10, 7), dict(kernel_size=3, stride=2, padding=1, dilation=2)),
    ((2, 1, 9, 10), dict(kernel_size=(2, 3), stride=2, ceil_mode=True)),
    ((1, 2, 5, 5), dict(kernel_size=5, padding=2, stride=3, ceil_mode=True)),
    ((1, 1, 1, 1), dict(kernel_size=1)),
]
MAX1D_CASES = [
    ((1, 1, 5), dict(kernel_size=2)),
    ((2, 3, 31), dict(kernel_size=3, stride=2, padding=1)),
    ((3, 2, 17), dict(kernel_size=4, stride=7)),
    ((1, 4, 23), dict(kernel_size=3, stride=1, dilation=3, padding=1)),
    ((2, 1, 10), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ((2, 2, 13), dict(kernel_size=3)),
    ((2, 3, 23), dict(kernel_size=4)),
]
AVG2D_CASES = [
    ((1, 1, 4, 4), dict(kernel_size=2)),
    ((2, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 13, 11), dict(kernel_size=(3, 2), stride=(1, 3), padding=(1, 1))),
    ((3, 1, 11, 17), dict(kernel_size=2, stride=5)),
    ((2, 2, 9, 8), dict(kernel_size=3, stride=1, padding=1)),
    ((2, 1, 9, 10), dict(kernel_size=(2, 3), stride=2, ceil_mode=True)),
    ((1, 2, 6, 5), dict(kernel_size=3, padding=1, stride=2, ceil_mode=True)),
    ((1, 2, 6, 7), dict(kernel_size=3, padding=1, divisor_override=4)),
]
AVG1D_CASES = [
    ((1, 1, 5), dict(kernel_size=2)),
    ((2, 3, 31), dict(kernel_size=3, stride=2, padding=1)),
    ((3, 2, 17), dict(kernel_size=4, stride=7, padding=2)),
    ((2, 1, 10), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
]
ADAPTIVE2D_CASES = [((2, 3, 8, 8), 1), ((1, 2, 7, 9), (3, 4)), ((2, 1, 10, 6), (4, 6)),
                    ((1, 1, 5, 3), (7, 4)), ((3, 2, 13, 11), (5, None)), ((1, 1, 1, 1), 1)]
ADAPTIVE1D_CASES = [((2, 3, 200), 1), ((1, 2, 17), 5), ((2, 1, 9), 9), ((1, 1, 4), 6)]


def _distinct(rng, shape, dtype):
    """Values without ties (a permutation, scaled), so that every arg-max is unique."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.37 - 5).astype(dtype)


# --- forward and backward against the references ---------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window", MAX2D_CASES)
def test_max_pool2d_matches_reference(shape, window, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    y, idx = ops.max_pool2d(x, **window)
    y_ref, idx_ref = ref.max_pool2d(x, **window)
    assert y.dtype == dtype and idx.dtype == np.int64 and y.shape == y_ref.shape
    np.testing.assert_array_equal(y, y_ref.astype(dtype))  # a max is exact
    np.testing.assert_array_equal(idx, idx_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = ops.max_pool2d_backward(dy, idx, x.shape)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, ref.max_pool2d_grad(x, dy, **window), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window", MAX1D_CASES)
def test_max_pool1d_matches_reference(shape, window, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    y, idx = ops.max_pool1d(x, **window)
    y_ref, idx_ref = ref.max_pool1d(x, **window)
    np.testing.assert_array_equal(y, y_ref.astype(dtype))
    np.testing.assert_array_equal(idx, idx_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(ops.max_pool1d_backward(dy, idx, x.shape),
                               ref.max_pool1d_grad(x, dy, **window), **tol(dtype))


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window", AVG2D_CASES)
def test_avg_pool2d_matches_reference(shape, window, dtype, count_include_pad, rng):
    x = rng.standard_normal(shape).astype(dtype)
    y = ops.avg_pool2d(x, count_include_pad=count_include_pad, **window)
    y_ref = ref.avg_pool2d(x, count_include_pad=count_include_pad, **window)
    assert y.dtype == dtype and y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, **tol(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = ops.avg_pool2d_backward(dy, x.shape, count_include_pad=count_include_pad, **window)
    np.testing.assert_allclose(dx, ref.avg_pool2d_grad(x, dy, count_include_pad=count_include_pad,
                                                       **window), **tol(dtype))


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window", AVG1D_CASES)
def test_avg_pool1d_matches_reference(shape, window, dtype, count_include_pad, rng):
    x = rng.standard_normal(shape).astype(dtype)
    y = ops.avg_pool1d(x, count_include_pad=count_include_pad, **window)
    np.testing.assert_allclose(y, ref.avg_pool1d(x, count_include_pad=count_include_pad, **window),
                               **tol(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = ops.avg_pool1d_backward(dy, x.shape, count_include_pad=count_include_pad, **window)
    np.testing.assert_allclose(dx, ref.avg_pool1d_grad(x, dy, count_include_pad=count_include_pad,
                                                       **window), **tol(dtype))


def test_avg_pool_count_include_pad_changes_only_the_border(rng):
    x = rng.standard_normal((1, 1, 6, 6))
    with_pad = ops.avg_pool2d(x, 3, stride=1, padding=1)
    without = ops.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    np.testing.assert_allclose(with_pad[..., 1:-1, 1:-1], without[..., 1:-1, 1:-1], rtol=1e-12)
    # A corner window holds 4 input cells of 9: the means differ by the factor 9 / 4.
    np.testing.assert_allclose(without[0, 0, 0, 0], with_pad[0, 0, 0, 0] * 9 / 4, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, output_size", ADAPTIVE2D_CASES)
def test_adaptive_avg_pool2d_matches_reference(shape, output_size, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    y = ops.adaptive_avg_pool2d(x, output_size)
    size = output_size if isinstance(output_size, tuple) else (output_size, output_size)
    size = tuple(shape[2 + i] if s is None else s for i, s in enumerate(size))
    assert y.shape == shape[:2] + size and y.dtype == dtype
    np.testing.assert_allclose(y, ref.adaptive_avg_pool2d(x, size), **tol(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(ops.adaptive_avg_pool2d_backward(dy, x.shape),
                               ref.adaptive_avg_pool2d_grad(x, dy), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, output_size", ADAPTIVE1D_CASES)
def test_adaptive_avg_pool1d_matches_reference(shape, output_size, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    y = ops.adaptive_avg_pool1d(x, output_size)
    np.testing.assert_allclose(y, ref.adaptive_avg_pool1d(x, output_size), **tol(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(ops.adaptive_avg_pool1d_backward(dy, x.shape),
                               ref.adaptive_avg_pool1d_grad(x, dy), **tol(dtype))


def test_global_adaptive_pooling_is_the_mean(rng):
    x = rng.standard_normal((3, 4, 7, 5))
    np.testing.assert_allclose(ops.adaptive_avg_pool2d(x, 1)[..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-12)


def test_many_planes_on_several_threads_match_reference(rng):
    # 96 planes of 20 x 20 and a 3 x 3 window: enough work to split over threads.
    x = rng.standard_normal((8, 12, 20, 20)).astype(np.float32)
    y, idx = ops.max_pool2d(x, 3, stride=2, padding=1)
    y_ref, idx_ref = ref.max_pool2d(x, 3, stride=2, padding=1)
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_allclose(ops.avg_pool2d(x, 3, stride=1), ref.avg_pool2d(x, 3, stride=1),
                               **tol(np.float32))


def test_unbatched_and_empty_batch(rng):
    x = rng.standard_normal((3, 7, 6))
    y, idx = ops.max_pool2d(x, 2)
    y_batched, idx_batched = ops.max_pool2d(x[None], 2)
    np.testing.assert_array_equal(y, y_batched[0])
    np.testing.assert_array_equal(ops.max_pool2d_backward(np.ones_like(y), idx, x.shape),
                                  ops.max_pool2d_backward(np.ones_like(y_batched), idx_batched,
                                                          x[None].shape)[0])
    assert ops.avg_pool1d(rng.standard_normal((2, 9)), 3).shape == (2, 3)
    assert ops.adaptive_avg_pool1d(rng.standard_normal((2, 9)), 4).shape == (2, 4)
    empty = np.empty((0, 2, 6, 6))
    assert ops.max_pool2d(empty, 2)[0].shape == (0, 2, 3, 3)
    assert ops.avg_pool2d(empty, 2).shape == (0, 2, 3, 3)
    assert ops.adaptive_avg_pool2d(empty, 2).shape == (0, 2, 2, 2)
    assert ops.avg_pool2d_backward(np.empty((0, 2, 3, 3)), (0, 2, 6, 6), 2).shape == (0, 2, 6, 6)


# --- ties, NaN, -inf ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_ties_pick_the_first_maximum(dtype):
    x = np.array([[[[1.0, 3.0, 3.0, 0.0],
                    [3.0, 2.0, 3.0, 3.0],
                    [5.0, 5.0, 7.0, 7.0],
                    [5.0, 5.0, 7.0, 7.0]]]], dtype=dtype)
    _, idx = ops.max_pool2d(x, 2)
    np.testing.assert_array_equal(idx[0, 0], [[1, 2], [8, 10]])
    _, idx = ops.max_pool1d(np.array([[[2.0, 2.0, 2.0, 1.0, 4.0, 4.0]]], dtype=dtype), 3, stride=1)
    np.testing.assert_array_equal(idx[0, 0], [0, 1, 4, 4])


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_nan_wins_and_all_minus_inf_window(dtype):
    nan, inf = np.nan, np.inf
    x = np.array([[[[1.0, nan, 9.0, -inf, nan, 2.0],
                    [2.0, 3.0, -inf, -inf, 4.0, nan]]]], dtype=dtype)
    y, idx = ops.max_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 1
    assert y[0, 0, 0, 1] == 9.0 and idx[0, 0, 0, 1] == 2
    assert np.isnan(y[0, 0, 0, 2]) and idx[0, 0, 0, 2] == 11  # the last NaN of the window
    y, idx = ops.max_pool2d(np.full((1, 1, 2, 2), -inf, dtype=dtype), 2)
    assert y[0, 0, 0, 0] == -inf and idx[0, 0, 0, 0] == 0
    # The gradient follows the NaN's index.
    dx = ops.max_pool2d_backward(np.ones((1, 1, 1, 3), dtype=dtype), ops.max_pool2d(x, 2)[1], x.shape)
    assert dx[0, 0, 0, 1] == 1 and dx[0, 0, 0, 0] == 0 and dx[0, 0, 1, 5] == 1


# nn.MaxPool2d(2) on float32 has its own SIMD kernel (kernels/cpu/pooling_avx2.cpp), eight
# windows a step; a row's last, part step reads and writes on into the next rows, except at
# the end of a plane, where it masks its loads and stores. Output widths 1 to 17 (a part
# step alone, one whole step, whole steps and a part), input rows of even and odd widths (a
# last column no window uses), heights with and without a last row no window uses.
@pytest.mark.parametrize("in_h", [4, 5])
@pytest.mark.parametrize("in_w", list(range(2, 36)))
def test_max_pool_2x2_float32_every_row_width(in_h, in_w, rng):
    shape = (2, 3, in_h, in_w)
    # Few distinct values make ties common; NaN and -inf land in some windows.
    x = rng.integers(-3, 4, shape).astype(np.float32)
    x[rng.random(shape) < 0.05] = np.nan
    x[rng.random(shape) < 0.05] = -np.inf
    y, idx = ops.max_pool2d(x, 2)
    y_ref, idx_ref = ref.max_pool2d(x, 2)
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_array_equal(y, y_ref.astype(np.float32))  # NaN where the reference has one


def test_overlapping_windows_accumulate_the_gradient():
    x = np.array([[[0.0, 1.0, 9.0, 2.0, 0.5]]])
    _, idx = ops.max_pool1d(x, 3, stride=1)  # every window's maximum is the 9
    dx = ops.max_pool1d_backward(np.array([[[1.0, 10.0, 100.0]]]), idx, x.shape)
    np.testing.assert_array_equal(dx, [[[0.0, 0.0, 111.0, 0.0, 0.0]]])


# --- finite differences (ops level) and gradchecks (autograd level) ----------------------

@pytest.mark.parametrize("name, forward, backward, window", [
    ("max2d", lambda x: ops.max_pool2d(x, 3, stride=2, padding=1)[0],
     lambda x, dy: ops.max_pool2d_backward(dy, ops.max_pool2d(x, 3, stride=2, padding=1)[1], x.shape), None),
    ("avg2d", lambda x: ops.avg_pool2d(x, (3, 2), stride=(2, 1), padding=1, ceil_mode=True),
     lambda x, dy: ops.avg_pool2d_backward(dy, x.shape, (3, 2), stride=(2, 1), padding=1, ceil_mode=True), None),
    ("avg2d_exclude_pad", lambda x: ops.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
     lambda x, dy: ops.avg_pool2d_backward(dy, x.shape, 3, stride=2, padding=1, count_include_pad=False), None),
    ("adaptive2d", lambda x: ops.adaptive_avg_pool2d(x, (3, 4)),
     lambda x, dy: ops.adaptive_avg_pool2d_backward(dy, x.shape), None),
])
def test_backward_matches_finite_differences(name, forward, backward, window, rng):
    x = _distinct(rng, (2, 2, 5, 6), np.float64)
    dy = rng.standard_normal(forward(x).shape)
    numeric = numeric_grad(lambda v: np.sum(forward(v) * dy), x)
    np.testing.assert_allclose(backward(x, dy), numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fn", [
    lambda x: F.max_pool2d(x, 2, stride=1, padding=1),
    lambda x: F.max_pool2d(x, 2, stride=2, dilation=(1, 2), ceil_mode=True),
    lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
    lambda x: F.avg_pool2d(x, 2, divisor_override=3),
    lambda x: F.adaptive_avg_pool2d(x, (2, 3)),
    lambda x: F.max_pool1d(x.reshape(2, 3, 10), 3, stride=2, padding=1),
    lambda x: F.avg_pool1d(x.reshape(2, 3, 10), 4, stride=3, padding=2, ceil_mode=True),
    lambda x: F.adaptive_avg_pool1d(x.reshape(2, 3, 10), 4),
    lambda x: F.max_pool2d(x[0], 2),  # unbatched
])
def test_gradcheck_through_functional(fn, rng):
    x = ranvier.Tensor(_distinct(rng, (2, 3, 2, 5), np.float64), requires_grad=True)
    assert gradcheck(fn, [x])


def test_functional_return_indices_and_no_grad(rng):
    x = ranvier.Tensor(_distinct(rng, (1, 2, 4, 4), np.float64), requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert idx.dtype == np.int64 and not idx.requires_grad and y.requires_grad
    np.testing.assert_array_equal(idx.numpy(), ops.max_pool2d(x.detach().numpy(), 2)[1])
    with ranvier.no_grad():
        y, idx = F.max_pool1d(x.reshape(1, 2, 16), 4, return_indices=True)
    assert not y.requires_grad and idx.shape == (1, 2, 4)


# --- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("call, error, match", [
    (lambda x: ops.max_pool2d(x, 5), ValueError,
     r"max_pool2d: the pooling window \(kernel_size \(5, 5\).*larger than the input of shape \(1, 2, 4, 4\)"),
    (lambda x: ops.avg_pool2d(x, 3, padding=2), ValueError,
     r"avg_pool2d: padding \(2, 2\) must be at most half the kernel size \(3, 3\)"),
    (lambda x: ops.max_pool2d(x, 2, stride=0), ValueError, r"max_pool2d: stride \(0, 0\) must be >= 1"),
    (lambda x: ops.max_pool2d(x, 0), ValueError, r"max_pool2d: kernel_size \(0, 0\) must be >= 1"),
    (lambda x: ops.max_pool2d(x, 2, padding=-1), ValueError, r"max_pool2d: padding \(-1, -1\) must be >= 0"),
    (lambda x: ops.max_pool2d(x, 2, dilation=0), ValueError, r"max_pool2d: dilation \(0, 0\) must be >= 1"),
    (lambda x: ops.max_pool2d(x, (2, 2, 2)), TypeError, "max_pool2d: kernel_size must be an int or a tuple of 2"),
    (lambda x: ops.max_pool2d(x, 2.0), TypeError, "max_pool2d: kernel_size must be an int"),
    (lambda x: ops.max_pool2d(x, True), TypeError, "max_pool2d: kernel_size must be an int"),
    (lambda x: ops.avg_pool2d(x, 2, divisor_override=0), ValueError, "avg_pool2d: divisor_override must be positive"),
    (lambda x: ops.max_pool2d(x[0, 0], 2), ValueError, r"max_pool2d: x of shape \(4, 4\) must be 4-D"),
    (lambda x: ops.max_pool1d(x, 2), ValueError, r"max_pool1d: x of shape \(1, 2, 4, 4\) must be 3-D"),
    (lambda x: ops.max_pool1d(x[0], 5), ValueError,
     r"max_pool1d: the pooling window \(kernel_size \(5,\).*input of shape \(2, 4, 4\)"),
    (lambda x: ops.max_pool2d(x.astype(np.int32), 2), TypeError, "max_pool2d: x has dtype int32"),
    (lambda x: ops.avg_pool2d(x.astype(np.float16), 2), TypeError, "avg_pool2d: x has dtype float16"),
    (lambda x: ops.max_pool2d(x.astype(bool), 2), TypeError, "max_pool2d: x has dtype bool"),
    (lambda x: ops.max_pool2d(np.array([["a"]]), 2), TypeError, "max_pool2d: x has dtype <U1"),
    (lambda x: ops.max_pool2d(np.empty((1, 2, 0, 4)), 1), ValueError, "max_pool2d: input of shape .* has an empty"),
    (lambda x: ops.adaptive_avg_pool2d(x, 0), ValueError, "adaptive_avg_pool2d: output_size must be positive"),
    (lambda x: ops.adaptive_avg_pool2d(x, (2, 2, 2)), TypeError, "adaptive_avg_pool2d: output_size must be"),
    (lambda x: ops.adaptive_avg_pool2d(np.empty((1, 2, 0, 3)), 2), ValueError,
     "adaptive_avg_pool2d: x of shape .* has an empty"),
    (lambda x: ops.max_pool1d(np.zeros((1, 1, 3)), 2, padding=1, dilation=4), ValueError,
     r"max_pool1d: with dilation \(4,\) and padding \(1,\) a pooling window .* covers only padding"),
])
def test_bad_input_raises(call, error, match):
    x = np.zeros((1, 2, 4, 4))
    with pytest.raises(error, match=match):
        call(x)


def test_backward_bad_input(rng):
    x = rng.standard_normal((1, 2, 4, 4))
    y, idx = ops.max_pool2d(x, 2)
    with pytest.raises(IndexError, match=r"max_pool2d_backward: indices\[1\] = 16 is outside the input plane of 16"):
        bad = idx.copy()
        bad.flat[1] = 16
        ops.max_pool2d_backward(np.ones_like(y), bad, x.shape)
    with pytest.raises(IndexError, match="max_pool2d_backward: indices.* = -1 is outside"):
        ops.max_pool2d_backward(np.ones_like(y), -np.ones_like(idx), x.shape)
    with pytest.raises(TypeError, match="max_pool2d_backward: indices must be integers"):
        ops.max_pool2d_backward(np.ones_like(y), idx.astype(np.float64), x.shape)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: indices of shape \(1, 2, 2, 2\) and grad_output of shape \(1, 2, 2, 3\)"):
        ops.max_pool2d_backward(np.ones((1, 2, 2, 3)), idx, x.shape)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: grad_output of shape \(1, 2, 2, 2\) does not match the input of shape \(1, 3, 4, 4\)"):
        ops.max_pool2d_backward(np.ones_like(y), idx, (1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"avg_pool2d_backward: grad_output has shape \(1, 2, 3, 3\)"):
        ops.avg_pool2d_backward(np.ones((1, 2, 3, 3)), x.shape, 2)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d_backward: grad_output of shape \(1, 3, 2, 2\) does not match"):
        ops.adaptive_avg_pool2d_backward(np.ones((1, 3, 2, 2)), x.shape)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: input_shape \(4, 4\) must be 4"):
        ops.max_pool2d_backward(np.ones_like(y), idx, (4, 4))


@pytest.mark.parametrize("dims, shape, window", [(2, *case) for case in MAX2D_CASES] +
                         [(1, *case) for case in MAX1D_CASES])
def test_max_pool_backward_with_the_forward_window_gives_the_same_gradient(dims, shape, window, rng):
    # The window is optional (CUDA arrays use it for a gather kernel); it changes no result.
    x = rng.standard_normal(shape)
    forward = ops.max_pool2d if dims == 2 else ops.max_pool1d
    backward = ops.max_pool2d_backward if dims == 2 else ops.max_pool1d_backward
    y, idx = forward(x, **window)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(backward(dy, idx, x.shape, **window), backward(dy, idx, x.shape))
    np.testing.assert_array_equal(backward(dy[0], idx[0], x.shape[1:], **window),
                                  backward(dy[0], idx[0], x.shape[1:]))


def test_max_pool_backward_checks_the_window_against_the_shapes(rng):
    x = rng.standard_normal((1, 2, 6, 6))
    y, idx = ops.max_pool2d(x, 2)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: grad_output has shape \(1, 2, 3, 3\), "
                                         r"expected \(1, 2, 2, 2\)"):
        ops.max_pool2d_backward(np.ones_like(y), idx, x.shape, kernel_size=3)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: padding \(2, 2\) must be at most half"):
        ops.max_pool2d_backward(np.ones_like(y), idx, x.shape, kernel_size=2, padding=2)
    with pytest.raises(TypeError, match="max_pool1d_backward: stride must be an int"):
        ops.max_pool1d_backward(np.ones((1, 2, 3)), np.zeros((1, 2, 3), np.int64), (1, 2, 6), 2, stride="2")
    with pytest.raises(ValueError, match="max_pool2d_backward: kernel_size, stride, padding and dilation must "
                                         "be given all together"):
        _C.max_pool_backward(np.ones_like(y), idx, np.empty(x.shape), [2, 2])


def test_binding_rejects_cuda_like_non_contiguous_and_overlap():
    class FakeCudaArray:
        __cuda_array_interface__ = {"shape": (1, 1, 2, 2), "typestr": "<f8", "data": (0, False),
                                    "version": 3, "strides": None}

    # Pooling has CUDA twins: a device array is accepted, but never mixed with a host one
    # (refused before any pointer is used, so the fake pointer is never touched).
    out, idx = np.empty((1, 1, 1, 1)), np.empty((1, 1, 1, 1), np.int64)
    with pytest.raises(ValueError, match="max_pool2d: x is on cuda but out is on cpu; move both to one device"):
        _C.max_pool_forward(FakeCudaArray(), out, idx, [2, 2], [2, 2], [0, 0], [1, 1], False)
    with pytest.raises(ValueError, match="avg_pool2d: x is on cuda but out is on cpu"):
        _C.avg_pool_forward(FakeCudaArray(), out, [2, 2], [2, 2], [0, 0], False, True, 0)
    with pytest.raises(ValueError, match="adaptive_avg_pool2d: x is on cuda but out is on cpu"):
        _C.adaptive_avg_pool_forward(FakeCudaArray(), out)
    x = np.zeros((1, 1, 4, 8))
    with pytest.raises(ValueError, match="max_pool2d: x of shape .* is not C-contiguous"):
        _C.max_pool_forward(x[..., ::2], np.empty((1, 1, 2, 2)), np.empty((1, 1, 2, 2), np.int64),
                            [2, 2], [2, 2], [0, 0], [1, 1], False)
    with pytest.raises(ValueError, match="max_pool2d: out must not share memory with x"):
        _C.max_pool_forward(x, x.reshape(-1)[:8].reshape(1, 1, 2, 4), np.empty((1, 1, 2, 4), np.int64),
                            [2, 2], [2, 2], [0, 0], [1, 1], False)
    with pytest.raises(ValueError, match=r"max_pool2d: out .*\(1, 1, 3, 3\)"):
        _C.max_pool_forward(x, np.empty((1, 1, 3, 3)), np.empty((1, 1, 2, 4), np.int64),
                            [2, 2], [2, 2], [0, 0], [1, 1], False)
    read_only = np.empty((1, 1, 2, 4))
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="max_pool2d: out"):
        _C.max_pool_forward(x, read_only, np.empty((1, 1, 2, 4), np.int64), [2, 2], [2, 2], [0, 0], [1, 1], False)
    with pytest.raises(ValueError, match="average pooling has no dilation"):
        _C.pool_output_shape("avg", (1, 1, 4, 4), [2, 2], [2, 2], [0, 0], [2, 2], False)
