"""The CUDA convolution kernels (kernels/cuda/conv.cu: implicit GEMM on the tiled CUDA GEMM)
against the float64 references and the CPU kernels, on every case of the CPU tests
(tests/test_ops_conv.py: padding, stride, dilation, groups, depthwise, 1x1 direct, 'same').

Outputs that take out= are filled with NaN first, so that unwritten elements show. Skipped
cleanly without CuPy or a GPU. (The CPU-runnable mixed-device checks live in
tests/test_ops_conv.py.)
"""

import numpy as np
import pytest
from references.conv import conv_backward, conv_forward
from test_ops_conv import CASES_1D, CASES_2D, OPS, _case_arrays, _hyper, assert_matches

import ranvier

DTYPES = [np.float32, np.float64]


@pytest.fixture
def cp():
    cupy = pytest.importorskip("cupy")
    if not ranvier.cuda.is_available():
        pytest.skip(f"no usable GPU: {ranvier.cuda.unavailable_reason()}")
    return cupy


def _check_cuda_case(cp, rng, case, dtype, spatial):
    forward, backward_input, backward_weight = OPS[spatial]
    x, w, b = _case_arrays(rng, case, dtype)
    kwargs, ref_kwargs = _hyper(case, spatial)
    x_dev, w_dev = cp.asarray(x), cp.asarray(w)
    b_dev = None if b is None else cp.asarray(b)

    expected = conv_forward(x, w, b, **ref_kwargs)
    y = cp.full(expected.shape, np.nan, dtype=dtype)
    result = forward(x_dev, w_dev, b_dev, **kwargs, out=y)
    assert result is y
    assert_matches(cp.asnumpy(y), expected, dtype)
    assert_matches(cp.asnumpy(y), forward(x, w, b, **kwargs).astype(np.float64), dtype)

    dy = rng.standard_normal(expected.shape).astype(dtype)
    dx_ref, dw_ref, db_ref = conv_backward(x, w, dy, **ref_kwargs)
    dx = cp.full(x.shape, np.nan, dtype=dtype)
    backward_input(cp.asarray(dy), w_dev, x.shape, **kwargs, out=dx)
    assert_matches(cp.asnumpy(dx), dx_ref, dtype)
    assert_matches(cp.asnumpy(dx), backward_input(dy, w, x.shape, **kwargs).astype(np.float64),
                   dtype)

    dw, db = backward_weight(cp.asarray(dy), x_dev, w.shape, **kwargs, bias=b is not None)
    assert isinstance(dw, cp.ndarray)
    assert_matches(cp.asnumpy(dw), dw_ref, dtype)
    dw_cpu, db_cpu = backward_weight(dy, x, w.shape, **kwargs, bias=b is not None)
    assert_matches(cp.asnumpy(dw), dw_cpu.astype(np.float64), dtype)
    if b is None:
        assert db is None
    else:
        assert_matches(cp.asnumpy(db), db_ref, dtype)
        assert_matches(cp.asnumpy(db), db_cpu.astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES_2D))
def test_conv2d_cuda_matches_reference_and_cpu(cp, rng, name, dtype):
    _check_cuda_case(cp, rng, CASES_2D[name], dtype, 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES_1D))
def test_conv1d_cuda_matches_reference_and_cpu(cp, rng, name, dtype):
    _check_cuda_case(cp, rng, CASES_1D[name], dtype, 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_cuda_larger_than_the_gemm_tiles(cp, rng, dtype):
    # K = 130 filters, C*R*S = 17*9 = 153 deep, 29*31 = 899 output pixels: every GEMM edge.
    case = ((3, 17, 29, 31), (130, 17, 3, 3), 1, 1, ((1, 1), (1, 1)), 1, 1, True)
    _check_cuda_case(cp, rng, case, dtype, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_cuda_empty_batch(cp, rng, dtype):
    from ranvier import ops

    x = cp.zeros((0, 3, 5, 5), dtype=dtype)
    w = cp.asarray(rng.standard_normal((4, 3, 3, 3)).astype(dtype))
    y = ops.conv2d(x, w, None, padding=1)
    assert y.shape == (0, 4, 5, 5)
    dw, db = ops.conv2d_backward_weight(cp.zeros((0, 4, 5, 5), dtype=dtype), x, (4, 3, 3, 3),
                                        padding=1)
    np.testing.assert_array_equal(cp.asnumpy(dw), np.zeros((4, 3, 3, 3), dtype))
    np.testing.assert_array_equal(cp.asnumpy(db), np.zeros(4, dtype))
