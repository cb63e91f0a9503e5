"""What ranvier's CPU kernels use on this machine: the GEMM path, SIMD features, block sizes.

The GEMM (behind matmul, linear, conv) picks a micro-kernel once per process, at its first
call: "avx512" (AVX-512F), "avx2" (AVX2 + FMA) or "portable" (plain C++), the best one the CPU
supports. The vectorised math of the other CPU kernels (exp, sigmoid, tanh, erf in the
activations, softmax and losses) runs on the same path. Set the environment variable
RANVIER_CPU_PATH=avx512|avx2|portable before the first such kernel to force one; a path the
CPU cannot run, or an unknown name, falls back to the best supported one with a one-time
warning on stderr.
"""

from __future__ import annotations

from . import _C

__all__ = ["cpu_capabilities"]


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
