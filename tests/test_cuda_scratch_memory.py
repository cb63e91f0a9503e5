"""Where the CUDA kernels' scratch memory comes from (issue 4: "Memory comes from CuPy's pool").

The kernels take every temporary buffer (conv's partial weight gradients, reduction partial sums)
through one replaceable allocator (kernels/include/ranvier/device_allocator.h); at import,
when CuPy is installed, csrc/device_allocator_cupy.cpp makes it cupy.cuda.alloc. The first
test runs everywhere (it checks which allocator the build installed); the next ones need only
a CUDA build: they drive the CuPy allocator through _C._cuda_scratch_probe (one scratch buffer
allocated and freed with the GIL released, as a kernel does) against a stand-in cupy.cuda
module, to check the lifetime of the buffers, the stream check and the exceptions without a
GPU. The rest need a GPU and skip cleanly without one: they check that the scratch is taken from (and given back to)
the CuPy pool in use, that a failed allocation is a Python exception naming the kernel, and
that kernels allocating from several threads and streams at once give the CPU's results.
"""

import importlib.util
import sys
import threading
import types
import weakref

import numpy as np
import pytest

import ranvier
from ranvier import _C, ops

from conftest import run_in_threads

# x (N, C, H, W) = (8, 3, 9, 7), w (K, C, R, S) = (5, 3, 3, 3): dy (8, 5, 7, 5), no padding.
# conv2d_backward_weight splits these N*P*Q = 280 (image, pixel) terms into at least two
# slices of images (conv.cu: a slice is at least 128 terms deep, and a weight this small makes
# one GEMM block), whose partial weight gradients are its scratch. K = 5 filters keeps the
# shape on the implicit GEMM: 4 or fewer (with C <= 4) would go to the direct kernels, which
# need no scratch.
N, C, H, W, K, R, S = 8, 3, 9, 7, 5, 3, 3
P, Q = H - R + 1, W - S + 1


@pytest.fixture
def cp():
    cupy = pytest.importorskip("cupy")
    if not ranvier.cuda.is_available():
        pytest.skip(f"no usable GPU: {ranvier.cuda.unavailable_reason()}")
    return cupy


def test_scratch_allocator_is_cupy_where_cupy_is_installed():
    if not ranvier.cuda.is_built():
        expected = ""
    elif importlib.util.find_spec("cupy") is not None:
        expected = "cupy"
    else:
        expected = "cudaMallocAsync"
    assert _C.cuda_scratch_allocator() == expected
    assert _C.cuda_scratch_live_buffers() == 0


needs_cuda_build = pytest.mark.skipif(not ranvier.cuda.is_built(), reason="built without CUDA")


class FakeMemoryPointer:
    """Stands in for cupy.cuda.MemoryPointer: an address, and a life we can watch."""

    def __init__(self, ptr):
        self.ptr = ptr


class FakeCupyCuda(types.ModuleType):
    """Stands in for cupy.cuda: a current stream and an allocator that records its calls."""

    def __init__(self, stream_ptr=0, error=None):
        super().__init__("cupy.cuda")
        self.stream_ptr, self.error = stream_ptr, error
        self.requests, self.handed_out = [], []

    def get_current_stream(self):
        return types.SimpleNamespace(ptr=self.stream_ptr)

    def alloc(self, nbytes):
        self.requests.append(nbytes)
        if self.error is not None:
            raise self.error
        memory = FakeMemoryPointer(0x7F0000000000 + 4096 * len(self.requests))
        self.handed_out.append(weakref.ref(memory))
        return memory


@pytest.fixture
def fake_cupy(monkeypatch):
    """Installs the CuPy allocator against a stand-in cupy.cuda; restores both afterwards."""
    previous = _C.cuda_scratch_allocator()
    fake = FakeCupyCuda()
    monkeypatch.setitem(sys.modules, "cupy.cuda", fake)
    _C._cuda_set_scratch_allocator("cupy")
    yield fake
    _C._cuda_set_scratch_allocator(previous)


@needs_cuda_build
def test_cupy_allocator_holds_the_buffer_while_the_kernel_runs(fake_cupy):
    address, live_during = _C._cuda_scratch_probe(200, 0, "probe_kernel")
    assert fake_cupy.requests == [200]
    [memory] = fake_cupy.handed_out
    assert address == 0x7F0000000000 + 4096
    assert live_during == 1
    # Given back (the MemoryPointer dropped, so its block returns to CuPy's pool) at the end.
    assert memory() is None
    assert _C.cuda_scratch_live_buffers() == 0


@needs_cuda_build
def test_cupy_allocator_zero_bytes_allocates_nothing(fake_cupy):
    assert _C._cuda_scratch_probe(0, 0, "probe_kernel") == (0, 0)
    assert fake_cupy.requests == []


@needs_cuda_build
@pytest.mark.parametrize("error,expected", [(MemoryError("fake pool exhausted"), MemoryError),
                                            (ValueError("fake allocator broke"), RuntimeError)])
def test_cupy_allocator_errors_name_the_kernel(fake_cupy, error, expected):
    fake_cupy.error = error
    with pytest.raises(expected, match=r"probe_kernel: cannot allocate 96 bytes of GPU scratch memory "
                                       r"from CuPy's memory pool: .*" + str(error)):
        _C._cuda_scratch_probe(96, 0, "probe_kernel")
    assert _C.cuda_scratch_live_buffers() == 0


@needs_cuda_build
def test_cupy_allocator_leaves_other_streams_to_cuda_malloc_async(fake_cupy):
    # A buffer for work on a stream that is not CuPy's current one cannot be handed back to
    # CuPy's pool safely (its reuse is ordered on CuPy's stream only): the default takes it.
    fake_cupy.stream_ptr = 0x1234
    if ranvier.cuda.device_count() == 0:
        with pytest.raises(RuntimeError, match="probe_kernel: cannot allocate 64 bytes .*cudaMallocAsync"):
            _C._cuda_scratch_probe(64, 0, "probe_kernel")
    else:
        address, live_during = _C._cuda_scratch_probe(64, 0, "probe_kernel")
        assert address != 0 and live_during == 0
    assert fake_cupy.requests == []


@needs_cuda_build
def test_cupy_allocator_from_several_threads(fake_cupy):
    # Each probe releases the GIL, then re-acquires it inside the allocator and the free.
    results = []

    def work():
        for _ in range(50):
            results.append(_C._cuda_scratch_probe(32, 0, "probe_kernel"))

    assert run_in_threads(work) == []
    assert len(results) == 200 and len(fake_cupy.requests) == 200
    assert all(1 <= live <= 4 for _, live in results)
    assert all(memory() is None for memory in fake_cupy.handed_out)
    assert _C.cuda_scratch_live_buffers() == 0


def _conv_arrays(seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C, R, S)).astype(dtype)
    dy = rng.standard_normal((N, K, P, Q)).astype(dtype)
    return x, w, dy


def _assert_close(actual, expected, dtype):
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_backward_and_loss_scratch_comes_from_cupys_pool(cp, dtype):
    x, w, dy = _conv_arrays(1, dtype)
    logits = np.random.default_rng(2).standard_normal((37, 5)).astype(dtype)
    target = np.random.default_rng(3).integers(0, 5, size=37).astype(np.int64)
    pool = cp.cuda.MemoryPool()  # fresh: it holds only what is allocated below
    with cp.cuda.using_allocator(pool.malloc):
        x_dev, dy_dev, logits_dev, target_dev = (cp.asarray(a) for a in (x, dy, logits, target))
        loss = cp.full((), np.nan, dtype=dtype)
        cp.cuda.get_current_stream().synchronize()
        pool.free_all_blocks()  # whatever the set-up freed: the pool now holds only these arrays
        in_use = pool.used_bytes()
        dw, db = ops.conv2d_backward_weight(dy_dev, x_dev, w.shape, bias=True)
        _C.cross_entropy_forward(logits_dev, target_dev, None, loss, -100, "mean")
        cp.cuda.get_current_stream().synchronize()
        # The partial weight gradients (two slices or more) were this pool's memory and went
        # back to it: held by the pool (emptied before the call), no longer in use.
        assert pool.used_bytes() > in_use  # dw and db
        assert pool.total_bytes() - pool.used_bytes() >= 2 * w.nbytes
        assert _C.cuda_scratch_live_buffers() == 0
    dw_cpu, db_cpu = ops.conv2d_backward_weight(dy, x, w.shape, bias=True)
    _assert_close(cp.asnumpy(dw), dw_cpu, dtype)
    _assert_close(cp.asnumpy(db), db_cpu, dtype)
    _assert_close(cp.asnumpy(loss), ops.cross_entropy(logits, target), dtype)


def test_scratch_goes_through_the_current_cupy_allocator(cp):
    # A user's allocator (cupy.cuda.set_allocator / using_allocator) also serves the scratch:
    # conv2d_backward_weight asks for the partial weight gradients of its slices.
    x, w, dy = _conv_arrays(4)
    x_dev, dy_dev = cp.asarray(x), cp.asarray(dy)
    pool = cp.get_default_memory_pool()
    sizes = []

    def recording(nbytes):
        sizes.append(nbytes)
        return pool.malloc(nbytes)

    with cp.cuda.using_allocator(recording):
        dw, db = ops.conv2d_backward_weight(dy_dev, x_dev, w.shape, bias=True)
    # One buffer of whole weight gradients, at least two of them, besides dw and db themselves.
    assert any(size >= 2 * w.nbytes and size % w.nbytes == 0 for size in sizes), sizes
    assert _C.cuda_scratch_live_buffers() == 0
    dw_cpu, db_cpu = ops.conv2d_backward_weight(dy, x, w.shape, bias=True)
    _assert_close(cp.asnumpy(dw), dw_cpu, np.float32)
    _assert_close(cp.asnumpy(db), db_cpu, np.float32)


def test_failed_scratch_allocation_raises_naming_the_kernel(cp):
    x, w, dy = _conv_arrays(5)
    x_dev, dy_dev = cp.asarray(x), cp.asarray(dy)
    pred, target = cp.ones(11, dtype=cp.float32), cp.zeros(11, dtype=cp.float32)
    loss = cp.full((), np.nan, dtype=cp.float32)

    def out_of_memory(nbytes):
        raise cp.cuda.memory.OutOfMemoryError(nbytes, 0)

    def refusing(nbytes):
        raise RuntimeError("allocator refused")

    # ops allocates dw and db before the kernel runs: the allocators fail only the scratch.
    def failing_scratch(fail):
        pool = cp.get_default_memory_pool()
        return lambda nbytes: fail(nbytes) if nbytes >= 2 * w.nbytes else pool.malloc(nbytes)

    with cp.cuda.using_allocator(failing_scratch(out_of_memory)):
        with pytest.raises(MemoryError, match=r"conv2d_backward_weight \(partial weight gradients\).*CuPy's memory pool"):
            ops.conv2d_backward_weight(dy_dev, x_dev, w.shape, bias=True)
    with cp.cuda.using_allocator(out_of_memory):
        with pytest.raises(MemoryError, match="mse_loss_partial_sums_kernel"):
            _C.mse_loss_forward(pred, target, loss, "mean")
    with cp.cuda.using_allocator(failing_scratch(refusing)):
        with pytest.raises(RuntimeError, match="conv2d_backward_weight.*allocator refused"):
            ops.conv2d_backward_weight(dy_dev, x_dev, w.shape, bias=True)
    assert _C.cuda_scratch_live_buffers() == 0
    # Nothing stale left behind: the same calls now work.
    dw, _ = ops.conv2d_backward_weight(dy_dev, x_dev, w.shape, bias=True)
    _C.mse_loss_forward(pred, target, loss, "mean")
    _assert_close(cp.asnumpy(dw), ops.conv2d_backward_weight(dy, x, w.shape, bias=True)[0], np.float32)
    assert float(loss) == 1.0


def test_scratch_from_several_threads_and_streams(cp):
    # Each thread runs on its own CuPy stream (the pool keeps an arena per stream) while the
    # others hold or wait for the GIL; the allocator re-acquires the GIL inside the kernel call.
    x, w, dy = _conv_arrays(6)
    expected = ops.conv2d_backward_weight(dy, x, w.shape, bias=False)[0]
    results, errors = [None] * 4, []

    def work(slot):
        try:
            with cp.cuda.Stream(non_blocking=True) as stream:
                x_dev, dy_dev = cp.asarray(x), cp.asarray(dy)
                for _ in range(20):
                    dw = ops.conv2d_backward_weight(dy_dev, x_dev, w.shape, bias=False)[0]
                stream.synchronize()
                results[slot] = cp.asnumpy(dw)
        except Exception as error:  # reported below, in the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for result in results:
        _assert_close(result, expected, np.float32)
    assert _C.cuda_scratch_live_buffers() == 0
