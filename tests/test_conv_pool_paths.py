"""The convolution and pooling tests on every SIMD path besides the best one, which the
ordinary run covers.

Convolution depends on the path twice: the implicit GEMM packs its operands in the path's
tile width (kernels/cpu/conv.cpp), and the depthwise kernels have a portable and an AVX2 body
(kernels/cpu/conv_depthwise_simd.inc). Max pooling's 2x2 stride-2 float kernel has an AVX2
body beside the scalar loops (kernels/cpu/pooling_avx2.cpp). The path is chosen once per
process, so each one runs tests/test_ops_conv.py and tests/test_ops_pooling.py (their NumPy
float64 references, gradchecks and bad input) whole in a subprocess forced onto it with
RANVIER_CPU_PATH (tests/simd_paths.py). Paths this CPU lacks are skipped with the reason.
"""

import pytest

from simd_paths import BEST_PATH, PATHS, path_unavailable, run_python

_RUN_CONV_TESTS = (
    "import sys, pytest, ranvier\n"
    "print('path=' + ranvier.cpu_capabilities()['path'])\n"
    "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'test_ops_conv.py', 'test_ops_pooling.py']))\n"
)


@pytest.mark.parametrize("path", [p for p in PATHS if p != BEST_PATH])
def test_conv_and_pool_tests_pass_on_path(path):
    reason = path_unavailable(path)
    if reason:
        pytest.skip(f"{path} path not run: {reason}")
    completed = run_python(["-c", _RUN_CONV_TESTS], path)
    assert f"path={path}" in completed.stdout, (completed.stdout[-2000:], completed.stderr[-2000:])
    assert completed.returncode == 0, completed.stdout[-4000:]
    assert " passed" in completed.stdout and "ranvier:" not in completed.stderr
