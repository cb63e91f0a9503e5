"""ranvier.ops dropout, dropout_backward and uniform against tests/references/dropout.py."""

import numpy as np
import pytest
from conftest import tol
from references import dropout as ref

import ranvier
from ranvier import _C, ops

FLOATS = [np.float32, np.float64]

# Random123's published known-answer vectors for Philox4x32-10: (counter, key, output).
PHILOX_KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


# --- the reference generator itself ---------------------------------------------------------

@pytest.mark.parametrize("counter, key, expected", PHILOX_KNOWN_ANSWERS)
def test_reference_philox_known_answers(counter, key, expected):
    assert ref.philox4x32_10(counter, key) == expected


def test_reference_vectorised_philox_matches_scalar():
    seed = 0x1234_5678_9ABC_DEF0
    blocks = [0, 1, 2, 77, 2**32 - 1, 2**32, 2**40 + 3]
    many = ref.philox4x32_10_many(blocks, seed)
    for row, block in zip(many, blocks):
        scalar = ref.philox4x32_10((block & ref.MASK32, block >> 32, 0, 0), (seed & ref.MASK32, seed >> 32))
        assert tuple(int(w) for w in row) == scalar


# --- uniform: the kernel's stream, bit for bit ------------------------------------------------

def test_uniform_first_numbers_come_from_the_zero_vector():
    # Counter 0 with key 0 is the first known-answer vector: the stream's first four numbers.
    expected = [(w >> 8) / 2.0**24 for w in PHILOX_KNOWN_ANSWERS[0][2]]
    np.testing.assert_array_equal(ops.uniform(4, seed=0, offset=0, dtype=np.float64), expected)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("seed, offset, n", [
    (0, 0, 1), (0, 1, 7), (3, 2, 13), (12345, 5, 1000), (2**40 + 17, 0, 33),
    (2**64 - 1, 9, 10), (7, 4 * 2**32 - 6, 17),  # block counter crossing into its high word
    (99, 3, 0),
])
def test_uniform_matches_reference_bit_for_bit(dtype, seed, offset, n):
    got = ops.uniform(n, seed=seed, offset=offset, dtype=dtype)
    assert got.dtype == dtype and got.shape == (n,)
    np.testing.assert_array_equal(got.astype(np.float64), ref.uniform(seed, offset, n))


def test_uniform_scalar_reference_spot_checks():
    got = ops.uniform(40, seed=2**33 + 5, offset=6, dtype=np.float64)
    for i in (0, 1, 2, 3, 17, 39):
        assert got[i] == ref.uniform_scalar(2**33 + 5, 6 + i)


def test_uniform_large_threaded_matches_reference():
    n = 1_000_003
    got = ops.uniform(n, seed=42, offset=3, dtype=np.float32)
    np.testing.assert_array_equal(got.astype(np.float64), ref.uniform(42, 3, n))


def test_uniform_shape_range_and_moments():
    u = ops.uniform((200, 501), seed=1, offset=0, dtype=np.float64)
    assert u.shape == (200, 501)
    assert u.min() >= 0.0 and u.max() < 1.0
    n = u.size
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 0.003


def test_uniform_consecutive_offsets_partition_the_stream():
    whole = ops.uniform(103, seed=5, offset=10)
    parts = [ops.uniform(k, seed=5, offset=o) for o, k in ((10, 1), (11, 6), (17, 45), (62, 51))]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_uniform_seeds_and_offsets_give_different_numbers():
    a = ops.uniform(64, seed=1, offset=0)
    assert not np.array_equal(a, ops.uniform(64, seed=2, offset=0))
    assert not np.array_equal(a, ops.uniform(64, seed=1, offset=64))
    np.testing.assert_array_equal(a, ops.uniform(64, seed=1, offset=0))


# --- dropout forward ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 17), (1000,), (0,), (4, 0)])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_matches_reference(dtype, shape, p, rng):
    x = rng.standard_normal(shape).astype(dtype)
    seed, offset = 2024, 13
    y, mask = ops.dropout(x, p, seed, offset)
    y_ref, mask_ref = ref.dropout(x, p, seed, offset, dtype)
    assert y.dtype == dtype and y.shape == shape
    assert mask.dtype == np.uint8 and mask.shape == shape
    np.testing.assert_array_equal(mask, mask_ref)
    np.testing.assert_allclose(y, y_ref, **tol(dtype))


def test_dropout_threaded_size_matches_reference(rng):
    x = rng.standard_normal(1_000_003).astype(np.float32)
    y, mask = ops.dropout(x, 0.3, 77, 1)
    y_ref, mask_ref = ref.dropout(x, 0.3, 77, 1, np.float32)
    np.testing.assert_array_equal(mask, mask_ref)
    np.testing.assert_allclose(y, y_ref, **tol(np.float32))


@pytest.mark.parametrize("dtype", FLOATS)
def test_dropout_p_zero_copies_and_p_one_zeroes(dtype, rng):
    x = rng.standard_normal((4, 9)).astype(dtype)
    y, mask = ops.dropout(x, 0.0, 1, 0)
    np.testing.assert_array_equal(y, x)
    assert y is not x and not np.shares_memory(y, x)
    np.testing.assert_array_equal(mask, np.ones(x.shape, np.uint8))
    y, mask = ops.dropout(x, 1.0, 1, 0)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.zeros_like(x))
    np.testing.assert_array_equal(mask, np.zeros(x.shape, np.uint8))


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.8])
def test_dropout_keep_fraction_and_scaling(p):
    n = 200_000
    x = np.ones(n, np.float64)
    y, mask = ops.dropout(x, p, 9, 0)
    kept = mask.sum()
    # Binomial(n, 1 - p): within 5 standard deviations.
    assert abs(kept - n * (1 - p)) < 5 * np.sqrt(n * p * (1 - p))
    np.testing.assert_allclose(y[mask == 1], 1 / (1 - p), rtol=1e-15)
    np.testing.assert_array_equal(y[mask == 0], 0.0)
    assert abs(y.mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)


def test_dropout_reproducible_from_seed_and_offset(rng):
    x = rng.standard_normal((8, 33))
    y1, m1 = ops.dropout(x, 0.5, 11, 100)
    y2, m2 = ops.dropout(x, 0.5, 11, 100)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(y1, y2)
    _, m3 = ops.dropout(x, 0.5, 11, 100 + x.size)
    _, m4 = ops.dropout(x, 0.5, 12, 100)
    assert not np.array_equal(m1, m3)
    assert not np.array_equal(m1, m4)


def test_dropout_consecutive_offsets_partition_the_stream(rng):
    x = rng.standard_normal(101)
    _, whole = ops.dropout(x, 0.4, 3, 8)
    _, first = ops.dropout(x[:37], 0.4, 3, 8)
    _, second = ops.dropout(x[37:], 0.4, 3, 8 + 37)
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)


def test_dropout_with_generator_offsets_never_repeats(rng):
    gen = ranvier.random.Generator(123)
    x = np.ones(10)
    seed0, offset0 = gen.philox_offset(x.size)
    seed1, offset1 = gen.philox_offset(x.size)
    assert offset1 == offset0 + 12  # rounded up to whole Philox blocks
    u0 = ops.uniform(x.size, seed0, offset0)
    u1 = ops.uniform(x.size, seed1, offset1)
    assert not np.any(np.isin(u0, u1))


def test_dropout_mask_agrees_with_uniform():
    u = ops.uniform((5, 7), seed=8, offset=4, dtype=np.float64)
    _, mask = ops.dropout(np.ones((5, 7)), 0.35, 8, 4)
    np.testing.assert_array_equal(mask, (u >= 0.35).astype(np.uint8))


def test_dropout_strided_and_mixed_inputs(rng):
    x = rng.standard_normal((6, 10))
    y, mask = ops.dropout(x[:, ::2], 0.5, 1, 0)
    y_ref, mask_ref = ref.dropout(np.ascontiguousarray(x[:, ::2]), 0.5, 1, 0, np.float64)
    np.testing.assert_array_equal(mask, mask_ref)
    np.testing.assert_allclose(y, y_ref, **tol(np.float64))


# --- dropout backward ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 11), (0,)])
@pytest.mark.parametrize("p", [0.0, 0.25, 0.7, 1.0])
def test_dropout_backward_matches_reference(dtype, shape, p, rng):
    x = rng.standard_normal(shape).astype(dtype)
    _, mask = ops.dropout(x, p, 5, 0)
    dy = rng.standard_normal(shape).astype(dtype)
    dx = ops.dropout_backward(dy, mask, p)
    expected = np.zeros(shape) if p == 1.0 else dy.astype(np.float64) * mask / (1 - p)
    assert dx.dtype == dtype and dx.shape == shape
    np.testing.assert_allclose(dx, expected, **tol(dtype))


def test_dropout_backward_finite_differences(rng):
    # With (seed, offset) fixed the mask is fixed, so y is linear in x: check d sum(w * y) / dx.
    p, seed, offset = 0.4, 17, 3
    x = rng.standard_normal((4, 9))
    w = rng.standard_normal((4, 9))
    _, mask = ops.dropout(x, p, seed, offset)
    analytic = ops.dropout_backward(w, mask, p)
    numeric = np.zeros_like(x)
    h = 1e-6
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        numeric[i] = (np.sum(w * ops.dropout(xp, p, seed, offset)[0]) -
                      np.sum(w * ops.dropout(xm, p, seed, offset)[0])) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


# --- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), float("inf")])
def test_dropout_rejects_p_out_of_range(p):
    with pytest.raises(ValueError, match="dropout: dropout probability has to be between 0 and 1"):
        ops.dropout(np.ones(3), p, 0, 0)
    with pytest.raises(ValueError, match="dropout_backward: dropout probability"):
        ops.dropout_backward(np.ones(3), np.ones(3, np.uint8), p)


def test_dropout_rejects_non_numeric_p():
    with pytest.raises(TypeError, match="dropout: p must be a number"):
        ops.dropout(np.ones(3), "half", 0, 0)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.float16])
def test_dropout_rejects_non_float_x(dtype):
    with pytest.raises(TypeError, match="dropout: x has dtype"):
        ops.dropout(np.ones(4, dtype), 0.5, 0, 0)


def test_dropout_rejects_strings():
    with pytest.raises(TypeError, match="dropout: x has dtype"):
        ops.dropout(np.array(["a", "b"]), 0.5, 0, 0)


@pytest.mark.parametrize("seed, offset, exc, match", [
    (-1, 0, ValueError, "dropout: seed must satisfy"),
    (2**64, 0, ValueError, "dropout: seed must satisfy"),
    (0, -4, ValueError, "dropout: offset must be >= 0"),
    (0, 2**64 - 2, ValueError, "dropout: offset must be >= 0 and offset \\+ size <= 2\\*\\*64"),
    (1.5, 0, TypeError, "dropout: seed must be an integer"),
    (0, True, TypeError, "dropout: offset must be an integer"),
])
def test_dropout_rejects_bad_stream_position(seed, offset, exc, match):
    with pytest.raises(exc, match=match):
        ops.dropout(np.ones(3), 0.5, seed, offset)


def test_dropout_backward_rejects_bad_mask():
    with pytest.raises(TypeError, match="dropout_backward: mask must have dtype uint8"):
        ops.dropout_backward(np.ones(3), np.ones(3, bool), 0.5)
    with pytest.raises(ValueError, match=r"dropout_backward: mask has shape \(4,\) but grad_output has shape \(3,\)"):
        ops.dropout_backward(np.ones(3), np.ones(4, np.uint8), 0.5)
    with pytest.raises(TypeError, match="dropout_backward: grad_output has dtype int64"):
        ops.dropout_backward(np.ones(3, np.int64), np.ones(3, np.uint8), 0.5)


def test_uniform_rejects_bad_arguments():
    with pytest.raises(TypeError, match="uniform: dtype has dtype int32"):
        ops.uniform(3, 0, 0, dtype=np.int32)
    with pytest.raises(TypeError, match="uniform: dtype has dtype float16"):
        ops.uniform(3, 0, 0, dtype=np.float16)
    with pytest.raises(ValueError, match="uniform: shape must be non-negative integers"):
        ops.uniform((3, -1), 0, 0)
    with pytest.raises(ValueError, match="uniform: shape must be non-negative integers"):
        ops.uniform((2.5,), 0, 0)
    with pytest.raises(ValueError, match="uniform: seed must satisfy"):
        ops.uniform(3, -5, 0)


# The binding checks on its own too (ranvier.ops is not the only possible caller).
def test_binding_checks_dropout_arrays():
    x = np.ones(8)
    y = np.empty(8)
    mask = np.empty(8, np.uint8)
    with pytest.raises(ValueError, match="dropout_forward: p must satisfy 0 <= p < 1"):
        _C.dropout_forward(x, y, mask, 1.0, 0, 0)
    with pytest.raises(TypeError, match="dropout_forward: mask has dtype float64; expected uint8"):
        _C.dropout_forward(x, y, np.empty(8), 0.5, 0, 0)
    with pytest.raises(ValueError, match="dropout_forward: x \\(8,\\) and mask \\(4,\\) must have the same shape"):
        _C.dropout_forward(x, y, np.empty(4, np.uint8), 0.5, 0, 0)
    readonly = np.empty(8)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="dropout_forward: out is read-only"):
        _C.dropout_forward(x, readonly, mask, 0.5, 0, 0)
    with pytest.raises(ValueError, match="dropout_forward: mask of shape \\(4,\\) is not C-contiguous"):
        _C.dropout_forward(x[:4], y[:4], np.empty(8, np.uint8)[::2], 0.5, 0, 0)
    with pytest.raises(ValueError, match="dropout_forward: offset .* run past the end of the random stream"):
        _C.dropout_forward(x, y, mask, 0.5, 0, 2**64 - 4)


def test_binding_rejects_aliased_mask():
    storage = np.zeros(16, np.float64)
    as_bytes = storage.view(np.uint8)
    with pytest.raises(ValueError, match="dropout_forward: mask must not share memory with x"):
        _C.dropout_forward(storage[:8], np.empty(8), as_bytes[:8], 0.5, 0, 0)
    with pytest.raises(ValueError, match="dropout_backward: out must not share memory with mask"):
        _C.dropout_backward(np.ones(8), as_bytes[:8], storage[:8], 0.5)


def test_binding_dropout_in_place_forward(rng):
    x = rng.standard_normal(50)
    y_ref, mask_ref = ref.dropout(x, 0.5, 4, 0, np.float64)
    mask = np.empty(50, np.uint8)
    _C.dropout_forward(x, x, mask, 0.5, 4, 0)
    np.testing.assert_array_equal(mask, mask_ref)
    np.testing.assert_allclose(x, y_ref, **tol(np.float64))


class _FakeCudaArray:
    """Exposes __cuda_array_interface__ with a pointer that must never be dereferenced."""

    def __init__(self, n, typestr="<f4"):
        self.__cuda_array_interface__ = {"shape": (n,), "typestr": typestr, "data": (256, False),
                                         "version": 3, "strides": None}


def test_binding_rejects_mixed_devices():
    # dropout has a CUDA twin (tests/test_cuda_ops.py): device arrays are accepted, but never
    # mixed with host ones; the check comes before any pointer is used.
    with pytest.raises(ValueError, match="dropout_forward: x is on cuda but out is on cpu"):
        _C.dropout_forward(_FakeCudaArray(4), np.empty(4, np.float32), np.empty(4, np.uint8), 0.5, 0, 0)
    with pytest.raises(ValueError, match="dropout_forward: x is on cuda but mask is on cpu"):
        _C.dropout_forward(_FakeCudaArray(4), _FakeCudaArray(4), np.empty(4, np.uint8), 0.5, 0, 0)
    with pytest.raises(ValueError, match="dropout_backward: grad_output is on cpu but mask is on cuda"):
        _C.dropout_backward(np.ones(4, np.float32), _FakeCudaArray(4, "|u1"), np.empty(4, np.float32), 0.5)
