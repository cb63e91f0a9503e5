"""The CPU vector math (exp, sigmoid, tanh, erf, log, log1p over arrays, and the row max) on every SIMD path this CPU runs.

Each path runs in its own subprocess (tests/simd_paths.py, cases in
tests/vector_math_path_cases.py). Accuracy is asserted in ulps of the exact result against
references one precision wider (float64 for float32 outputs, NumPy's long double for float64
outputs where it is the 80-bit x87 format), with the bounds documented in
kernels/include/ranvier/vector_math.h. The activations and softmax built on the vector math
are compared with the float64 references in tests/references/ on every path too.
"""

import math

import numpy as np
import pytest

from conftest import tol
from ranvier import _C

import vector_math_path_cases as cases
from references import activations as ref_act
from references import losses as ref_loss
from references import softmax as ref_softmax
from simd_paths import PATHS, run_cases_on_path

# Bounds in ulps of the exact result (subnormal results: in subnormal steps), every path.
ULP_BOUNDS = {"exp": 2.0, "sigmoid": 3.0, "tanh": 3.0, "erf": 3.0, "log": 2.0, "log1p": 2.0}

# A float64 output's exact value needs a wider reference: long double where it has a 64-bit
# mantissa (x86-64 Linux); elsewhere float64 itself, which adds up to about one ulp.
_LONG_DOUBLE_WIDE = np.finfo(np.longdouble).nmant >= 63
_FLOAT64_REFERENCE_SLACK = 0.0 if _LONG_DOUBLE_WIDE else 1.0


def wide_type(dtype):
    return np.float64 if np.dtype(dtype) == np.float32 else (
        np.longdouble if _LONG_DOUBLE_WIDE else np.float64)


def exact(function, x):
    """f(x) one precision wider than x (see above); erf from math.erf (float64) for both."""
    wide = wide_type(x.dtype)
    v = x.astype(wide)
    with np.errstate(all="ignore"):
        if function == "exp":
            return np.exp(v)
        if function == "sigmoid":
            e = np.exp(-np.abs(v))
            return np.where(v >= 0, 1 / (1 + e), e / (1 + e))
        if function == "tanh":
            return np.tanh(v)
        if function == "log":
            return np.log(v)
        if function == "log1p":
            return np.log1p(v)
    erf = np.frompyfunc(math.erf, 1, 1)
    return erf(x.astype(np.float64)).astype(np.float64).astype(wide)


def ulp_errors(actual, exact_values, dtype):
    """|actual - exact| in ulps of the exact value in `dtype` (subnormals: subnormal steps),
    where the exact value rounds to a finite number; elsewhere 0, with those positions
    checked separately."""
    finfo = np.finfo(dtype)
    wide = exact_values.dtype.type
    with np.errstate(over="ignore"):
        rounded = exact_values.astype(dtype)
    finite = np.isfinite(rounded)
    magnitude = np.abs(np.where(finite, exact_values, 1)).astype(wide)
    exponent = np.floor(np.log2(np.maximum(magnitude, wide(finfo.tiny))))
    ulp = np.exp2(exponent - finfo.nmant)
    with np.errstate(all="ignore"):
        errors = np.abs(actual.astype(wide) - np.where(finite, exact_values, 0)) / ulp
    errors[~finite] = 0
    errors[finite & ~np.isfinite(actual)] = np.inf
    return errors, rounded, finite


@pytest.fixture(scope="module", params=PATHS)
def path_outputs(request, tmp_path_factory):
    path = request.param
    return run_cases_on_path("vector_math_path_cases.py", path, 1,
                             tmp_path_factory.mktemp(f"vector_math_{path}"))


_exact_cache = {}


def grid_and_exact(function, dtype):
    if (function, dtype) not in _exact_cache:
        x = cases.grid(function, dtype)
        _exact_cache[(function, dtype)] = (x, exact(function, x))
    return _exact_cache[(function, dtype)]


@pytest.mark.parametrize("dtype", cases.DTYPES)
@pytest.mark.parametrize("function", cases.FUNCTIONS)
def test_error_within_documented_ulps(path_outputs, function, dtype):
    x, exact_values = grid_and_exact(function, dtype)
    actual = path_outputs[f"grid_{function}_{dtype}"]
    assert actual.dtype == dtype and actual.shape == x.shape
    errors, rounded, finite = ulp_errors(actual, exact_values, dtype)
    bound = ULP_BOUNDS[function] + (_FLOAT64_REFERENCE_SLACK if dtype == "float64" else 0.0)
    worst = int(np.argmax(errors))
    assert errors[worst] <= bound, (
        f"{function} {dtype}: {errors[worst]:.2f} ulp at x={x[worst]!r}: got {actual[worst]!r}, "
        f"exact {exact_values[worst]!r}")
    # Where the exact value rounds to +-inf (exp's overflow) or is NaN, exactly that.
    assert np.array_equal(actual[~finite], rounded[~finite], equal_nan=True)


@pytest.mark.parametrize("dtype", cases.DTYPES)
def test_special_values(path_outputs, dtype):
    finfo = np.finfo(dtype)
    x = cases.special_values(dtype)
    tiny_sub = finfo.smallest_subnormal
    #            nan     inf     -inf    0     -0     sub   -sub   tiny  -tiny  max     -max
    expected = {
        "exp": [np.nan, np.inf, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, np.inf, 0.0],
        "sigmoid": [np.nan, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0, 0.0],
        "tanh": [np.nan, 1.0, -1.0, 0.0, -0.0, tiny_sub, -tiny_sub, finfo.tiny, -finfo.tiny, 1.0,
                 -1.0],
    }
    for function, values in expected.items():
        actual = path_outputs[f"grid_{function}_{dtype}"][-len(x):]
        values = np.array(values, dtype=dtype)
        assert np.array_equal(actual, values, equal_nan=True), (function, actual)
        # signed zeros keep their sign
        assert np.array_equal(np.signbit(actual[3:5]), np.signbit(values[3:5])), function
    nan, inf = np.nan, np.inf
    # log and log1p where the result is exact (NaN, infinities, signed zeros, subnormals)
    exact_positions = {
        "log": ([0, 1, 2, 3, 4, 6, 8, 10], [nan, inf, nan, -inf, -inf, nan, nan, nan]),
        "log1p": ([0, 1, 2, 3, 4, 5, 6, 10], [nan, inf, nan, 0.0, -0.0, tiny_sub, -tiny_sub, nan]),
    }
    for function, (positions, values) in exact_positions.items():
        actual = path_outputs[f"grid_{function}_{dtype}"][-len(x):][positions]
        values = np.array(values, dtype=dtype)
        assert np.array_equal(actual, values, equal_nan=True), (function, actual)
        assert np.array_equal(np.signbit(actual[3:5]), np.signbit(values[3:5])), function
    erf = path_outputs[f"grid_erf_{dtype}"][-len(x):]
    assert np.isnan(erf[0])
    assert np.array_equal(erf[[1, 2, 9, 10]], np.array([1, -1, 1, -1], dtype=dtype))
    assert erf[3] == 0 and not np.signbit(erf[3]) and erf[4] == 0 and np.signbit(erf[4])


@pytest.mark.parametrize("dtype", cases.DTYPES)
@pytest.mark.parametrize("function", cases.FUNCTIONS)
def test_every_length_and_in_place_give_the_same_values(path_outputs, function, dtype):
    # An elementwise function: a prefix of any length (whole registers, then a tail) and the
    # in-place call give bit for bit the values of the whole array.
    whole = path_outputs[f"in_place_{function}_{dtype}"]
    for n in cases.PREFIX_LENGTHS:
        prefix = path_outputs[f"prefix_{function}_{dtype}_{n}"]
        assert prefix.shape == (n,)
        assert np.array_equal(prefix, whole[:n], equal_nan=True), (function, dtype, n)
    x = cases.prefix_input(dtype)
    errors, _, _ = ulp_errors(whole, exact(function, x), dtype)
    assert errors.max() <= ULP_BOUNDS[function] + _FLOAT64_REFERENCE_SLACK


@pytest.mark.parametrize("dtype", cases.DTYPES)
def test_max_propagates_nan_at_every_length(path_outputs, dtype):
    for n in cases.PREFIX_LENGTHS[1:]:
        expected = np.array([np.max(v.astype(np.float64)) for v in cases.max_inputs(dtype, n)])
        np.testing.assert_array_equal(path_outputs[f"max_{dtype}_{n}"], expected, err_msg=f"n={n}")


_ACTIVATION_REFERENCES = {
    "sigmoid": (ref_act.sigmoid, ref_act.sigmoid_grad, True),
    "tanh": (ref_act.tanh, ref_act.tanh_grad, True),
    "gelu": (ref_act.gelu, ref_act.gelu_grad, False),
    "gelu_tanh": (ref_act.gelu_tanh, ref_act.gelu_tanh_grad, False),
}


@pytest.mark.parametrize("dtype", cases.DTYPES)
@pytest.mark.parametrize("name", cases.ACTIVATIONS)
def test_activations_match_reference(path_outputs, name, dtype):
    reference, reference_grad, uses_output = _ACTIVATION_REFERENCES[name]
    for index, shape in enumerate(cases.ACTIVATION_SHAPES):
        x, g = cases.activation_inputs(dtype, shape, index)
        y = path_outputs[f"act_{name}_{dtype}_{index}"]
        dx = path_outputs[f"act_grad_{name}_{dtype}_{index}"]
        assert y.dtype == dtype and y.shape == shape and dx.shape == shape
        np.testing.assert_allclose(y, reference(x), **tol(dtype), err_msg=f"{name} {shape}")
        # From y, float32 rounding of y adds about one ulp of y to the derivative (as in
        # test_ops_activations).
        if dtype == "float32":
            rtol, atol = (1e-4, 1e-6) if uses_output else (tol(dtype)["rtol"], 1e-6)
        else:
            rtol, atol = tol(dtype)["rtol"], tol(dtype)["atol"]
        np.testing.assert_allclose(dx, reference_grad(x) * g.astype(np.float64), rtol=rtol,
                                   atol=atol, err_msg=f"{name} backward {shape}")


@pytest.mark.parametrize("dtype", cases.DTYPES)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_matches_reference(path_outputs, log, dtype):
    for index, (shape, axis, with_backward) in enumerate(cases.SOFTMAX_CASES):
        x, g = cases.softmax_inputs(dtype, index)
        y = path_outputs[f"softmax_{int(log)}_{dtype}_{index}"]
        np.testing.assert_allclose(y, ref_softmax.softmax(x, axis, log=log), **tol(dtype),
                                   err_msg=f"{shape} axis {axis}")
        if with_backward:
            dx = path_outputs[f"softmax_grad_{int(log)}_{dtype}_{index}"]
            rtol, atol = (2e-4, 2e-6) if dtype == "float32" else (1e-10, 1e-12)
            np.testing.assert_allclose(dx, ref_softmax.softmax_grad(x, g, axis, log=log),
                                       rtol=rtol, atol=atol, err_msg=f"backward {shape}")


def test_vector_math_runs_on_the_gemm_path():
    assert _C.cpu_simd_path() == _C.cpu_gemm_path()


def test_cpu_vector_math_rejects_bad_input():
    x = np.ones(5, np.float32)
    with pytest.raises(ValueError, match="cpu_vector_math: function must be 'exp'.*got 'cosh'"):
        _C.cpu_vector_math("cosh", x, np.empty_like(x))
    with pytest.raises(TypeError, match="cpu_vector_math"):
        _C.cpu_vector_math("exp", np.ones(5, np.int32), np.empty(5, np.int32))
    with pytest.raises(TypeError, match="cpu_vector_math"):
        _C.cpu_vector_math("exp", x, np.empty(5, np.float64))
    with pytest.raises(ValueError, match="cpu_vector_math"):
        _C.cpu_vector_math("exp", x, np.empty(6, np.float32))
    read_only = np.empty_like(x)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="cpu_vector_math"):
        _C.cpu_vector_math("exp", x, read_only)
    with pytest.raises(ValueError, match="cpu_vector_max: x is empty"):
        _C.cpu_vector_max(np.ones(0))
    with pytest.raises(TypeError, match="cpu_vector_max"):
        _C.cpu_vector_max(np.ones(3, np.int64))
    buffer = np.ones(10, np.float32)
    with pytest.raises(ValueError, match="cpu_vector_math"):
        _C.cpu_vector_math("exp", buffer[:5], buffer[2:7])  # partial overlap


@pytest.mark.parametrize("dtype", cases.DTYPES)
@pytest.mark.parametrize("index", range(len(cases.LOSS_CASES)),
                         ids=[f"{n}-{r}" for n, r in cases.LOSS_CASES])
def test_losses_match_reference(path_outputs, index, dtype):
    name, reduction = cases.LOSS_CASES[index]
    x, target, pos_weight, g = cases.loss_inputs(dtype, index)
    if name == "bce":
        expected = ref_loss.bce(x, target, reduction=reduction)
        with np.errstate(divide="ignore"):  # p = 0 and 1: not compared, see below
            expected_grad = ref_loss.bce_grad(x, target, g, reduction=reduction)
    elif name == "bce_with_logits":
        expected = ref_loss.bce_logits(x, target, pos_weight=pos_weight, reduction=reduction)
        expected_grad = ref_loss.bce_logits_grad(x, target, g, pos_weight=pos_weight,
                                                 reduction=reduction)
    else:
        expected = ref_loss.cross_entropy(x, target, reduction=reduction)
        expected_grad = ref_loss.cross_entropy_grad(x, target, g, reduction=reduction)
    # As tests/test_ops_losses.py: tol for the losses, 5x / 10x for the gradients.
    np.testing.assert_allclose(path_outputs[f"loss_{dtype}_{index}"], expected, **tol(dtype))
    grad = path_outputs[f"loss_grad_{dtype}_{index}"]
    if name == "bce":
        # p = 0, 1, ~0, ~1 come first: the kernel bounds p (1 - p) below by 1e-12 as PyTorch
        # does, the reference does not; its gradient is checked from the 5th element on.
        grad, expected_grad = grad[4:], expected_grad[4:]
    np.testing.assert_allclose(grad, expected_grad, rtol=tol(dtype)["rtol"] * 5,
                               atol=tol(dtype)["atol"] * 10)
