"""ranvier.ops.matmul / linear (and their _C kernels) against float64 references."""

import gc

import numpy as np
import pytest
from conftest import tol

from ranvier import _C, ops
from references import matmul as ref

DTYPES = [np.float32, np.float64]
TRANSPOSES = [(False, False), (False, True), (True, False), (True, True)]

# (m, n, k): a spread over {1, 2, 3, 7, 17, 33, 64, 65, 129} with ones, primes, powers of
# two and one past them, none all multiples of the register tile (4 rows x 8 or 4 columns).
SHAPES = [(1, 1, 1), (2, 3, 7), (17, 1, 33), (7, 65, 2), (33, 17, 64), (64, 129, 3),
          (65, 33, 129), (129, 7, 17), (3, 64, 65)]


def stored(rng, rows, cols, trans, dtype, batch=None):
    """A random operand whose op() is (rows, cols): stored (cols, rows) when trans."""
    shape = (cols, rows) if trans else (rows, cols)
    if batch is not None:
        shape = (batch,) + shape
    return rng.standard_normal(shape).astype(dtype)


def assert_product_close(got, a, b, trans_a, trans_b, dtype):
    """got == op(a) @ op(b) within rounding error: the bound scales with |op(a)| @ |op(b)|,
    the size of the terms summed, so that entries that cancel to ~0 are judged fairly."""
    expected = ref.matmul(a, b, trans_a, trans_b)
    magnitude = ref.matmul(np.abs(a), np.abs(b), trans_a, trans_b)
    t = tol(dtype)
    assert got.dtype == dtype
    assert got.shape == expected.shape
    error = np.abs(got.astype(np.float64) - expected)
    bound = t["rtol"] * magnitude + t["atol"]
    assert np.all(error <= bound), f"max error {error.max():.3g}, worst ratio {(error / bound).max():.3g}"


# --- matmul: values ----------------------------------------------------------------------

@pytest.mark.parametrize("with_out", [False, True], ids=["new", "out"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_matmul_2d_matches_reference(rng, m, n, k, trans_a, trans_b, dtype, with_out):
    # Without out, two plain matrices take the one-call fast path (_C.matmul_matrices);
    # with out (filled with NaN, which must all be overwritten), ops.matmul's general path.
    a = stored(rng, m, k, trans_a, dtype)
    b = stored(rng, k, n, trans_b, dtype)
    out = np.full((m, n), np.nan, dtype=dtype) if with_out else None
    c = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=out)
    assert with_out == (c is out)
    assert c.flags.c_contiguous and c.flags.writeable
    assert_product_close(c, a, b, trans_a, trans_b, dtype)


def _misaligned_matrix():
    """A (3, 4) float32 matrix whose data starts one byte past an element boundary."""
    raw = np.zeros(3 * 4 * 4 + 1, dtype=np.uint8)
    a = raw[1:].view(np.float32).reshape(3, 4)
    assert a.ctypes.data % 4 != 0
    return a


@pytest.mark.parametrize("case", [
    "mixed_dtypes", "non_contiguous", "byte_swapped", "float16", "int64", "three_d", "one_d",
    "inner_dims_differ", "misaligned", "list"])
def test_matmul_fast_path_declines_everything_but_plain_matrices(rng, case):
    # _C.matmul_matrices returns None for what it does not take, and ops.matmul's general
    # path then converts, computes or reports as it always did.
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((4, 5)).astype(np.float32)
    if case == "mixed_dtypes":
        b = b.astype(np.float64)
    elif case == "non_contiguous":
        b = np.asfortranarray(b)
    elif case == "byte_swapped":
        b = b.astype(b.dtype.newbyteorder())
    elif case == "float16":
        a, b = a.astype(np.float16), b.astype(np.float16)
    elif case == "int64":
        a, b = a.astype(np.int64), b.astype(np.int64)
    elif case == "three_d":
        a = a[None]
    elif case == "one_d":
        a = a[0].copy()
    elif case == "inner_dims_differ":
        b = b[:3].copy()
    elif case == "misaligned":
        a = _misaligned_matrix()
    elif case == "list":
        a = a.tolist()
    assert _C.matmul_matrices(a, b) is None
    assert _C.matmul_matrices(b, a, True, True) is None


def test_matmul_fast_path_output_comes_from_the_host_cache(rng):
    # A product of 64 KiB or more is allocated from ranvier's host cache, as every op's
    # output is: its block is in use while the array lives and back in the cache after.
    # The collector is kept from freeing other tests' cached arrays in between.
    a = rng.standard_normal((128, 96)).astype(np.float32)
    b = rng.standard_normal((96, 160)).astype(np.float32)
    gc.collect()
    gc.disable()
    try:
        before = _C.host_cache_stats()["in_use_bytes"]
        c = ops.matmul(a, b)
        assert _C.host_cache_stats()["in_use_bytes"] >= before + c.nbytes
        assert_product_close(c, a, b, False, False, np.float32)
        del c
        assert _C.host_cache_stats()["in_use_bytes"] == before
    finally:
        gc.enable()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("m,n,k", [(1, 2, 3), (7, 17, 33), (65, 3, 17)])
def test_matmul_batched_matches_reference(rng, batch, m, n, k, trans_a, trans_b, dtype):
    a = stored(rng, m, k, trans_a, dtype, batch)
    b = stored(rng, k, n, trans_b, dtype, batch)
    c = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    assert c.shape == (batch, m, n)
    assert_product_close(c, a, b, trans_a, trans_b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("shared", ["a", "b"])
def test_matmul_broadcasts_a_2d_operand_over_the_batch(rng, shared, trans_a, trans_b, dtype):
    m, n, k, batch = 17, 7, 33, 3
    a = stored(rng, m, k, trans_a, dtype, None if shared == "a" else batch)
    b = stored(rng, k, n, trans_b, dtype, None if shared == "b" else batch)
    c = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    assert c.shape == (batch, m, n)
    assert_product_close(c, a, b, trans_a, trans_b, dtype)
    # The same through _C directly: a 2-D operand is stride-0 broadcast by the kernel.
    c_direct = np.empty((batch, m, n), dtype=dtype)
    _C.matmul(a, b, c_direct, trans_a, trans_b)
    np.testing.assert_array_equal(c_direct, c)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_matmul_large_exercises_blocking_and_threads(rng, trans_a, trans_b, dtype):
    # m > the 128-row block, k > the 256-deep block, n not a multiple of the column tile;
    # large enough that the row strips are split between threads.
    m, n, k = 300, 129, 257
    a = stored(rng, m, k, trans_a, dtype)
    b = stored(rng, k, n, trans_b, dtype)
    c = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    assert_product_close(c, a, b, trans_a, trans_b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_b", [False, True])
def test_matmul_wider_than_one_column_panel(rng, trans_b, dtype):
    # n > 2048 columns: the B panel loop runs more than once.
    m, n, k = 5, 2100, 3
    a = stored(rng, m, k, False, dtype)
    b = stored(rng, k, n, trans_b, dtype)
    assert_product_close(ops.matmul(a, b, trans_b=trans_b), a, b, False, trans_b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_batched_large_matrices(rng, dtype):
    # Big matrices with a short batch: the kernel parallelises inside each product.
    a = rng.standard_normal((2, 140, 70)).astype(dtype)
    b = rng.standard_normal((2, 70, 90)).astype(dtype)
    assert_product_close(ops.matmul(a, b), a, b, False, False, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_many_small_matrices(rng, dtype):
    # Many small products: the kernel parallelises over the batch.
    a = rng.standard_normal((300, 5, 9)).astype(dtype)
    b = rng.standard_normal((300, 9, 6)).astype(dtype)
    assert_product_close(ops.matmul(a, b), a, b, False, False, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_matmul_out_prefilled_with_nan_is_overwritten(rng, trans_a, trans_b, dtype):
    # The kernel computes with beta = 0: it must never read (or add to) what out held.
    a = stored(rng, 33, 65, trans_a, dtype, 2)
    b = stored(rng, 65, 17, trans_b, dtype)
    out = np.full((2, 33, 17), np.nan, dtype=dtype)
    c = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=out)
    assert c is out
    assert np.all(np.isfinite(out))
    assert_product_close(out, a, b, trans_a, trans_b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_matmul_k_zero_gives_zeros(trans_a, trans_b, dtype):
    a = np.empty((0, 4) if trans_a else (4, 0), dtype=dtype)
    b = np.empty((3, 0) if trans_b else (0, 3), dtype=dtype)
    out = np.full((4, 3), np.nan, dtype=dtype)
    c = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=out)
    np.testing.assert_array_equal(c, np.zeros((4, 3), dtype=dtype))


@pytest.mark.parametrize("a_shape,b_shape,result_shape", [
    ((0, 4), (4, 3), (0, 3)),
    ((4, 5), (5, 0), (4, 0)),
    ((0, 4, 5), (5, 3), (0, 4, 3)),
    ((2, 0, 5), (2, 5, 3), (2, 0, 3)),
])
def test_matmul_empty_results(a_shape, b_shape, result_shape):
    c = ops.matmul(np.ones(a_shape), np.ones(b_shape))
    assert c.shape == result_shape
    np.testing.assert_array_equal(c, np.matmul(np.ones(a_shape), np.ones(b_shape)))


@pytest.mark.parametrize("a_shape,b_shape", [
    ((5, 4), (4, 3)),
    ((2, 3, 5, 4), (2, 3, 4, 6)),     # equal leading dims, flattened into one batch
    ((2, 3, 5, 4), (4, 6)),           # 2-D b shared by a 4-D a
    ((5, 4), (2, 3, 4, 6)),           # 2-D a shared by a 4-D b
    ((1, 5, 4), (3, 4, 6)),           # batch dim 1 broadcasts without a copy
    ((2, 1, 5, 4), (3, 4, 6)),        # general broadcasting (copies a)
    ((4,), (4, 6)),                   # 1-D a: a row vector, axis dropped
    ((5, 4), (4,)),                   # 1-D b: a column vector, axis dropped
    ((3, 5, 4), (4,)),
    ((4,), (2, 4, 6)),
    ((4,), (4,)),                     # dot product: 0-D result
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_agrees_with_numpy(rng, a_shape, b_shape, dtype):
    a = rng.standard_normal(a_shape).astype(dtype)
    b = rng.standard_normal(b_shape).astype(dtype)
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64))
    c = ops.matmul(a, b)
    assert c.shape == expected.shape and c.dtype == dtype
    # np.matmul's BLAS sums in another order: allow a few times the usual rounding error.
    np.testing.assert_allclose(c, expected, rtol=10 * tol(dtype)["rtol"], atol=10 * tol(dtype)["atol"])


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_matmul_transpose_flags_swap_the_last_two_axes(rng, trans_a, trans_b):
    a = rng.standard_normal((2, 3, 5, 4))
    b = rng.standard_normal((2, 3, 4, 6))
    a_stored = a.swapaxes(-1, -2).copy() if trans_a else a
    b_stored = b.swapaxes(-1, -2).copy() if trans_b else b
    c = ops.matmul(a_stored, b_stored, trans_a=trans_a, trans_b=trans_b)
    np.testing.assert_allclose(c, np.matmul(a, b), **tol(np.float64))


def test_matmul_mixed_float_widths_compute_in_float64(rng):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((4, 2))
    c = ops.matmul(a, b)
    assert c.dtype == np.float64
    np.testing.assert_allclose(c, ref.matmul(a, b), **tol(np.float64))


def test_matmul_accepts_non_contiguous_and_read_only_inputs(rng):
    base = rng.standard_normal((9, 8))
    a = base[::2, 1::2]                   # strided view (5, 4)
    b = rng.standard_normal((6, 4)).T     # transposed view (4, 6)
    b.setflags(write=False)
    c = ops.matmul(a, b)
    np.testing.assert_allclose(c, ref.matmul(a, b), **tol(np.float64))


# --- matmul: bad input -------------------------------------------------------------------

@pytest.mark.parametrize("a_shape,b_shape,trans_a,trans_b", [
    ((3, 4), (5, 2), False, False),
    ((3, 4), (2, 5), False, True),
    ((4, 3), (5, 2), True, False),
    ((2, 3, 4), (2, 5, 6), False, False),
])
def test_matmul_rejects_wrong_inner_dims(a_shape, b_shape, trans_a, trans_b):
    a, b = np.ones(a_shape), np.ones(b_shape)
    with pytest.raises(ValueError, match=r"matmul: a has shape \(.*\) .*columns but b has shape"):
        ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    out = np.empty((3, 2))
    with pytest.raises(ValueError, match=r"matmul: a \(.*\) .*columns but b"):
        _C.matmul(a, b, out, trans_a, trans_b)


def test_matmul_2d_inner_dims_message_is_the_batched_paths():
    # Two matrices take a shortcut in ops.matmul (no broadcasting): same message as 3-D ones.
    with pytest.raises(ValueError, match=r"^matmul: a has shape \(4, 3\) \(transposed\) with 4 "
                                         r"columns but b has shape \(2, 5\) \(transposed\) with 5 rows$"):
        ops.matmul(np.ones((4, 3)), np.ones((2, 5)), trans_a=True, trans_b=True)
    with pytest.raises(ValueError, match=r"^matmul: a has shape \(1, 3, 4\) with 4 columns but b "
                                         r"has shape \(5, 2\) with 5 rows$"):
        ops.matmul(np.ones((1, 3, 4)), np.ones((5, 2)))


def test_matmul_rejects_batch_dims_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"matmul: the batch dimensions of a \(2, 3, 4\) and b \(3, 4, 5\)"):
        ops.matmul(np.ones((2, 3, 4)), np.ones((3, 4, 5)))
    with pytest.raises(ValueError, match=r"matmul: batch sizes differ: a \(2, 3, 4\) and b \(3, 4, 5\)"):
        _C.matmul(np.ones((2, 3, 4)), np.ones((3, 4, 5)), np.empty((2, 3, 5)), False, False)


def test_matmul_rejects_wrong_ndim():
    with pytest.raises(ValueError, match=r"matmul: a has shape \(\) and b has shape \(3,\); 0-D"):
        ops.matmul(np.float64(2.0), np.ones(3))
    # The kernel takes 2-D or 3-D only; ops flattens everything else first.
    with pytest.raises(ValueError, match=r"matmul: a must be 2-D or 3-D, got shape \(3,\)"):
        _C.matmul(np.ones(3), np.ones((3, 2)), np.empty((1, 2)), False, False)
    with pytest.raises(ValueError, match=r"matmul: b must be 2-D or 3-D, got shape \(1, 2, 3, 4\)"):
        _C.matmul(np.ones((2, 3)), np.ones((1, 2, 3, 4)), np.empty((2, 4)), False, False)


@pytest.mark.parametrize("bad", [np.arange(12).reshape(3, 4), np.ones((3, 4), np.float16),
                                 np.ones((3, 4), bool), np.full((3, 4), "x")])
def test_matmul_rejects_non_float_dtypes(bad):
    good = np.ones((4, 2))
    with pytest.raises(TypeError, match=rf"matmul: a has dtype {bad.dtype}; expected float32 or float64"):
        ops.matmul(bad, good)
    with pytest.raises(TypeError, match=rf"matmul: b has dtype {bad.dtype}"):
        ops.matmul(good.T, bad.T)
    with pytest.raises(TypeError, match=r"matmul: .*dtype"):
        _C.matmul(bad, good, np.empty((3, 2)), False, False)


def test_matmul_kernel_rejects_mixed_dtypes():
    with pytest.raises(TypeError, match=r"matmul: a \(float32\) and b \(float64\) must have the same dtype"):
        _C.matmul(np.ones((3, 4), np.float32), np.ones((4, 2)), np.empty((3, 2), np.float32), False, False)
    with pytest.raises(TypeError, match=r"matmul: a \(float64\) and out \(float32\)"):
        _C.matmul(np.ones((3, 4)), np.ones((4, 2)), np.empty((3, 2), np.float32), False, False)


def test_matmul_rejects_bad_out():
    a, b = np.ones((3, 4)), np.ones((4, 2))
    with pytest.raises(ValueError, match=r"matmul: out has shape \(2, 3\) and dtype float64, expected \(3, 2\)"):
        ops.matmul(a, b, out=np.empty((2, 3)))
    with pytest.raises(ValueError, match=r"matmul: out has shape \(3, 2\) and dtype float32, expected \(3, 2\) and float64"):
        ops.matmul(a, b, out=np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"matmul: out of shape \(3, 2\) is not C-contiguous"):
        ops.matmul(a, b, out=np.empty((2, 3)).T)
    read_only = np.empty((3, 2))
    read_only.setflags(write=False)
    with pytest.raises(ValueError, match=r"matmul: out is read-only"):
        ops.matmul(a, b, out=read_only)
    with pytest.raises(ValueError, match=r"matmul: out has shape \(3, 3\), expected \(3, 2\)"):
        _C.matmul(a, b, np.empty((3, 3)), False, False)
    with pytest.raises(ValueError, match=r"matmul: out has shape \(3, 2\), expected \(1, 3, 2\)"):
        _C.matmul(a, b[None], np.empty((3, 2)), False, False)
    with pytest.raises(ValueError, match=r"matmul: out of shape \(3, 2\) is not C-contiguous"):
        _C.matmul(a, b, np.empty((2, 3)).T, False, False)


def test_matmul_kernel_rejects_out_sharing_memory_with_an_input():
    buffer = np.zeros((4, 4))
    a = buffer[:2]           # rows 0-1 of buffer (contiguous)
    b = np.ones((4, 4))
    with pytest.raises(ValueError, match=r"matmul: out must not share memory with a"):
        _C.matmul(a, b, buffer[1:3], False, False)
    with pytest.raises(ValueError, match=r"matmul: out must not share memory with b"):
        _C.matmul(np.ones((4, 4)), b, b, False, False)
    with pytest.raises(ValueError, match=r"matmul: out must not share memory with a"):
        ops.matmul(buffer, b, out=buffer)


# CUDA arrays: tests/test_cuda_matmul.py (mixed devices are refused before any kernel runs).


# --- linear: values ----------------------------------------------------------------------

LINEAR_SHAPES = [  # (x shape, out_features)
    ((1, 1), 1), ((3, 5), 2), ((17, 33), 7), ((65, 64), 129), ((2, 3, 7), 17), ((7,), 3),
    ((300, 129), 65),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("x_shape,out_features", LINEAR_SHAPES)
def test_linear_matches_reference(rng, x_shape, out_features, with_bias, dtype):
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal((out_features, x_shape[-1])).astype(dtype)
    bias = rng.standard_normal(out_features).astype(dtype) if with_bias else None
    y = ops.linear(x, weight, bias)
    expected = ref.linear(x, weight, bias)
    magnitude = ref.linear(np.abs(x), np.abs(weight), None if bias is None else np.abs(bias))
    assert y.shape == x_shape[:-1] + (out_features,) and y.dtype == dtype
    assert np.all(np.abs(y - expected) <= tol(dtype)["rtol"] * magnitude + tol(dtype)["atol"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_out_prefilled_with_nan_is_overwritten(rng, with_bias, dtype):
    x = rng.standard_normal((2, 9, 5)).astype(dtype)
    weight = rng.standard_normal((4, 5)).astype(dtype)
    bias = rng.standard_normal(4).astype(dtype) if with_bias else None
    out = np.full((2, 9, 4), np.nan, dtype=dtype)
    y = ops.linear(x, weight, bias, out=out)
    assert y is out
    np.testing.assert_allclose(out, ref.linear(x, weight, bias), rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


def test_linear_empty_inputs():
    bias = np.array([1.0, -2.0, 3.0])
    # No input features: the output is the bias (k = 0 in the GEMM with beta = 1).
    np.testing.assert_array_equal(ops.linear(np.ones((4, 0)), np.ones((3, 0)), bias), np.tile(bias, (4, 1)))
    np.testing.assert_array_equal(ops.linear(np.ones((4, 0)), np.ones((3, 0))), np.zeros((4, 3)))
    # No rows: an empty result; the weight gradient of an empty batch is zero.
    assert ops.linear(np.ones((0, 5)), np.ones((3, 5)), bias).shape == (0, 3)
    assert ops.linear_backward_input(np.ones((2, 0, 3)), np.ones((3, 5))).shape == (2, 0, 5)
    grad_weight, grad_bias = ops.linear_backward_weight(np.ones((0, 3)), np.ones((0, 5)))
    np.testing.assert_array_equal(grad_weight, np.zeros((3, 5)))
    np.testing.assert_array_equal(grad_bias, np.zeros(3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,out_features", LINEAR_SHAPES)
def test_linear_backward_matches_reference(rng, x_shape, out_features, dtype):
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal((out_features, x_shape[-1])).astype(dtype)
    grad_output = rng.standard_normal(x_shape[:-1] + (out_features,)).astype(dtype)
    t = tol(dtype)

    dx = ops.linear_backward_input(grad_output, weight)
    magnitude = ref.linear_backward_input(np.abs(grad_output), np.abs(weight))
    assert dx.shape == x_shape and dx.dtype == dtype
    assert np.all(np.abs(dx - ref.linear_backward_input(grad_output, weight)) <= t["rtol"] * magnitude + t["atol"])

    grad_weight, grad_bias = ops.linear_backward_weight(grad_output, x)
    expected_weight, expected_bias = ref.linear_backward_weight(grad_output, x)
    magnitude_weight, magnitude_bias = ref.linear_backward_weight(np.abs(grad_output), np.abs(x))
    assert grad_weight.shape == weight.shape and grad_bias.shape == (out_features,)
    assert grad_weight.dtype == dtype and grad_bias.dtype == dtype
    assert np.all(np.abs(grad_weight - expected_weight) <= t["rtol"] * magnitude_weight + t["atol"])
    assert np.all(np.abs(grad_bias - expected_bias) <= t["rtol"] * magnitude_bias + t["atol"])

    grad_weight_only, no_bias = ops.linear_backward_weight(grad_output, x, bias=False)
    assert no_bias is None
    np.testing.assert_array_equal(grad_weight_only, grad_weight)


@pytest.mark.parametrize("x_shape,out_features", [((3, 4), 2), ((2, 3, 5), 3), ((1, 7), 1)])
def test_linear_gradients_match_finite_differences(rng, x_shape, out_features):
    # Loss L = sum(linear(x, w, b) * g): its gradients are the backward passes fed with g.
    x = rng.standard_normal(x_shape)
    weight = rng.standard_normal((out_features, x_shape[-1]))
    bias = rng.standard_normal(out_features)
    g = rng.standard_normal(x_shape[:-1] + (out_features,))

    def loss(x_, weight_, bias_):
        return float(np.sum(ops.linear(x_, weight_, bias_) * g))

    def numeric_grad(array, f, eps=1e-6):
        grad = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + eps
            plus = f()
            array[index] = saved - eps
            minus = f()
            array[index] = saved
            grad[index] = (plus - minus) / (2 * eps)
        return grad

    f = lambda: loss(x, weight, bias)  # noqa: E731  (closes over the arrays being perturbed)
    grad_weight, grad_bias = ops.linear_backward_weight(g, x)
    np.testing.assert_allclose(ops.linear_backward_input(g, weight), numeric_grad(x, f), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_weight, numeric_grad(weight, f), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_bias, numeric_grad(bias, f), rtol=1e-6, atol=1e-8)


def test_linear_accepts_non_contiguous_inputs(rng):
    x = rng.standard_normal((5, 8))[:, ::2]          # (5, 4) strided
    weight = rng.standard_normal((4, 3)).T           # (3, 4) transposed view
    bias = rng.standard_normal(6)[::2]               # (3,) strided
    np.testing.assert_allclose(ops.linear(x, weight, bias), ref.linear(x, weight, bias), **tol(np.float64))
    g = rng.standard_normal((3, 5)).T                # (5, 3) transposed view
    np.testing.assert_allclose(ops.linear_backward_input(g, weight), ref.linear_backward_input(g, weight),
                               **tol(np.float64))
    grad_weight, grad_bias = ops.linear_backward_weight(g, x)
    expected_weight, expected_bias = ref.linear_backward_weight(g, x)
    np.testing.assert_allclose(grad_weight, expected_weight, **tol(np.float64))
    np.testing.assert_allclose(grad_bias, expected_bias, **tol(np.float64))


# --- linear: bad input -------------------------------------------------------------------

def test_linear_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"linear: x has 5 features \(shape \(3, 5\)\) but weight expects 4 \(shape \(2, 4\)\)"):
        ops.linear(np.ones((3, 5)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"linear: x has no features \(shape \(\)\) but weight expects 4"):
        ops.linear(np.float64(1.0), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"linear: weight must be 2-D \(out_features, in_features\), got shape \(4,\)"):
        ops.linear(np.ones((3, 4)), np.ones(4))
    with pytest.raises(ValueError, match=r"linear: bias has shape \(3,\) but weight \(shape \(2, 4\)\) has 2 outputs"):
        ops.linear(np.ones((3, 4)), np.ones((2, 4)), np.ones(3))
    with pytest.raises(ValueError, match=r"linear_backward_input: grad_output has 3 features \(shape \(5, 3\)\) but weight has 2 outputs \(shape \(2, 4\)\)"):
        ops.linear_backward_input(np.ones((5, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"linear_backward_input: weight must be 2-D"):
        ops.linear_backward_input(np.ones((5, 3)), np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"linear_backward_weight: grad_output \(shape \(5, 3\)\) and x \(shape \(4, 2\)\) must have the same leading"):
        ops.linear_backward_weight(np.ones((5, 3)), np.ones((4, 2)))


def test_linear_kernels_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r"linear_forward: x \(3, 5\) has 5 features but weight \(2, 4\) expects 4"):
        _C.linear_forward(np.ones((3, 5)), np.ones((2, 4)), None, np.empty((3, 2)))
    with pytest.raises(ValueError, match=r"linear_forward: x must be 2-D, got shape \(2, 3, 4\)"):
        _C.linear_forward(np.ones((2, 3, 4)), np.ones((2, 4)), None, np.empty((6, 2)))
    with pytest.raises(ValueError, match=r"linear_forward: bias has shape \(3,\), expected \(2,\)"):
        _C.linear_forward(np.ones((3, 4)), np.ones((2, 4)), np.ones(3), np.empty((3, 2)))
    with pytest.raises(ValueError, match=r"linear_forward: out has shape \(2, 3\), expected \(3, 2\)"):
        _C.linear_forward(np.ones((3, 4)), np.ones((2, 4)), None, np.empty((2, 3)))
    with pytest.raises(ValueError, match=r"linear_backward_input: grad_output \(5, 3\) has 3 features but weight \(2, 4\) has 2 outputs"):
        _C.linear_backward_input(np.ones((5, 3)), np.ones((2, 4)), np.empty((5, 4)))
    with pytest.raises(ValueError, match=r"linear_backward_input: out has shape \(5, 3\), expected \(5, 4\)"):
        _C.linear_backward_input(np.ones((5, 2)), np.ones((2, 4)), np.empty((5, 3)))
    with pytest.raises(ValueError, match=r"linear_backward_weight: grad_output \(5, 3\) has 5 rows but x \(4, 2\) has 4"):
        _C.linear_backward_weight(np.ones((5, 3)), np.ones((4, 2)), np.empty((3, 2)), None)
    with pytest.raises(ValueError, match=r"linear_backward_weight: out_weight has shape \(2, 3\), expected \(3, 2\)"):
        _C.linear_backward_weight(np.ones((5, 3)), np.ones((5, 2)), np.empty((2, 3)), None)
    with pytest.raises(ValueError, match=r"linear_backward_weight: out_bias has shape \(2,\), expected \(3,\)"):
        _C.linear_backward_weight(np.ones((5, 3)), np.ones((5, 2)), np.empty((3, 2)), np.empty(2))


@pytest.mark.parametrize("bad", [np.arange(12).reshape(3, 4), np.ones((3, 4), np.float16),
                                 np.ones((3, 4), bool), np.full((3, 4), "x")])
def test_linear_rejects_non_float_dtypes(bad):
    with pytest.raises(TypeError, match=rf"linear: x has dtype {bad.dtype}; expected float32 or float64"):
        ops.linear(bad, np.ones((2, 4)))
    with pytest.raises(TypeError, match=rf"linear: weight has dtype {bad.dtype}"):
        ops.linear(np.ones((5, 4)), bad)
    with pytest.raises(TypeError, match=rf"linear_backward_input: grad_output has dtype {bad.dtype}"):
        ops.linear_backward_input(bad, np.ones((4, 2)))
    with pytest.raises(TypeError, match=rf"linear_backward_weight: x has dtype {bad.dtype}"):
        ops.linear_backward_weight(np.ones((3, 2)), bad)
    with pytest.raises(TypeError, match=r"linear_forward: .*dtype"):
        _C.linear_forward(bad, np.ones((2, 4)), None, np.empty((3, 2)))


def test_linear_rejects_bad_out():
    x, weight = np.ones((3, 4)), np.ones((2, 4))
    with pytest.raises(ValueError, match=r"linear: out has shape \(2, 3\) and dtype float64, expected \(3, 2\)"):
        ops.linear(x, weight, out=np.empty((2, 3)))
    with pytest.raises(ValueError, match=r"linear: out of shape \(3, 2\) is not C-contiguous"):
        ops.linear(x, weight, out=np.empty((2, 3)).T)
    read_only = np.empty((3, 2))
    read_only.setflags(write=False)
    with pytest.raises(ValueError, match=r"^linear: out is read-only"):
        ops.linear(x, weight, out=read_only)
    with pytest.raises(ValueError, match=r"linear_backward_input: out has shape \(3, 2\) and dtype float64, expected \(3, 4\)"):
        ops.linear_backward_input(np.ones((3, 2)), weight, out=np.empty((3, 2)))
    read_only_bias = np.empty(2)
    read_only_bias.setflags(write=False)
    with pytest.raises(ValueError, match=r"linear_backward_weight: out_bias is read-only"):
        _C.linear_backward_weight(np.ones((3, 2)), x, np.empty((2, 4)), read_only_bias)


def test_linear_kernels_reject_outputs_sharing_memory_with_inputs():
    x = np.ones((4, 4))
    weight = np.ones((4, 4))
    with pytest.raises(ValueError, match=r"linear_forward: out must not share memory with x"):
        _C.linear_forward(x, weight, None, x)
    with pytest.raises(ValueError, match=r"linear_forward: out must not share memory with weight"):
        _C.linear_forward(np.ones((4, 4)), weight, None, weight)
    bias = np.ones(4)
    with pytest.raises(ValueError, match=r"linear_forward: out must not share memory with bias"):
        _C.linear_forward(np.ones((1, 4)), weight, bias, bias.reshape(1, 4))
    with pytest.raises(ValueError, match=r"linear_backward_input: out must not share memory with grad_output"):
        _C.linear_backward_input(x, weight, x)
    with pytest.raises(ValueError, match=r"linear_backward_input: out must not share memory with weight"):
        _C.linear_backward_input(np.ones((4, 4)), weight, weight)
    buffer = np.ones((4, 4))
    with pytest.raises(ValueError, match=r"linear_backward_weight: out_weight must not share memory with x"):
        _C.linear_backward_weight(np.ones((3, 4)), buffer[:3], buffer, None)
    with pytest.raises(ValueError, match=r"linear_backward_weight: out_bias must not share memory with grad_output"):
        _C.linear_backward_weight(buffer, np.ones((4, 4)), np.empty((4, 4)), buffer[0])
    with pytest.raises(ValueError, match=r"linear_backward_weight: out_bias must not share memory with out_weight"):
        _C.linear_backward_weight(np.ones((4, 4)), np.ones((4, 4)), buffer, buffer[1])
