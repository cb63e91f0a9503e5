"""ranvier.ops conv1d/conv2d and their backward passes against the direct-loop float64
reference (tests/references/conv.py), finite differences, ranvier.autograd.gradcheck on
F.conv1d/F.conv2d, and bad input at the ops and _C floors."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import tol
from references.conv import conv_backward, conv_forward
from references.finite_difference import numeric_grad

import ranvier
import ranvier.nn.functional as F
from ranvier import _C, ops

DTYPES = [np.float32, np.float64]


def assert_matches(actual, expected, dtype):
    """Within the dtype's tolerance, the absolute part scaled by the result's magnitude (a
    float32 sum of a few hundred products is as exact as its largest terms allow)."""
    t = tol(dtype)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    assert actual.dtype == dtype and actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=t["rtol"], atol=10 * t["atol"] * scale)


# (x shape, weight shape, stride, padding as ops takes it, padding as (before, after) per axis
#  for the reference (written out by hand, 'same' included), dilation, groups, bias)
CASES_2D = {
    "3x3_pad1": ((2, 3, 7, 9), (4, 3, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 1, True),
    "batch1_odd_sizes": ((1, 5, 11, 13), (7, 5, 3, 5), 1, (1, 2), ((1, 1), (2, 2)), 1, 1, True),
    "stride_larger_than_kernel": ((2, 3, 13, 11), (4, 3, 2, 2), (3, 4), 0, ((0, 0), (0, 0)), 1, 1,
                                  True),
    "asymmetric_stride_and_padding": ((3, 2, 9, 10), (5, 2, 3, 4), (2, 1), ((1, 0), (2, 3)),
                                      ((1, 0), (2, 3)), 1, 1, True),
    "dilation": ((2, 2, 12, 10), (3, 2, 3, 2), 1, (2, 1), ((2, 2), (1, 1)), (2, 3), 1, True),
    "dilation_and_stride": ((2, 3, 11, 12), (2, 3, 3, 3), 2, 1, ((1, 1), (1, 1)), 2, 1, True),
    "groups": ((2, 6, 7, 8), (9, 2, 3, 3), 2, 1, ((1, 1), (1, 1)), 1, 3, True),
    "depthwise": ((2, 5, 9, 9), (5, 1, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 5, True),
    "depthwise_multiplier_2": ((3, 3, 6, 7), (6, 1, 3, 3), (1, 2), 1, ((1, 1), (1, 1)), 1, 3,
                               True),
    "no_bias": ((2, 3, 8, 7), (4, 3, 3, 2), 1, 0, ((0, 0), (0, 0)), 1, 1, False),
    "same_odd_kernel": ((2, 3, 7, 8), (4, 3, 3, 5), 1, "same", ((1, 1), (2, 2)), 1, 1, True),
    "same_even_kernel": ((2, 2, 6, 7), (3, 2, 4, 2), 1, "same", ((1, 2), (0, 1)), 1, 1, True),
    "same_with_dilation": ((1, 2, 9, 8), (3, 2, 3, 4), 1, "same", ((2, 2), (3, 3)), (2, 2), 1, True),
    "valid": ((2, 3, 6, 5), (2, 3, 3, 3), 1, "valid", ((0, 0), (0, 0)), 1, 1, True),
    "1x1_direct": ((3, 4, 5, 6), (7, 4, 1, 1), 1, 0, ((0, 0), (0, 0)), 1, 1, True),
    "1x1_stride2": ((2, 4, 7, 6), (3, 4, 1, 1), 2, 0, ((0, 0), (0, 0)), 1, 1, True),
    "1x1_padded": ((2, 3, 4, 5), (2, 3, 1, 1), 1, 1, ((1, 1), (1, 1)), 1, 1, True),
    "1x1_groups_direct": ((2, 6, 3, 5), (4, 3, 1, 1), 1, 0, ((0, 0), (0, 0)), 1, 2, False),
    "kernel_equals_input": ((2, 3, 5, 4), (6, 3, 5, 4), 1, 0, ((0, 0), (0, 0)), 1, 1, True),
    "kernel_fits_only_with_padding": ((2, 2, 2, 3), (3, 2, 4, 4), 1, (1, 1),
                                      ((1, 1), (1, 1)), 1, 1, True),
    "single_row": ((2, 3, 1, 17), (4, 3, 1, 5), (1, 2), (0, 2), ((0, 0), (2, 2)), 1, 1, True),
    # Small images go through the GEMM in blocks of ceil(1024 / (P*Q)) images: several blocks,
    # the last one shorter (20 pixels: blocks of 52 + 52 + 6; 15: 69 + 11; 9: 114 + 6).
    "several_image_blocks": ((110, 3, 5, 4), (4, 3, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 1, True),
    "image_blocks_groups_stride": ((80, 4, 6, 5), (6, 2, 3, 2), (2, 1), (1, (0, 1)),
                                   ((1, 1), (0, 1)), 1, 2, True),
    "1x1_direct_image_blocks": ((120, 3, 3, 3), (5, 3, 1, 1), 1, 0, ((0, 0), (0, 0)), 1, 1, False),
    # The forward packs gemm's column strips (16 wide for float on AVX2, 8 for double) from the
    # padded image in runs within one output row: 37-wide rows give whole-strip runs, runs
    # cut by a row's end (8 of them = half a float strip, 4 = half a double strip, other
    # lengths) and a short last strip; 8x8 images (in blocks of 16) give half-strip runs.
    "wide_rows": ((2, 3, 6, 37), (4, 3, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 1, True),
    "8x8_image_blocks": ((40, 4, 8, 8), (6, 4, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 1, True),
    # One input channel and at most 8 filters per group go to the direct kernels
    # (kernels/cpu/conv_depthwise.cpp) in all three passes: rows cut at both ends by
    # asymmetric padding, strides and dilations on both axes, a multiplier of 3, batch 1 with
    # odd sizes, single-channel images without groups (3 and 8 filters), wide rows for the
    # vectorised stride-1 loops, and a kernel that only fits with padding. With 9 to 16
    # filters per group the forward pass is direct and the backward passes take the GEMM
    # ("single_channel_many_filters": 9, "depthwise_multiplier_16": 16, grouped); with 17,
    # all three take the GEMM ("single_channel_17_filters").
    # Rows of 150 outputs take the kernels' blocks of 8 vectors and a narrower remainder
    # (16 + 3 float vectors, 32 + 6 double on AVX2); padding beyond the kernel's reach cuts dy's
    # first rows and columns out of the backward input's copy; a multiplier of 4 with stride
    # 2 spreads four dy planes out for the backward input.
    "depthwise_stride_dilation_asymmetric": ((2, 3, 11, 10), (6, 1, 3, 2), (2, 3), ((2, 0), (1, 2)),
                                             ((2, 0), (1, 2)), (2, 1), 3, True),
    "depthwise_batch1_odd": ((1, 7, 13, 17), (7, 1, 5, 3), 1, (2, 1), ((2, 2), (1, 1)), 1, 7, False),
    "single_channel_image": ((3, 1, 9, 8), (3, 1, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 1, True),
    "single_channel_many_filters": ((3, 1, 9, 8), (9, 1, 3, 3), 2, 1, ((1, 1), (1, 1)), 1, 1, True),
    "single_channel_8_filters": ((2, 1, 7, 9), (8, 1, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 1, True),
    "depthwise_multiplier_16": ((2, 2, 7, 6), (32, 1, 3, 3), 1, (1, 0), ((1, 1), (0, 0)), 1, 2,
                                True),
    "single_channel_17_filters": ((2, 1, 9, 7), (17, 1, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 1,
                                  True),
    "depthwise_wide_rows": ((2, 2, 5, 37), (2, 1, 3, 3), 1, "same", ((1, 1), (1, 1)), 1, 2, True),
    "depthwise_kernel_larger_than_image": ((2, 2, 2, 3), (4, 1, 4, 4), 1, (1, 1), ((1, 1), (1, 1)),
                                           1, 2, True),
    "depthwise_long_rows": ((1, 3, 4, 150), (3, 1, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 3, True),
    "depthwise_padding_beyond_kernel": ((2, 2, 5, 6), (2, 1, 3, 2), 1, (3, 2), ((3, 3), (2, 2)), 1, 2,
                                        True),
    "depthwise_multiplier_4_stride_2": ((2, 2, 9, 10), (8, 1, 3, 3), 2, 1, ((1, 1), (1, 1)), 1, 2,
                                        True),
    # With stride 1 the input gradient is the forward implicit GEMM of dy with the filters
    # rotated and (per group) transposed, padded dilation*(R-1) - pad per side: groups with
    # one filter each (the transformed convolution then has one input channel per group,
    # which must still take the GEMM), groups over image blocks, padding at the limit of
    # dilation*(R-1) on one side and none on the other, and dilation with uneven padding.
    # "1x1_padded" (padding beyond R-1), the strided cases, "valid" and "kernel_equals_input"
    # (P*Q well below H*W: the transformed convolution would mostly multiply zeros) and
    # "stride1_many_filters" (K > 2C: packing dy would cost more than col2im) keep col2im.
    "stride1_many_filters": ((2, 2, 6, 7), (7, 2, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 1, True),
    "stride1_groups_one_filter_each": ((2, 6, 7, 8), (3, 2, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 3,
                                       True),
    "stride1_groups_image_blocks": ((40, 6, 5, 6), (4, 3, 3, 2), 1, (1, (1, 0)),
                                    ((1, 1), (1, 0)), 1, 2, True),
    "stride1_padding_limits": ((2, 3, 6, 7), (5, 3, 3, 4), 1, ((2, 0), (0, 3)), ((2, 0), (0, 3)),
                               1, 1, True),
    "stride1_dilation_uneven_padding": ((2, 3, 10, 11), (4, 3, 3, 3), 1, ((4, 1), (0, 2)),
                                        ((4, 1), (0, 2)), (2, 1), 1, False),
    # C/g*R*S = 288 is more than gemm's 256-deep block, so the product is split along it.
    "deeper_than_one_gemm_block": ((2, 32, 9, 10), (13, 32, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 1,
                                   True),
}

CASES_1D = {
    "k3_pad1": ((2, 4, 13), (5, 4, 3), 1, 1, ((1, 1),), 1, 1, True),
    "batch1_stride3": ((1, 3, 17), (2, 3, 2), 3, 0, ((0, 0),), 1, 1, True),
    "dilation_groups": ((3, 6, 19), (4, 3, 3), 2, 2, ((2, 2),), 2, 2, True),
    "depthwise_no_bias": ((2, 4, 11), (4, 1, 5), 1, 2, ((2, 2),), 1, 4, False),
    "depthwise_stride_dilation": ((3, 5, 23), (10, 1, 4), 2, 1, ((1, 1),), 2, 5, True),
    "depthwise_long": ((2, 4, 301), (8, 1, 7), 1, 3, ((3, 3),), 1, 4, True),
    "same_even_kernel": ((2, 4, 10), (3, 4, 6), 1, "same", ((2, 3),), 1, 1, True),
    "same_odd_dilated": ((2, 4, 10), (3, 4, 3), 1, "same", ((3, 3),), 3, 1, True),
    "asymmetric_padding": ((2, 2, 8), (3, 2, 3), 2, ((2, 0),), ((2, 0),), 1, 1, True),
    "kernel_1": ((3, 5, 7), (2, 5, 1), 1, 0, ((0, 0),), 1, 1, True),
    "dna_like": ((4, 4, 50), (8, 4, 11), 1, "valid", ((0, 0),), 1, 1, True),
}

OPS = {
    1: (ops.conv1d, ops.conv1d_backward_input, ops.conv1d_backward_weight),
    2: (ops.conv2d, ops.conv2d_backward_input, ops.conv2d_backward_weight),
}


def _case_arrays(rng, case, dtype):
    x_shape, w_shape, _, _, _, _, _, with_bias = case
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if with_bias else None
    return x, w, b


def _hyper(case, spatial):
    _, _, stride, padding, pairs, dilation, groups, _ = case
    as_tuple = lambda v: (v,) * spatial if isinstance(v, int) else tuple(v)  # noqa: E731
    return (dict(stride=stride, padding=padding, dilation=dilation, groups=groups),
            dict(stride=as_tuple(stride), padding=pairs, dilation=as_tuple(dilation),
                 groups=groups))


def _check_case(rng, case, dtype, spatial):
    forward, backward_input, backward_weight = OPS[spatial]
    x, w, b = _case_arrays(rng, case, dtype)
    kwargs, ref_kwargs = _hyper(case, spatial)
    expected = conv_forward(x, w, b, **ref_kwargs)
    y = forward(x, w, b, **kwargs)
    assert_matches(y, expected, dtype)

    dy = rng.standard_normal(y.shape).astype(dtype)
    dx_ref, dw_ref, db_ref = conv_backward(x, w, dy, **ref_kwargs)
    assert_matches(backward_input(dy, w, x.shape, **kwargs), dx_ref, dtype)
    dw, db = backward_weight(dy, x, w.shape, **kwargs, bias=b is not None)
    assert_matches(dw, dw_ref, dtype)
    if b is None:
        assert db is None
    else:
        assert_matches(db, db_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES_2D))
def test_conv2d_forward_and_backward_match_reference(rng, name, dtype):
    _check_case(rng, CASES_2D[name], dtype, spatial=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES_1D))
def test_conv1d_forward_and_backward_match_reference(rng, name, dtype):
    _check_case(rng, CASES_1D[name], dtype, spatial=1)


def test_conv1d_equals_conv2d_on_height_one_images(rng):
    x, w, b = rng.standard_normal((3, 4, 15)), rng.standard_normal((6, 2, 4)), rng.standard_normal(6)
    kwargs = dict(stride=2, dilation=2, groups=2)
    y1 = ops.conv1d(x, w, b, padding=((1, 2),), **kwargs)
    y2 = ops.conv2d(x[:, :, None], w[:, :, None], b, padding=(0, (1, 2)), **kwargs)
    np.testing.assert_array_equal(y1, y2[:, :, 0])


# --- finite differences ------------------------------------------------------------------

@pytest.mark.parametrize("spatial, x_shape, w_shape, kwargs", [
    (2, (2, 4, 5, 6), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, (0, 1)), dilation=(1, 2),
                                         groups=2)),
    (2, (1, 2, 4, 4), (3, 2, 2, 2), dict(padding="same")),
    (1, (2, 3, 9), (2, 3, 4), dict(stride=2, padding=1, dilation=2)),
])
def test_backward_matches_finite_differences(rng, spatial, x_shape, w_shape, kwargs):
    forward, backward_input, backward_weight = OPS[spatial]
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    dy = rng.standard_normal(forward(x, w, b, **kwargs).shape)
    loss = lambda x_, w_, b_: float(np.sum(forward(x_, w_, b_, **kwargs) * dy))  # noqa: E731
    dw, db = backward_weight(dy, x, w.shape, **kwargs)
    np.testing.assert_allclose(backward_input(dy, w, x.shape, **kwargs),
                               numeric_grad(lambda v: loss(v, w, b), x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, numeric_grad(lambda v: loss(x, v, b), w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, numeric_grad(lambda v: loss(x, w, v), b), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("with_bias", [True, False])
def test_gradcheck_conv2d(rng, with_bias):
    x = ranvier.tensor(rng.standard_normal((2, 4, 4, 5)), requires_grad=True)
    w = ranvier.tensor(rng.standard_normal((4, 2, 2, 3)), requires_grad=True)
    b = ranvier.tensor(rng.standard_normal(4), requires_grad=True) if with_bias else None
    inputs = (x, w, b) if with_bias else (x, w)
    conv = lambda x_, w_, b_=None: F.conv2d(x_, w_, b_, stride=(1, 2), padding=(2, 1),  # noqa: E731
                                            dilation=(2, 1), groups=2)
    assert ranvier.autograd.gradcheck(conv, inputs)


def test_gradcheck_conv2d_same_even_kernel(rng):
    x = ranvier.tensor(rng.standard_normal((1, 2, 4, 3)), requires_grad=True)
    w = ranvier.tensor(rng.standard_normal((2, 2, 2, 2)), requires_grad=True)
    assert ranvier.autograd.gradcheck(lambda x_, w_: F.conv2d(x_, w_, padding="same"), (x, w))


def test_gradcheck_conv1d(rng):
    x = ranvier.tensor(rng.standard_normal((2, 3, 8)), requires_grad=True)
    w = ranvier.tensor(rng.standard_normal((3, 1, 3)), requires_grad=True)
    b = ranvier.tensor(rng.standard_normal(3), requires_grad=True)
    conv = lambda x_, w_, b_: F.conv1d(x_, w_, b_, stride=2, padding=2, dilation=2, groups=3)  # noqa: E731
    assert ranvier.autograd.gradcheck(conv, (x, w, b))


# --- layouts, dtypes and edge cases --------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch(rng, dtype):
    x = np.zeros((0, 3, 5, 5), dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    y = ops.conv2d(x, w, np.ones(4, dtype), padding=1)
    assert y.shape == (0, 4, 5, 5) and y.dtype == dtype
    assert ops.conv2d_backward_input(y, w, x.shape, padding=1).shape == x.shape
    dw, db = ops.conv2d_backward_weight(y, x, w.shape, padding=1)
    np.testing.assert_array_equal(dw, np.zeros(w.shape, dtype))
    np.testing.assert_array_equal(db, np.zeros(4, dtype))


def test_unbatched_inputs(rng):
    x, w, b = rng.standard_normal((3, 6, 7)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    kwargs = dict(stride=(1, 2), padding=1)
    y = ops.conv2d(x, w, b, **kwargs)
    np.testing.assert_array_equal(y, ops.conv2d(x[None], w, b, **kwargs)[0])
    dy = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(ops.conv2d_backward_input(dy, w, x.shape, **kwargs),
                                  ops.conv2d_backward_input(dy[None], w, (1,) + x.shape, **kwargs)[0])
    for got, want in zip(ops.conv2d_backward_weight(dy, x, w.shape, **kwargs),
                         ops.conv2d_backward_weight(dy[None], x[None], w.shape, **kwargs)):
        np.testing.assert_array_equal(got, want)
    x1, w1 = rng.standard_normal((2, 9)), rng.standard_normal((3, 2, 4))
    np.testing.assert_array_equal(ops.conv1d(x1, w1), ops.conv1d(x1[None], w1)[0])


@pytest.mark.parametrize("with_bias", [True, False])
def test_outputs_prefilled_with_nan_are_overwritten(rng, with_bias):
    for w_shape, padding in (((3, 2, 3, 3), 1), ((3, 2, 1, 1), 0)):  # im2col and direct paths
        x, w = rng.standard_normal((2, 2, 5, 6)), rng.standard_normal(w_shape)
        b = rng.standard_normal(3) if with_bias else None
        out = np.full((2, 3, 5, 6), np.nan)
        ops.conv2d(x, w, b, padding=padding, out=out)
        np.testing.assert_allclose(out, ops.conv2d(x, w, b, padding=padding))
        dx = np.full(x.shape, np.nan)
        ops.conv2d_backward_input(out, w, x.shape, padding=padding, out=dx)
        np.testing.assert_allclose(dx, ops.conv2d_backward_input(out, w, x.shape, padding=padding))
        assert np.isfinite(dx).all()


def test_mixed_widths_non_contiguous_and_read_only_inputs(rng):
    x = rng.standard_normal((2, 3, 8, 10))[:, :, ::2, ::2]  # strided view (2, 3, 4, 5)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    x.flags.writeable = False
    y = ops.conv2d(x, w, padding=1)
    assert y.dtype == np.float64
    expected = conv_forward(x, w.astype(np.float64), None, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    assert_matches(y, expected, np.float64)


def test_results_do_not_depend_on_the_thread_count():
    """With several threads the batch is split into chunks, each with its own column buffer
    and partial weight gradient; 1, 2 and 3 threads must all agree with the reference. The
    150 images of 15 output pixels go through the GEMM in 3 blocks (69 + 69 + 12 images).
    A single image (x1) is one GEMM that the threads share, each packing its strips of the
    image's columns."""
    script = (
        "import sys, numpy as np\n"
        "sys.path.insert(0, 'tests')\n"
        "from references.conv import conv_forward, conv_backward\n"
        "from ranvier import ops\n"
        "rng = np.random.default_rng(3)\n"
        "x, w = rng.standard_normal((150, 4, 6, 5)), rng.standard_normal((6, 2, 3, 2))\n"
        "dy = rng.standard_normal((150, 6, 3, 5))\n"
        "k = dict(stride=(2, 1), padding=(1, (0, 1)), groups=2)\n"
        "r = dict(stride=(2, 1), padding=((1, 1), (0, 1)), dilation=(1, 1), groups=2)\n"
        "dx_ref, dw_ref, db_ref = conv_backward(x, w, dy, **r)\n"
        "dw, db = ops.conv2d_backward_weight(dy, x, w.shape, **k)\n"
        "pairs = [(ops.conv2d(x, w, **k), conv_forward(x, w, None, **r)), (dw, dw_ref), (db, db_ref),\n"
        "         (ops.conv2d_backward_input(dy, w, x.shape, **k), dx_ref)]\n"
        "k1 = dict(padding=(1, (0, 1)), groups=2)\n"
        "r1 = dict(stride=(1, 1), padding=((1, 1), (0, 1)), dilation=(1, 1), groups=2)\n"
        "dy1 = rng.standard_normal((150, 6, 6, 5))\n"
        "pairs.append((ops.conv2d_backward_input(dy1, w, x.shape, **k1), conv_backward(x, w, dy1, **r1)[0]))\n"
        "x1, w1 = rng.standard_normal((1, 16, 18, 40)), rng.standard_normal((32, 16, 3, 3))\n"
        "pairs.append((ops.conv2d(x1, w1, padding=1),\n"
        "              conv_forward(x1, w1, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)))\n"
        "dy2 = rng.standard_normal((1, 32, 18, 40))\n"
        "pairs.append((ops.conv2d_backward_input(dy2, w1, x1.shape, padding=1),\n"
        "              conv_backward(x1, w1, dy2, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)[0]))\n"
        "print(max(float(np.abs(a - b).max()) for a, b in pairs))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for threads in ("1", "2", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=120, cwd=root)
        assert run.returncode == 0, run.stderr
        assert float(run.stdout) < 1e-12, (threads, run.stdout)


# --- bad input -----------------------------------------------------------------------------

def _f32(*shape):
    return np.ones(shape, np.float32)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, message", [
    ((3, 5), (4, 3, 3, 3), {},
     r"conv2d: x must be 4-D or 3-D \(N, C, H, W\) or unbatched \(C, H, W\), got shape \(3, 5\)"),
    ((2, 3, 4, 5, 5), (4, 3, 3, 3), {}, r"conv2d: x must be 4-D or 3-D .*got shape \(2, 3, 4, 5, 5\)"),
    ((2, 5, 5), (4, 3, 3, 3), {},
     r"conv2d: x \(unbatched, shown with a batch of 1\) \(1, 2, 5, 5\) has 2 channels but weight"),
    ((2, 3, 5, 5), (4, 3, 3), {}, r"conv2d: weight must be 4-D .*got shape \(4, 3, 3\)"),
    ((2, 3, 5, 5), (4, 2, 3, 3), {},
     r"conv2d: x \(2, 3, 5, 5\) has 3 channels but weight \(4, 2, 3, 3\) .*expects 2"),
    ((2, 4, 5, 5), (4, 2, 3, 3), dict(groups=3), r"conv2d: groups=3 does not divide the 4 input channels"),
    ((2, 6, 5, 5), (4, 2, 3, 3), dict(groups=3), r"conv2d: groups=3 does not divide the 4 output channels"),
    ((2, 3, 2, 5), (4, 3, 3, 3), {},
     r"conv2d: the kernel \(3 x 3 after dilation; weight \(4, 3, 3, 3\)\) is larger than the "
     r"padded input \(2 x 5; x \(2, 3, 2, 5\) with padding \(0, 0, 0, 0\)\)"),
    ((2, 3, 5, 5), (4, 3, 3, 3), dict(dilation=3), r"conv2d: the kernel \(7 x 7 after dilation"),
    ((2, 3, 5, 5), (4, 3, 3, 3), dict(stride=0), r"conv2d: stride must be positive"),
    ((2, 3, 5, 5), (4, 3, 3, 3), dict(stride=(1, -2)), r"conv2d: stride must be positive.*\(1, -2\)"),
    ((2, 3, 5, 5), (4, 3, 3, 3), dict(dilation=0), r"conv2d: dilation must be positive"),
    ((2, 3, 5, 5), (4, 3, 3, 3), dict(padding=-1), r"conv2d: padding must be non-negative"),
    ((2, 3, 5, 5), (4, 3, 3, 3), dict(groups=0), r"conv2d: groups must be a positive integer"),
    ((2, 3, 5, 5), (4, 3, 3, 3), dict(padding="same", stride=2),
     r"conv2d: padding='same' is not supported for strided convolutions"),
    ((2, 3, 5, 5), (4, 3, 3, 3), dict(padding="full"), r"conv2d: padding must be 'valid', 'same'"),
    ((2, 3, 5, 5), (4, 3, 3, 3), dict(stride=2**40), r"conv2d: stride must be positive \(and at most"),
    ((2, 0, 5, 5), (4, 0, 3, 3), {}, r"conv2d: x \(2, 0, 5, 5\) .* has an empty channel"),
    ((2, 3, 5, 5), (0, 3, 3, 3), {}, r"conv2d: weight \(0, 3, 3, 3\) has an empty dimension"),
])
def test_conv2d_rejects_bad_shapes_and_parameters(x_shape, w_shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ops.conv2d(_f32(*x_shape), _f32(*w_shape), **kwargs)


def test_conv1d_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"conv1d: x must be 3-D or 2-D \(N, C, L\) or unbatched \(C, L\), "
                                         r"got shape \(2, 3, 4, 5\)"):
        ops.conv1d(_f32(2, 3, 4, 5), _f32(4, 3, 3))
    with pytest.raises(ValueError, match=r"conv1d: the kernel \(9 after dilation; weight \(4, 3, 5\)\) "
                                         r"is larger than the padded input \(6; x \(2, 3, 4\) with padding \(1, 1\)\)"):
        ops.conv1d(_f32(2, 3, 4), _f32(4, 3, 5), padding=1, dilation=2)
    with pytest.raises(ValueError, match=r"conv1d: x \(2, 4, 9\) has 4 channels but weight \(4, 3, 3\)"):
        ops.conv1d(_f32(2, 4, 9), _f32(4, 3, 3))


@pytest.mark.parametrize("kwargs, message", [
    (dict(stride=1.5), r"conv2d: stride must be an int or a tuple of 2 ints"),
    (dict(stride=(1, 2, 3)), r"conv2d: stride must be an int or a tuple of 2 ints"),
    (dict(dilation=True), r"conv2d: dilation must be an int or a tuple of 2 ints"),
    (dict(padding=1.0), r"conv2d: padding must be 'valid', 'same', an int"),
    (dict(padding=(1, (1, 2, 3))), r"conv2d: padding must be"),
    (dict(groups=True), r"conv2d: groups must be an int"),
    (dict(groups=1.0), r"conv2d: groups must be an int"),
])
def test_conv2d_rejects_wrong_parameter_types(kwargs, message):
    with pytest.raises(TypeError, match=message):
        ops.conv2d(_f32(1, 2, 5, 5), _f32(3, 2, 3, 3), **kwargs)


@pytest.mark.parametrize("bad", [np.int64, np.int32, np.bool_, np.float16, np.str_])
def test_rejects_non_float_dtypes(bad):
    good = _f32(1, 2, 5, 5)
    bad_array = np.ones((1, 2, 5, 5)).astype(bad)
    with pytest.raises(TypeError, match=r"conv2d: x has dtype"):
        ops.conv2d(bad_array, _f32(3, 2, 3, 3))
    with pytest.raises(TypeError, match=r"conv2d_backward_weight: x has dtype"):
        ops.conv2d_backward_weight(_f32(1, 3, 3, 3), bad_array, (3, 2, 3, 3))
    with pytest.raises(TypeError, match=r"conv2d: bias has dtype"):
        ops.conv2d(good, _f32(3, 2, 3, 3), np.ones(3).astype(bad))


def test_rejects_bad_bias_and_grad_output_shapes():
    x, w = _f32(2, 3, 5, 5), _f32(4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"conv2d: bias has shape \(3,\) but weight .* expected \(4,\)"):
        ops.conv2d(x, w, _f32(3))
    with pytest.raises(ValueError, match=r"conv2d_backward_input: grad_output has shape \(2, 4, 5, 5\) but "
                                         r"the convolution of an input \(2, 3, 5, 5\) with weight "
                                         r"\(4, 3, 3, 3\) gives \(2, 4, 3, 3\)"):
        ops.conv2d_backward_input(_f32(2, 4, 5, 5), w, x.shape)
    with pytest.raises(ValueError, match=r"conv2d_backward_weight: grad_output has shape \(2, 4, 3, 3\) "
                                         r"but .* gives \(2, 4, 5, 5\)"):
        ops.conv2d_backward_weight(_f32(2, 4, 3, 3), x, w.shape, padding=1)
    with pytest.raises(ValueError, match=r"conv2d_backward_input: input_shape \(2, 2, 5, 5\) .*has 2 "
                                         r"channels but weight"):
        ops.conv2d_backward_input(_f32(2, 4, 3, 3), w, (2, 2, 5, 5))
    with pytest.raises(ValueError, match=r"conv2d_backward_weight: weight_shape \(4, 3, 9, 9\) .*larger|"
                                         r"conv2d_backward_weight: the kernel \(9 x 9"):
        ops.conv2d_backward_weight(_f32(2, 4, 3, 3), x, (4, 3, 9, 9))
    with pytest.raises(TypeError, match=r"conv2d_backward_input: input_shape must be a tuple of ints"):
        ops.conv2d_backward_input(_f32(2, 4, 3, 3), w, (2, 3, 5.0, 5))


def test_rejects_bad_out():
    x, w = _f32(2, 3, 5, 5), _f32(4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"conv2d: out has shape \(2, 4, 5, 5\) and dtype float32, "
                                         r"expected \(2, 4, 3, 3\)"):
        ops.conv2d(x, w, out=_f32(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"conv2d: out has shape .* dtype float64"):
        ops.conv2d(x, w, out=np.empty((2, 4, 3, 3)))
    read_only = _f32(2, 4, 3, 3)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match=r"^conv2d: out is read-only"):
        ops.conv2d(x, w, out=read_only)
    with pytest.raises(ValueError, match=r"conv2d: out of shape \(2, 4, 3, 3\) is not C-contiguous"):
        ops.conv2d(x, w, out=np.empty((2, 4, 3, 6), np.float32)[..., ::2])
    with pytest.raises(ValueError, match=r"^conv2d_backward_input: out is read-only"):
        dx = _f32(2, 3, 5, 5)
        dx.flags.writeable = False
        ops.conv2d_backward_input(_f32(2, 4, 3, 3), w, x.shape, out=dx)


HYPER_2D = ([1, 1], [0, 0, 0, 0], [1, 1], 1)


def test_kernels_check_what_they_are_given():
    x, w = _f32(2, 3, 5, 5), _f32(4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"conv2d_forward: out has shape \(2, 4, 5, 5\), expected \(2, 4, 3, 3\)"):
        _C.conv2d_forward(x, w, None, _f32(2, 4, 5, 5), *HYPER_2D)
    with pytest.raises(ValueError, match=r"conv2d_forward: bias has shape \(3,\), expected \(4,\)"):
        _C.conv2d_forward(x, w, _f32(3), _f32(2, 4, 3, 3), *HYPER_2D)
    with pytest.raises(TypeError, match=r"conv2d_forward: x \(float32\) and weight \(float64\) must have the same dtype"):
        _C.conv2d_forward(x, np.ones((4, 3, 3, 3)), None, _f32(2, 4, 3, 3), *HYPER_2D)
    with pytest.raises(TypeError, match=r"conv2d_forward: expected float32 or float64|x has dtype|float32 or float64"):
        _C.conv2d_forward(np.ones((2, 3, 5, 5), np.int32), np.ones((4, 3, 3, 3), np.int32), None,
                          np.ones((2, 4, 3, 3), np.int32), *HYPER_2D)
    with pytest.raises(ValueError, match=r"conv2d_forward: padding must have 4 entries \(top, bottom, left, right\), got 2"):
        _C.conv2d_forward(x, w, None, _f32(2, 4, 3, 3), [1, 1], [0, 0], [1, 1], 1)
    with pytest.raises(ValueError, match=r"conv1d_forward: stride must have 1 entries"):
        _C.conv1d_forward(_f32(2, 3, 5), _f32(4, 3, 3), None, _f32(2, 4, 3), [1, 1], [0, 0], [1], 1)
    with pytest.raises(ValueError, match=r"conv2d_backward_input: grad_output has shape \(2, 4, 5, 5\), expected \(2, 4, 3, 3\)"):
        _C.conv2d_backward_input(_f32(2, 4, 5, 5), w, _f32(2, 3, 5, 5), *HYPER_2D)
    with pytest.raises(ValueError, match=r"conv2d_backward_weight: out_bias has shape \(3,\), expected \(4,\)"):
        _C.conv2d_backward_weight(_f32(2, 4, 3, 3), x, _f32(4, 3, 3, 3), _f32(3), *HYPER_2D)
    with pytest.raises(ValueError, match=r"conv2d_forward: dilation must be positive \(and at most 2147483647\)"):
        _C.conv2d_forward(x, w, None, _f32(2, 4, 3, 3), [1, 1], [0, 0, 0, 0], [1, 2**40], 1)


def test_kernels_reject_outputs_sharing_memory_with_inputs():
    buffer = _f32(2 * 4 * 3 * 3 + 2 * 3 * 5 * 5)
    y, x = buffer[:72].reshape(2, 4, 3, 3), buffer[60:210].reshape(2, 3, 5, 5)
    w = _f32(4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"conv2d_forward: out must not share memory with x"):
        _C.conv2d_forward(x, w, None, y, *HYPER_2D)
    dx = buffer[:150].reshape(2, 3, 5, 5)
    with pytest.raises(ValueError, match=r"conv2d_backward_input: out must not share memory with grad_output"):
        _C.conv2d_backward_input(buffer[100:172].reshape(2, 4, 3, 3), w, dx, *HYPER_2D)
    dw = _f32(4 * 3 * 3 * 3 + 4)
    with pytest.raises(ValueError, match=r"conv2d_backward_weight: out_bias must not share memory with out_weight"):
        _C.conv2d_backward_weight(_f32(2, 4, 3, 3), _f32(2, 3, 5, 5), dw[:108].reshape(4, 3, 3, 3),
                                  dw[104:108], *HYPER_2D)


class FakeCudaArray:
    """Exposes __cuda_array_interface__ with a pointer that must never be dereferenced."""

    def __init__(self, shape, typestr="<f4"):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (256, False),
                                         "strides": None, "version": 3}


def test_kernels_reject_mixed_devices():
    # Refused in the binding's first checks, so the fake pointer never reaches a kernel (the
    # CUDA results themselves: tests/test_cuda_conv.py).
    x, w = _f32(2, 3, 5, 5), _f32(4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"conv2d_forward: x is on cuda but weight is on cpu; "
                                         r"move both to one device"):
        _C.conv2d_forward(FakeCudaArray((2, 3, 5, 5)), w, None, _f32(2, 4, 3, 3), *HYPER_2D)
    with pytest.raises(ValueError, match=r"conv2d_forward: x is on cpu but bias is on cuda"):
        _C.conv2d_forward(x, w, FakeCudaArray((4,)), _f32(2, 4, 3, 3), *HYPER_2D)
    with pytest.raises(ValueError, match=r"conv2d_backward_input: grad_output is on cpu but weight is on cuda"):
        _C.conv2d_backward_input(_f32(2, 4, 3, 3), FakeCudaArray((4, 3, 3, 3)), _f32(2, 3, 5, 5), *HYPER_2D)
    with pytest.raises(ValueError, match=r"conv1d_backward_weight: grad_output is on cpu but out_weight is on cuda"):
        _C.conv1d_backward_weight(_f32(2, 4, 3), _f32(2, 3, 5), FakeCudaArray((4, 3, 3)), None,
                                  [1], [0, 0], [1], 1)
    with pytest.raises(ValueError, match=r"conv2d_backward_weight: grad_output is on cuda but x is on cpu"):
        _C.conv2d_backward_weight(FakeCudaArray((2, 4, 3, 3)), x, _f32(4, 3, 3, 3), None, *HYPER_2D)
