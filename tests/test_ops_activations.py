"""ranvier.ops activations (relu, leaky_relu, sigmoid, tanh, gelu) and their backward
passes against the float64 references in references/activations.py."""

import warnings

import numpy as np
import pytest
from conftest import tol

from ranvier import ops
from references import activations as ref
from references.finite_difference import numeric_grad

DTYPES = [np.float32, np.float64]
SHAPES = [(1,), (7,), (13, 1), (3, 17), (2, 5, 31), (97,), (1, 1, 1), (4, 33)]


def forward_case(name):
    """(ops forward, ops backward, reference f, reference f', backward takes the output)."""
    return {
        "relu": (ops.relu, ops.relu_backward, ref.relu, ref.relu_grad, False),
        "leaky_relu": (lambda x: ops.leaky_relu(x, 0.05),
                       lambda s, g: ops.leaky_relu_backward(s, g, 0.05),
                       lambda x: ref.leaky_relu(x, 0.05), lambda x: ref.leaky_relu_grad(x, 0.05),
                       False),
        "sigmoid": (ops.sigmoid, ops.sigmoid_backward, ref.sigmoid, ref.sigmoid_grad, True),
        "tanh": (ops.tanh, ops.tanh_backward, ref.tanh, ref.tanh_grad, True),
        "gelu": (ops.gelu, ops.gelu_backward, ref.gelu, ref.gelu_grad, False),
        "gelu_tanh": (lambda x: ops.gelu(x, approximate="tanh"),
                      lambda s, g: ops.gelu_backward(s, g, approximate="tanh"),
                      ref.gelu_tanh, ref.gelu_tanh_grad, False),
    }[name]


NAMES = ["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(name, dtype, shape, rng):
    forward, _, reference, _, _ = forward_case(name)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = forward(x)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, reference(x), **tol(dtype))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (13, 1), (3, 17), (2, 5, 31)])
def test_backward_matches_reference(name, dtype, shape, rng):
    forward, backward, reference, reference_grad, uses_output = forward_case(name)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    # Keep x away from relu's kink, where the derivative jumps.
    x[np.abs(x) < 1e-3] = 0.5
    dy = rng.standard_normal(shape).astype(dtype)
    saved = forward(x) if uses_output else x
    dx = backward(saved, dy)
    assert dx.dtype == dtype and dx.shape == shape
    expected = reference_grad(x) * dy.astype(np.float64)
    # From y, float32 rounding of y adds about one ulp of y to the derivative.
    rtol, atol = (1e-4, 1e-6) if (dtype == np.float32 and uses_output) else (tol(dtype)["rtol"], tol(dtype)["atol"])
    np.testing.assert_allclose(dx, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_finite_differences(name, rng):
    forward, backward, _, _, uses_output = forward_case(name)
    x = rng.standard_normal((3, 7)) * 2
    x[np.abs(x) < 1e-2] = 0.3  # away from the kink of relu and leaky_relu
    dy = rng.standard_normal(x.shape)
    numeric = numeric_grad(lambda v: np.sum(forward(v) * dy), x)
    analytic = backward(forward(x) if uses_output else x, dy)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_relu_and_leaky_relu_at_zero_follow_pytorch():
    x = np.zeros(3)
    dy = np.ones(3)
    np.testing.assert_array_equal(ops.relu_backward(x, dy), [0, 0, 0])
    np.testing.assert_array_equal(ops.leaky_relu_backward(x, dy, 0.1), [0.1, 0.1, 0.1])
    np.testing.assert_array_equal(ops.leaky_relu(np.array([-2.0, 0.0, 3.0]), 0.25), [-0.5, 0.0, 3.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_input(dtype):
    x = np.empty((0, 3), dtype=dtype)
    for name in NAMES:
        forward, backward, _, _, _ = forward_case(name)
        assert forward(x).shape == (0, 3)
        assert backward(x, x).shape == (0, 3)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates(name, dtype):
    forward, backward, _, _, uses_output = forward_case(name)
    x = np.array([np.nan, 1.0, -1.0], dtype=dtype)
    y = forward(x)
    assert np.isnan(y[0]) and np.all(np.isfinite(y[1:]))
    # A NaN gradient flowing in comes out as NaN wherever the derivative is nonzero.
    dy = np.array([1.0, np.nan, 1.0], dtype=dtype)
    dx = backward(forward(x) if uses_output else x, dy)
    assert np.isnan(dx[1]) and np.isfinite(dx[2])


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "gelu", "gelu_tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_input_gives_nan_gradient(name, dtype):
    forward, backward, _, _, uses_output = forward_case(name)
    x = np.array([np.nan, 0.5], dtype=dtype)
    dx = backward(forward(x) if uses_output else x, np.ones(2, dtype=dtype))
    assert np.isnan(dx[0]) and np.isfinite(dx[1])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_inputs_are_finite_and_correct(name, dtype):
    forward, backward, reference, reference_grad, uses_output = forward_case(name)
    x = np.array([-1000.0, -80.0, -20.0, 20.0, 80.0, 1000.0], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y = forward(x)
        dx = backward(y if uses_output else x, np.ones_like(x))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    np.testing.assert_allclose(y, reference(x), **tol(dtype))
    np.testing.assert_allclose(dx, reference_grad(x), rtol=tol(dtype)["rtol"], atol=1e-6)


def test_sigmoid_saturates_without_overflow():
    for dtype in DTYPES:
        y = ops.sigmoid(np.array([-1000.0, 1000.0], dtype=dtype))
        assert y[0] == 0.0 and y[1] == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_mixed_float_dtypes_compute_in_float64(name, rng):
    _, backward, _, _, _ = forward_case(name)
    x = rng.standard_normal(5).astype(np.float32)
    dy = rng.standard_normal(5)
    assert backward(x, dy).dtype == np.float64


def test_non_contiguous_input_is_copied(rng):
    x = rng.standard_normal((6, 8))
    np.testing.assert_allclose(ops.gelu(x[:, ::2]), ref.gelu(x[:, ::2]), **tol(np.float64))
    np.testing.assert_allclose(ops.sigmoid(x.T), ref.sigmoid(x.T), **tol(np.float64))


def test_out_argument_and_in_place(rng):
    x = rng.standard_normal(10)
    expected = ref.tanh(x)
    out = np.empty_like(x)
    assert ops.tanh(x, out=out) is out
    np.testing.assert_allclose(out, expected, **tol(np.float64))
    ops.tanh(x, out=x)  # the very same buffer is allowed
    np.testing.assert_allclose(x, expected, **tol(np.float64))


# --- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [np.arange(4), np.arange(4).astype(np.int32),
                                 np.ones(4, dtype=bool), np.ones(4, dtype=np.float16),
                                 np.array(["a", "b"]), np.ones(3, dtype=np.complex128)])
def test_bad_dtype_raises_type_error(name, bad):
    forward, backward, _, _, _ = forward_case(name)
    with pytest.raises(TypeError, match="dtype"):
        forward(bad)
    with pytest.raises(TypeError, match="dtype"):
        backward(bad, bad)


def test_float16_message_suggests_float32():
    with pytest.raises(TypeError, match=r"relu: x has dtype float16.*float32"):
        ops.relu(np.ones(3, dtype=np.float16))


@pytest.mark.parametrize("op, takes", [(ops.relu_backward, "x"), (ops.sigmoid_backward, "y"),
                                       (ops.tanh_backward, "y"), (ops.gelu_backward, "x")])
def test_backward_shape_mismatch(op, takes):
    with pytest.raises(ValueError, match=r"_backward: grad_output has shape \(3, 5\).*\(3, 4\)"):
        op(np.ones((3, 4)), np.ones((3, 5)))


def test_bad_approximate():
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh', got 'erf'"):
        ops.gelu(np.ones(3), approximate="erf")
    with pytest.raises(ValueError, match="gelu_backward: approximate"):
        ops.gelu_backward(np.ones(3), np.ones(3), approximate=None)


def test_bad_out():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"relu: out has shape \(3, 2\)"):
        ops.relu(x, out=np.empty((3, 2)))
    with pytest.raises(ValueError, match="relu: out has shape .* dtype float32"):
        ops.relu(x, out=np.empty((2, 3), dtype=np.float32))
    read_only = np.empty((2, 3))
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="^relu: out is read-only"):
        ops.relu(x, out=read_only)
    with pytest.raises(ValueError, match=r"^relu: out of shape \(2, 3\) is not C-contiguous"):
        ops.relu(x, out=np.empty((3, 2)).T)
    with pytest.raises(TypeError, match="^relu: out must be a NumPy or CuPy array, got list"):
        ops.relu(x, out=[[0.0] * 3] * 2)
    buffer = np.ones(8)
    with pytest.raises(ValueError, match="partially overlaps"):
        ops.relu(buffer[:6], out=buffer[2:])


def test_not_an_array():
    with pytest.raises(TypeError, match="sigmoid"):
        ops.sigmoid("hello")
    with pytest.raises(TypeError):
        ops.sigmoid(object())


@pytest.mark.parametrize("name", NAMES)
def test_zero_dimensional_input_keeps_its_shape(name):
    forward, backward, reference, _, _ = forward_case(name)
    y = forward(np.float64(0.75))
    assert y.shape == ()
    np.testing.assert_allclose(y, reference(np.float64(0.75)), **tol(np.float64))
    assert backward(np.float64(0.75), np.float64(1.0)).shape == ()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_passes_the_gradient_of_a_nan_input(dtype):
    # PyTorch's threshold_backward zeroes the gradient only where x <= 0; NaN <= 0 is false.
    x = np.array([np.nan, -1.0, 2.0], dtype=dtype)
    grad = ops.relu_backward(x, np.array([3.0, 3.0, 3.0], dtype=dtype))
    np.testing.assert_array_equal(grad, np.array([3.0, 0.0, 3.0], dtype=dtype))
