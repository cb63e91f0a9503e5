"""The CUDA convolution, pooling and batch-norm kernels (kernels/cuda/conv.cu, pooling.cu,
batch_norm.cu), run by the CPU emulator (tests/cuda_emulation), against the float64
references and the CPU kernels of ranvier._C on the same inputs.

The contract is tests/test_cuda_conv.py's and tests/test_cuda_pool_bn.py's (which need a GPU):
convolution within the references' tolerance; pooling the CPU's bits (forward and both
backward kernels); batch norm within tolerance of the CPU and the same bits every run. Every
output starts as NaN, so that an element a kernel fails to write shows. The emulator runs
threads and blocks in a shuffled order (conftest's emulated_cuda), so a missing barrier or a
race gives wrong numbers; the reproducibility tests rerun under other orders.

conv.cu's backward-weight pass splits the batch into slices of images (split-K) and sums
their partial gradients in passes of what its workspace holds. This build of the emulation
caps that workspace at 64 KiB (build.py: RANVIER_CONV_WORKSPACE_BYTES; 256 MiB on a GPU), so
that the cases here take several passes where a GPU would need gigabytes to do so.

Shapes with groups of few channels and filters (depthwise ones) go to direct kernels instead
of the implicit GEMM (conv.h: conv2d_uses_direct_kernels). Each case runs through both algorithms,
by moving that boundary (set_conv_direct_max_group_size).
"""

import math

import numpy as np
import pytest
from conftest import EMULATION_SCHEDULE, emulation_schedule, tol
from references import batch_norm as bn_ref
from references import pooling as pool_ref
from references.conv import conv_backward, conv_forward
from test_cuda_pool_bn import (ADAPTIVE2D_GPU_CASES, AVG2D_GPU_CASES, BN_CPU_SHAPES, BN_REF_SHAPES,
                               MAX2D_GPU_CASES, _assert_close, _bn_inputs, _sizes, _window)
from test_ops_conv import CASES_1D, CASES_2D, assert_matches
from test_ops_pooling import ADAPTIVE1D_CASES, AVG1D_CASES, MAX1D_CASES, _distinct

from ranvier import _C

DTYPES = [np.float32, np.float64]


def nan(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


# --- convolution -------------------------------------------------------------------------
# A case is test_ops_conv's tuple: (x shape, weight shape, stride, padding as ops takes it,
# padding as (before, after) per axis, dilation, groups, bias).

# Beyond the CPU's cases: every GEMM tile edge (K = 130 filters, C*R*S = 17*9 = 153 deep, 72
# output pixels), prime sizes with groups and dilation, and batches the backward-weight pass
# splits into several slices of images (the last one shorter) and several passes (also with
# groups), through the gathered column matrix and through the direct 1x1 path.
EXTRA_2D = {
    "larger_than_the_gemm_tiles": ((1, 17, 9, 8), (130, 17, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 1, True),
    "primes_groups_dilation_stride": ((3, 6, 13, 11), (9, 2, 3, 2), (2, 3), None, ((2, 1), (0, 3)), (2, 3), 3,
                                      True),
    "slices_3x3": ((23, 3, 9, 8), (5, 3, 3, 3), 1, None, ((1, 1), (1, 1)), 1, 1, True),
    "slices_groups_stride": ((41, 4, 10, 7), (6, 2, 3, 2), (2, 1), None, ((1, 2), (0, 1)), (1, 2), 2, True),
    "slices_direct_1x1": ((37, 24, 5, 3), (20, 24, 1, 1), 1, None, ((0, 0), (0, 0)), 1, 1, True),
    "slices_direct_1x1_groups": ((29, 40, 3, 5), (32, 20, 1, 1), 1, None, ((0, 0), (0, 0)), 1, 2, False),
    "slices_in_passes": ((24, 16, 5, 6), (32, 16, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 1, True),
    "slices_in_passes_groups": ((40, 16, 8, 8), (64, 4, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 4, True),
    "batch1_large_image": ((1, 9, 23, 19), (4, 9, 3, 3), 1, None, ((1, 1), (1, 1)), 1, 1, True),
}
EXTRA_1D = {
    "slices_dna_like": ((41, 4, 60), (8, 4, 11), 1, None, ((5, 5),), 1, 1, True),
    "primes_stride_dilation_groups": ((5, 6, 37), (3, 2, 5), 3, None, ((4, 1),), 2, 3, True),
}
CONV2D_CASES = {**CASES_2D, **EXTRA_2D}
CONV1D_CASES = {**CASES_1D, **EXTRA_1D}


def conv_shape(emulated, case, spatial):
    """The Conv2dShape / Conv1dShape of a case (what ranvier._C's binding computes)."""
    x_shape, w_shape, stride, _, pads, dilation, groups, _ = case
    if spatial == 2:
        s = emulated.Conv2dShape()
        s.in_height, s.in_width = x_shape[2:]
        s.kernel_height, s.kernel_width = w_shape[2:]
        s.stride_height, s.stride_width = _sizes(stride, 2)
        (s.pad_top, s.pad_bottom), (s.pad_left, s.pad_right) = pads
        s.dilation_height, s.dilation_width = _sizes(dilation, 2)
    else:
        s = emulated.Conv1dShape()
        s.in_length, s.kernel_size = x_shape[2], w_shape[2]
        s.stride, s.dilation = stride, dilation
        (s.pad_left, s.pad_right), = pads
    s.batch, s.in_channels, s.out_channels, s.groups = x_shape[0], x_shape[1], w_shape[0], groups
    return s


def _cpu_hyper(case, spatial):
    """(stride, padding, dilation, groups) as ranvier._C's conv functions take them."""
    _, _, stride, _, pads, dilation, groups, _ = case
    return (list(_sizes(stride, spatial)), [p for pair in pads for p in pair], list(_sizes(dilation, spatial)),
            groups)


def _ref_hyper(case, spatial):
    _, _, stride, _, pads, dilation, groups, _ = case
    return dict(stride=_sizes(stride, spatial), padding=pads, dilation=_sizes(dilation, spatial), groups=groups)


def _check_conv(emulated, rng, case, dtype, spatial):
    x_shape, w_shape, *_, with_bias = case
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if with_bias else None
    shape = conv_shape(emulated, case, spatial)
    ref_kwargs, cpu_args = _ref_hyper(case, spatial), _cpu_hyper(case, spatial)
    prefix = f"conv{spatial}d"
    cpu = lambda name: getattr(_C, f"{prefix}_{name}")  # noqa: E731
    emu = lambda name: getattr(emulated, f"{prefix}_{name}")  # noqa: E731

    expected = conv_forward(x, w, b, **ref_kwargs)
    y = nan(expected.shape, dtype)
    emu("forward")(shape, x, w, b, y)
    assert_matches(y, expected, dtype)
    y_cpu = nan(expected.shape, dtype)
    cpu("forward")(x, w, b, y_cpu, *cpu_args)
    assert_matches(y, y_cpu.astype(np.float64), dtype)

    dy = rng.standard_normal(expected.shape).astype(dtype)
    dx_ref, dw_ref, db_ref = conv_backward(x, w, dy, **ref_kwargs)
    dx = nan(x_shape, dtype)
    emu("backward_input")(shape, dy, w, dx)
    assert_matches(dx, dx_ref, dtype)
    dx_cpu = nan(x_shape, dtype)
    cpu("backward_input")(dy, w, dx_cpu, *cpu_args)
    assert_matches(dx, dx_cpu.astype(np.float64), dtype)

    dw = nan(w_shape, dtype)
    db = nan(w_shape[0], dtype) if with_bias else None
    emu("backward_weight")(shape, dy, x, dw, db)
    assert_matches(dw, dw_ref, dtype)
    dw_cpu = nan(w_shape, dtype)
    db_cpu = nan(w_shape[0], dtype) if with_bias else None
    cpu("backward_weight")(dy, x, dw_cpu, db_cpu, *cpu_args)
    assert_matches(dw, dw_cpu.astype(np.float64), dtype)
    if with_bias:
        assert_matches(db, db_ref, dtype)
        assert_matches(db, db_cpu.astype(np.float64), dtype)


# conv_direct_max_group_size values that send every shape to one algorithm.
ALGORITHMS = {"implicit_gemm": 0, "direct": 2**30}
# The direct weight gradient runs one block per weight element, which the emulator takes
# seconds per thousand to run: larger weights (GEMM tiling and split-K cases) go through the
# implicit GEMM only.
DIRECT_MAX_WEIGHT = 2000


def _case_algorithms(cases):
    return [(name, algorithm) for name, case in cases.items() for algorithm in ALGORITHMS
            if algorithm != "direct" or math.prod(case[1]) <= DIRECT_MAX_WEIGHT]


def _check_conv_with(emulated, rng, case, dtype, spatial, algorithm):
    default = emulated.conv_direct_max_group_size()
    emulated.set_conv_direct_max_group_size(ALGORITHMS[algorithm])
    try:
        assert emulated.conv_uses_direct_kernels(conv_shape(emulated, case, spatial)) == (algorithm == "direct")
        _check_conv(emulated, rng, case, dtype, spatial)
    finally:
        emulated.set_conv_direct_max_group_size(default)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, algorithm", _case_algorithms(CONV2D_CASES))
def test_conv2d_matches_reference_and_cpu(emulated_cuda, rng, name, algorithm, dtype):
    _check_conv_with(emulated_cuda, rng, CONV2D_CASES[name], dtype, 2, algorithm)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, algorithm", _case_algorithms(CONV1D_CASES))
def test_conv1d_matches_reference_and_cpu(emulated_cuda, rng, name, algorithm, dtype):
    _check_conv_with(emulated_cuda, rng, CONV1D_CASES[name], dtype, 1, algorithm)


def test_direct_kernels_take_the_small_groups_by_default(emulated_cuda):
    """Depthwise convolutions (and other groups of at most 4 channels and filters) go to the
    direct kernels, everything else to the implicit GEMM; the knob refuses a negative size."""
    direct = {name for name, case in CONV2D_CASES.items()
              if emulated_cuda.conv_uses_direct_kernels(conv_shape(emulated_cuda, case, 2))}
    assert {"depthwise", "depthwise_multiplier_2", "groups", "3x3_pad1"} <= direct
    assert not {"larger_than_the_gemm_tiles", "slices_in_passes_groups", "1x1_direct"} & direct
    with pytest.raises(ValueError, match="size must be >= 0"):
        emulated_cuda.set_conv_direct_max_group_size(-1)
    assert emulated_cuda.conv_direct_max_group_size() == 4


@pytest.mark.parametrize("name", [n for n in EXTRA_2D if n.startswith("slices_")] + ["several_image_blocks"])
def test_the_slice_cases_do_split_the_batch(emulated_cuda, name):
    """The slice cases above exercise what they are named for: the backward-weight pass splits
    their batch into several slices of images, the last one shorter, and the
    "slices_in_passes" cases need several passes of the workspace in both precisions, the last
    pass shorter."""
    s = conv_shape(emulated_cuda, CONV2D_CASES[name], 2)
    weight = s.out_channels * s.in_channels // s.groups * s.kernel_height * s.kernel_width
    shorter_last_pass = []
    for dtype in DTYPES:
        itemsize = np.dtype(dtype).itemsize
        slices, images_per_slice, per_pass = emulated_cuda.conv2d_weight_grad_split(s, itemsize)
        assert slices > 1
        assert (slices - 1) * images_per_slice < s.batch <= slices * images_per_slice
        assert per_pass * weight * itemsize <= max(emulated_cuda.conv_workspace_bytes, weight * itemsize)
        if name.startswith("slices_in_passes"):
            assert per_pass < slices
            shorter_last_pass.append(slices % per_pass != 0)
    assert not name.startswith("slices_in_passes") or any(shorter_last_pass)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv2d_empty_batch(emulated_cuda, rng, dtype, with_bias):
    """N = 0: nothing to write in y and dx; dw and dbias are zeros (a sum over no images)."""
    case = ((0, 3, 5, 5), (4, 3, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 1, with_bias)
    s = conv_shape(emulated_cuda, case, 2)
    x, dy = np.zeros((0, 3, 5, 5), dtype), np.zeros((0, 4, 5, 5), dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    emulated_cuda.conv2d_forward(s, x, w, w[:, 0, 0, 0].copy() if with_bias else None, np.zeros_like(dy))
    emulated_cuda.conv2d_backward_input(s, dy, w, np.zeros_like(x))
    dw, db = nan(w.shape, dtype), nan(4, dtype) if with_bias else None
    emulated_cuda.conv2d_backward_weight(s, dy, x, dw, db)
    np.testing.assert_array_equal(dw, np.zeros(w.shape, dtype))
    if with_bias:
        np.testing.assert_array_equal(db, np.zeros(4, dtype))


def test_conv_backward_weight_is_the_same_bits_in_any_schedule(emulated_cuda, rng):
    """conv.cu sums the slices' partial weight gradients in a fixed order and the backward-input
    pass gathers without atomics: the thread and block order must not change a bit."""
    case = EXTRA_2D["slices_groups_stride"]
    s = conv_shape(emulated_cuda, case, 2)
    x = rng.standard_normal(case[0])
    w = rng.standard_normal(case[1])
    dy = rng.standard_normal((s.batch, s.out_channels, s.out_height(), s.out_width()))
    results = []
    for seed in [0, 1, 99, EMULATION_SCHEDULE]:
        with emulation_schedule(emulated_cuda, seed):
            dw, db, dx = nan(w.shape, np.float64), nan(s.out_channels, np.float64), nan(x.shape, np.float64)
            emulated_cuda.conv2d_backward_weight(s, dy, x, dw, db)
            emulated_cuda.conv2d_backward_input(s, dy, w, dx)
            results.append((dw, db, dx))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


# --- pooling -------------------------------------------------------------------------------

def pool_geometry(emulated, shape, out_shape, kernel, stride, padding, dilation=None):
    """A Pool2dGeometry for x (N, C, H, W) -> (N, C, out_h, out_w), or the 1-D case on (N, C, L)
    as the H = 1 plane (kernel, stride 1, padding 0 along H), as ranvier._C's binding maps it."""
    g = emulated.Pool2dGeometry()
    g.planes = shape[0] * shape[1]
    dilation = (1,) * len(kernel) if dilation is None else dilation  # average pooling: 1
    if len(shape) == 3:
        shape, out_shape = (*shape[:2], 1, shape[2]), (*out_shape[:2], 1, out_shape[2])
        kernel, stride, padding, dilation = (1, *kernel), (1, *stride), (0, *padding), (1, *dilation)
    g.in_h, g.in_w = shape[2:]
    g.out_h, g.out_w = out_shape[2:]
    g.kernel_h, g.kernel_w = kernel
    g.stride_h, g.stride_w = stride
    g.pad_h, g.pad_w = padding
    g.dilation_h, g.dilation_w = dilation
    return g


# Beyond the GPU tests' cases: a 1 x 1 window over a plane larger than one 256-thread block,
# dilation with padding and ceil_mode on both axes, and a window as large as the input.
MAX2D_EMULATED_CASES = MAX2D_GPU_CASES + [
    ((1, 2, 17, 19), dict(kernel_size=1)),
    ((2, 2, 19, 23), dict(kernel_size=3, stride=(3, 2), padding=(1, 1), dilation=(2, 3), ceil_mode=True)),
    ((3, 2, 7, 5), dict(kernel_size=(7, 5))),
]
AVG2D_EMULATED_CASES = AVG2D_GPU_CASES + [
    ((2, 3, 29, 31), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True, count_include_pad=False)),
    ((2, 2, 11, 13), dict(kernel_size=(3, 5), stride=(2, 3), padding=(1, 2), divisor_override=7)),
    ((1, 2, 9, 10), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False,
                         divisor_override=5)),
]


def _check_max_pool(emulated, rng, shape, window, dtype, x=None):
    dims = len(shape) - 2
    kernel, stride, padding, dilation, ceil_mode = _window(dims, **window)
    x = _distinct(rng, shape, dtype) if x is None else x
    y_ref, idx_ref = (pool_ref.max_pool2d if dims == 2 else pool_ref.max_pool1d)(x, **window)
    g = pool_geometry(emulated, shape, y_ref.shape, kernel, stride, padding, dilation)

    y, idx = nan(y_ref.shape, dtype), np.full(y_ref.shape, -7, np.int64)
    emulated.max_pool2d_forward(g, x, y, idx)
    y_cpu, idx_cpu = nan(y_ref.shape, dtype), np.full(y_ref.shape, -7, np.int64)
    _C.max_pool_forward(x, y_cpu, idx_cpu, kernel, stride, padding, dilation, ceil_mode)
    np.testing.assert_array_equal(y, y_cpu)
    np.testing.assert_array_equal(idx, idx_cpu)
    np.testing.assert_array_equal(y, y_ref.astype(dtype))  # a max is exact
    np.testing.assert_array_equal(idx, idx_ref)

    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    dx_cpu = nan(shape, dtype)
    _C.max_pool_backward(dy, idx_cpu, dx_cpu)
    dx_ref = (pool_ref.max_pool2d_grad if dims == 2 else pool_ref.max_pool1d_grad)(x, dy, **window)
    # The gather kernel (with the window) and the one-thread-per-plane kernel: the CPU's bits.
    for backward in (emulated.max_pool2d_backward, emulated.max_pool2d_backward_by_plane):
        dx = nan(shape, dtype)
        backward(g, dy, idx, dx)
        np.testing.assert_array_equal(dx, dx_cpu)
        np.testing.assert_allclose(dx, dx_ref, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window", MAX2D_EMULATED_CASES + MAX1D_CASES)
def test_max_pool_matches_reference_and_cpu(emulated_cuda, rng, shape, window, dtype):
    _check_max_pool(emulated_cuda, rng, shape, window, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_ties_nan_and_infinities_pick_the_cpu_indices(emulated_cuda, rng, dtype):
    # Few distinct values (many ties inside overlapping windows), NaNs, and a window of -inf
    # only (its arg-max is its first element, as the CPU's).
    x = rng.integers(0, 3, size=(2, 3, 11, 13)).astype(dtype)
    x[0, 1, 2, 3] = x[1, 2, 7, 7] = x[1, 2, 8, 8] = np.nan
    x[0, 0, :4, :4] = -np.inf
    x[1, 0, 5, :] = np.inf
    _check_max_pool(emulated_cuda, rng, x.shape, dict(kernel_size=3, stride=2, padding=1), dtype, x=x)
    _check_max_pool(emulated_cuda, rng, x.shape, dict(kernel_size=(2, 4), stride=1), dtype, x=x)
    _check_max_pool(emulated_cuda, rng, x.shape, dict(kernel_size=3, stride=2, dilation=2, ceil_mode=True),
                    dtype, x=x)


def test_max_pool_backward_adds_every_output_that_picked_an_element(emulated_cuda):
    """A 3x3 window with stride 1 over a plane whose maximum is in the middle: every window
    picks that element, whose gradient is then the sum of all of dy (in output order)."""
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0
    g = pool_geometry(emulated_cuda, x.shape, (1, 1, 3, 3), (3, 3), (1, 1), (0, 0))
    y, idx = nan((1, 1, 3, 3), np.float64), np.full((1, 1, 3, 3), -7, np.int64)
    emulated_cuda.max_pool2d_forward(g, x, y, idx)
    np.testing.assert_array_equal(idx, np.full((1, 1, 3, 3), 12))
    dy = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    for backward in (emulated_cuda.max_pool2d_backward, emulated_cuda.max_pool2d_backward_by_plane):
        dx = nan(x.shape, np.float64)
        backward(g, dy, idx, dx)
        expected = np.zeros(x.shape)
        expected[0, 0, 2, 2] = 45.0
        np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("n", [1, 5, 255, 256, 257, 1000])
def test_first_out_of_plane_index(emulated_cuda, rng, n):
    plane = 16
    indices = rng.integers(0, plane, n).astype(np.int64)
    assert emulated_cuda.first_out_of_plane_index(indices, n, plane) == (-1, -12345)
    assert emulated_cuda.first_out_of_plane_index(indices, 0, plane)[0] == -1
    # Several bad values, the first in a later block than the others are not: the minimum
    # position wins whatever order the threads run in.
    bad = indices.copy()
    bad[n - 1] = plane
    assert emulated_cuda.first_out_of_plane_index(bad, n, plane) == (n - 1, plane)
    first = n // 3
    bad[first] = -1
    if n > 2:
        bad[(first + n) // 2] = 10**12
    assert emulated_cuda.first_out_of_plane_index(bad, n, plane) == (first, -1)
    # n counts: a bad value past the first n is not looked at.
    assert emulated_cuda.first_out_of_plane_index(bad, first, plane) == (-1, -12345)


def _check_avg_pool(emulated, rng, shape, window, dtype):
    dims = len(shape) - 2
    kernel, stride, padding, _, ceil_mode = _window(dims, **window)
    count_include_pad = window.get("count_include_pad", True)
    divisor = window.get("divisor_override") or 0
    x = rng.standard_normal(shape).astype(dtype)
    y_ref = (pool_ref.avg_pool2d if dims == 2 else pool_ref.avg_pool1d)(x, **window)
    g = pool_geometry(emulated, shape, y_ref.shape, kernel, stride, padding)

    y = nan(y_ref.shape, dtype)
    emulated.avg_pool2d_forward(g, count_include_pad, divisor, x, y)
    y_cpu = nan(y_ref.shape, dtype)
    _C.avg_pool_forward(x, y_cpu, kernel, stride, padding, ceil_mode, count_include_pad, divisor)
    np.testing.assert_array_equal(y, y_cpu)
    np.testing.assert_allclose(y, y_ref, **tol(dtype))

    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    dx_ref = (pool_ref.avg_pool2d_grad if dims == 2 else pool_ref.avg_pool1d_grad)(x, dy, **window)
    dx = nan(shape, dtype)
    emulated.avg_pool2d_backward(g, count_include_pad, divisor, dy, dx)
    dx_cpu = nan(shape, dtype)
    _C.avg_pool_backward(dy, dx_cpu, kernel, stride, padding, ceil_mode, count_include_pad, divisor)
    np.testing.assert_array_equal(dx, dx_cpu)
    np.testing.assert_allclose(dx, dx_ref, **tol(dtype))


AVG1D_EMULATED_CASES = AVG1D_CASES + [((2, 3, 31), dict(kernel_size=3, padding=1, count_include_pad=False)),
                                      ((1, 2, 300), dict(kernel_size=5, stride=2, padding=2, ceil_mode=True))]


# Each case with count_include_pad as it says, or both ways when it does not say.
AVG_EMULATED_CASES = [(shape, window if "count_include_pad" in window else {**window, "count_include_pad": include})
                      for shape, window in AVG2D_EMULATED_CASES + AVG1D_EMULATED_CASES
                      for include in ([None] if "count_include_pad" in window else [True, False])]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window", AVG_EMULATED_CASES)
def test_avg_pool_matches_reference_and_cpu(emulated_cuda, rng, shape, window, dtype):
    _check_avg_pool(emulated_cuda, rng, shape, window, dtype)


def _check_adaptive(emulated, rng, shape, out_spatial, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    planes = shape[0] * shape[1]
    if len(shape) == 3:
        y_ref = pool_ref.adaptive_avg_pool1d(x, out_spatial[0])
        in_h, in_w, out_h, out_w = 1, shape[2], 1, out_spatial[0]
    else:
        y_ref = pool_ref.adaptive_avg_pool2d(x, out_spatial)
        (in_h, in_w), (out_h, out_w) = shape[2:], out_spatial
    y = nan(y_ref.shape, dtype)
    emulated.adaptive_avg_pool2d_forward(planes, in_h, in_w, out_h, out_w, x, y)
    y_cpu = nan(y_ref.shape, dtype)
    _C.adaptive_avg_pool_forward(x, y_cpu)
    np.testing.assert_array_equal(y, y_cpu)
    np.testing.assert_allclose(y, y_ref, **tol(dtype))

    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    dx_ref = (pool_ref.adaptive_avg_pool1d_grad if len(shape) == 3 else pool_ref.adaptive_avg_pool2d_grad)(x, dy)
    dx = nan(shape, dtype)
    emulated.adaptive_avg_pool2d_backward(planes, in_h, in_w, out_h, out_w, dy, dx)
    dx_cpu = nan(shape, dtype)
    _C.adaptive_avg_pool_backward(dy, dx_cpu)
    np.testing.assert_array_equal(dx, dx_cpu)
    np.testing.assert_allclose(dx, dx_ref, **tol(dtype))


def _adaptive_out(shape, output_size):
    """The output's spatial sizes (None keeps the input's size, as PyTorch)."""
    sizes = _sizes(output_size, len(shape) - 2)
    return tuple(s if o is None else o for s, o in zip(shape[2:], sizes))


ADAPTIVE_EMULATED_CASES = ([(shape, _adaptive_out(shape, o)) for shape, o in ADAPTIVE2D_GPU_CASES + ADAPTIVE1D_CASES]
                           + [((2, 3, 19, 17), (19, 17)), ((1, 2, 23, 3), (5, 7)), ((3, 2, 301), (7,))])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, out_spatial", ADAPTIVE_EMULATED_CASES)
def test_adaptive_avg_pool_matches_reference_and_cpu(emulated_cuda, rng, shape, out_spatial, dtype):
    _check_adaptive(emulated_cuda, rng, shape, out_spatial, dtype)


# --- batch normalisation -------------------------------------------------------------------

def _ncl(shape):
    """x's (N, C, L) view: L is the product of the spatial sizes (1 for (N, C))."""
    return shape[0], shape[1], int(np.prod(shape[2:], dtype=np.int64))


def bn_forward(emulated, x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5,
               update_running=True):
    """The emulated forward on copies, outputs NaN-filled: (y, save_mean, save_invstd,
    running_mean, running_var) with the running stats as updated (training) or unchanged."""
    n, c, l = _ncl(x.shape)
    y, save_mean, save_invstd = nan(x.shape, x.dtype), nan(c, x.dtype), nan(c, x.dtype)
    running_mean, running_var = running_mean.copy(), running_var.copy()
    if training:
        emulated.batch_norm_forward_training(x, weight, bias, y, save_mean, save_invstd,
                                             running_mean if update_running else None,
                                             running_var if update_running else None, n, c, l, momentum, eps)
    else:
        emulated.batch_norm_forward_eval(x, weight, bias, running_mean, running_var, y, save_mean, save_invstd,
                                         n, c, l, eps)
    return y, save_mean, save_invstd, running_mean, running_var


def bn_backward(emulated, dy, x, save_mean, save_invstd, weight, training, want_dx=True):
    n, c, l = _ncl(x.shape)
    dx = nan(x.shape, x.dtype) if want_dx else None
    dweight, dbias = nan(c, x.dtype), nan(c, x.dtype)
    emulated.batch_norm_backward(dy, x, save_mean, save_invstd, weight, dx, dweight, dbias, n, c, l, training)
    return dx, dweight, dbias


# Beyond the GPU tests' shapes: L straddling the 256-thread blocks, C = 1 with many partial
# blocks per channel. (7, 300) becomes (7, 37): the emulator runs a 256-thread block per
# channel and pass, ~6 s for 300 channels, and nothing in the kernels changes past C = 37.
BN_EMULATED_REF_SHAPES = BN_REF_SHAPES + [(2, 2, 129), (1, 1, 257), (2, 3, 1, 1)]
BN_EMULATED_CPU_SHAPES = [s for s in BN_CPU_SHAPES if s != (7, 300)] + [(7, 37), (3, 1, 4097), (5, 7, 256)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_EMULATED_REF_SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_reference(emulated_cuda, rng, shape, training, affine, dtype):
    if training and _ncl(shape)[0] * _ncl(shape)[2] < 2:
        pytest.skip("training needs more than one value per channel")
    x, weight, bias, running_mean, running_var = _bn_inputs(rng, shape, dtype, affine)
    y, save_mean, save_invstd, new_mean, new_var = bn_forward(emulated_cuda, x, weight, bias, running_mean,
                                                              running_var, training, momentum=0.3)
    y_ref, mean_ref, invstd_ref, new_mean_ref, new_var_ref = bn_ref.batch_norm(
        x, running_mean, running_var, weight, bias, training=training, momentum=0.3)
    _assert_close(y, y_ref, dtype, 10)
    _assert_close(save_mean, mean_ref, dtype)
    _assert_close(save_invstd, invstd_ref, dtype)
    _assert_close(new_mean, new_mean_ref, dtype)
    _assert_close(new_var, new_var_ref, dtype)

    dy = rng.standard_normal(shape).astype(dtype)
    dx, dweight, dbias = bn_backward(emulated_cuda, dy, x, save_mean, save_invstd, weight, training)
    dx_ref, dw_ref, db_ref = bn_ref.batch_norm_grad(x, dy, weight, training=training, running_mean=running_mean,
                                                    running_var=running_var)
    _assert_close(dx, dx_ref, dtype, 10)
    _assert_close(dweight, dw_ref, dtype, 10)
    _assert_close(dbias, db_ref, dtype, 10)


def _bn_cpu(x, weight, bias, running_mean, running_var, training, dy):
    """ranvier._C's forward and backward on the same inputs: (forward outputs as bn_forward's,
    (dx, dweight, dbias))."""
    c = x.shape[1]
    running_mean, running_var = running_mean.copy(), running_var.copy()
    y, save_mean, save_invstd = nan(x.shape, x.dtype), nan(c, x.dtype), nan(c, x.dtype)
    _C.batch_norm_forward(x, y, weight, bias, running_mean, running_var, save_mean, save_invstd, training, 0.1,
                          1e-5)
    dx, dweight, dbias = nan(x.shape, x.dtype), nan(c, x.dtype), nan(c, x.dtype)
    _C.batch_norm_backward(dy, x, save_mean, save_invstd, weight, dx, dweight, dbias, training)
    return (y, save_mean, save_invstd, running_mean, running_var), (dx, dweight, dbias)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_EMULATED_CPU_SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_the_cpu(emulated_cuda, rng, shape, training, dtype):
    x, weight, bias, running_mean, running_var = _bn_inputs(rng, shape, dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    forward_cpu, grads_cpu = _bn_cpu(x, weight, bias, running_mean, running_var, training, dy)
    forward = bn_forward(emulated_cuda, x, weight, bias, running_mean, running_var, training)
    for actual, expected in zip(forward, forward_cpu):
        _assert_close(actual, expected, dtype, 10)
    grads = bn_backward(emulated_cuda, dy, x, forward[1], forward[2], weight, training)
    # Sums over thousands of values: a looser factor for float32 (as test_cuda_pool_bn).
    factor = 10 if dtype == np.float64 else 200
    for actual, expected in zip(grads, grads_cpu):
        _assert_close(actual, expected, dtype, factor)
    # dweight and dbias alone (dx not wanted): the same bits.
    no_dx = bn_backward(emulated_cuda, dy, x, forward[1], forward[2], weight, training, want_dx=False)
    np.testing.assert_array_equal(no_dx[1], grads[1])
    np.testing.assert_array_equal(no_dx[2], grads[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_is_the_same_bits_in_any_schedule(emulated_cuda, rng, dtype):
    """The per-channel sums are fixed trees: no thread or block order may change a bit."""
    shape = (3, 2, 37, 41)  # 4551 items per channel: several partial blocks per channel
    x, weight, bias, running_mean, running_var = _bn_inputs(rng, shape, dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    results = []
    for seed in [0, 1, 7, EMULATION_SCHEDULE]:
        with emulation_schedule(emulated_cuda, seed):
            forward = bn_forward(emulated_cuda, x, weight, bias, running_mean, running_var, True)
            results.append([*forward, *bn_backward(emulated_cuda, dy, x, forward[1], forward[2], weight, True)])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_training_without_running_stats(emulated_cuda, rng, dtype):
    """running_mean / running_var null: the batch statistics alone, nothing else written."""
    x, weight, bias, running_mean, running_var = _bn_inputs(rng, (4, 3, 6), dtype)
    with_stats = bn_forward(emulated_cuda, x, weight, bias, running_mean, running_var, True)
    without = bn_forward(emulated_cuda, x, weight, bias, running_mean, running_var, True, update_running=False)
    for a, b in zip(with_stats[:3], without[:3]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(without[3], running_mean)
    np.testing.assert_array_equal(without[4], running_var)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_eval_and_backward_of_an_empty_batch(emulated_cuda, rng, dtype):
    """N = 0 in evaluation: the statistics are still the running ones; the gradients of the
    weight and bias are sums over nothing, zeros."""
    x, weight, bias, running_mean, running_var = _bn_inputs(rng, (0, 3, 4), dtype)
    y, save_mean, save_invstd, _, _ = bn_forward(emulated_cuda, x, weight, bias, running_mean, running_var, False)
    assert y.shape == (0, 3, 4)
    np.testing.assert_array_equal(save_mean, running_mean)
    _assert_close(save_invstd, 1.0 / np.sqrt(running_var.astype(np.float64) + 1e-5), dtype)
    for training in (False, True):
        dx, dweight, dbias = bn_backward(emulated_cuda, x, x, save_mean, save_invstd, weight, training)
        assert dx.shape == (0, 3, 4)
        np.testing.assert_array_equal(dweight, np.zeros(3))
        np.testing.assert_array_equal(dbias, np.zeros(3))
