"""The GPU test files, run on the CPU emulator of the CUDA kernels.

Without a GPU those files skip. Here each one runs in a subprocess against an emulated
ranvier (tests/cuda_emulation/build.py's build_package: the whole ranvier._C, with the CUDA
kernels compiled for the emulator) and a NumPy-backed fake CuPy (tests/cuda_emulation/
fake_cupy), so that ranvier.cuda.is_available() is true: the bindings' CUDA paths, the
Python layer's device handling (Tensor.to, Module.to, optimizer state, fit(device='cuda'))
and the kernels behind them run as they would on a GPU, apart from what the emulator cannot
show (see docs/cuda-emulation.md: speed, streams running concurrently, nvcc's rounding).

Each file runs twice: on the plain build, and ("asan") on build_package(asan=True) with
AddressSanitizer preloaded and the fake CuPy giving every allocation a block of exactly its
size (FAKE_CUPY_EXACT_ALLOCATIONS=1, see fake_cupy/cupy/cuda/memory.py), so that a kernel or a
binding reading or writing past the end of a CuPy array, or into freed scratch memory, aborts
the file with ASan's report: compute-sanitizer's memcheck, as near as a machine without a GPU
gets.
"""

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FAKE_CUPY = TESTS / "cuda_emulation" / "fake_cupy"

# Every test file with cases that need a GPU (they skip when ranvier.cuda.is_available() is
# false), except two: test_cuda_build.py checks the nvcc build itself (its architectures, the
# fatbinary, the static runtime), which the emulated one is not, and test_train_fit.py's only
# such case checks the error *without* a GPU.
GPU_TEST_FILES = [
    "test_cuda_matmul.py",
    "test_cuda_ops.py",
    "test_cuda_activations.py",
    "test_cuda_conv.py",
    "test_cuda_pool_bn.py",
    "test_cuda_scratch_memory.py",
    "test_fused_linear.py",
    "test_devices.py",
    "test_train_devices.py",
    "test_data_loading.py",
]

# Skip reasons that would mean the emulated GPU was not seen.
NO_GPU_REASONS = ("no usable GPU", "CUDA is not available", "could not import 'cupy'", "needs a GPU")


@pytest.fixture(scope="module", params=["plain", "asan"])
def emulated_environment(request):
    """The environment of a subprocess that imports the emulated ranvier and the fake CuPy;
    for "asan", the AddressSanitizer build, ASan preloaded and exact allocations."""
    from cuda_emulation import build as emulation

    if emulation.compiler() is None:
        pytest.skip("no C++ compiler to build the CUDA emulation with")
    asan = request.param == "asan"
    preload = emulation.asan_preload() if asan else None
    if asan and preload is None:
        pytest.skip("the compiler has no AddressSanitizer runtime")
    package_parent = emulation.build_package(asan=asan)
    path = [str(package_parent), str(FAKE_CUPY)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    if asan:
        # Leak checking is off: the interpreter leaves much allocated at exit by design.
        environment.update(LD_PRELOAD=" ".join(filter(None, [preload, os.environ.get("LD_PRELOAD")])),
                           ASAN_OPTIONS="detect_leaks=0", FAKE_CUPY_EXACT_ALLOCATIONS="1")
    else:
        environment.pop("FAKE_CUPY_EXACT_ALLOCATIONS", None)
    return environment


def _under_asan(environment: dict) -> bool:
    return environment.get("FAKE_CUPY_EXACT_ALLOCATIONS") == "1"


def test_the_emulated_ranvier_sees_one_gpu(emulated_environment):
    # asan: whether the process has the ASan runtime (its interceptors are then what the fake's
    # posix_memalign resolves to); exact: the fake CuPy's allocation mode.
    probe = ("import ctypes, ranvier, ranvier.cuda as c, cupy; "
             "asan = hasattr(ctypes.CDLL(None), '__asan_report_load1'); "
             "print(ranvier.__file__, c.is_available(), c.device_count(), c.build_info()['architectures'], "
             "cupy.__file__, asan, cupy.cuda.memory.EXACT_ALLOCATIONS)")
    result = subprocess.run([sys.executable, "-c", probe], env=emulated_environment, capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    ranvier_file, available, count, architectures, cupy_file, asan, exact = result.stdout.split()
    flavour = "asan" if _under_asan(emulated_environment) else "default"
    assert Path(ranvier_file).is_relative_to(ROOT / "build" / "cuda_emulation" / flavour)
    assert Path(cupy_file).is_relative_to(FAKE_CUPY)
    assert (available, count, architectures) == ("True", "1", "emulated")
    assert asan == exact == str(flavour == "asan")


@pytest.mark.parametrize("test_file", GPU_TEST_FILES)
def test_gpu_test_file_passes_on_the_emulator(emulated_environment, test_file, tmp_path):
    report = tmp_path / "report.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs",
               f"--junitxml={report}", str(TESTS / test_file)]
    environment = emulated_environment
    if _under_asan(environment):
        # ASan's reports go to files (asan.<pid>, one per process, DataLoader workers too): the
        # pytest inside captures file descriptor 2 while a test runs, and ASan's exit after a
        # report leaves it no chance to print what it captured.
        environment = dict(environment, ASAN_OPTIONS=f"{environment['ASAN_OPTIONS']}:log_path={tmp_path / 'asan'}")
    result = subprocess.run(command, env=environment, capture_output=True, text=True, cwd=ROOT)
    asan_reports = "".join(log.read_text(errors="replace")[:8000] for log in sorted(tmp_path.glob("asan.*")))
    output = result.stdout[-20000:] + result.stderr[-5000:] + asan_reports
    assert result.returncode == 0, f"{test_file} on the emulated GPU:\n{output}"
    assert not asan_reports, f"{test_file}: AddressSanitizer reported (exit status 0):\n{asan_reports}"
    cases = list(ElementTree.parse(report).getroot().iter("testcase"))
    skipped = [c.find("skipped") for c in cases if c.find("skipped") is not None]
    no_gpu = [s.get("message", "") for s in skipped if any(r in s.get("message", "") for r in NO_GPU_REASONS)]
    assert not no_gpu, f"{test_file}: {len(no_gpu)} cases did not see the emulated GPU: {no_gpu[:3]}"
    assert len(cases) > len(skipped), f"{test_file}: every case skipped:\n{output}"
