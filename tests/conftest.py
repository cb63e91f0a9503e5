import contextlib
import os
import threading

import numpy as np
import pytest

import ranvier


@pytest.fixture
def rng():
    """A fresh NumPy generator per test, seeded so that failures reproduce."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed_ranvier():
    ranvier.manual_seed(0)
    yield


# Tolerances for comparing a kernel with a float64 reference, by the kernel's dtype.
TOLERANCES = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-12)}


def tol(dtype):
    return TOLERANCES[np.dtype(dtype).type]


def run_in_threads(work, count=4):
    """Runs work() in `count` threads at once and returns the exceptions they raised (an
    exception in a thread would otherwise not fail the test)."""
    errors = []

    def guarded():
        try:
            work()
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=guarded) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


# The emulator's order of threads and blocks for the whole session: shuffled, so that races
# give wrong numbers. Tests that try other orders put it back (emulation_schedule).
EMULATION_SCHEDULE = 0x5EED


@contextlib.contextmanager
def emulation_schedule(module, seed):
    """Runs the with-block under the emulator's order `seed` (see set_schedule), then restores
    the session's."""
    module.set_schedule(seed)
    try:
        yield
    finally:
        module.set_schedule(EMULATION_SCHEDULE)


@pytest.fixture(scope="session")
def emulated_cuda():
    """ranvier's CUDA kernels compiled for the CPU emulator (tests/cuda_emulation), so that
    their results are checked on machines without a GPU. A build failure is an error, not a
    skip: the kernels must compile for the emulator wherever the tests run."""
    from cuda_emulation import build as emulation

    if emulation.compiler() is None:
        pytest.skip("no C++ compiler to build the CUDA emulation with")
    # Set by test_cuda_emulation.py when it reruns the emulated tests under AddressSanitizer.
    asan = os.environ.get("RANVIER_CUDA_EMULATION_ASAN") == "1"
    module = emulation.load(emulation.build(asan=asan))
    module.set_schedule(EMULATION_SCHEDULE)
    return module
