"""The CUDA losses (kernels/cuda/losses.cu, with the two-pass reduction of reduce.cuh) and
softmax / log_softmax (kernels/cuda/softmax.cu), run by the CPU emulator
(tests/cuda_emulation), against the float64 references and the CPU kernels of ranvier._C.

Outputs start as NaN so that an element a kernel forgets to write shows up (and stay NaN
where nothing may be written). Sizes: 1, odd and prime, just below, at and above the 256
threads of a block, and past the 1024 partial sums of the reduction. Softmax rows (inner == 1)
run one block of 32..256 threads per row, so row widths straddle 32, 64, 128 and 256; lines
(inner > 1) run one thread per line, so line counts straddle 256.

The reductions ('mean', 'sum') are documented as reproducible bit for bit run to run: here
they must give the same bits whatever order the emulator runs threads and blocks in.
"""

import math

import numpy as np
import pytest
from conftest import EMULATION_SCHEDULE, emulation_schedule, tol
from loss_kinds import cpu_backward, cpu_forward, reference_backward, reference_forward
from references import losses as loss_ref
from references import softmax as softmax_ref

from ranvier import _C

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "mean", "sum"]
# Schedules the emulator runs threads and blocks in: index order, reversed, two shuffles.
SCHEDULES = [0, 1, EMULATION_SCHEDULE, 987654321]


def nan(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


def assert_close(actual, expected, dtype, factor=1.0):
    t = tol(dtype)
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=t["rtol"] * factor,
                               atol=t["atol"] * factor)


def out_shape(reduction, n):
    """The kernels' out / dout: n values for 'none', else one."""
    return (n,) if reduction == "none" else (1,)


@pytest.fixture
def schedules(emulated_cuda):
    """Sets each schedule in turn; puts conftest's back afterwards."""
    def run_each(body):
        for seed in SCHEDULES:
            with emulation_schedule(emulated_cuda, seed):
                body(seed)
    return run_each


# --- mse, bce, bce_with_logits ---------------------------------------------------------------
# (rows, classes): n = rows * classes elements; bce_with_logits' pos_weight has `classes`
# entries and applies to element i as pos_weight[i % classes].
ELEMENTWISE_SHAPES = [(1, 1), (1, 7), (97, 1), (3, 85), (16, 16), (1, 257), (7, 149)]
ELEMENTWISE_VARIANTS = [("mse", False, False), ("bce", False, False), ("bce", True, False),
                        ("bce_logits", False, False), ("bce_logits", True, False), ("bce_logits", False, True),
                        ("bce_logits", True, True)]


def elementwise_inputs(kind, shape, dtype, rng, weighted, with_pos_weight):
    """(first input, target, weight or None, pos_weight or None), shaped `shape`."""
    if kind == "bce":
        first = rng.uniform(0.02, 0.98, shape)
        target = rng.uniform(0.0, 1.0, shape)
    else:
        first = 3 * rng.standard_normal(shape)
        target = rng.uniform(0.0, 1.0, shape) if kind == "bce_logits" else rng.standard_normal(shape)
    weight = rng.uniform(0.5, 2.0, shape).astype(dtype) if weighted else None
    pos_weight = rng.uniform(0.5, 3.0, shape[-1]).astype(dtype) if with_pos_weight else None
    return first.astype(dtype), target.astype(dtype), weight, pos_weight


def emulated_forward(cuda, kind, first, target, weight, pos_weight, out, reduction):
    n, classes = first.size, first.shape[-1]
    if kind == "mse":
        cuda.mse_loss_forward(first, target, out, n, reduction)
    elif kind == "bce":
        cuda.bce_loss_forward(first, target, weight, out, n, reduction)
    else:
        cuda.bce_with_logits_forward(first, target, weight, pos_weight, out, n, classes, reduction)


def emulated_backward(cuda, kind, first, target, weight, pos_weight, dout, dfirst, reduction):
    n, classes = first.size, first.shape[-1]
    if kind == "mse":
        cuda.mse_loss_backward(first, target, dout, dfirst, n, reduction)
    elif kind == "bce":
        cuda.bce_loss_backward(first, target, weight, dout, dfirst, n, reduction)
    else:
        cuda.bce_with_logits_backward(first, target, weight, pos_weight, dout, dfirst, n, classes, reduction)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
@pytest.mark.parametrize("kind,weighted,with_pos_weight", ELEMENTWISE_VARIANTS)
def test_elementwise_loss_forward_backward(emulated_cuda, rng, kind, weighted, with_pos_weight, shape, reduction,
                                           dtype):
    first, target, weight, pos_weight = elementwise_inputs(kind, shape, dtype, rng, weighted, with_pos_weight)
    n = first.size
    out = nan(out_shape(reduction, n), dtype)
    emulated_forward(emulated_cuda, kind, first, target, weight, pos_weight, out, reduction)
    expected = reference_forward(kind, first, target, weight, pos_weight, reduction).reshape(-1)
    assert_close(out, expected, dtype)
    cpu = nan(shape if reduction == "none" else (), dtype)
    cpu_forward(kind, first, target, weight, pos_weight, cpu, reduction)
    assert_close(out, cpu.reshape(-1).astype(np.float64), dtype)

    dout = (rng.standard_normal(out_shape(reduction, n)) + 0.5).astype(dtype)
    dfirst = nan(shape, dtype)
    emulated_backward(emulated_cuda, kind, first, target, weight, pos_weight, dout, dfirst, reduction)
    # The references take dout shaped like the loss: (shape) for 'none', 0-d otherwise.
    dout_ref = dout.reshape(shape) if reduction == "none" else dout.reshape(())
    assert_close(dfirst, reference_backward(kind, first, target, weight, pos_weight, dout_ref, reduction), dtype)
    cpu_grad = nan(shape, dtype)
    cpu_backward(kind, first, target, weight, pos_weight, dout_ref, cpu_grad, reduction)
    assert_close(dfirst, cpu_grad.astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,weighted,with_pos_weight", ELEMENTWISE_VARIANTS)
def test_reductions_are_the_same_in_every_schedule(emulated_cuda, rng, schedules, kind, weighted, with_pos_weight,
                                                   dtype):
    """The documented 'reproducible bit for bit': a fixed tree, no atomics, so the same bits
    whatever order the threads and blocks run in (n = 17 blocks of 256 and a few items)."""
    first, target, weight, pos_weight = elementwise_inputs(kind, (13, 337), dtype, rng, weighted, with_pos_weight)
    for reduction in ("mean", "sum"):
        results = {}

        def run(seed):
            out = nan((1,), dtype)
            emulated_forward(emulated_cuda, kind, first, target, weight, pos_weight, out, reduction)
            results[seed] = out

        schedules(run)
        for seed, out in results.items():
            np.testing.assert_array_equal(out, results[SCHEDULES[0]], err_msg=f"schedule {seed}")


def test_reduction_past_the_1024_partial_sums(emulated_cuda, rng):
    """n > 1024 blocks * 256 threads: each thread of the first pass strides over two items
    (the reference is vectorised here: n is large; one dtype and reduction, as each run
    costs seconds on the emulator)."""
    dtype = np.float64
    n = 1024 * 256 + 1029
    logits, target, weight, _ = elementwise_inputs("bce_logits", (n,), dtype, rng, True, False)
    z, t = logits.astype(np.float64), target.astype(np.float64)
    terms = ((1 - t) * z + np.logaddexp(0, -z)) * weight.astype(np.float64)
    total = math.fsum(terms.tolist())
    for reduction, expected in (("mean", total / n),):
        out = nan((1,), dtype)
        emulated_forward(emulated_cuda, "bce_logits", logits, target, weight, None, out, reduction)
        assert_close(out, [expected], dtype)
        cpu = nan((), dtype)
        cpu_forward("bce_logits", logits, target, weight, None, cpu, reduction)
        assert_close(out, [np.float64(cpu)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["mse", "bce", "bce_logits"])
def test_elementwise_losses_of_nothing(emulated_cuda, kind, dtype):
    """n = 0: 'mean' is 0 / 0 = NaN and 'sum' 0 (as PyTorch); 'none' and backward write nothing."""
    empty = np.zeros(0, dtype=dtype)
    for reduction, expected in (("mean", np.nan), ("sum", 0.0)):
        out = np.full(1, 7.0, dtype=dtype)  # so that a NaN is the kernel's
        emulated_forward(emulated_cuda, kind, empty.reshape(0, 1), empty, None, None, out, reduction)
        np.testing.assert_array_equal(out, [expected])
    guard = nan(1, dtype)  # a one-element out that n = 0 must leave alone
    emulated_forward(emulated_cuda, kind, empty.reshape(0, 1), empty, None, None, guard, "none")
    for reduction in REDUCTIONS:
        emulated_backward(emulated_cuda, kind, empty.reshape(0, 1), empty, None, None, np.ones(1, dtype), guard,
                          reduction)
    assert np.isnan(guard).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_at_probabilities_0_and_1_is_clamped_as_on_the_cpu(emulated_cuda, reduction, dtype):
    """log(p) and log(1 - p) are floored at -100; the gradient's denominator at 1e-12."""
    prob = np.array([0.0, 1.0, 0.0, 1.0, 0.5, 1e-30 if dtype == np.float64 else 1e-20], dtype=dtype)
    target = np.array([0.0, 1.0, 1.0, 0.0, 0.25, 1.0], dtype=dtype)
    weight = np.array([1.0, 2.0, 0.5, 3.0, 1.5, 1.0], dtype=dtype)
    n = prob.size
    out = nan(out_shape(reduction, n), dtype)
    emulated_cuda.bce_loss_forward(prob, target, weight, out, n, reduction)
    assert_close(out, loss_ref.bce(prob, target, weight, reduction).reshape(-1), dtype)
    dout = np.linspace(0.5, 1.5, out.size).astype(dtype)
    dprob = nan(n, dtype)
    emulated_cuda.bce_loss_backward(prob, target, weight, dout, dprob, n, reduction)
    cpu = nan(n, dtype)
    _C.bce_loss_backward(prob, target, weight, dout if reduction == "none" else dout.reshape(()), cpu, reduction)
    assert np.isfinite(dprob).all()
    assert_close(dprob, cpu.astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_is_stable_for_large_logits(emulated_cuda, dtype):
    big = 80.0 if dtype == np.float32 else 700.0  # exp(big) overflows the dtype
    logits = np.array([big, -big, big, -big, 0.0], dtype=dtype)
    target = np.array([1.0, 0.0, 0.0, 1.0, 0.5], dtype=dtype)
    pos_weight = np.array([2.0], dtype=dtype)  # one class: every element
    out = nan(5, dtype)
    emulated_cuda.bce_with_logits_forward(logits, target, None, pos_weight, out, 5, 1, "none")
    assert_close(out, loss_ref.bce_logits_elements(logits.reshape(5, 1), target.reshape(5, 1), None, pos_weight)
                 .reshape(-1), dtype)
    grad = nan(5, dtype)
    emulated_cuda.bce_with_logits_backward(logits, target, None, pos_weight, np.ones(5, dtype), grad, 5, 1, "none")
    assert_close(grad, loss_ref.bce_logits_grad(logits.reshape(5, 1), target.reshape(5, 1), np.ones((5, 1)), None,
                                                pos_weight, "none").reshape(-1), dtype)


# --- cross-entropy ---------------------------------------------------------------------------
# One thread per row: row counts straddle 256; classes from 1 to past a block.
CROSS_ENTROPY_SHAPES = [(1, 1), (1, 5), (5, 3), (17, 10), (33, 257), (255, 4), (256, 3), (300, 7), (513, 2)]


def cross_entropy_case(rng, rows, classes, dtype, weighted, ignore_index, ignored_every):
    logits = (3 * rng.standard_normal((rows, classes))).astype(dtype)
    target = rng.integers(0, classes, rows).astype(np.int64)
    if ignored_every:
        target[::ignored_every] = ignore_index
    weight = rng.uniform(0.5, 2.0, classes).astype(dtype) if weighted else None
    return logits, target, weight


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("rows,classes", CROSS_ENTROPY_SHAPES)
@pytest.mark.parametrize("weighted,ignore_index,ignored_every",
                         [(False, -100, 0), (True, -100, 3), (False, 1, 4), (True, 0, 2)])
def test_cross_entropy_forward_backward(emulated_cuda, rng, rows, classes, reduction, dtype, weighted, ignore_index,
                                        ignored_every):
    """ignore_index -100 (PyTorch's default) or a real class (taken modulo classes; rows of
    that class count for nothing, and with one class every row is ignored: 'mean' is then
    NaN); the mean divides by the summed weights of the rows that count."""
    if ignore_index >= 0:
        ignore_index %= classes
    logits, target, weight = cross_entropy_case(rng, rows, classes, dtype, weighted, ignore_index, ignored_every)
    out = nan(out_shape(reduction, rows), dtype)
    emulated_cuda.cross_entropy_forward(logits, target, weight, out, rows, classes, ignore_index, reduction)
    assert_close(out, loss_ref.cross_entropy(logits, target, weight, ignore_index, reduction).reshape(-1), dtype)
    cpu = nan((rows,) if reduction == "none" else (), dtype)
    _C.cross_entropy_forward(logits, target, weight, cpu, ignore_index, reduction)
    assert_close(out, cpu.reshape(-1).astype(np.float64), dtype)

    dout = (rng.standard_normal(out_shape(reduction, rows)) + 0.5).astype(dtype)
    dout_ref = dout if reduction == "none" else dout.reshape(())
    dlogits = nan((rows, classes), dtype)
    emulated_cuda.cross_entropy_backward(logits, target, weight, dout, dlogits, rows, classes, ignore_index,
                                         reduction)
    assert_close(dlogits, loss_ref.cross_entropy_grad(logits, target, dout_ref, weight, ignore_index, reduction),
                 dtype)
    cpu_grad = nan((rows, classes), dtype)
    _C.cross_entropy_backward(logits, target, weight, dout_ref, cpu_grad, ignore_index, reduction)
    assert_close(dlogits, cpu_grad.astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_reductions_are_reproducible(emulated_cuda, rng, schedules, dtype):
    """rows past one reduction block; the same bits in every schedule, forward and backward
    (the backward's mean divides by a reduced sum of weights)."""
    rows, classes = 1100, 5
    logits, target, weight = cross_entropy_case(rng, rows, classes, dtype, True, -100, 7)
    for reduction in ("mean", "sum"):
        results = {}

        def run(seed):
            out = nan(1, dtype)
            emulated_cuda.cross_entropy_forward(logits, target, weight, out, rows, classes, -100, reduction)
            grad = nan((rows, classes), dtype)
            emulated_cuda.cross_entropy_backward(logits, target, weight, np.full(1, 0.75, dtype), grad, rows,
                                                 classes, -100, reduction)
            results[seed] = (out, grad)

        schedules(run)
        out0, grad0 = results[SCHEDULES[0]]
        for seed, (out, grad) in results.items():
            np.testing.assert_array_equal(out, out0, err_msg=f"schedule {seed}")
            np.testing.assert_array_equal(grad, grad0, err_msg=f"schedule {seed}")
        assert_close(out0, [loss_ref.cross_entropy(logits, target, weight, -100, reduction)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_with_every_row_ignored(emulated_cuda, dtype):
    """'mean' over no rows is NaN (as the CPU and PyTorch), 'sum' 0, 'none' all 0; every
    gradient is 0, also for 'mean' (ignored rows never see the 0 / 0 scale)."""
    rows, classes = 300, 4
    logits = np.zeros((rows, classes), dtype=dtype)
    target = np.full(rows, -100, dtype=np.int64)
    for reduction, expected in (("mean", [np.nan]), ("sum", [0.0]), ("none", np.zeros(rows))):
        out = np.full(out_shape(reduction, rows), 7.0, dtype=dtype)
        emulated_cuda.cross_entropy_forward(logits, target, None, out, rows, classes, -100, reduction)
        np.testing.assert_array_equal(out, expected)
        cpu = nan((rows,) if reduction == "none" else (), dtype)
        _C.cross_entropy_forward(logits, target, None, cpu, -100, reduction)
        np.testing.assert_array_equal(cpu.reshape(-1), expected)
        grad = nan((rows, classes), dtype)
        emulated_cuda.cross_entropy_backward(logits, target, None, np.ones(out.shape, dtype), grad, rows, classes,
                                             -100, reduction)
        np.testing.assert_array_equal(grad, np.zeros((rows, classes)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_of_no_rows(emulated_cuda, dtype):
    logits = np.zeros((0, 3), dtype=dtype)
    target = np.zeros(0, dtype=np.int64)
    for reduction, expected in (("mean", np.nan), ("sum", 0.0)):
        out = np.full(1, 7.0, dtype=dtype)
        emulated_cuda.cross_entropy_forward(logits, target, None, out, 0, 3, -100, reduction)
        np.testing.assert_array_equal(out, [expected])
    guard = nan(3, dtype)
    emulated_cuda.cross_entropy_forward(logits, target, None, guard, 0, 3, -100, "none")
    for reduction in REDUCTIONS:
        emulated_cuda.cross_entropy_backward(logits, target, None, np.ones(1, dtype), guard, 0, 3, -100, reduction)
    assert np.isnan(guard).all()


# --- input checks ----------------------------------------------------------------------------

@pytest.mark.parametrize("rows", [1, 5, 257, 1500])
@pytest.mark.parametrize("ignore_index", [-100, 2, 9])
def test_first_invalid_class_target(emulated_cuda, rng, rows, ignore_index):
    """The smallest offending row across every block, its value; ignore_index is always
    valid, also outside [0, classes); -1 (value untouched) when every target is valid."""
    classes = 4
    target = rng.integers(0, classes, rows).astype(np.int64)
    target[::3] = ignore_index
    assert emulated_cuda.first_invalid_class_target(target, rows, classes, ignore_index) == (-1, 0)
    for bad in (classes, -1, 1000):
        for positions in ([rows - 1], [rows // 2, rows - 1], [0, rows // 3, rows - 1]):
            flagged = target.copy()
            flagged[positions] = bad
            assert emulated_cuda.first_invalid_class_target(flagged, rows, classes, ignore_index) == \
                (min(positions), bad)
    # A larger value further on does not hide the first one.
    flagged = target.copy()
    flagged[rows - 1] = 77
    flagged[(rows - 1) // 2] = -5
    assert emulated_cuda.first_invalid_class_target(flagged, rows, classes, ignore_index)[0] == (rows - 1) // 2
    assert emulated_cuda.first_invalid_class_target(target[:0], 0, classes, ignore_index)[0] == -1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 256, 257, 3000])
def test_first_invalid_probability(emulated_cuda, rng, dtype, n):
    prob = rng.uniform(0.0, 1.0, n).astype(dtype)
    prob[0] = 0.0
    prob[-1] = 1.0  # both ends of [0, 1] are valid
    assert emulated_cuda.first_invalid_probability(prob, n) == (-1, 0.0)
    for bad in (1.5, -0.25, np.nan, np.inf, -np.inf, 1.0 + 1e-6):
        for positions in ([n - 1], [n // 2, n - 1], [0, n - 1]):
            flagged = prob.copy()
            flagged[positions] = bad
            index, value = emulated_cuda.first_invalid_probability(flagged, n)
            assert index == min(positions)
            np.testing.assert_array_equal(value, np.float64(dtype(bad)))
    assert emulated_cuda.first_invalid_probability(prob[:0], 0)[0] == -1


# --- softmax / log_softmax -------------------------------------------------------------------
# Rows (inner == 1): widths below, at and above the block widths 32, 64, 128, 256 and past
# several strides of the widest block.
ROW_DIMS = [1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 519]
# Lines (inner > 1): (outer, dim, inner), line counts outer * inner straddling 256.
LINE_SHAPES = [(1, 1, 2), (2, 3, 5), (3, 17, 4), (10, 5, 21), (1, 7, 256), (3, 2, 86), (1, 33, 257), (4, 1, 3)]


def softmax_case(rng, shape, dtype):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, dy


def check_softmax(cuda, x, dy, outer, dim, inner, log, dtype):
    """Forward and backward on the emulator against the reference and the CPU; x (outer, dim, inner)."""
    shape = (outer, dim, inner)
    y = nan(shape, dtype)
    cuda.softmax_forward(x, y, outer, dim, inner, log)
    assert_close(y, softmax_ref.softmax(x, 1, log=log), dtype)
    y_cpu = nan(shape, dtype)
    _C.softmax_forward(x, y_cpu, 1, log)
    assert_close(y, y_cpu.astype(np.float64), dtype)

    dx = nan(shape, dtype)
    cuda.softmax_backward(y_cpu, dy, dx, outer, dim, inner, log)
    assert_close(dx, softmax_ref.softmax_grad(x, dy, 1, log=log), dtype, factor=4)
    dx_cpu = nan(shape, dtype)
    _C.softmax_backward(y_cpu, dy, dx_cpu, 1, log)
    assert_close(dx, dx_cpu.astype(np.float64), dtype, factor=4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dim", ROW_DIMS)
def test_softmax_rows(emulated_cuda, rng, dim, log, dtype):
    outer = 2 if dim <= 256 else 1  # the reference's Jacobian costs dim^2 per row
    x, dy = softmax_case(rng, (outer, dim, 1), dtype)
    check_softmax(emulated_cuda, x, dy, outer, dim, 1, log, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
def test_softmax_many_short_rows(emulated_cuda, rng, log, dtype):
    """Many blocks of 32 threads, most of them idle (dim 3)."""
    x, dy = softmax_case(rng, (150, 3, 1), dtype)
    check_softmax(emulated_cuda, x, dy, 150, 3, 1, log, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("outer,dim,inner", LINE_SHAPES)
def test_softmax_lines(emulated_cuda, rng, outer, dim, inner, log, dtype):
    x, dy = softmax_case(rng, (outer, dim, inner), dtype)
    check_softmax(emulated_cuda, x, dy, outer, dim, inner, log, dtype)


@pytest.mark.parametrize("inner", [1, 3])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_special_values_as_on_the_cpu(emulated_cuda, log, inner):
    """A NaN anywhere in a line makes it NaN, an all -inf line is NaN, +inf gives NaN; the
    other lines are untouched by them. The position of the NaN varies across the block's
    warps (lanes 0, 31, 32, 200) so that every step of the reduction must carry it."""
    dim = 257
    rows = []
    for position in (0, 31, 32, 200, 256):
        row = np.linspace(-2.0, 2.0, dim)
        row[position] = np.nan
        rows.append(row)
    rows.append(np.full(dim, -np.inf))
    inf_row = np.linspace(-1.0, 1.0, dim)
    inf_row[40] = np.inf
    rows.append(inf_row)
    rows.append(np.linspace(-3.0, 3.0, dim))
    x2 = np.array(rows, dtype=np.float32)  # (outer, dim)
    outer = x2.shape[0]
    # (outer, dim, inner): the same line repeated along inner
    x = np.ascontiguousarray(np.repeat(x2[:, :, None], inner, axis=2))
    y = nan(x.shape, np.float32)
    emulated_cuda.softmax_forward(x, y, outer, dim, inner, log)
    y_cpu = nan(x.shape, np.float32)
    _C.softmax_forward(x, y_cpu, 1, log)
    assert np.isnan(y[:-1]).all()  # NaN where the CPU has NaN
    np.testing.assert_allclose(y, y_cpu, **tol(np.float32))
    assert np.isfinite(y[-1]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inner", [1, 4])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_in_place(emulated_cuda, rng, inner, log, dtype):
    """y may be x, and dx may be dy or y: every element is read and written by one thread."""
    outer, dim = 5, 70
    x, dy = softmax_case(rng, (outer, dim, inner), dtype)
    y = nan(x.shape, dtype)
    emulated_cuda.softmax_forward(x, y, outer, dim, inner, log)
    in_place = x.copy()
    emulated_cuda.softmax_forward(in_place, in_place, outer, dim, inner, log)
    np.testing.assert_array_equal(in_place, y)

    dx = nan(x.shape, dtype)
    emulated_cuda.softmax_backward(y, dy, dx, outer, dim, inner, log)
    into_dy = dy.copy()
    emulated_cuda.softmax_backward(y, into_dy, into_dy, outer, dim, inner, log)
    np.testing.assert_array_equal(into_dy, dx)
    into_y = y.copy()
    emulated_cuda.softmax_backward(into_y, dy, into_y, outer, dim, inner, log)
    np.testing.assert_array_equal(into_y, dx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inner", [1, 3])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_is_the_same_in_every_schedule(emulated_cuda, rng, schedules, inner, log, dtype):
    """The block reductions are a fixed tree: the same bits whatever the thread order."""
    outer, dim = 4, 300
    x, dy = softmax_case(rng, (outer, dim, inner), dtype)
    results = {}

    def run(seed):
        y = nan(x.shape, dtype)
        emulated_cuda.softmax_forward(x, y, outer, dim, inner, log)
        dx = nan(x.shape, dtype)
        emulated_cuda.softmax_backward(y, dy, dx, outer, dim, inner, log)
        results[seed] = (y, dx)

    schedules(run)
    y0, dx0 = results[SCHEDULES[0]]
    for seed, (y, dx) in results.items():
        np.testing.assert_array_equal(y, y0, err_msg=f"schedule {seed}")
        np.testing.assert_array_equal(dx, dx0, err_msg=f"schedule {seed}")


@pytest.mark.parametrize("outer,dim,inner", [(0, 5, 1), (3, 0, 1), (0, 5, 4), (3, 0, 4), (3, 5, 0)])
def test_softmax_of_nothing_writes_nothing(emulated_cuda, outer, dim, inner):
    guard = nan(4, np.float64)  # stands for y / dx: no element may be written
    source = np.zeros(4)
    emulated_cuda.softmax_forward(source, guard, outer, dim, inner, False)
    emulated_cuda.softmax_forward(source, guard, outer, dim, inner, True)
    emulated_cuda.softmax_backward(source, source, guard, outer, dim, inner, False)
    emulated_cuda.softmax_backward(source, source, guard, outer, dim, inner, True)
    assert np.isnan(guard).all()
