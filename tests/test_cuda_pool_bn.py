"""The CUDA pooling and batch-norm kernels (kernels/cuda/pooling.cu, batch_norm.cu) against the
float64 references (references/pooling.py, references/batch_norm.py) and the CPU kernels on
the same inputs, through _C with NaN-filled outputs (so that unwritten elements show), through
ops (CuPy in, CuPy out), and through the nn layers after Module.to('cuda').

Pooling on the GPU gives the CPU's bits: the forward passes run the CPU's loops per output,
the backward passes add the same terms in the same order (a gather per input element), so
those comparisons are exact. Batch norm's per-channel sums add in another order than the
CPU's: compared within tolerance, and checked to give the same bits on a second run.
Skipped cleanly without CuPy or a GPU.
"""

import numpy as np
import pytest
from conftest import tol
from test_ops_pooling import (ADAPTIVE1D_CASES, ADAPTIVE2D_CASES, AVG1D_CASES, AVG2D_CASES, MAX1D_CASES,
                              MAX2D_CASES, _distinct)

import ranvier
from ranvier import _C, nn, ops
from references import batch_norm as bn_ref
from references import pooling as ref

DTYPES = [np.float32, np.float64]
GPU_DEVICE = "cuda"  # where the nn-layer tests move their second layer

# Larger than one 256-thread block and not a multiple of it; an empty batch.
MAX2D_GPU_CASES = MAX2D_CASES + [
    ((3, 5, 37, 41), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 3, 29, 31), dict(kernel_size=(3, 2), stride=(2, 1), padding=1, dilation=(2, 3), ceil_mode=True)),
    ((0, 2, 5, 5), dict(kernel_size=2)),
]
AVG2D_GPU_CASES = AVG2D_CASES + [
    ((3, 5, 37, 41), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ((2, 3, 29, 31), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
    ((0, 2, 5, 5), dict(kernel_size=2)),
]
ADAPTIVE2D_GPU_CASES = ADAPTIVE2D_CASES + [((3, 5, 37, 41), (6, 7)), ((2, 3, 5, 7), (11, 13)),
                                           ((0, 2, 5, 5), 2)]


@pytest.fixture
def cp():
    cupy = pytest.importorskip("cupy")
    if not ranvier.cuda.is_available():
        pytest.skip(f"no usable GPU: {ranvier.cuda.unavailable_reason()}")
    return cupy


def _sizes(value, dims):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


def _window(dims, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, **_):
    """The _C window arguments (kernel, stride, padding, dilation as tuples; ceil_mode)."""
    kernel = _sizes(kernel_size, dims)
    return (kernel, kernel if stride is None else _sizes(stride, dims), _sizes(padding, dims),
            _sizes(dilation, dims), bool(ceil_mode))


# --- max pooling ---------------------------------------------------------------------------

def _check_max_pool(cp, rng, shape, window, dtype, x=None):
    dims = len(shape) - 2
    kernel, stride, padding, dilation, ceil_mode = _window(dims, **window)
    x = _distinct(rng, shape, dtype) if x is None else x
    forward_ref = ref.max_pool2d if dims == 2 else ref.max_pool1d
    y_ref, idx_ref = forward_ref(x, **window)
    y_cpu, idx_cpu = (ops.max_pool2d if dims == 2 else ops.max_pool1d)(x, **window)

    y = cp.full(y_ref.shape, cp.nan, dtype=dtype)
    idx = cp.full(y_ref.shape, -7, dtype=np.int64)
    _C.max_pool_forward(cp.asarray(x), y, idx, kernel, stride, padding, dilation, ceil_mode)
    np.testing.assert_array_equal(cp.asnumpy(y), y_cpu)
    np.testing.assert_array_equal(cp.asnumpy(idx), idx_cpu)
    np.testing.assert_array_equal(cp.asnumpy(y), y_ref.astype(dtype))  # a max is exact
    np.testing.assert_array_equal(cp.asnumpy(idx), idx_ref)

    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    dx_cpu = (ops.max_pool2d_backward if dims == 2 else ops.max_pool1d_backward)(dy, idx_cpu, shape)
    grad_ref = ref.max_pool2d_grad if dims == 2 else ref.max_pool1d_grad
    dx_ref = grad_ref(x, dy, **window)
    # With the window (the gather kernel) and without (one thread per plane): the CPU's bits.
    for window_args in [(kernel, stride, padding, dilation, ceil_mode), ()]:
        dx = cp.full(shape, cp.nan, dtype=dtype)
        _C.max_pool_backward(cp.asarray(dy), idx, dx, *window_args)
        np.testing.assert_array_equal(cp.asnumpy(dx), dx_cpu)
        np.testing.assert_allclose(cp.asnumpy(dx), dx_ref, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window", MAX2D_GPU_CASES)
def test_max_pool2d_matches_reference_and_cpu(cp, shape, window, dtype, rng):
    _check_max_pool(cp, rng, shape, window, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window", MAX1D_CASES)
def test_max_pool1d_matches_reference_and_cpu(cp, shape, window, dtype, rng):
    _check_max_pool(cp, rng, shape, window, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_ties_and_nan_pick_the_cpu_indices(cp, dtype, rng):
    # Few distinct values (many ties inside overlapping windows), and some NaNs.
    x = rng.integers(0, 3, size=(2, 3, 11, 13)).astype(dtype)
    x[0, 1, 2, 3] = x[1, 2, 7, 7] = x[1, 2, 8, 8] = np.nan
    _check_max_pool(cp, rng, x.shape, dict(kernel_size=3, stride=2, padding=1), dtype, x=x)
    _check_max_pool(cp, rng, x.shape, dict(kernel_size=(2, 4), stride=1), dtype, x=x)


def test_max_pool_backward_rejects_out_of_plane_indices_on_the_gpu(cp, rng):
    x = cp.asarray(rng.standard_normal((1, 2, 4, 4)))
    y, idx = ops.max_pool2d(x, 2)
    bad = idx.copy()
    bad[0, 1, 0, 1] = 16
    with pytest.raises(IndexError, match=r"max_pool2d_backward: indices\[5\] = 16 is outside the input plane of 16"):
        ops.max_pool2d_backward(cp.ones_like(y), bad, x.shape)
    with pytest.raises(IndexError, match="max_pool2d_backward: indices.* = -1 is outside"):
        ops.max_pool2d_backward(cp.ones_like(y), -cp.ones_like(idx), x.shape, kernel_size=2)


# --- average and adaptive average pooling ------------------------------------------------------

def _check_avg_pool(cp, rng, shape, window, dtype):
    dims = len(shape) - 2
    kernel, stride, padding, _, ceil_mode = _window(dims, **window)
    count_include_pad = window.get("count_include_pad", True)
    divisor = window.get("divisor_override") or 0
    x = rng.standard_normal(shape).astype(dtype)
    y_ref = (ref.avg_pool2d if dims == 2 else ref.avg_pool1d)(x, **window)
    y_cpu = (ops.avg_pool2d if dims == 2 else ops.avg_pool1d)(x, **window)
    y = cp.full(y_ref.shape, cp.nan, dtype=dtype)
    _C.avg_pool_forward(cp.asarray(x), y, kernel, stride, padding, ceil_mode, count_include_pad, divisor)
    np.testing.assert_array_equal(cp.asnumpy(y), y_cpu)
    np.testing.assert_allclose(cp.asnumpy(y), y_ref, **tol(dtype))

    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    dx_ref = (ref.avg_pool2d_grad if dims == 2 else ref.avg_pool1d_grad)(x, dy, **window)
    dx_cpu = (ops.avg_pool2d_backward if dims == 2 else ops.avg_pool1d_backward)(dy, shape, **window)
    dx = cp.full(shape, cp.nan, dtype=dtype)
    _C.avg_pool_backward(cp.asarray(dy), dx, kernel, stride, padding, ceil_mode, count_include_pad, divisor)
    np.testing.assert_array_equal(cp.asnumpy(dx), dx_cpu)
    np.testing.assert_allclose(cp.asnumpy(dx), dx_ref, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window", AVG2D_GPU_CASES)
def test_avg_pool2d_matches_reference_and_cpu(cp, shape, window, dtype, rng):
    _check_avg_pool(cp, rng, shape, window, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window", AVG1D_CASES + [((2, 3, 31), dict(kernel_size=3, padding=1,
                                                                             count_include_pad=False))])
def test_avg_pool1d_matches_reference_and_cpu(cp, shape, window, dtype, rng):
    _check_avg_pool(cp, rng, shape, window, dtype)


def _check_adaptive(cp, rng, shape, output_size, dtype):
    dims = len(shape) - 2
    x = rng.standard_normal(shape).astype(dtype)
    y_cpu = (ops.adaptive_avg_pool2d if dims == 2 else ops.adaptive_avg_pool1d)(x, output_size)
    size = tuple(y_cpu.shape[2:]) if dims == 2 else y_cpu.shape[-1]  # None entries resolved
    y_ref = (ref.adaptive_avg_pool2d if dims == 2 else ref.adaptive_avg_pool1d)(x, size)
    y = cp.full(y_cpu.shape, cp.nan, dtype=dtype)
    _C.adaptive_avg_pool_forward(cp.asarray(x), y)
    np.testing.assert_array_equal(cp.asnumpy(y), y_cpu)
    np.testing.assert_allclose(cp.asnumpy(y), y_ref, **tol(dtype))

    dy = rng.standard_normal(y_cpu.shape).astype(dtype)
    dx_cpu = (ops.adaptive_avg_pool2d_backward if dims == 2 else ops.adaptive_avg_pool1d_backward)(dy, shape)
    dx_ref = (ref.adaptive_avg_pool2d_grad if dims == 2 else ref.adaptive_avg_pool1d_grad)(x, dy)
    dx = cp.full(shape, cp.nan, dtype=dtype)
    _C.adaptive_avg_pool_backward(cp.asarray(dy), dx)
    np.testing.assert_array_equal(cp.asnumpy(dx), dx_cpu)
    np.testing.assert_allclose(cp.asnumpy(dx), dx_ref, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, output_size", ADAPTIVE2D_GPU_CASES)
def test_adaptive_avg_pool2d_matches_reference_and_cpu(cp, shape, output_size, dtype, rng):
    _check_adaptive(cp, rng, shape, output_size, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, output_size", ADAPTIVE1D_CASES + [((3, 2, 301), 7)])
def test_adaptive_avg_pool1d_matches_reference_and_cpu(cp, shape, output_size, dtype, rng):
    _check_adaptive(cp, rng, shape, output_size, dtype)


def test_pooling_ops_take_and_return_cupy_arrays_unbatched_too(cp, rng):
    x = rng.standard_normal((3, 9, 10))  # unbatched (C, H, W)
    x_dev = cp.asarray(x)
    for forward, backward, args in [
            (lambda a: ops.max_pool2d(a, 3, 2, 1)[0], None, ()),
            (lambda a: ops.avg_pool2d(a, 3, 2, 1), lambda g: ops.avg_pool2d_backward(g, x.shape, 3, 2, 1), ()),
            (lambda a: ops.adaptive_avg_pool2d(a, (4, 3)), lambda g: ops.adaptive_avg_pool2d_backward(g, x.shape),
             ())]:
        y = forward(x_dev)
        assert isinstance(y, cp.ndarray)
        np.testing.assert_array_equal(cp.asnumpy(y), forward(x))
        if backward is not None:
            g = backward(cp.ones_like(y))
            assert isinstance(g, cp.ndarray) and g.shape == x.shape
            np.testing.assert_array_equal(cp.asnumpy(g), backward(np.ones(y.shape)))
    y, idx = ops.max_pool2d(x_dev, 3, 2, 1)
    g = ops.max_pool2d_backward(cp.ones_like(y), idx, x.shape, 3, 2, 1)
    assert isinstance(g, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(g), ops.max_pool2d_backward(np.ones(y.shape), cp.asnumpy(idx),
                                                                         x.shape))


def test_pooling_rejects_mixed_devices(cp, rng):
    x = rng.standard_normal((1, 2, 6, 6))
    y, idx = ops.max_pool2d(x, 2)
    with pytest.raises(ValueError, match="max_pool2d: x is on cpu but out is on cuda"):
        _C.max_pool_forward(x, cp.asarray(y), cp.asarray(idx), (2, 2), (2, 2), (0, 0), (1, 1), False)
    with pytest.raises(ValueError, match="max_pool2d_backward: grad_output is on cuda but indices is on cpu"):
        _C.max_pool_backward(cp.asarray(y), idx, cp.asarray(x))
    with pytest.raises(ValueError, match="avg_pool2d_backward: grad_output is on cuda but out is on cpu"):
        _C.avg_pool_backward(cp.asarray(y), x.copy(), (2, 2), (2, 2), (0, 0), False, True, 0)
    with pytest.raises(ValueError, match="adaptive_avg_pool2d: x is on cuda but out is on cpu"):
        _C.adaptive_avg_pool_forward(cp.asarray(x), np.empty((1, 2, 3, 3)))


# --- batch normalisation -------------------------------------------------------------------
# Small cases go through the float64 references (whose training gradient is O(n^2) per
# channel); large ones (several reduction blocks per channel, many channels) through the CPU.
BN_REF_SHAPES = [(5, 3), (2, 1), (7, 4, 3), (3, 2, 5, 4), (1, 3, 2, 17)]
BN_CPU_SHAPES = [(3, 5, 37, 41), (7, 300), (2, 3, 70, 70), (257, 3, 1)]


def _bn_inputs(rng, shape, dtype, affine=True):
    channels = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    weight = rng.uniform(0.5, 1.5, channels).astype(dtype) if affine else None
    bias = rng.standard_normal(channels).astype(dtype) if affine else None
    running_mean = rng.standard_normal(channels).astype(dtype)
    running_var = rng.uniform(0.5, 2.0, channels).astype(dtype)
    return x, weight, bias, running_mean, running_var


def _bn_forward_gpu(cp, x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """_C.batch_norm_forward on device copies with NaN-filled outputs; returns host arrays
    (y, save_mean, save_invstd, running_mean, running_var)."""
    channels = x.shape[1]
    dev = [None if a is None else cp.asarray(a) for a in (x, weight, bias, running_mean, running_var)]
    y = cp.full(x.shape, cp.nan, dtype=x.dtype)
    save_mean = cp.full((channels,), cp.nan, dtype=x.dtype)
    save_invstd = cp.full((channels,), cp.nan, dtype=x.dtype)
    _C.batch_norm_forward(dev[0], y, dev[1], dev[2], dev[3], dev[4], save_mean, save_invstd, training,
                          momentum, eps)
    return [None if a is None else cp.asnumpy(a) for a in (y, save_mean, save_invstd, dev[3], dev[4])]


def _bn_backward_gpu(cp, dy, x, save_mean, save_invstd, weight, training, want_dx=True):
    channels = x.shape[1]
    dx = cp.full(x.shape, cp.nan, dtype=x.dtype) if want_dx else None
    grad_weight = cp.full((channels,), cp.nan, dtype=x.dtype)
    grad_bias = cp.full((channels,), cp.nan, dtype=x.dtype)
    _C.batch_norm_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(save_mean), cp.asarray(save_invstd),
                           None if weight is None else cp.asarray(weight), dx, grad_weight, grad_bias, training)
    return [None if a is None else cp.asnumpy(a) for a in (dx, grad_weight, grad_bias)]


def _assert_close(actual, expected, dtype, factor=1.0):
    t = tol(dtype)
    np.testing.assert_allclose(actual, expected, rtol=t["rtol"] * factor, atol=t["atol"] * factor)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_REF_SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_reference(cp, shape, training, affine, dtype, rng):
    if training and shape[0] * int(np.prod(shape[2:])) < 2:
        pytest.skip("training needs more than one value per channel")
    x, weight, bias, running_mean, running_var = _bn_inputs(rng, shape, dtype, affine)
    y, save_mean, save_invstd, new_mean, new_var = _bn_forward_gpu(cp, x, weight, bias, running_mean,
                                                                   running_var, training, momentum=0.3)
    y_ref, mean_ref, invstd_ref, new_mean_ref, new_var_ref = bn_ref.batch_norm(
        x, running_mean, running_var, weight, bias, training=training, momentum=0.3)
    _assert_close(y, y_ref, dtype, 10)
    _assert_close(save_mean, mean_ref, dtype)
    _assert_close(save_invstd, invstd_ref, dtype)
    _assert_close(new_mean, new_mean_ref, dtype)
    _assert_close(new_var, new_var_ref, dtype)

    dy = rng.standard_normal(shape).astype(dtype)
    dx, grad_weight, grad_bias = _bn_backward_gpu(cp, dy, x, save_mean, save_invstd, weight, training)
    dx_ref, dw_ref, db_ref = bn_ref.batch_norm_grad(x, dy, weight, training=training,
                                                    running_mean=running_mean, running_var=running_var)
    _assert_close(dx, dx_ref, dtype, 10)
    _assert_close(grad_weight, dw_ref, dtype, 10)
    _assert_close(grad_bias, db_ref, dtype, 10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_CPU_SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_the_cpu_and_is_reproducible(cp, shape, training, dtype, rng):
    x, weight, bias, running_mean, running_var = _bn_inputs(rng, shape, dtype)
    cpu_mean, cpu_var = running_mean.copy(), running_var.copy()
    y_cpu, mean_cpu, invstd_cpu = ops.batch_norm(x, cpu_mean, cpu_var, weight, bias, training=training)
    first = _bn_forward_gpu(cp, x, weight, bias, running_mean, running_var, training)
    second = _bn_forward_gpu(cp, x, weight, bias, running_mean, running_var, training)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)  # the same bits every run
    y, save_mean, save_invstd, new_mean, new_var = first
    for actual, expected in [(y, y_cpu), (save_mean, mean_cpu), (save_invstd, invstd_cpu),
                             (new_mean, cpu_mean), (new_var, cpu_var)]:
        _assert_close(actual, expected, dtype, 10)

    dy = rng.standard_normal(shape).astype(dtype)
    dx_cpu, dw_cpu, db_cpu = ops.batch_norm_backward(dy, x, mean_cpu, invstd_cpu, weight, training=training)
    grads = _bn_backward_gpu(cp, dy, x, save_mean, save_invstd, weight, training)
    np.testing.assert_array_equal(grads[0], _bn_backward_gpu(cp, dy, x, save_mean, save_invstd, weight,
                                                             training)[0])
    # Sums over thousands of values: a looser factor for float32.
    factor = 10 if dtype == np.float64 else 200
    _assert_close(grads[0], dx_cpu, dtype, factor)
    _assert_close(grads[1], dw_cpu, dtype, factor)
    _assert_close(grads[2], db_cpu, dtype, factor)
    # grad_weight and grad_bias alone (dx not wanted).
    no_dx = _bn_backward_gpu(cp, dy, x, save_mean, save_invstd, weight, training, want_dx=False)
    assert no_dx[0] is None
    np.testing.assert_array_equal(no_dx[1], grads[1])
    np.testing.assert_array_equal(no_dx[2], grads[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_eval_of_an_empty_batch(cp, dtype, rng):
    x, weight, bias, running_mean, running_var = _bn_inputs(rng, (0, 3, 4), dtype)
    y, save_mean, save_invstd, _, _ = _bn_forward_gpu(cp, x, weight, bias, running_mean, running_var, False)
    assert y.shape == (0, 3, 4)
    np.testing.assert_array_equal(save_mean, running_mean)
    dx, grad_weight, grad_bias = _bn_backward_gpu(cp, x, x, save_mean, save_invstd, weight, False)
    assert dx.shape == (0, 3, 4)
    np.testing.assert_array_equal(grad_weight, np.zeros(3))
    np.testing.assert_array_equal(grad_bias, np.zeros(3))


def test_batch_norm_ops_update_cupy_running_stats_in_place(cp, rng):
    x, weight, bias, running_mean, running_var = _bn_inputs(rng, (6, 4, 5), np.float32)
    mean_dev, var_dev = cp.asarray(running_mean), cp.asarray(running_var)
    y, save_mean, save_invstd = ops.batch_norm(cp.asarray(x), mean_dev, var_dev, cp.asarray(weight),
                                               cp.asarray(bias), training=True, momentum=0.2)
    assert all(isinstance(a, cp.ndarray) for a in (y, save_mean, save_invstd))
    _, _, _, mean_ref, var_ref = bn_ref.batch_norm(x, running_mean, running_var, weight, bias, training=True,
                                                   momentum=0.2)
    _assert_close(cp.asnumpy(mean_dev), mean_ref, np.float32)
    _assert_close(cp.asnumpy(var_dev), var_ref, np.float32)
    grads = ops.batch_norm_backward(cp.ones_like(y), cp.asarray(x), save_mean, save_invstd, cp.asarray(weight),
                                    training=True)
    assert all(isinstance(g, cp.ndarray) for g in grads)
    with pytest.raises(ValueError, match="batch_norm: running_mean is on cpu but the other inputs are on cuda"):
        ops.batch_norm(cp.asarray(x), running_mean, running_var, training=True)


# --- the nn layers after Module.to('cuda') -------------------------------------------------

def _layer_on_both(make, x, steps=2):
    """Runs a fresh layer on the CPU and a copy moved to GPU_DEVICE on the same inputs (training
    `steps` times, then once in eval mode); returns both layers and their outputs/grads."""
    import cupy

    ranvier.manual_seed(3)
    cpu_layer = make()
    ranvier.manual_seed(3)
    gpu_layer = make().to(GPU_DEVICE)
    results = []
    for layer, device in [(cpu_layer, "cpu"), (gpu_layer, GPU_DEVICE)]:
        outputs = []
        for _ in range(steps):
            inp = ranvier.tensor(x, device=device, requires_grad=True)
            out = layer(inp)
            (out * out).sum().backward()
            outputs.append((out.detach().to("cpu").numpy(), inp.grad.to("cpu").numpy()))
        layer.eval()
        outputs.append((layer(ranvier.tensor(x, device=device)).detach().to("cpu").numpy(), None))
        results.append(outputs)
    for buffer in gpu_layer.buffers():
        assert buffer is None or isinstance(buffer, cupy.ndarray)
    return cpu_layer, gpu_layer, results


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.MaxPool2d(3, stride=2, padding=1), (2, 3, 11, 9)),
    (lambda: nn.MaxPool1d(4, stride=3, ceil_mode=True), (2, 3, 23)),
    (lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 3, 11, 9)),
    (lambda: nn.AvgPool1d(2), (3, 2, 9)),
    (lambda: nn.AdaptiveAvgPool2d((3, 2)), (2, 3, 11, 9)),
    (lambda: nn.AdaptiveAvgPool1d(4), (2, 3, 10)),
    # nn.Sequential runs these as the pooling, then ReLU on the pooled values.
    (lambda: nn.Sequential(nn.ReLU(), nn.MaxPool2d(2)), (2, 3, 8, 9)),
    (lambda: nn.Sequential(nn.ReLU(), nn.MaxPool1d(3, stride=2)), (2, 3, 17)),
])
def test_pooling_layers_on_cuda_match_the_cpu(cp, make, shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    _, _, (cpu, gpu) = _layer_on_both(make, x)
    for (y_cpu, g_cpu), (y_gpu, g_gpu) in zip(cpu, gpu):
        np.testing.assert_array_equal(y_gpu, y_cpu)
        if g_cpu is not None:
            np.testing.assert_array_equal(g_gpu, g_cpu)


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.BatchNorm2d(3), (4, 3, 5, 7)),
    (lambda: nn.BatchNorm2d(3, momentum=None), (4, 3, 5, 7)),
    (lambda: nn.BatchNorm1d(5, affine=False), (9, 5)),
    (lambda: nn.BatchNorm1d(4, momentum=0.5), (3, 4, 6)),
])
def test_batch_norm_layers_on_cuda_match_the_cpu(cp, make, shape, rng):
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    cpu_layer, gpu_layer, (cpu, gpu) = _layer_on_both(make, x)
    for (y_cpu, g_cpu), (y_gpu, g_gpu) in zip(cpu, gpu):
        _assert_close(y_gpu, y_cpu, np.float32, 10)
        if g_cpu is not None:
            _assert_close(g_gpu, g_cpu, np.float32, 50)
    for name in ("running_mean", "running_var"):
        on_gpu = getattr(gpu_layer, name)
        assert isinstance(on_gpu, cp.ndarray)
        _assert_close(cp.asnumpy(on_gpu), getattr(cpu_layer, name), np.float32, 10)
    assert int(gpu_layer.num_batches_tracked) == int(cpu_layer.num_batches_tracked) == 2
    if gpu_layer.weight is not None:
        _assert_close(gpu_layer.weight.grad.to("cpu").numpy(), cpu_layer.weight.grad.numpy(), np.float32, 50)
        _assert_close(gpu_layer.bias.grad.to("cpu").numpy(), cpu_layer.bias.grad.numpy(), np.float32, 50)
