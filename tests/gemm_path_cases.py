"""GEMM cases for tests/test_gemm_paths.py, shared by the test and the subprocess that runs them.

The test starts one subprocess per (path, threads) with RANVIER_CPU_PATH and OMP_NUM_THREADS set
(gemm reads both once, so a fresh process is the honest way to force a path); the subprocess
runs every case through ranvier._C and saves the outputs; the test compares them with float64
references. Both sides rebuild the inputs from the same seeds, so only outputs travel.

    python tests/gemm_path_cases.py OUTPUT.npz      # the subprocess side
"""

import functools
import itertools
import sys

import numpy as np

# (m, n, k): ones, primes, not multiples of any micro-tile (4x8, 6x16, 12x32 floats),
# exactly one AVX2 tile, k just past one k-block (kc = 256 on a 32 KiB L1), more than one
# block in every direction (mc ~ 250, kc ~ 256), n past one B panel (nc <= 4096), few rows
# with much work (two threads then split the columns), and k = 0 (C = beta * C).
# gemm's small path (one block, one thread, up to 128^3) takes the shapes with k <= 256 up to
# 128x128x128; the next ones give it column strips read in place beside a packed edge strip
# (n = 32, 40) under an edge row strip (m = 13) or none (m = 12), all of B packed because its
# rows are 256 bytes apart and k = 100 is too long for them to share L1 (13x64x100; also
# 128^3), and its size limit from both sides (128^3 small, 129x128x128 blocked). The last row
# strip holds every count of rows from 1 to MR - 1 of the AVX2 tile (6): m = 13 (1), 128 (2),
# 129 (3), 10 (4) and 5 (5); strips of up to a third or two thirds of MR run a kernel of that
# many rows (gemm_simd_micro_kernel.inc), which 10x48x20 fills whole.
SHAPES = [
    (1, 1, 1), (1, 7, 13), (7, 1, 13), (13, 31, 1), (7, 13, 31), (31, 97, 13), (97, 31, 7),
    (6, 16, 256), (12, 32, 257), (5, 17, 300), (300, 520, 700), (7, 4133, 9), (5, 1000, 500),
    (4, 5, 0), (13, 32, 5), (12, 40, 9), (13, 64, 100), (128, 128, 128), (129, 128, 128),
    (10, 48, 20),
]
TRANSPOSES = list(itertools.product((False, True), repeat=2))
DTYPES = ("float32", "float64")
# (alpha, beta, C filled with NaN on entry): beta == 0 must never read C.
SCALINGS = [(1.0, 0.0, True), (0.5, 0.0, True), (1.0, 1.0, False), (-2.0, 0.75, False),
            (0.0, 0.5, False), (0.0, 0.0, True)]
# Batched matmul (_C.matmul): (batch, m, n, k, a batched, b batched).
BATCHES = [(1, 7, 13, 31, True, True), (5, 7, 13, 31, True, True), (3, 31, 17, 97, True, False),
           (4, 13, 40, 19, False, True), (9, 6, 16, 33, True, True)]


def case_key(dtype, shape, trans, scaling_index):
    m, n, k = shape
    return f"{dtype}_{m}x{n}x{k}_ta{int(trans[0])}_tb{int(trans[1])}_s{scaling_index}"


def batch_key(dtype, index):
    return f"batch_{dtype}_{index}"


def _seed(*parts):
    """A seed from the case's numbers, the same in every process."""
    return sum((i + 1) * 7919 * p for i, p in enumerate(parts)) % (2 ** 32)


@functools.lru_cache(maxsize=None)
def _operands(dtype, shape, trans):
    m, n, k = shape
    rng = np.random.default_rng(_seed(m, n, k, int(trans[0]), int(trans[1])))
    a = rng.uniform(-1, 1, (k, m) if trans[0] else (m, k)).astype(dtype)
    b = rng.uniform(-1, 1, (n, k) if trans[1] else (k, n)).astype(dtype)
    a.flags.writeable = False
    b.flags.writeable = False
    return a, b


def gemm_inputs(dtype, shape, trans, scaling_index):
    """a (m, k) or (k, m), b (k, n) or (n, k), c (m, n), alpha, beta for one case.
    a and b depend on the shape and transposes only (read-only, shared by the scalings, so
    that each reference product is computed once); c is new per call."""
    m, n, k = shape
    a, b = _operands(dtype, tuple(shape), tuple(trans))
    alpha, beta, nan_c = SCALINGS[scaling_index]
    c_rng = np.random.default_rng(_seed(m, n, k, int(trans[0]), int(trans[1]), scaling_index + 1))
    c = np.full((m, n), np.nan, dtype=dtype) if nan_c else c_rng.uniform(-1, 1, (m, n)).astype(dtype)
    return a, b, c, alpha, beta


def batch_inputs(dtype, index):
    batch, m, n, k, a_batched, b_batched = BATCHES[index]
    rng = np.random.default_rng(_seed(batch, m, n, k, 99))
    a = rng.uniform(-1, 1, ((batch,) if a_batched else ()) + (m, k)).astype(dtype)
    b = rng.uniform(-1, 1, ((batch,) if b_batched else ()) + (k, n)).astype(dtype)
    return a, b


def run_all(output_path):
    """Run every case through ranvier._C (in this process's path) and save the outputs."""
    from ranvier import _C

    outputs = {}
    for dtype, shape, trans in itertools.product(DTYPES, SHAPES, TRANSPOSES):
        for s in range(len(SCALINGS)):
            a, b, c, alpha, beta = gemm_inputs(dtype, shape, trans, s)
            _C.gemm(a, b, c, alpha=alpha, beta=beta, trans_a=trans[0], trans_b=trans[1])
            outputs[case_key(dtype, shape, trans, s)] = c
    for dtype in DTYPES:
        for index in range(len(BATCHES)):
            a, b = batch_inputs(dtype, index)
            batch, m, n = BATCHES[index][:3]
            out = np.full((batch, m, n), np.nan, dtype=dtype)
            _C.matmul(a, b, out)
            outputs[batch_key(dtype, index)] = out
    np.savez(output_path, **outputs)
    print(f"path={_C.cpu_gemm_path()}")


if __name__ == "__main__":
    run_all(sys.argv[1])
