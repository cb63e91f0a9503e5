"""The CUDA GEMM and linear kernels (kernels/cuda/gemm.cu), run by the CPU emulator
(tests/cuda_emulation), against the float64 references and the CPU kernels.

These run everywhere, GPU or not: they check the kernels' indexing, tiling, vectorised
paths, bounds and barriers. Outputs start as NaN so that an unwritten element shows.
Sizes straddle the tile sizes (64 x 64 tiles for float32, 32 x 32 for float64; 16-byte
vectors of 4 floats or 2 doubles), with 1 and primes, and leading dimensions wider than
the matrix (which also turn the vectorised loads off when they break 16-byte alignment).
"""

import numpy as np
import pytest
from conftest import tol
from references import matmul as matmul_ref

from ranvier import _C

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1, 1), (3, 5, 7), (64, 64, 8), (65, 63, 17), (33, 130, 9), (128, 40, 70)]


def nan(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


def assert_sum_close(got, expected, magnitude, dtype):
    """|got - expected| <= rtol * magnitude + atol elementwise, magnitude being the sum of the
    absolute terms (entries that cancel to ~0 are judged fairly); NaN fails."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    t = tol(dtype)
    error = np.abs(got - expected)
    bound = t["rtol"] * magnitude + t["atol"]
    assert np.all(error <= bound), f"max error {np.nanmax(error):.3g}, NaN: {int(np.isnan(got).sum())}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_matches_reference_and_cpu(emulated_cuda, rng, dtype, m, n, k, trans_a, trans_b):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c = nan((m, n), dtype)
    emulated_cuda.gemm(trans_a, trans_b, m, n, k, 1.0, a, a.shape[1], b, b.shape[1], 0.0, c, n)
    expected = matmul_ref.matmul(a, b, trans_a, trans_b)
    magnitude = matmul_ref.matmul(np.abs(a), np.abs(b), trans_a, trans_b)
    assert_sum_close(c, expected, magnitude, dtype)
    cpu = nan((m, n), dtype)
    _C.gemm(a, b, cpu, alpha=1.0, beta=0.0, trans_a=trans_a, trans_b=trans_b)
    assert_sum_close(c, cpu.astype(np.float64), 2 * magnitude, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pad", [0, 1, 4])
def test_gemm_alpha_beta_and_leading_dimensions(emulated_cuda, rng, dtype, pad):
    """C = alpha op(A) op(B) + beta C on sub-matrices of wider arrays: the padding columns
    must come out untouched (pad 1 breaks the 16-byte alignment of every other row)."""
    m, n, k = 37, 70, 19
    a = rng.standard_normal((m, k + pad)).astype(dtype)
    b = rng.standard_normal((n, k + pad)).astype(dtype)  # used transposed
    c0 = rng.standard_normal((m, n + pad)).astype(dtype)
    c = c0.copy()
    emulated_cuda.gemm(False, True, m, n, k, 0.5, a, k + pad, b, k + pad, -2.0, c, n + pad)
    expected = 0.5 * matmul_ref.matmul(a[:, :k], b[:, :k], False, True) - 2.0 * c0[:, :n].astype(np.float64)
    magnitude = 0.5 * matmul_ref.matmul(np.abs(a[:, :k]), np.abs(b[:, :k]), False, True) + 2.0 * np.abs(c0[:, :n])
    assert_sum_close(c[:, :n], expected, magnitude, dtype)
    np.testing.assert_array_equal(c[:, n:], c0[:, n:])


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta_zero_never_reads_c_and_alpha_zero_never_reads_a_b(emulated_cuda, rng, dtype):
    m, n, k = 20, 30, 10
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = nan((m, n), dtype)  # beta == 0: NaN in C must not leak into the result
    emulated_cuda.gemm(False, False, m, n, k, 1.0, a, k, b, n, 0.0, c, n)
    assert np.isfinite(c).all()
    c0 = rng.standard_normal((m, n)).astype(dtype)
    c = c0.copy()
    emulated_cuda.gemm(False, False, m, n, k, 0.0, nan((m, k), dtype), k, nan((k, n), dtype), n, 3.0, c, n)
    np.testing.assert_allclose(c, 3.0 * c0.astype(np.float64), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("broadcast", ["none", "a", "b"])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
def test_batched_matmul(emulated_cuda, rng, dtype, broadcast, trans_a, trans_b):
    batch, m, n, k = 3, 17, 66, 5
    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    a = rng.standard_normal(a_shape if broadcast == "a" else (batch, *a_shape)).astype(dtype)
    b = rng.standard_normal(b_shape if broadcast == "b" else (batch, *b_shape)).astype(dtype)
    c = nan((batch, m, n), dtype)
    stride_a = 0 if broadcast == "a" else m * k
    stride_b = 0 if broadcast == "b" else k * n
    emulated_cuda.matmul(a, b, c, batch, m, n, k, trans_a, trans_b, stride_a, stride_b)
    magnitude = matmul_ref.matmul(np.abs(a), np.abs(b), trans_a, trans_b)
    assert_sum_close(c, matmul_ref.matmul(a, b, trans_a, trans_b), magnitude, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,inp,out", [(1, 1, 1), (5, 3, 2), (33, 30, 65), (70, 9, 4)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_forward_and_backward(emulated_cuda, rng, dtype, rows, inp, out, with_bias):
    x = rng.standard_normal((rows, inp)).astype(dtype)
    w = rng.standard_normal((out, inp)).astype(dtype)
    bias = rng.standard_normal(out).astype(dtype) if with_bias else None
    dy = rng.standard_normal((rows, out)).astype(dtype)

    y = nan((rows, out), dtype)
    emulated_cuda.linear_forward(x, w, bias, y, rows, inp, out)
    assert_sum_close(y, matmul_ref.linear(x, w, bias), matmul_ref.linear(np.abs(x), np.abs(w), None if bias is None else np.abs(bias)), dtype)

    dx = nan((rows, inp), dtype)
    emulated_cuda.linear_backward_input(dy, w, dx, rows, inp, out)
    assert_sum_close(dx, matmul_ref.matrix_product(dy, w), matmul_ref.matrix_product(np.abs(dy), np.abs(w)), dtype)

    dw = nan((out, inp), dtype)
    dbias = nan(out, dtype) if with_bias else None
    emulated_cuda.linear_backward_weight(dy, x, dw, dbias, rows, inp, out)
    assert_sum_close(dw, matmul_ref.matrix_product(dy.T, x), matmul_ref.matrix_product(np.abs(dy.T), np.abs(x)), dtype)
    if with_bias:
        assert_sum_close(dbias, dy.astype(np.float64).sum(axis=0), np.abs(dy).astype(np.float64).sum(axis=0), dtype)
