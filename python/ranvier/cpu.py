"""What ranvier's CPU kernels use on this machine: the GEMM path, SIMD features, block sizes.

The GEMM (behind matmul, linear, conv) picks a micro-kernel once per process, at its first
call: "avx512" (AVX-512F), "avx2" (AVX2 + FMA) or "portable" (plain C++), the best one the CPU
supports. The vectorised math of the other CPU kernels (exp, sigmoid, tanh, erf in the
activations, softmax and losses) runs on the same path. Set the environment variable
RANVIER_CPU_PATH=avx512|avx2|portable before the first such kernel to force one; a path the
CPU cannot run, or an unknown name, falls back to the best supported one with a one-time
warning on stderr.

Memory: the NumPy arrays ranvier's ops return are ordinary arrays, but those of 64 KiB and
more take their memory from a cache that keeps the blocks of freed arrays for the next
arrays of the same size (as CuPy's memory pool and PyTorch's CUDA caching allocator do on
the GPU). A training step allocates the same outputs every step; without the cache the
operating system would fault in and zero fresh pages for each of them each step (a quarter
of the MNIST-sized CNN's step time, measured). ``memory_stats``, ``empty_cache`` and
``set_cache_limit`` inspect and bound it.
"""

from __future__ import annotations

import numbers

from . import _C

__all__ = ["cpu_capabilities", "empty_cache", "get_num_threads", "memory_stats",
           "set_cache_limit", "set_num_threads"]


def get_num_threads() -> int:
    """The number of threads ranvier's CPU kernels use (as ``torch.get_num_threads``).

    Until ``set_num_threads`` is called: ``OMP_NUM_THREADS`` as set when ranvier was
    imported, else the number of cores this process may run on. 1 when ranvier was built
    without OpenMP.
    """
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (>= 1) in ranvier's CPU kernels from now on (as ``torch.set_num_threads``).

    The setting is process-wide: it applies to kernels called from any Python thread. Small
    kernels still run on one thread when waking more would cost more than it saves.

    Threads and NumPy: ranvier's kernels run on OpenMP threads; NumPy's matrix products run
    on its BLAS library's own threads (OpenBLAS or MKL), a separate pool that this function
    does not change (use ``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS`` or threadpoolctl).
    By default an idle OpenMP thread keeps spinning on its core for a while after each
    parallel region (GNU libgomp: about 3 ms); code that alternates ranvier and NumPy calls
    then has both pools spinning on the same cores, and each waits for the other (measured:
    a loop of alternating 192x192 matmuls ran ~40x slower on 2 cores). Sleeping at once
    (``OMP_WAIT_POLICY=PASSIVE``) avoids that but makes every barrier inside a kernel a
    sleep and a wake-up: a GEMM with many blocks of k waits at two barriers per block, and
    (64, 3136) @ (3136, 128) took 1.3-3.3 ms on 2 threads against 0.7 ms on one. So, unless
    you set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` yourself, ``import ranvier`` starts its
    OpenMP runtime with ``GOMP_SPINCOUNT=1000`` (libgomp: about 10 us of spinning before a
    thread sleeps) and ``OMP_WAIT_POLICY=PASSIVE`` (for other runtimes, which ignore the
    first). Measured on 2 cores: that product in 0.5-0.7 ms, the alternating loop 1.2x
    slower than with PASSIVE alone, not 40x. (This only takes effect if no other library in
    the process loaded the same OpenMP runtime first; the environment is restored after the
    import.)
    Asking for more threads than cores oversubscribes them and is rarely faster.

    Raises:
        TypeError: ``n`` is not an integer. ValueError: ``n < 1``.

    Example:
        >>> ranvier.set_num_threads(1)   # e.g. one process per core
        >>> ranvier.get_num_threads()
        1
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__} {n!r}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    _C.set_num_threads(int(n))


def cpu_capabilities() -> dict:
    """The CPU features and the GEMM path in use.

    Returns:
        dict with ``path`` ('avx512', 'avx2' or 'portable'), ``requested`` (RANVIER_CPU_PATH as
        read, '' when unset), ``avx2``, ``fma``, ``avx512f`` (bools), ``caches`` (L1d, L2, L3
        in bytes as the OS reports them, 0 when unknown) and ``blocking`` (per dtype name:
        micro-tile ``mr`` x ``nr`` and cache blocks ``mc``, ``kc``, ``nc``).

    Example:
        >>> ranvier.cpu_capabilities()["path"]
        'avx2'
    """
    return {"path": _C.cpu_gemm_path(), "requested": _C.cpu_gemm_path_requested(),
            **_C.cpu_features(), "caches": _C.cpu_cache_sizes(),
            "blocking": {dtype: _C.gemm_blocking(dtype) for dtype in ("float32", "float64")}}


def memory_stats() -> dict:
    """The host memory cache's counters (see the module's docstring).

    Returns:
        dict with ``cached_bytes`` (free blocks held for reuse), ``in_use_bytes`` (blocks
        held by live arrays), ``limit_bytes`` (the most ``cached_bytes`` may reach),
        ``hits`` and ``misses`` (requests served from the cache / by a new allocation, since
        the process started) and ``min_block_bytes`` (smaller arrays bypass the cache).

    Example:
        >>> ranvier.cpu.memory_stats()["limit_bytes"]
        1073741824
    """
    return dict(_C.host_cache_stats())


def empty_cache() -> None:
    """Return every cached free block to the operating system (as ``torch.cuda.empty_cache``).

    Arrays still alive keep their memory; their blocks come back to the cache when they die.
    """
    _C.host_empty_cache()


def set_cache_limit(nbytes: int) -> None:
    """Hold at most ``nbytes`` of free blocks from now on (default 1 GiB); 0 turns caching off.

    A block freed while the cache is full goes straight back to the operating system. When
    the cache holds more than the new limit, it is emptied.

    Raises:
        TypeError: ``nbytes`` is not an integer. ValueError: ``nbytes < 0``.
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Integral):
        raise TypeError(f"set_cache_limit: nbytes must be an int, got {type(nbytes).__name__} "
                        f"{nbytes!r}")
    if nbytes < 0:
        raise ValueError(f"set_cache_limit: nbytes must be >= 0, got {nbytes}")
    _C.set_host_cache_limit(int(nbytes))
