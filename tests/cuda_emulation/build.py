"""Builds ``_cuda_emulated``: ranvier's CUDA kernels compiled by the host C++ compiler against
the emulator (cuda_runtime.h here), with thin pybind11 bindings, for tests on machines
without a GPU.

The kernels' sources are the real kernels/cuda/*.cu (runtime_info.cu aside: device queries,
no kernels), compiled as C++ with RANVIER_CUDA_EMULATION defined. Objects are cached under
build/cuda_emulation/<flags>/ and rebuilt when a source or any header they may include changes.

Run by hand: ``python tests/cuda_emulation/build.py [--asan]`` prints the module's path.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
KERNEL_SOURCES = sorted(p for p in (ROOT / "kernels" / "cuda").glob("*.cu") if p.name != "runtime_info.cu")
# The emulator, the bindings and the emulator's own test kernels (selftest_kernels.cu).
BINDING_SOURCES = sorted([*HERE.glob("*.cpp"), *HERE.glob("*.cu")])
# Everything a source may include: a change to any of them rebuilds every object.
HEADERS = sorted(
    [*(ROOT / "kernels" / "include" / "ranvier").glob("*.h"), *(ROOT / "kernels" / "cuda").glob("*.cuh"), *HERE.glob("*.h")]
)
MODULE_NAME = "_cuda_emulated"


class BuildError(RuntimeError):
    pass


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


def asan_runtime() -> str | None:
    """The compiler's AddressSanitizer runtime library, to LD_PRELOAD into a Python that
    imports the --asan build; None when it has none."""
    cxx = compiler()
    if cxx is None:
        return None
    result = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True, text=True)
    path = result.stdout.strip()
    return path if result.returncode == 0 and os.path.isabs(path) and os.path.exists(path) else None


def _flags(asan: bool) -> list[str]:
    import pybind11

    flags = [
        "-std=c++17",
        "-O1",
        "-fPIC",
        "-fvisibility=hidden",
        "-Wall",
        "-Wno-unknown-pragmas",  # nvcc's #pragma unroll
        "-DRANVIER_CUDA_EMULATION",
        # conv.cu's workspace per chunk of images (256 MiB on a GPU): small enough that the
        # tests' batches split into several chunks.
        "-DRANVIER_CONV_WORKSPACE_BYTES=65536",
        f"-I{HERE}",  # our cuda_runtime.h before any real one
        f"-I{ROOT / 'kernels' / 'include'}",
        f"-I{pybind11.get_include()}",
        f"-I{sysconfig.get_paths()['include']}",
    ]
    if asan:
        flags += ["-fsanitize=address", "-fno-omit-frame-pointer"]
    return flags


def _digest(paths: list[Path], extra: list[str]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    for e in extra:
        h.update(e.encode())
    return h.hexdigest()[:16]


def _compile(cxx: str, flags: list[str], source: Path, obj: Path) -> None:
    language = ["-x", "c++"] if source.suffix == ".cu" else []
    tmp = obj.with_suffix(".o.tmp")
    result = subprocess.run(
        [cxx, *flags, *language, "-c", str(source), "-o", str(tmp)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise BuildError(f"compiling {source.relative_to(ROOT)} for the CUDA emulation failed:\n{result.stderr}")
    tmp.replace(obj)  # never a half-written object in the cache


def build(asan: bool = False, jobs: int | None = None) -> Path:
    """Compiles what changed and links the module; returns the module's path."""
    cxx = compiler()
    if cxx is None:
        raise BuildError("no C++ compiler found (set CXX)")
    flags = _flags(asan)
    out_dir = ROOT / "build" / "cuda_emulation" / ("asan" if asan else "default")
    out_dir.mkdir(parents=True, exist_ok=True)
    headers_digest = _digest(HEADERS, [cxx, *flags])
    objects = []
    work = []
    for source in [*KERNEL_SOURCES, *BINDING_SOURCES]:
        obj = out_dir / f"{source.stem}{source.suffix.replace('.', '_')}-{_digest([source], [headers_digest])}.o"
        objects.append(obj)
        if not obj.exists():
            work.append((source, obj))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        for future in [pool.submit(_compile, cxx, flags, s, o) for s, o in work]:
            future.result()
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    module = out_dir / f"{MODULE_NAME}-{_digest(objects, [])}{suffix}"
    if not module.exists():
        tmp = module.with_suffix(".tmp")
        result = subprocess.run(
            [cxx, *flags, "-shared", *map(str, objects), "-o", str(tmp)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise BuildError(f"linking {MODULE_NAME} failed:\n{result.stderr}")
        tmp.replace(module)
    return module


def load(path: Path):
    """Imports the module at `path` (its file name carries a digest; the module name does not)."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader(MODULE_NAME, str(path))
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--asan", action="store_true", help="build with AddressSanitizer")
    args = parser.parse_args()
    try:
        print(build(asan=args.asan))
    except BuildError as e:
        sys.exit(str(e))
