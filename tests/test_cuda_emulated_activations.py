"""The CUDA elementwise activations (kernels/cuda/activations.cu), run by the CPU emulator
(tests/cuda_emulation), against the float64 references and the CPU kernels of ranvier._C.

One grid-stride loop of 256-thread blocks per direction: sizes are 1, odd and prime, just
below, at and above 256 and a few blocks long. Outputs start as NaN and are three elements
longer than n, so that an element the kernel forgets shows up and one past n must stay NaN.

ReLU and LeakyReLU (both directions) and the Sigmoid and Tanh backward passes (from the
output) run activation_math.h's scalar formula on both devices with no transcendental
function, so the CPU and the emulated GPU agree bit for bit there; the rest goes through the
CPU's vector math and agrees to the dtype's tolerance.
"""

import numpy as np
import pytest
from conftest import tol
from references import activations as ref

from ranvier import _C

DTYPES = [np.float32, np.float64]
SIZES = [1, 7, 97, 255, 256, 257, 1031]
GUARD = 3  # NaN elements past n that the kernels must not write

# name: (code of the Activation enum, reference f(x, alpha), reference f'(x, alpha),
#        backward takes the output, CPU bit-identical forward, CPU bit-identical backward)
ACTIVATIONS = {
    "relu": (0, lambda x, a: ref.relu(x), lambda x, a: ref.relu_grad(x), False, True, True),
    "leaky_relu": (1, ref.leaky_relu, ref.leaky_relu_grad, False, True, True),
    "sigmoid": (2, lambda x, a: ref.sigmoid(x), lambda x, a: ref.sigmoid_grad(x), True, False, True),
    "tanh": (3, lambda x, a: ref.tanh(x), lambda x, a: ref.tanh_grad(x), True, False, True),
    "gelu": (4, lambda x, a: ref.gelu(x), lambda x, a: ref.gelu_grad(x), False, False, False),
    "gelu_tanh": (5, lambda x, a: ref.gelu_tanh(x), lambda x, a: ref.gelu_tanh_grad(x), False, False, False),
}
# (name, alpha): alpha is LeakyReLU's negative slope and ignored by the others.
CASES = [("relu", 0.0), ("leaky_relu", 0.01), ("leaky_relu", 0.2), ("leaky_relu", 1.5), ("sigmoid", 0.0),
         ("tanh", 0.0), ("gelu", 0.0), ("gelu_tanh", 0.0)]


def guarded_nan(n, dtype):
    return np.full(n + GUARD, np.nan, dtype=dtype)


def inputs(rng, n, dtype):
    """3 N(0, 1) with a few exact zeros (the kinks of ReLU and LeakyReLU)."""
    x = (3 * rng.standard_normal(n)).astype(dtype)
    x[::11] = 0.0
    return x


def assert_close(actual, expected, dtype, rtol=None, atol=None):
    t = tol(dtype)
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected,
                               rtol=t["rtol"] if rtol is None else rtol, atol=t["atol"] if atol is None else atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name,alpha", CASES)
def test_activation_forward(emulated_cuda, rng, name, alpha, n, dtype):
    code, reference, _, _, cpu_identical, _ = ACTIVATIONS[name]
    x = inputs(rng, n, dtype)
    y = guarded_nan(n, dtype)
    emulated_cuda.activation_forward(code, x, y, n, alpha)
    assert np.isnan(y[n:]).all(), "wrote past n"
    assert_close(y[:n], reference(x, alpha), dtype)
    cpu = np.full(n, np.nan, dtype=dtype)
    _C.activation_forward(code, x, cpu, alpha)
    if cpu_identical:
        np.testing.assert_array_equal(y[:n], cpu)
    else:
        assert_close(y[:n], cpu.astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name,alpha", CASES)
def test_activation_backward(emulated_cuda, rng, name, alpha, n, dtype):
    code, reference, reference_grad, uses_output, _, cpu_identical = ACTIVATIONS[name]
    x = inputs(rng, n, dtype)
    dy = rng.standard_normal(n).astype(dtype)
    # The saved forward value: y for Sigmoid and Tanh (the CPU's, so both devices see the
    # same saved values), x otherwise.
    if uses_output:
        saved = np.empty(n, dtype=dtype)
        _C.activation_forward(code, x, saved, alpha)
    else:
        saved = x
    dx = guarded_nan(n, dtype)
    emulated_cuda.activation_backward(code, saved, dy, dx, n, alpha)
    assert np.isnan(dx[n:]).all(), "wrote past n"
    expected = reference_grad(x, alpha) * dy.astype(np.float64)
    # From y, float32 rounding of y adds about one ulp of y to the derivative (as
    # tests/test_ops_activations.py).
    loose = dtype == np.float32 and uses_output
    assert_close(dx[:n], expected, dtype, *((1e-4, 1e-6) if loose else (None, None)))
    cpu = np.full(n, np.nan, dtype=dtype)
    _C.activation_backward(code, saved, dy, cpu, alpha)
    if cpu_identical:
        np.testing.assert_array_equal(dx[:n], cpu)
    else:
        assert_close(dx[:n], cpu.astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,alpha", CASES)
def test_activation_special_values_as_on_the_cpu(emulated_cuda, name, alpha, dtype):
    """NaN passes through; +-inf and values far past exp's range stay finite where the
    function is (sigmoid's exp is only taken of a non-positive number)."""
    code, reference, *_ = ACTIVATIONS[name]
    big = 100.0 if dtype == np.float32 else 800.0
    x = np.array([np.nan, np.inf, -np.inf, big, -big, 0.0, -0.0, 1e-30], dtype=dtype)
    n = x.size
    y = guarded_nan(n, dtype)
    emulated_cuda.activation_forward(code, x, y, n, alpha)
    cpu = np.full(n, np.nan, dtype=dtype)
    _C.activation_forward(code, x, cpu, alpha)
    np.testing.assert_allclose(y[:n], cpu, **tol(dtype))  # NaN exactly where the CPU has NaN
    finite = np.isfinite(x)
    assert_close(y[:n][finite], reference(x[finite], alpha), dtype)
    assert np.isnan(y[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,alpha", CASES)
def test_activation_in_place(emulated_cuda, rng, name, alpha, dtype):
    """y may be x (forward) and dx may be dy (backward): each element is read before it is
    written, by the same thread."""
    code, _, _, uses_output, _, _ = ACTIVATIONS[name]
    n = 300
    x = inputs(rng, n, dtype)
    dy = rng.standard_normal(n).astype(dtype)
    y = np.empty(n, dtype=dtype)
    emulated_cuda.activation_forward(code, x, y, n, alpha)
    in_place = x.copy()
    emulated_cuda.activation_forward(code, in_place, in_place, n, alpha)
    np.testing.assert_array_equal(in_place, y)
    saved = y if uses_output else x
    dx = np.empty(n, dtype=dtype)
    emulated_cuda.activation_backward(code, saved, dy, dx, n, alpha)
    into_dy = dy.copy()
    emulated_cuda.activation_backward(code, saved, into_dy, into_dy, n, alpha)
    np.testing.assert_array_equal(into_dy, dx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_of_nothing_writes_nothing(emulated_cuda, name, dtype):
    code = ACTIVATIONS[name][0]
    source = np.ones(GUARD, dtype=dtype)
    guard = np.full(GUARD, np.nan, dtype=dtype)
    emulated_cuda.activation_forward(code, source, guard, 0, 0.1)
    emulated_cuda.activation_backward(code, source, source, guard, 0, 0.1)
    assert np.isnan(guard).all()
