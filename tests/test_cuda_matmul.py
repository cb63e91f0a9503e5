"""The CUDA matmul kernels (kernels/cuda/gemm.cu) against the float64 references and the CPU
kernels: gemm (alpha, beta, every transpose pair), batched matmul, linear forward/backward.

Outputs are filled with NaN before each call so that an element the kernel fails to write
shows. Sizes straddle the tiles (128 x 128 x 8 for float32, 64 x 64 x 8 for float64): 1, 7,
127, 129, 513, and odd leading dimensions that force the scalar (non-float4) loads.

The GPU tests need CuPy and a GPU and skip cleanly otherwise. The mixed-device tests at the
top run everywhere: they only reach error paths that fail in the binding's checks, so the
fake device pointer they carry is never handed to a kernel.
"""

import numpy as np
import pytest
from conftest import tol

import ranvier
from ranvier import _C, ops
from references import matmul as ref

DTYPES = [np.float32, np.float64]
TRANSPOSES = [(False, False), (False, True), (True, False), (True, True)]


# --- mixed devices: refused before any kernel runs (CPU-runnable) ---------------------------

class FakeCudaArray:
    """Exposes __cuda_array_interface__ with a pointer that must never be dereferenced."""

    def __init__(self, shape, typestr="<f4"):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (256, False),
                                         "strides": None, "version": 3}


def host(*shape):
    return np.ones(shape, np.float32)


MIXED_DEVICE_CALLS = [
    # (call, the message naming both devices)
    (lambda: _C.matmul(FakeCudaArray((4, 4)), host(4, 4), host(4, 4), False, False),
     r"matmul: a is on cuda but b is on cpu; move both to one device"),
    (lambda: _C.matmul(host(4, 4), host(4, 4), FakeCudaArray((4, 4)), False, False),
     r"matmul: a is on cpu but out is on cuda"),
    (lambda: _C.matmul(host(4, 4), FakeCudaArray((4, 4)), FakeCudaArray((4, 4)), False, False),
     r"matmul: a is on cpu but b is on cuda"),
    (lambda: _C.gemm(FakeCudaArray((4, 4)), FakeCudaArray((4, 4)), host(4, 4)),
     r"gemm: a is on cuda but c is on cpu"),
    (lambda: _C.gemm(host(4, 4), FakeCudaArray((4, 4)), host(4, 4)),
     r"gemm: a is on cpu but b is on cuda"),
    (lambda: _C.linear_forward(host(4, 4), FakeCudaArray((4, 4)), None, host(4, 4)),
     r"linear_forward: x is on cpu but weight is on cuda"),
    (lambda: _C.linear_forward(FakeCudaArray((4, 4)), FakeCudaArray((4, 4)), host(4),
                               FakeCudaArray((4, 4))),
     r"linear_forward: x is on cuda but bias is on cpu"),
    (lambda: _C.linear_backward_input(FakeCudaArray((4, 4)), host(4, 4), host(4, 4)),
     r"linear_backward_input: grad_output is on cuda but weight is on cpu"),
    (lambda: _C.linear_backward_weight(host(4, 4), host(4, 4), host(4, 4), FakeCudaArray((4,))),
     r"linear_backward_weight: grad_output is on cpu but out_bias is on cuda"),
    (lambda: _C.linear_backward_weight(FakeCudaArray((4, 4)), FakeCudaArray((4, 4)), host(4, 4),
                                       None),
     r"linear_backward_weight: grad_output is on cuda but out_weight is on cpu"),
]


@pytest.mark.parametrize("call,message", MIXED_DEVICE_CALLS)
def test_kernels_reject_mixed_devices(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_mixed_devices_are_refused_before_shape_checks():
    # Shapes that do not fit either: the device error comes first, so no later check (or
    # kernel) ever looks at the fake array.
    with pytest.raises(ValueError, match=r"matmul: a is on cuda but b is on cpu"):
        _C.matmul(FakeCudaArray((4, 5)), host(7, 3), host(2, 2), False, False)


@pytest.mark.skipif(ranvier.cuda.is_built(), reason="a CUDA build would run the kernel")
def test_cuda_arrays_need_a_cuda_build():
    with pytest.raises(ValueError, match=r"matmul: got a CUDA array, but this ranvier was built "
                                         r"without CUDA"):
        _C.matmul(FakeCudaArray((4, 4)), FakeCudaArray((4, 4)), FakeCudaArray((4, 4)), False,
                  False)


# --- on the GPU ------------------------------------------------------------------------------

@pytest.fixture
def cp():
    cupy = pytest.importorskip("cupy")
    if not ranvier.cuda.is_available():
        pytest.skip(f"no usable GPU: {ranvier.cuda.unavailable_reason()}")
    return cupy


def stored(rng, rows, cols, trans, dtype, batch=None):
    """A random operand whose op() is (rows, cols): stored (cols, rows) when trans."""
    shape = (cols, rows) if trans else (rows, cols)
    if batch is not None:
        shape = (batch,) + shape
    return rng.standard_normal(shape).astype(dtype)


def nan_filled(cp, shape, dtype):
    return cp.full(shape, np.nan, dtype=dtype)


def assert_close_to(got, expected, magnitude, dtype):
    """|got - expected| <= rtol * magnitude + atol, elementwise, with magnitude the sum of
    the absolute terms (so that entries that cancel to ~0 are judged fairly); NaN fails."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    t = tol(dtype)
    error = np.abs(got - expected)
    bound = t["rtol"] * magnitude + t["atol"]
    assert np.all(error <= bound), (f"max error {np.nanmax(error):.3g}, "
                                    f"NaN: {int(np.isnan(got).sum())}, "
                                    f"worst ratio {np.nanmax(error / bound):.3g}")


# (m, n, k): 1, 7, 127, 129, 513 and exact tile multiples, mixed so that every edge (m, n, k
# not a tile multiple; k not a multiple of 4, so rows unaligned for float4) is hit.
GEMM_SHAPES = [(1, 1, 1), (7, 1, 127), (1, 129, 7), (127, 129, 7), (129, 127, 513),
               (513, 7, 129), (7, 513, 1), (128, 128, 8), (64, 64, 16), (130, 67, 9),
               (256, 256, 128)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("m,n,k", GEMM_SHAPES)
def test_gemm_cuda_matches_reference_and_cpu(cp, rng, m, n, k, trans_a, trans_b, dtype):
    a = stored(rng, m, k, trans_a, dtype)
    b = stored(rng, k, n, trans_b, dtype)
    c = nan_filled(cp, (m, n), dtype)
    _C.gemm(cp.asarray(a), cp.asarray(b), c, 1.0, 0.0, trans_a, trans_b)
    expected = ref.matmul(a, b, trans_a, trans_b)
    magnitude = ref.matmul(np.abs(a), np.abs(b), trans_a, trans_b)
    got = cp.asnumpy(c)
    assert_close_to(got, expected, magnitude, dtype)
    # And the CPU kernel on the same inputs agrees within the same bound (two roundings).
    c_cpu = np.full((m, n), np.nan, dtype)
    _C.gemm(a, b, c_cpu, 1.0, 0.0, trans_a, trans_b)
    assert_close_to(got, c_cpu.astype(np.float64), 2 * magnitude, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("alpha,beta", [(0.5, 0.0), (1.0, 1.0), (-2.0, 0.25), (0.0, 0.5),
                                        (0.0, 0.0)])
def test_gemm_cuda_alpha_beta(cp, rng, alpha, beta, trans_a, trans_b, dtype):
    m, n, k = 129, 67, 33
    a = stored(rng, m, k, trans_a, dtype)
    b = stored(rng, k, n, trans_b, dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    # beta == 0 must not read C: NaN there must not leak into the result.
    c = nan_filled(cp, (m, n), dtype) if beta == 0 else cp.asarray(c0)
    _C.gemm(cp.asarray(a), cp.asarray(b), c, alpha, beta, trans_a, trans_b)
    product = ref.matmul(a, b, trans_a, trans_b)
    expected = alpha * product + (beta * c0.astype(np.float64) if beta != 0 else 0.0)
    magnitude = (abs(alpha) * ref.matmul(np.abs(a), np.abs(b), trans_a, trans_b)
                 + abs(beta) * np.abs(c0.astype(np.float64)))
    assert_close_to(cp.asnumpy(c), expected, magnitude, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_cuda_alpha_zero_never_reads_a_or_b(cp, dtype):
    # alpha == 0: C = beta * C even when A and B hold NaN (as cpu::gemm).
    a = nan_filled(cp, (9, 5), dtype)
    b = nan_filled(cp, (5, 11), dtype)
    c = cp.full((9, 11), 2.0, dtype=dtype)
    _C.gemm(a, b, c, 0.0, 0.5)
    np.testing.assert_array_equal(cp.asnumpy(c), np.ones((9, 11), dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", [(0, 5, 3), (5, 0, 3), (5, 3, 0), (0, 0, 0)])
def test_gemm_cuda_empty(cp, m, n, k, dtype):
    a = cp.ones((m, k), dtype=dtype)
    b = cp.ones((k, n), dtype=dtype)
    c = nan_filled(cp, (m, n), dtype)
    _C.gemm(a, b, c)
    # k == 0: an empty sum, written as zeros.
    np.testing.assert_array_equal(cp.asnumpy(c), np.zeros((m, n), dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_gemm_cuda_unaligned_operands_use_scalar_loads(cp, rng, trans_a, trans_b, dtype):
    # Views starting one element into a buffer: contiguous and element-aligned but not
    # 16-byte aligned, with tile-multiple leading dimensions that would otherwise allow
    # float4 loads.
    m, n, k = 128, 64, 32

    def offset_copy(x):
        buffer = cp.full(x.size + 1, np.nan, dtype=dtype)
        view = buffer[1:].reshape(x.shape)
        view[...] = cp.asarray(x)
        return view

    a = stored(rng, m, k, trans_a, dtype)
    b = stored(rng, k, n, trans_b, dtype)
    c = offset_copy(np.full((m, n), np.nan, dtype))
    _C.gemm(offset_copy(a), offset_copy(b), c, 1.0, 0.0, trans_a, trans_b)
    assert_close_to(cp.asnumpy(c), ref.matmul(a, b, trans_a, trans_b),
                    ref.matmul(np.abs(a), np.abs(b), trans_a, trans_b), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("m,n,k", [(1, 2, 3), (7, 17, 33), (129, 7, 127), (65, 130, 9)])
def test_matmul_cuda_batched(cp, rng, batch, m, n, k, trans_a, trans_b, dtype):
    a = stored(rng, m, k, trans_a, dtype, batch)
    b = stored(rng, k, n, trans_b, dtype, batch)
    out = nan_filled(cp, (batch, m, n), dtype)
    _C.matmul(cp.asarray(a), cp.asarray(b), out, trans_a, trans_b)
    expected = ref.matmul(a, b, trans_a, trans_b)
    magnitude = ref.matmul(np.abs(a), np.abs(b), trans_a, trans_b)
    assert_close_to(cp.asnumpy(out), expected, magnitude, dtype)
    c_cpu = np.full((batch, m, n), np.nan, dtype)
    _C.matmul(a, b, c_cpu, trans_a, trans_b)
    assert_close_to(cp.asnumpy(out), c_cpu.astype(np.float64), 2 * magnitude, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("shared", ["a", "b"])
def test_matmul_cuda_broadcasts_a_2d_operand(cp, rng, shared, trans_a, trans_b, dtype):
    m, n, k, batch = 17, 129, 33, 3
    a = stored(rng, m, k, trans_a, dtype, None if shared == "a" else batch)
    b = stored(rng, k, n, trans_b, dtype, None if shared == "b" else batch)
    out = nan_filled(cp, (batch, m, n), dtype)
    _C.matmul(cp.asarray(a), cp.asarray(b), out, trans_a, trans_b)
    assert_close_to(cp.asnumpy(out), ref.matmul(a, b, trans_a, trans_b),
                    ref.matmul(np.abs(a), np.abs(b), trans_a, trans_b), dtype)


def test_matmul_cuda_batch_beyond_one_grid_launch(cp, rng):
    # gridDim.z is at most 65535: a longer batch is launched in chunks.
    batch = 70_000
    a = rng.standard_normal((batch, 1, 1)).astype(np.float32)
    b = rng.standard_normal((batch, 1, 1)).astype(np.float32)
    out = nan_filled(cp, (batch, 1, 1), np.float32)
    _C.matmul(cp.asarray(a), cp.asarray(b), out, False, False)
    expected = a.astype(np.float64) * b.astype(np.float64)  # a 1 x 1 x 1 product per matrix
    assert_close_to(cp.asnumpy(out), expected, np.abs(expected), np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_matmul_on_cupy_returns_cupy(cp, rng, dtype):
    a = rng.standard_normal((2, 3, 127, 9)).astype(dtype)
    b = rng.standard_normal((9, 129)).astype(dtype)
    c = ops.matmul(cp.asarray(a), cp.asarray(b))
    assert isinstance(c, cp.ndarray) and c.shape == (2, 3, 127, 129) and c.dtype == dtype
    expected = ref.matmul(a.reshape(6, 127, 9), b).reshape(2, 3, 127, 129)
    magnitude = ref.matmul(np.abs(a).reshape(6, 127, 9), np.abs(b)).reshape(2, 3, 127, 129)
    assert_close_to(cp.asnumpy(c), expected, magnitude, dtype)


def test_matmul_cuda_runs_on_cupys_current_stream(cp, rng):
    a = rng.standard_normal((257, 129)).astype(np.float32)
    b = rng.standard_normal((129, 131)).astype(np.float32)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        a_dev, b_dev = cp.asarray(a), cp.asarray(b)
        out = nan_filled(cp, (257, 131), np.float32)
        _C.matmul(a_dev, b_dev, out, False, False)
        result = out * 1  # ordered after the kernel on the same stream
    stream.synchronize()
    assert_close_to(cp.asnumpy(result), ref.matmul(a, b), ref.matmul(np.abs(a), np.abs(b)),
                    np.float32)


# --- linear ----------------------------------------------------------------------------------

LINEAR_SHAPES = [(1, 1, 1), (3, 5, 2), (17, 33, 7), (65, 64, 129), (300, 129, 65),
                 (127, 513, 1), (1, 7, 513)]  # (rows, in, out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("rows,in_features,out_features", LINEAR_SHAPES)
def test_linear_forward_cuda(cp, rng, rows, in_features, out_features, with_bias, dtype):
    x = rng.standard_normal((rows, in_features)).astype(dtype)
    w = rng.standard_normal((out_features, in_features)).astype(dtype)
    bias = rng.standard_normal(out_features).astype(dtype) if with_bias else None
    y = nan_filled(cp, (rows, out_features), dtype)
    _C.linear_forward(cp.asarray(x), cp.asarray(w), None if bias is None else cp.asarray(bias), y)
    expected = ref.linear(x, w, bias)
    magnitude = ref.linear(np.abs(x), np.abs(w), None if bias is None else np.abs(bias))
    assert_close_to(cp.asnumpy(y), expected, magnitude, dtype)
    # Through ops too: a CuPy result of the same values.
    y_ops = ops.linear(cp.asarray(x), cp.asarray(w), None if bias is None else cp.asarray(bias))
    assert isinstance(y_ops, cp.ndarray)
    assert_close_to(cp.asnumpy(y_ops), expected, magnitude, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,in_features,out_features", LINEAR_SHAPES)
def test_linear_backward_input_cuda(cp, rng, rows, in_features, out_features, dtype):
    dy = rng.standard_normal((rows, out_features)).astype(dtype)
    w = rng.standard_normal((out_features, in_features)).astype(dtype)
    dx = nan_filled(cp, (rows, in_features), dtype)
    _C.linear_backward_input(cp.asarray(dy), cp.asarray(w), dx)
    assert_close_to(cp.asnumpy(dx), ref.linear_backward_input(dy, w),
                    ref.linear_backward_input(np.abs(dy), np.abs(w)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("rows,in_features,out_features",
                         LINEAR_SHAPES + [(0, 5, 3), (1000, 3, 2)])
def test_linear_backward_weight_cuda(cp, rng, rows, in_features, out_features, with_bias, dtype):
    dy = rng.standard_normal((rows, out_features)).astype(dtype)
    x = rng.standard_normal((rows, in_features)).astype(dtype)
    dw = nan_filled(cp, (out_features, in_features), dtype)
    db = nan_filled(cp, (out_features,), dtype) if with_bias else None
    _C.linear_backward_weight(cp.asarray(dy), cp.asarray(x), dw, db)
    expected_w, expected_b = ref.linear_backward_weight(dy, x)
    magnitude_w, magnitude_b = ref.linear_backward_weight(np.abs(dy), np.abs(x))
    assert_close_to(cp.asnumpy(dw), expected_w, magnitude_w, dtype)
    if with_bias:
        assert_close_to(cp.asnumpy(db), expected_b, magnitude_b, dtype)
    # The CPU kernel agrees.
    dw_cpu = np.full((out_features, in_features), np.nan, dtype)
    db_cpu = np.full((out_features,), np.nan, dtype) if with_bias else None
    _C.linear_backward_weight(dy, x, dw_cpu, db_cpu)
    assert_close_to(cp.asnumpy(dw), dw_cpu.astype(np.float64), 2 * magnitude_w, dtype)
    if with_bias:
        assert_close_to(cp.asnumpy(db), db_cpu.astype(np.float64), 2 * magnitude_b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_linear_backward_weight_on_cupy(cp, rng, dtype):
    dy = rng.standard_normal((4, 5, 7)).astype(dtype)
    x = rng.standard_normal((4, 5, 129)).astype(dtype)
    grad_weight, grad_bias = ops.linear_backward_weight(cp.asarray(dy), cp.asarray(x))
    assert isinstance(grad_weight, cp.ndarray) and isinstance(grad_bias, cp.ndarray)
    expected_w, expected_b = ref.linear_backward_weight(dy, x)
    magnitude_w, magnitude_b = ref.linear_backward_weight(np.abs(dy), np.abs(x))
    assert_close_to(cp.asnumpy(grad_weight), expected_w, magnitude_w, dtype)
    assert_close_to(cp.asnumpy(grad_bias), expected_b, magnitude_b, dtype)
