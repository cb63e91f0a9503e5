"""ranvier.ops softmax / log_softmax and their backward passes against the float64
references in references/softmax.py."""

import warnings

import numpy as np
import pytest
from conftest import tol

from ranvier import ops
from references import softmax as ref
from references.finite_difference import numeric_grad

DTYPES = [np.float32, np.float64]

# (shape, axis): rows (inner == 1) and strided slices (inner > 1), size 1, primes, sizes
# that are not multiples of 8 or 16, and shapes big enough to run on several threads with
# chunk boundaries in the middle of an outer slice.
CASES = [
    ((1,), -1), ((7,), 0), ((1, 1), -1), ((1, 5), 0), ((5, 13), -1), ((5, 13), 0),
    ((3, 17, 5), 0), ((3, 17, 5), 1), ((3, 17, 5), 2), ((3, 17, 5), -2),
    ((2, 3, 4, 5), 1), ((2, 3, 4, 5), -1), ((97,), -1), ((4, 33), 1), ((64, 50), -1),
    ((5, 61, 7), 1), ((300, 11), 0),
]

FUNCS = {
    "softmax": (ops.softmax, ops.softmax_backward, ref.softmax, ref.softmax_grad),
    "log_softmax": (ops.log_softmax, ops.log_softmax_backward, ref.log_softmax, ref.log_softmax_grad),
}


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, axis", CASES)
def test_forward_matches_reference(name, dtype, shape, axis, rng):
    forward, _, reference, _ = FUNCS[name]
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    y = forward(x, axis=axis)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, reference(x, axis), **tol(dtype))


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, axis", [c for c in CASES if np.prod(c[0]) <= 700])
def test_backward_matches_reference(name, dtype, shape, axis, rng):
    forward, backward, _, reference_grad = FUNCS[name]
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    dx = backward(forward(x, axis=axis), dy, axis=axis)
    assert dx.dtype == dtype and dx.shape == shape
    # float32: the saved output y carries one rounding, which the gradient inherits.
    rtol, atol = (2e-4, 2e-6) if dtype == np.float32 else (1e-10, 1e-12)
    np.testing.assert_allclose(dx, reference_grad(x, dy, axis), rtol=rtol, atol=atol)


def test_backward_on_several_threads_matches_reference(rng):
    shape, axis = (5, 61, 7), 1
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    for name, (forward, backward, _, reference_grad) in FUNCS.items():
        dx = backward(forward(x, axis=axis), dy, axis=axis)
        np.testing.assert_allclose(dx, reference_grad(x, dy, axis), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("shape, axis", [((4, 5), -1), ((3, 4, 2), 1), ((2, 3, 4), 0), ((1,), 0)])
def test_backward_matches_finite_differences(name, shape, axis, rng):
    forward, backward, _, _ = FUNCS[name]
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    numeric = numeric_grad(lambda v: np.sum(forward(v, axis=axis) * dy), x)
    analytic = backward(forward(x, axis=axis), dy, axis=axis)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_sums_to_one_and_log_softmax_is_its_log(dtype, rng):
    x = rng.standard_normal((6, 19)).astype(dtype) * 10
    y = ops.softmax(x, axis=1)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-13)
    np.testing.assert_allclose(np.exp(ops.log_softmax(x, axis=1).astype(np.float64)), y, **tol(dtype))


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1])
def test_large_logits_are_stable(name, dtype, axis):
    forward, backward, reference, reference_grad = FUNCS[name]
    x = np.array([[1000.0, -1000.0, 0.0, 999.0], [-1000.0, -1000.0, -999.0, -1000.0],
                  [1000.0, 1000.0, 1000.0, 1000.0]], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y = forward(x, axis=axis)
        dx = backward(y, np.ones_like(x), axis=axis)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    np.testing.assert_allclose(y, reference(x, axis), **tol(dtype))
    np.testing.assert_allclose(dx, reference_grad(x, np.ones_like(x), axis), rtol=1e-4, atol=1e-6)


def test_minus_infinity_entries_get_zero_probability():
    x = np.array([[0.0, -np.inf, np.log(3.0)]])
    np.testing.assert_allclose(ops.softmax(x), [[0.25, 0.0, 0.75]], rtol=1e-15)
    y = ops.log_softmax(x)
    assert y[0, 1] == -np.inf
    np.testing.assert_allclose(y[0, [0, 2]], [np.log(0.25), np.log(0.75)], rtol=1e-15)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad_row", [[-np.inf, -np.inf, -np.inf], [1.0, np.inf, 2.0],
                                     [np.nan, 1.0, 2.0], [1.0, 2.0, np.nan]])
def test_degenerate_rows_give_nan_like_pytorch(name, dtype, bad_row):
    forward = FUNCS[name][0]
    x = np.array([bad_row, [0.0, 1.0, 2.0]], dtype=dtype)
    for axis, index in [(1, 0), (0, None)]:
        y = forward(x if axis == 1 else np.ascontiguousarray(x.T), axis=axis)
        bad = y[0] if axis == 1 else y[:, 0]
        good = y[1] if axis == 1 else y[:, 1]
        assert np.all(np.isnan(bad))
        np.testing.assert_allclose(good, FUNCS[name][2](np.array([0.0, 1.0, 2.0])), **tol(dtype))


@pytest.mark.parametrize("name", FUNCS)
def test_zero_dimensional_and_empty(name):
    forward, backward, _, _ = FUNCS[name]
    y = forward(np.float64(3.5))
    assert y.shape == () and y == (0.0 if name == "log_softmax" else 1.0)
    assert forward(np.empty((0, 5)), axis=-1).shape == (0, 5)
    assert forward(np.empty((3, 0)), axis=-1).shape == (3, 0)
    assert forward(np.empty((3, 0, 2)), axis=0).shape == (3, 0, 2)
    assert backward(np.empty((0, 5)), np.empty((0, 5))).shape == (0, 5)


def test_out_and_in_place(rng):
    x = rng.standard_normal((4, 9))
    expected = ref.softmax(x, 0)
    out = np.empty_like(x)
    assert ops.softmax(x, axis=0, out=out) is out
    np.testing.assert_allclose(out, expected, **tol(np.float64))
    y = x.copy()
    ops.log_softmax(y, axis=0, out=y)
    np.testing.assert_allclose(y, ref.log_softmax(x, 0), **tol(np.float64))


def test_non_contiguous_and_mixed_dtypes(rng):
    x = rng.standard_normal((6, 10))
    np.testing.assert_allclose(ops.softmax(x[:, ::3], axis=0), ref.softmax(x[:, ::3], 0), **tol(np.float64))
    y = ops.softmax(x.astype(np.float32))
    assert ops.softmax_backward(y, np.ones((6, 10))).dtype == np.float64


def test_repeatable(rng):
    x = rng.standard_normal((129, 257)).astype(np.float32)
    first = ops.log_softmax(x, axis=0)
    for _ in range(3):
        np.testing.assert_array_equal(ops.log_softmax(x, axis=0), first)


# --- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_bad_axis(name):
    forward, backward = FUNCS[name][:2]
    x = np.ones((2, 3))
    with pytest.raises(IndexError, match=rf"{name}: axis 2 is out of range .* shape \(2, 3\)"):
        forward(x, axis=2)
    with pytest.raises(IndexError, match=rf"{name}: axis -3 is out of range"):
        forward(x, axis=-3)
    with pytest.raises(IndexError, match=rf"{name}_backward: axis 5"):
        backward(x, x, axis=5)
    with pytest.raises(TypeError, match=rf"{name}: axis must be an integer, got 1.0"):
        forward(x, axis=1.0)
    with pytest.raises(TypeError, match=rf"{name}_backward: axis must be an integer"):
        backward(x, x, axis=None)
    with pytest.raises(IndexError, match=rf"{name}: axis 1 is out of range .* shape \(\)"):
        forward(np.float64(1.0), axis=1)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("bad", [np.arange(4), np.ones(4, dtype=bool), np.ones(4, dtype=np.float16),
                                 np.array(["a", "b"])])
def test_bad_dtype(name, bad):
    forward, backward = FUNCS[name][:2]
    with pytest.raises(TypeError, match=rf"{name}: x has dtype"):
        forward(bad)
    with pytest.raises(TypeError, match=rf"{name}_backward: y has dtype"):
        backward(bad, np.ones(bad.shape))


def test_backward_shape_mismatch():
    with pytest.raises(ValueError, match=r"softmax_backward: grad_output has shape \(3, 4\) but the forward "
                                         r"output y has shape \(4, 3\)"):
        ops.softmax_backward(np.ones((4, 3)), np.ones((3, 4)))


def test_bad_out():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"softmax: out has shape \(2, 2\)"):
        ops.softmax(x, out=np.empty((2, 2)))
    read_only = np.empty((2, 3))
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="softmax: out is read-only"):
        ops.softmax(x, out=read_only)
    buffer = np.ones(10)
    with pytest.raises(ValueError, match="log_softmax: out partially overlaps x"):
        ops.log_softmax(buffer[:6].reshape(2, 3), out=buffer[3:9].reshape(2, 3))


def test_binding_rejects_non_contiguous_and_mixed_devices():
    from ranvier import _C

    x = np.ones((4, 4))
    with pytest.raises(ValueError, match="softmax: x of shape .* is not C-contiguous"):
        _C.softmax_forward(x[:, ::2], np.empty((4, 2)), -1, False)

    class FakeCudaArray:
        __cuda_array_interface__ = {"shape": (4,), "typestr": "<f4", "data": (0, False),
                                    "version": 3, "strides": None}

    # softmax has a CUDA twin now: a device array is accepted, but never mixed with a host one
    # (the check runs before any pointer is used, so the fake pointer is never touched).
    with pytest.raises(ValueError, match="softmax: x is on cuda but out is on cpu; move both to one device"):
        _C.softmax_forward(FakeCudaArray(), np.empty(4, dtype=np.float32), -1, False)
