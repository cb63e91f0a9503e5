"""ranvier.set_num_threads / get_num_threads, OMP_NUM_THREADS at start-up, and the OpenMP
wait policy set at import (checked in subprocesses: both are read when the runtime starts)."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import tol
from references import matmul as matmul_ref

import ranvier
from ranvier import _C, ops

requires_openmp = pytest.mark.skipif(not _C.openmp_built(),
                                     reason="built without OpenMP: always one thread")


@pytest.fixture
def restore_threads():
    before = ranvier.get_num_threads()
    yield
    ranvier.set_num_threads(before)


def run_python(code, **env_changes):
    env = dict(os.environ)
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=True)


@requires_openmp
def test_set_and_get_apply_to_every_python_thread(restore_threads, rng):
    ranvier.set_num_threads(3)
    assert ranvier.get_num_threads() == 3
    seen = []
    worker = threading.Thread(target=lambda: seen.append(ranvier.get_num_threads()))
    worker.start()
    worker.join()
    assert seen == [3]  # unlike omp_set_num_threads, not a per-thread setting
    ranvier.set_num_threads(np.int64(1))
    assert ranvier.get_num_threads() == 1


@requires_openmp
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_results_match_the_reference_on_any_thread_count(restore_threads, rng, threads):
    ranvier.set_num_threads(threads)
    a = rng.standard_normal((150, 70)).astype(np.float32)
    b = rng.standard_normal((70, 130)).astype(np.float32)
    np.testing.assert_allclose(ops.matmul(a, b), matmul_ref.matmul(a, b), **tol(np.float32))
    x = rng.standard_normal((300, 200))
    np.testing.assert_allclose(ops.relu(x), np.maximum(x, 0), rtol=0, atol=0)


@pytest.mark.parametrize("bad", [0, -2])
def test_non_positive_counts_raise_value_error(bad):
    with pytest.raises(ValueError, match=rf"set_num_threads: n must be >= 1, got {bad}"):
        ranvier.set_num_threads(bad)


@pytest.mark.parametrize("bad", [2.0, "2", None, True])
def test_non_integers_raise_type_error(bad):
    with pytest.raises(TypeError, match="set_num_threads: n must be an int"):
        ranvier.set_num_threads(bad)


@requires_openmp
def test_omp_num_threads_is_the_start_up_default():
    result = run_python("import ranvier; print(ranvier.get_num_threads())", OMP_NUM_THREADS="3")
    assert result.stdout.strip() == "3"


@requires_openmp
def test_import_makes_idle_openmp_threads_sleep_soon_unless_the_user_chose():
    # OMP_DISPLAY_ENV=VERBOSE makes the OpenMP runtime print its settings when it starts
    # (libgomp prints GOMP_SPINCOUNT only when verbose).
    code = ("import os, ranvier; "
            "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))")
    result = run_python(code, OMP_DISPLAY_ENV="VERBOSE", OMP_WAIT_POLICY=None,
                        GOMP_SPINCOUNT=None)
    if "OMP_WAIT_POLICY" not in result.stderr:
        pytest.skip("this OpenMP runtime does not print OMP_DISPLAY_ENV")
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in result.stderr
    if "GOMP_SPINCOUNT" in result.stderr:  # libgomp
        assert "GOMP_SPINCOUNT = '1000'" in result.stderr
    assert result.stdout.strip() == "None None"  # the environment is restored after the import
    result = run_python(code, OMP_DISPLAY_ENV="VERBOSE", OMP_WAIT_POLICY="ACTIVE",
                        GOMP_SPINCOUNT=None)
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in result.stderr
    assert "GOMP_SPINCOUNT = '1000'" not in result.stderr
    assert result.stdout.strip() == "ACTIVE None"
    result = run_python(code, OMP_DISPLAY_ENV="VERBOSE", OMP_WAIT_POLICY=None,
                        GOMP_SPINCOUNT="5")
    if "GOMP_SPINCOUNT" in result.stderr:
        assert "GOMP_SPINCOUNT = '5'" in result.stderr
    assert result.stdout.strip() == "None 5"
