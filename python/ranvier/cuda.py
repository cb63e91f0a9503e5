"""Whether ranvier can use a GPU.

``is_built()`` says whether the CUDA kernels were compiled into this installation;
``is_available()`` whether a GPU can be used right now (CUDA built, a driver and a device
present, and CuPy importable, since GPU arrays are CuPy arrays). Neither ever raises.
"""

from __future__ import annotations

from . import _C

__all__ = ["is_built", "is_available", "device_count", "get_device_name", "get_device_properties",
           "unavailable_reason", "build_info"]


def is_built() -> bool:
    """True when this ranvier was compiled with its CUDA kernels."""
    return bool(_C.cuda_built)


def build_info() -> dict:
    """How this installation was built: the RANVIER_CUDA setting ('AUTO', 'ON' or 'OFF'),
    whether CUDA was compiled in, the CUDA architectures (e.g. '80-real,90-real,90-virtual')
    and the CUDA runtime version (e.g. 13000; 0 without CUDA)."""
    return {"option": str(_C.cuda_build_option), "built": is_built(),
            "architectures": str(_C.cuda_architectures),
            "runtime_version": int(_C.cuda_runtime_version)}


def device_count() -> int:
    """Number of CUDA devices the runtime can see (0 without a driver or a GPU)."""
    return int(_C.cuda_device_count())


def _cupy_importable() -> bool:
    try:
        import cupy  # noqa: F401
    except Exception:
        return False
    return True


def is_available() -> bool:
    """True when tensors can be put on a GPU now."""
    return is_built() and device_count() > 0 and _cupy_importable()


def unavailable_reason() -> str:
    """Why ``is_available()`` is False, in words ('' when it is True)."""
    if not is_built():
        return str(_C.cuda_unavailable_reason())
    if device_count() == 0:
        return str(_C.cuda_unavailable_reason())
    if not _cupy_importable():
        return "CuPy is not installed: pip install 'ranvier[cuda]' (or cupy-cuda12x for CUDA 12)"
    return ""


def get_device_properties(device: int = 0) -> dict:
    """Name, compute capability ('major', 'minor'), 'multiprocessors' and 'total_memory' (bytes)."""
    if not is_built():
        raise RuntimeError(unavailable_reason())
    return dict(_C.cuda_device_properties(int(device)))


def get_device_name(device: int = 0) -> str:
    return get_device_properties(device)["name"]
