"""The host memory cache behind the ops' NumPy outputs (csrc/host_memory_pool.cpp,
ranvier.cpu.memory_stats / empty_cache / set_cache_limit): outputs of 64 KiB and more reuse
the blocks of freed arrays, and are ordinary arrays to their users."""

import numpy as np
import pytest

import ranvier
from ranvier import _C, ops

from conftest import run_in_threads

MIN_BYTES = ranvier.cpu.memory_stats()["min_block_bytes"]


@pytest.fixture
def cache():
    """A cache emptied before and after the test, with its limit restored."""
    limit = ranvier.cpu.memory_stats()["limit_bytes"]
    ranvier.cpu.set_cache_limit(1 << 30)
    ranvier.cpu.empty_cache()
    yield ranvier.cpu
    ranvier.cpu.set_cache_limit(limit)
    ranvier.cpu.empty_cache()


def big_input(rng, elements=300_001, dtype=np.float32):
    # An odd element count: the block's size class is larger than the array.
    return rng.standard_normal(elements).astype(dtype)


def test_cached_output_is_an_ordinary_array(cache):
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = big_input(rng, dtype=dtype).reshape(1, -1)
        y = ops.relu(x)
        assert y.nbytes >= MIN_BYTES
        assert y.base is not None  # the capsule that returns the block
        assert y.dtype == dtype and y.shape == x.shape
        assert y.flags.c_contiguous and y.flags.writeable
        assert y.ctypes.data % 64 == 0
        np.testing.assert_array_equal(y, np.maximum(x, 0))
        y[0, :3] = 5.0  # writable through and through
        assert (y[0, :3] == 5.0).all()


def test_freed_block_is_reused(cache):
    rng = np.random.default_rng(1)
    x = big_input(rng)
    first = ops.relu(x)
    address = first.ctypes.data
    stats = cache.memory_stats()
    assert stats["in_use_bytes"] >= first.nbytes
    del first
    after_free = cache.memory_stats()
    assert after_free["cached_bytes"] >= x.nbytes
    second = ops.sigmoid(x)
    assert second.ctypes.data == address
    after_reuse = cache.memory_stats()
    assert after_reuse["hits"] == after_free["hits"] + 1
    assert after_reuse["misses"] == after_free["misses"]
    np.testing.assert_allclose(second, 1.0 / (1.0 + np.exp(-x.astype(np.float64))), rtol=1e-5)


def test_slightly_smaller_array_reuses_the_block(cache):
    # 300_001 and 296_000 float32 (1.2 MB, 1.18 MB) fall in one size class: multiples of 128 KiB,
    # an eighth of the power of two below them.
    rng = np.random.default_rng(2)
    first = ops.relu(big_input(rng, 300_001))
    address = first.ctypes.data
    del first
    assert ops.relu(big_input(rng, 296_000)).ctypes.data == address


def test_other_size_class_gets_other_memory(cache):
    rng = np.random.default_rng(3)
    first = ops.relu(big_input(rng, 300_001))
    address = first.ctypes.data
    del first
    other = ops.relu(big_input(rng, 600_001))
    assert other.ctypes.data != address
    assert cache.memory_stats()["cached_bytes"] >= 300_001 * 4  # the first block still waits


def test_view_keeps_the_block_alive(cache):
    rng = np.random.default_rng(4)
    x = big_input(rng)
    y = ops.relu(x)
    view = y[::3]
    expected = view.copy()
    del y
    # Were the block released under the view, one of these would take it and overwrite it.
    others = [ops.relu(x + 1.0) for _ in range(3)]
    for other in others:
        other.fill(7.0)
    np.testing.assert_array_equal(view, expected)


def test_small_outputs_bypass_the_cache(cache):
    before = cache.memory_stats()
    small = ops.relu(np.ones(MIN_BYTES // 4 - 1, np.float32))
    assert small.nbytes < MIN_BYTES
    after = cache.memory_stats()
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])


def test_limit_zero_turns_caching_off(cache):
    cache.set_cache_limit(0)
    y = ops.relu(big_input(np.random.default_rng(5)))
    del y
    assert cache.memory_stats()["cached_bytes"] == 0


def test_lower_limit_and_empty_cache_release_blocks(cache):
    rng = np.random.default_rng(6)
    arrays = [ops.relu(big_input(rng)) for _ in range(4)]
    del arrays
    assert cache.memory_stats()["cached_bytes"] >= 4 * 300_001 * 4
    cache.set_cache_limit(300_001 * 4)  # below what it holds: emptied
    assert cache.memory_stats()["cached_bytes"] == 0
    cache.set_cache_limit(1 << 30)
    y = ops.relu(big_input(rng))
    del y
    assert cache.memory_stats()["cached_bytes"] > 0
    cache.empty_cache()
    assert cache.memory_stats()["cached_bytes"] == 0


def test_in_use_bytes_return_after_threads_allocate_and_free(cache):
    baseline = cache.memory_stats()["in_use_bytes"]
    x = big_input(np.random.default_rng(7))

    def work():
        for _ in range(50):
            y = ops.relu(x)
            assert y[0] == max(x[0], 0)

    assert run_in_threads(work) == []
    assert cache.memory_stats()["in_use_bytes"] == baseline


def test_host_empty_rejects_bad_shapes():
    with pytest.raises(ValueError, match="empty: negative dimension -1"):
        _C.host_empty((4, -1), np.dtype(np.float32))
    with pytest.raises(ValueError, match="empty: the array's size overflows"):
        _C.host_empty((1 << 40, 1 << 40), np.dtype(np.float32))


def test_set_cache_limit_checks_its_argument():
    with pytest.raises(TypeError, match="set_cache_limit: nbytes must be an int"):
        ranvier.cpu.set_cache_limit(1.5)
    with pytest.raises(TypeError, match="set_cache_limit"):
        ranvier.cpu.set_cache_limit(True)
    with pytest.raises(ValueError, match="set_cache_limit: nbytes must be >= 0"):
        ranvier.cpu.set_cache_limit(-1)
