"""The GEMM on every SIMD path this CPU runs, against float64 references.

gemm picks its micro-kernel once per process (the best the CPU has, or RANVIER_CPU_PATH), so
each path runs in its own subprocess (tests/gemm_path_cases.py), with one and with two OpenMP
threads (two threads share rows, or columns when there are too few rows). Paths this CPU lacks
are skipped with the reason. Shapes, transposes, alpha/beta and batches: gemm_path_cases.py.
"""

import os

import numpy as np
import pytest

import ranvier
from ranvier import _C

import gemm_path_cases as cases
from references.matmul import matmul as reference_matmul
from simd_paths import BEST_PATH, PATHS, path_unavailable, run_cases_on_path, run_python

# Every path on one thread; the thread split (rows, or columns when rows are few) is the same
# code for every path, so two threads run on the best path only.
CONFIGS = [(p, 1) for p in PATHS] + [(BEST_PATH, 2)]


@pytest.fixture(scope="module", params=CONFIGS,
                ids=lambda pt: f"{pt[0]}-{pt[1]}thread")
def path_outputs(request, tmp_path_factory):
    """Every case's output computed by a subprocess forced onto one path and thread count."""
    path, threads = request.param
    return run_cases_on_path("gemm_path_cases.py", path, threads,
                             tmp_path_factory.mktemp(f"gemm_{path}_{threads}"))


_product_cache = {}
# Above this many multiply-adds the products come from NumPy's float64 matmul (checked against
# the loop reference in test_float64_numpy_agrees_with_loop_reference): the loops take seconds.
_LOOP_REFERENCE_LIMIT = 10 ** 6


def op_product(dtype, shape, trans):
    """float64 op(a) @ op(b) (tests/references/matmul.py's loops for the smaller shapes), and
    |op(a)| @ |op(b)| for the rounding bound."""
    key = (dtype, shape, trans)
    if key not in _product_cache:
        a, b, *_ = cases.gemm_inputs(dtype, shape, trans, 0)
        a = a.astype(np.float64).T if trans[0] else a.astype(np.float64)
        b = b.astype(np.float64).T if trans[1] else b.astype(np.float64)
        m, n, k = shape
        product = reference_matmul(a, b) if m * n * k <= _LOOP_REFERENCE_LIMIT else a @ b
        _product_cache[key] = (product, np.abs(a) @ np.abs(b))
    return _product_cache[key]


def assert_within_rounding(actual, expected, magnitude, k, dtype, what):
    """|actual - expected| <= (k + 4) eps * magnitude (+ tiny): the classic bound of a length-k
    dot product in floating point, magnitude = |alpha| |A| |B| + |beta| |C| entrywise."""
    eps = np.finfo(dtype).eps
    bound = (k + 4) * eps * magnitude + np.finfo(dtype).tiny
    assert actual.shape == expected.shape, what
    assert not np.isnan(actual).any(), f"{what}: NaN in the output"
    error = np.abs(actual.astype(np.float64) - expected)
    worst = np.unravel_index(np.argmax(error - bound), error.shape)
    assert (error <= bound).all(), (f"{what}: error {error[worst]:.3g} > bound {bound[worst]:.3g} "
                                    f"at {worst}")


@pytest.mark.parametrize("dtype", cases.DTYPES)
@pytest.mark.parametrize("shape", cases.SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("trans", cases.TRANSPOSES, ids=lambda t: f"ta{int(t[0])}tb{int(t[1])}")
def test_gemm_matches_reference(path_outputs, dtype, shape, trans):
    m, n, k = shape
    for s, (alpha, beta, nan_c) in enumerate(cases.SCALINGS):
        _, _, c_in, _, _ = cases.gemm_inputs(dtype, shape, trans, s)
        product, abs_product = op_product(dtype, shape, trans)
        c_term = 0.0 if beta == 0 else beta * c_in.astype(np.float64)
        expected = alpha * product + c_term
        magnitude = abs(alpha) * abs_product + (0.0 if beta == 0 else abs(beta) * np.abs(c_in))
        actual = path_outputs[cases.case_key(dtype, shape, trans, s)]
        assert_within_rounding(actual, expected, magnitude, k, dtype,
                               f"alpha={alpha} beta={beta} nan_c={nan_c}")


@pytest.mark.parametrize("dtype", cases.DTYPES)
@pytest.mark.parametrize("index", range(len(cases.BATCHES)))
def test_batched_matmul_matches_reference(path_outputs, dtype, index):
    a, b = cases.batch_inputs(dtype, index)
    k = a.shape[-1]
    expected = reference_matmul(a, b)
    magnitude = reference_matmul(np.abs(a), np.abs(b))
    assert_within_rounding(path_outputs[cases.batch_key(dtype, index)], expected, magnitude, k,
                           dtype, f"batch case {cases.BATCHES[index]}")


def test_float64_numpy_agrees_with_loop_reference():
    # The large case leans on the loop reference's rank-1 form: check it once against
    # NumPy's float64 matmul, a second, independent reference.
    a, b, *_ = cases.gemm_inputs("float64", (5, 1000, 500), (True, False), 0)
    np.testing.assert_allclose(reference_matmul(a, b, True, False), a.T @ b, rtol=1e-12,
                               atol=1e-12)


# --- choosing the path ----------------------------------------------------------------------

def test_cpu_capabilities_reports_the_running_path():
    caps = ranvier.cpu_capabilities()
    assert caps["path"] == _C.cpu_gemm_path()
    assert caps["path"] in PATHS
    assert path_unavailable(caps["path"]) is None
    features = _C.cpu_features()
    assert {k: caps[k] for k in ("avx2", "fma", "avx512f")} == features
    # Without RANVIER_CPU_PATH the best supported path runs.
    if not os.environ.get("RANVIER_CPU_PATH"):
        assert caps["path"] == BEST_PATH
    for dtype in ("float32", "float64"):
        blocking = caps["blocking"][dtype]
        assert blocking["mc"] % blocking["mr"] == 0 and blocking["nc"] % blocking["nr"] == 0
        assert blocking["kc"] >= 64


def test_cpu_flags_agree_with_proc_cpuinfo():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    except OSError:
        flags = None
    if flags is None:
        pytest.skip("no /proc/cpuinfo flags on this system")
    features = _C.cpu_features()
    for name in ("avx2", "fma", "avx512f"):
        assert features[name] == (name in flags), name


@pytest.mark.parametrize("requested", ["avx512", "avx2", "bogus"])
def test_unrunnable_or_unknown_path_falls_back_with_a_warning(requested):
    if requested != "bogus" and path_unavailable(requested) is None:
        pytest.skip(f"this CPU runs {requested}: nothing to fall back from")
    code = ("import numpy as np, ranvier\n"
            "a = np.ones((3, 4), np.float32)\n"
            "c = ranvier.ops.matmul(a, a.T)\n"
            "assert (c == 4).all(), c\n"
            "print(ranvier.cpu_capabilities()['path'])\n")
    completed = run_python(["-c", code], requested)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == BEST_PATH
    assert f"RANVIER_CPU_PATH={requested}" in completed.stderr
    assert completed.stderr.count("RANVIER_CPU_PATH") == 1  # warned once, not per call


# --- _C.gemm's checks ------------------------------------------------------------------------

def test_gemm_rejects_bad_input():
    a = np.ones((3, 4))
    b = np.ones((4, 5))
    with pytest.raises(ValueError, match=r"gemm: .*\(3, 4\).*4 columns.*\(5, 4\)"):
        _C.gemm(a, np.ones((5, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"gemm: c"):
        _C.gemm(a, b, np.zeros((3, 4)))
    with pytest.raises(TypeError, match="gemm"):
        _C.gemm(a, b.astype(np.float32), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="gemm: alpha must be finite"):
        _C.gemm(a, b, np.zeros((3, 5)), alpha=float("nan"))
    with pytest.raises(ValueError, match="gemm: beta must be finite"):
        _C.gemm(a, b, np.zeros((3, 5)), beta=float("inf"))
    read_only = np.zeros((3, 5))
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="gemm"):
        _C.gemm(a, b, read_only)
    square = np.ones((4, 4))
    with pytest.raises(ValueError, match="gemm"):
        _C.gemm(square, square, square)  # c is a: it would read what it writes
    with pytest.raises(ValueError, match="gemm_blocking"):
        _C.gemm_blocking("float16")
