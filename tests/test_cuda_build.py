"""The CUDA build: compiled in where nvcc was there, harmless without a GPU.

Whether CUDA *should* have been built is read from the extension itself:
``ranvier._C.cuda_build_option`` records the RANVIER_CUDA setting of the build (AUTO, ON
or OFF). A build with RANVIER_CUDA=OFF is expected to lack CUDA; an AUTO build is expected
to have it when nvcc is on the PATH now (CI builds and tests on the same machine); ON
always has it (the build fails otherwise). The environment variable RANVIER_CUDA=OFF at
test time also skips the "must be built" assertion, for developers who build with it.
"""

import os
import shutil
import struct
import subprocess

import numpy as np
import pytest

import ranvier
from ranvier import _C


def cuda_expected() -> bool | None:
    """True/False when this build should/should not have CUDA; None when we cannot tell."""
    option = str(_C.cuda_build_option).upper()
    if option == "OFF":
        return False
    if option == "ON":
        return True
    if os.environ.get("RANVIER_CUDA", "").upper() == "OFF":
        return None
    return shutil.which("nvcc") is not None


def test_is_built_is_a_bool_that_matches_the_build():
    built = ranvier.cuda.is_built()
    assert isinstance(built, bool)
    assert built == bool(_C.cuda_built)
    expected = cuda_expected()
    if expected is None:
        pytest.skip("RANVIER_CUDA=OFF in the environment: cannot tell what the build should have")
    assert built == expected, (f"RANVIER_CUDA={_C.cuda_build_option} build, nvcc on PATH: "
                               f"{shutil.which('nvcc')}, but CUDA built: {built}")


def test_build_info():
    info = ranvier.cuda.build_info()
    assert info["option"] in ("AUTO", "ON", "OFF")
    assert info["built"] is ranvier.cuda.is_built()
    if info["built"]:
        assert info["architectures"] == "80-real,90-real,90-virtual"
        assert info["runtime_version"] >= 11000
    else:
        assert info["architectures"] == "" and info["runtime_version"] == 0


def _tool_output(*command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"{command[0]} could not run: {error}")


FATBIN_MAGIC = 0xBA55ED50
FATBIN_KINDS = {1: "ptx", 2: "elf"}


def fatbin_entries(path) -> set[tuple[str, int]]:
    """(kind, sm) of every GPU code image embedded in a shared library: ("elf", 80) is
    machine code for sm_80, ("ptx", 90) PTX for compute_90.

    Read straight from nvcc's fat binaries (cuobjdump is not always installed): a 16-byte
    header (magic 0xBA55ED50, u16 version 1, u16 header size, u64 size of the entries),
    then entries of u16 kind (1 PTX, 2 ELF), u16 version, u32 header size, u64 payload
    size, ..., u32 sm at byte 28.
    """
    data = open(path, "rb").read()
    magic = struct.pack("<I", FATBIN_MAGIC)
    entries = set()
    position = data.find(magic)
    while position >= 0:
        version, header_size, body_size = struct.unpack_from("<HHQ", data, position + 4)
        end = position + header_size + body_size
        if version == 1 and header_size == 16 and end <= len(data):
            entry = position + header_size
            while entry + 32 <= end:
                kind, _, entry_header_size, payload_size = struct.unpack_from("<HHIQ", data, entry)
                (sm,) = struct.unpack_from("<I", data, entry + 28)
                if kind not in FATBIN_KINDS or entry_header_size < 32:
                    break
                entries.add((FATBIN_KINDS[kind], sm))
                entry += entry_header_size + payload_size
        position = data.find(magic, position + 4)
    return entries


def test_cuda_code_is_in_the_extension_for_sm80_sm90_and_ptx():
    if not ranvier.cuda.is_built():
        pytest.skip("built without CUDA")
    entries = fatbin_entries(_C.__file__)
    # Machine code for A100 (sm_80) and H100/H200 (sm_90), PTX for newer GPUs to JIT.
    assert {("elf", 80), ("elf", 90), ("ptx", 90)} <= entries, sorted(entries)


def test_cpu_only_build_has_no_gpu_code():
    if ranvier.cuda.is_built():
        pytest.skip("built with CUDA")
    assert fatbin_entries(_C.__file__) == set()


def test_cuda_runtime_is_linked_statically():
    if shutil.which("readelf") is None:
        pytest.skip("readelf not on the PATH")
    dynamic = _tool_output("readelf", "--dynamic", _C.__file__)
    needed = [line for line in dynamic.splitlines() if "(NEEDED)" in line]
    assert needed, dynamic
    assert not any("libcudart" in line for line in needed), needed
    # The driver is loaded at the first CUDA call (dlopen), never as a link dependency.
    assert not any("libcuda.so" in line for line in needed), needed


def test_without_a_gpu_nothing_is_available_and_the_reason_is_given():
    if ranvier.cuda.device_count() > 0:
        pytest.skip("a CUDA device is present")
    assert ranvier.cuda.device_count() == 0
    assert ranvier.cuda.is_available() is False
    reason = ranvier.cuda.unavailable_reason()
    assert isinstance(reason, str) and reason.strip()
    if not ranvier.cuda.is_built():
        assert "without CUDA" in reason
    with pytest.raises((RuntimeError, ValueError, IndexError), match=r"\S"):
        ranvier.cuda.get_device_properties(0)


def test_import_works_without_a_gpu():
    # This module imported ranvier at collection, so the import did not need a GPU; run it
    # in a fresh interpreter too, with CUDA devices hidden, to be sure.
    import subprocess
    import sys

    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    completed = subprocess.run(
        [sys.executable, "-c", "import ranvier, ranvier.cuda as c; print(c.device_count(), c.is_available())"],
        capture_output=True, text=True, timeout=120, env=env)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["0", "False"]


@pytest.fixture
def cupy():
    module = pytest.importorskip("cupy")
    if not ranvier.cuda.is_available():
        pytest.skip(f"no usable GPU: {ranvier.cuda.unavailable_reason()}")
    return module


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_on_the_gpu_matches_the_cpu(cupy, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 129)).astype(dtype)
    grad_output = rng.standard_normal(x.shape).astype(dtype)
    y_gpu = ranvier.ops.relu(cupy.asarray(x))
    dx_gpu = ranvier.ops.relu_backward(cupy.asarray(x), cupy.asarray(grad_output))
    assert isinstance(y_gpu, cupy.ndarray) and isinstance(dx_gpu, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(y_gpu), ranvier.ops.relu(x))
    np.testing.assert_array_equal(cupy.asnumpy(dx_gpu), ranvier.ops.relu_backward(x, grad_output))
