"""The CPU's SIMD paths, for the tests that run kernels on each one in its own subprocess.

ranvier picks its SIMD path (GEMM micro-kernels and vector math alike) once per process: the
best the CPU has, or the one RANVIER_CPU_PATH names. Forcing a path therefore takes a fresh
process: run_cases_on_path starts one with RANVIER_CPU_PATH and OMP_NUM_THREADS set, running
a cases script (tests/gemm_path_cases.py, tests/vector_math_path_cases.py) that writes its
outputs to an .npz file, and checks that the forced path really ran.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from ranvier import _C

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
PATHS = ("portable", "avx2", "avx512")


def path_unavailable(path):
    """Why this CPU cannot run `path`, or None when it can."""
    features = _C.cpu_features()
    if path == "avx2" and not (features["avx2"] and features["fma"]):
        return "this CPU lacks AVX2+FMA"
    if path == "avx512" and not features["avx512f"]:
        return "this CPU lacks AVX-512F"
    return None


BEST_PATH = next(p for p in ("avx512", "avx2", "portable") if path_unavailable(p) is None)


def run_python(code_or_args, path, threads=1):
    env = dict(os.environ, RANVIER_CPU_PATH=path, OMP_NUM_THREADS=str(threads))
    return subprocess.run([sys.executable, *code_or_args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=TESTS_DIR)


def run_cases_on_path(script, path, threads, output_dir):
    """Every output of `script` (in tests/) run on `path` with `threads` OpenMP threads, as a
    dict of arrays; skips the test when this CPU cannot run the path. The script prints
    path=<the path its kernels ran on>."""
    reason = path_unavailable(path)
    if reason:
        pytest.skip(f"{path} path not run: {reason}")
    output = output_dir / "outputs.npz"
    completed = run_python([os.path.join(TESTS_DIR, script), str(output)], path, threads)
    assert completed.returncode == 0, completed.stderr
    assert f"path={path}" in completed.stdout, (completed.stdout, completed.stderr)
    assert "ranvier:" not in completed.stderr  # no fallback warning: the forced path ran
    with np.load(output) as data:
        return {key: data[key] for key in data.files}
