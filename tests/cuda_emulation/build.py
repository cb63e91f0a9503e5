"""Builds ranvier's CUDA kernels with the host C++ compiler against the emulator
(cuda_runtime.h here), for tests on machines without a GPU. Two products:

- ``_cuda_emulated`` (build()): the kernels with thin pybind11 bindings, one function per
  ranvier::cuda entry point (tests/test_cuda_emulated_*.py);
- an emulated ranvier package (build_package()): the whole extension ``ranvier._C``
  (csrc/, kernels/cpu/ and the emulated kernels/cuda/, with RANVIER_WITH_CUDA on) next to
  links to python/ranvier's sources. With it and the fake CuPy (fake_cupy/) on PYTHONPATH,
  ranvier.cuda.is_available() is true and the GPU tests run (test_gpu_suite_on_emulator.py).

The kernels' sources are the real kernels/cuda/*.cu, compiled as C++ with
RANVIER_CUDA_EMULATION defined. Objects are cached under build/cuda_emulation/<flavour>/ and
rebuilt when a source or any header they may include changes.

Run by hand: ``python tests/cuda_emulation/build.py [--asan] [--package]`` prints the path of
the module (or of the package's parent directory, to put on PYTHONPATH).
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
KERNEL_SOURCES = sorted((ROOT / "kernels" / "cuda").glob("*.cu"))
EMULATOR_SOURCE = HERE / "emulator.cpp"
# The bindings of _cuda_emulated and the emulator's own test kernels (selftest_kernels.cu).
BINDING_SOURCES = sorted(p for p in [*HERE.glob("*.cpp"), *HERE.glob("*.cu")] if p != EMULATOR_SOURCE)
# The rest of ranvier._C, for the emulated package.
CPU_KERNEL_SOURCES = sorted((ROOT / "kernels" / "cpu").glob("*.cpp"))
EXTENSION_BINDING_SOURCES = sorted((ROOT / "csrc").glob("*.cpp"))
# Everything a source may include: a change to any of them rebuilds every object.
HEADERS = sorted(
    [
        *(ROOT / "kernels" / "include" / "ranvier").glob("*.h"),
        *(ROOT / "kernels" / "cuda").glob("*.cuh"),
        *(ROOT / "kernels" / "cpu").glob("*.h"),
        *(ROOT / "kernels" / "cpu").glob("*.inc"),
        *(ROOT / "csrc").glob("*.h"),
        *HERE.glob("*.h"),
    ]
)
MODULE_NAME = "_cuda_emulated"
PYTHON_PACKAGE = ROOT / "python" / "ranvier"


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


def asan_preload() -> str | None:
    """LD_PRELOAD for a Python that imports an --asan build: the ASan runtime, and the C++
    runtime after it. Python itself does not link libstdc++, so without the second ASan finds
    no __cxa_throw at start-up and aborts ("CHECK failed: ... real___cxa_throw") at the first
    C++ exception an extension throws, e.g. a binding's error raised as a Python exception.
    None when the compiler has no ASan runtime."""
    libasan = asan_runtime()
    if libasan is None:
        return None
    result = subprocess.run([compiler(), "-print-file-name=libstdc++.so"], capture_output=True, text=True)
    libstdcxx = result.stdout.strip()
    if result.returncode == 0 and os.path.isabs(libstdcxx) and os.path.exists(libstdcxx):
        return f"{libasan} {libstdcxx}"
    return libasan


def _common_flags(asan: bool) -> list[str]:
    import pybind11

    flags = [
        "-std=c++17",
        "-fPIC",
        "-fvisibility=hidden",
        "-Wall",
        f"-I{ROOT / 'kernels' / 'include'}",
        f"-I{pybind11.get_include()}",
        f"-I{sysconfig.get_paths()['include']}",
    ]
    if asan:
        flags += ["-fsanitize=address", "-fno-omit-frame-pointer"]
    return flags


def _flags(asan: bool) -> list[str]:
    """For the emulated kernels, the emulator and _cuda_emulated's bindings."""
    return [
        *_common_flags(asan),
        "-O1",
        "-Wno-unknown-pragmas",  # nvcc's #pragma unroll
        "-DRANVIER_CUDA_EMULATION",
        # conv.cu's workspace for the backward-weight slices' partial gradients (256 MiB on a
        # GPU): small enough that the tests' batches need several passes.
        "-DRANVIER_CONV_WORKSPACE_BYTES=65536",
        f"-I{HERE}",  # our cuda_runtime.h before any real one
    ]


def _cpu_kernel_flags(source: Path) -> list[str]:
    """kernels/cpu as CMakeLists.txt compiles them (OpenMP; optim.cpp without contraction)."""
    flags = [*_common_flags(asan=False), "-O2", "-fopenmp", "-fno-math-errno"]
    if source.name == "optim.cpp":
        flags.append("-ffp-contract=off")
    return flags


def _extension_binding_flags(asan: bool) -> list[str]:
    """csrc/ as CMakeLists.txt compiles it for a CUDA build; RANVIER_CUDA=ON, and the architectures say 'emulated'."""
    return [
        *_common_flags(asan),
        "-O1",
        "-DRANVIER_WITH_CUDA=1",
        '-DRANVIER_CUDA_BUILD_OPTION="ON"',
        '-DRANVIER_CUDA_ARCHITECTURES="emulated"',
    ]


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


def _flavour_dir(asan: bool) -> Path:
    out_dir = ROOT / "build" / "cuda_emulation" / ("asan" if asan else "default")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _objects(cxx: str, out_dir: Path, sources: list[tuple[Path, list[str]]], jobs: int | None) -> list[Path]:
    """Compiles each (source, flags) that has no object cached yet; returns all objects."""
    objects, work = [], []
    headers_digest = _digest(HEADERS, [])  # read once, not once per source
    for source, flags in sources:
        key = _digest([source], [headers_digest, cxx, *flags])
        obj = out_dir / f"{source.parent.name}-{source.stem}{source.suffix.replace('.', '_')}-{key}.o"
        objects.append(obj)
        if not obj.exists():
            work.append((flags, source, obj))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        for future in [pool.submit(_compile, cxx, f, s, o) for f, s, o in work]:
            future.result()
    return objects


def _link(cxx: str, flags: list[str], objects: list[Path], target: Path, what: str) -> None:
    tmp = target.with_suffix(".tmp")
    result = subprocess.run([cxx, *flags, "-shared", *map(str, objects), "-o", str(tmp)], capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"linking {what} failed:\n{result.stderr}")
    tmp.replace(target)  # never a half-written module


def _require_compiler() -> str:
    cxx = compiler()
    if cxx is None:
        raise BuildError("no C++ compiler found (set CXX)")
    return cxx


def build(asan: bool = False, jobs: int | None = None) -> Path:
    """Compiles what changed and links _cuda_emulated; returns the module's path."""
    cxx = _require_compiler()
    out_dir = _flavour_dir(asan)
    flags = _flags(asan)
    objects = _objects(cxx, out_dir, [(s, flags) for s in [*KERNEL_SOURCES, EMULATOR_SOURCE, *BINDING_SOURCES]], jobs)
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    module = out_dir / f"{MODULE_NAME}-{_digest(objects, [])}{suffix}"
    if not module.exists():
        _link(cxx, flags, objects, module, MODULE_NAME)
    return module


def build_package(asan: bool = False, jobs: int | None = None) -> Path:
    """Builds the emulated ``ranvier`` package; returns the directory holding it (for
    PYTHONPATH). The package is build/cuda_emulation/<flavour>/package/ranvier: _C built here,
    and a link to every other entry of python/ranvier, so that it always runs the sources of
    the checkout (its bytecode caches then land under python/ranvier, as a normal run's do)."""
    cxx = _require_compiler()
    out_dir = _flavour_dir(asan)
    emulated = _flags(asan)
    sources = [(s, emulated) for s in [*KERNEL_SOURCES, EMULATOR_SOURCE]]
    sources += [(s, _extension_binding_flags(asan)) for s in EXTENSION_BINDING_SOURCES]
    # The CPU kernels are never instrumented: AddressSanitizer is here for what the CUDA
    # kernels and the bindings do to device buffers, and one set of objects serves both
    # flavours (they are most of the build).
    cpu_sources = [(s, _cpu_kernel_flags(s)) for s in CPU_KERNEL_SOURCES]
    objects = _objects(cxx, out_dir, sources, jobs) + _objects(cxx, _flavour_dir(False), cpu_sources, jobs)

    package = out_dir / "package" / "ranvier"
    package.mkdir(parents=True, exist_ok=True)
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    extension = package / f"_C{suffix}"
    stamp = package / "_C.objects"  # which objects the extension was linked from
    key = _digest(objects, [])
    if not (extension.exists() and stamp.exists() and stamp.read_text() == key):
        _link(cxx, [*_common_flags(asan), "-fopenmp"], objects, extension, "the emulated ranvier._C")
        stamp.write_text(key)
    for link in package.iterdir():  # links to entries since removed from python/ranvier
        if link.is_symlink() and not link.exists():
            link.unlink()
    for entry in PYTHON_PACKAGE.iterdir():
        if entry.name.startswith("_C.") or entry.name == "__pycache__":
            continue  # an extension built in place by an editable install is not ours
        link = package / entry.name
        if not link.is_symlink():
            link.symlink_to(entry)
    return package.parent


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
    parser.add_argument("--package", action="store_true", help="build the emulated ranvier package")
    args = parser.parse_args()
    try:
        print(build_package(asan=args.asan) if args.package else build(asan=args.asan))
    except BuildError as e:
        sys.exit(str(e))
