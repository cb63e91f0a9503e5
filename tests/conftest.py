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
