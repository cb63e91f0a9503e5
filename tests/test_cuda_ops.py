"""The CUDA twins of softmax/log_softmax, the four losses, dropout/uniform and the optimizer
updates, against the float64 references in tests/references/ and against the CPU kernels on
the same fresh random inputs.

Kernel-level cases call ranvier._C directly with output buffers filled with NaN on both
devices, so that an element a kernel forgets to write shows up. What must be bit-identical is
checked with assert_array_equal: dropout masks and outputs and uniform numbers (the same
Philox mapping), and optimizer steps (the same per-element code, compiled without FMA
contraction). Everything else (sums in a different order) agrees to the dtype's tolerance.

The whole module skips without CuPy or without a usable GPU.
"""

import numpy as np
import pytest
from conftest import tol
from loss_kinds import cpu_backward as _loss_backward
from loss_kinds import cpu_forward as _loss_forward
from loss_kinds import reference_backward as _loss_grad_reference
from loss_kinds import reference_forward as _loss_reference
from references import dropout as dropout_ref
from references import losses as loss_ref
from references import optim as optim_ref
from references import softmax as softmax_ref

import ranvier
from ranvier import _C, ops

cp = pytest.importorskip("cupy")
if not ranvier.cuda.is_available():
    pytest.skip(f"no usable GPU: {ranvier.cuda.unavailable_reason()}", allow_module_level=True)

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "mean", "sum"]


def nan_outputs(shape, dtype):
    """(host buffer, device buffer), both filled with NaN."""
    return np.full(shape, np.nan, dtype=dtype), cp.full(shape, cp.nan, dtype=dtype)


def on_gpu(*arrays):
    return [None if a is None else cp.asarray(a) for a in arrays]


def assert_close(actual, expected, dtype, factor=1.0):
    t = tol(dtype)
    np.testing.assert_allclose(cp.asnumpy(actual) if isinstance(actual, cp.ndarray) else actual,
                               expected, rtol=t["rtol"] * factor, atol=t["atol"] * factor)


# --- softmax / log_softmax ------------------------------------------------------------------
# (shape, axis): rows with inner == 1 (dims below, at and above the block widths 32..256),
# strided lines with inner > 1, batch 1, primes, empty.
SOFTMAX_CASES = [((1, 1), -1), ((7,), 0), ((3, 7), -1), ((5, 33), 1), ((4, 257), -1), ((2, 519), -1),
                 ((13, 64), -1), ((2, 3, 5), 1), ((3, 17, 4), 0), ((2, 5, 3, 7), 2), ((0, 5), -1), ((3, 0), -1),
                 ((5, 1), 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", SOFTMAX_CASES)
@pytest.mark.parametrize("log", [False, True])
def test_softmax_forward_backward(dtype, shape, axis, log):
    rng = np.random.default_rng(hash((shape, axis, log)) % 2**32)
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y_cpu, y_gpu = nan_outputs(shape, dtype)
    _C.softmax_forward(x, y_cpu, axis, log)
    _C.softmax_forward(cp.asarray(x), y_gpu, axis, log)
    assert_close(y_gpu, y_cpu, dtype)
    if x.size:  # the reference needs at least one element per line
        assert_close(y_gpu, softmax_ref.softmax(x, axis, log=log), dtype)
    dx_cpu, dx_gpu = nan_outputs(shape, dtype)
    _C.softmax_backward(y_cpu, dy, dx_cpu, axis, log)
    _C.softmax_backward(cp.asarray(y_cpu), cp.asarray(dy), dx_gpu, axis, log)
    assert_close(dx_gpu, dx_cpu, dtype, factor=4)
    if x.size:
        assert_close(dx_gpu, softmax_ref.softmax_grad(x, dy, axis, log=log), dtype, factor=4)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_special_values_and_in_place(log):
    # A NaN row and an all -inf row give NaN everywhere, +inf too; as the CPU kernel.
    x = np.array([[1.0, np.nan, 2.0], [-np.inf, -np.inf, -np.inf], [np.inf, 0.0, 1.0], [0.0, 1.0, 2.0]],
                 dtype=np.float32)
    y_cpu, y_gpu = nan_outputs(x.shape, np.float32)
    _C.softmax_forward(x, y_cpu, -1, log)
    _C.softmax_forward(cp.asarray(x), y_gpu, -1, log)
    np.testing.assert_allclose(cp.asnumpy(y_gpu), y_cpu, **tol(np.float32))  # NaN where the CPU has NaN
    # In place (out is x): the kernels read each element before writing it.
    x_gpu = cp.asarray(x[3:])
    _C.softmax_forward(x_gpu, x_gpu, -1, log)
    assert_close(x_gpu, y_cpu[3:], np.float32)


def test_softmax_ops_returns_cupy_and_runs_on_the_current_stream():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 300))
    with cp.cuda.Stream(non_blocking=True):
        x_gpu = cp.asarray(x)
        y = ops.log_softmax(x_gpu, axis=-1)
        dx = ops.log_softmax_backward(y, cp.ones_like(y), axis=-1)
        assert isinstance(y, cp.ndarray) and isinstance(dx, cp.ndarray)
        y_host, dx_host = cp.asnumpy(y), cp.asnumpy(dx)
    assert_close(y_host, softmax_ref.log_softmax(x, -1), np.float64)
    assert_close(dx_host, softmax_ref.log_softmax_grad(x, np.ones_like(x), -1), np.float64, factor=4)


# --- elementwise losses ---------------------------------------------------------------------
# Sizes: 1, odd, primes, past one block (256) and past the 1024 partial sums of the reduction.
LOSS_SIZES = [1, 7, 97, 257, 4099]
LARGE_LOSS_SIZE = 300_007  # CPU comparison only (the references loop in Python)


def _elementwise_inputs(kind, n, dtype, rng, weighted):
    if kind == "bce":
        first = rng.uniform(0.02, 0.98, n)
        target = rng.uniform(0.0, 1.0, n)
    else:
        first = 3 * rng.standard_normal(n)
        target = rng.uniform(0.0, 1.0, n) if kind == "bce_logits" else rng.standard_normal(n)
    weight = rng.uniform(0.5, 2.0, n).astype(dtype) if weighted else None
    return first.astype(dtype), target.astype(dtype), weight


ELEMENTWISE_VARIANTS = [("mse", False, False), ("bce", False, False), ("bce", True, False),
                        ("bce_logits", False, False), ("bce_logits", True, False), ("bce_logits", True, True)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n", LOSS_SIZES)
@pytest.mark.parametrize("kind,weighted,with_pos_weight", ELEMENTWISE_VARIANTS)
def test_elementwise_loss(kind, weighted, with_pos_weight, n, reduction, dtype):
    rng = np.random.default_rng(n * 7 + len(kind))
    first, target, weight = _elementwise_inputs(kind, n, dtype, rng, weighted)
    # pos_weight has one entry per element of the last axis: n here (1-D inputs).
    pos_weight = rng.uniform(0.5, 3.0, n).astype(dtype) if with_pos_weight else None
    out_shape = (n,) if reduction == "none" else ()
    out_cpu, out_gpu = nan_outputs(out_shape, dtype)
    _loss_forward(kind, first, target, weight, pos_weight, out_cpu, reduction)
    g_first, g_target, g_weight, g_pos = on_gpu(first, target, weight, pos_weight)
    _loss_forward(kind, g_first, g_target, g_weight, g_pos, out_gpu, reduction)
    assert_close(out_gpu, out_cpu, dtype)
    assert_close(out_gpu, _loss_reference(kind, first, target, weight, pos_weight, reduction), dtype)

    dout = np.asarray(rng.standard_normal(out_shape) + 0.5, dtype=dtype)  # 0-d stays an array
    dx_cpu, dx_gpu = nan_outputs((n,), dtype)
    _loss_backward(kind, first, target, weight, pos_weight, dout, dx_cpu, reduction)
    _loss_backward(kind, g_first, g_target, g_weight, g_pos, cp.asarray(dout), dx_gpu, reduction)
    assert_close(dx_gpu, dx_cpu, dtype)
    assert_close(dx_gpu, _loss_grad_reference(kind, first, target, weight, pos_weight, dout, reduction), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["mse", "bce", "bce_logits"])
def test_large_reductions_match_the_cpu_and_are_reproducible(kind, dtype):
    rng = np.random.default_rng(11)
    first, target, weight = _elementwise_inputs(kind, LARGE_LOSS_SIZE, dtype, rng, weighted=True)
    if kind == "mse":
        weight = None
    g_first, g_target, g_weight = on_gpu(first, target, weight)
    for reduction in ("mean", "sum"):
        out_cpu, out_gpu = nan_outputs((), dtype)
        _loss_forward(kind, first, target, weight, None, out_cpu, reduction)
        _loss_forward(kind, g_first, g_target, g_weight, None, out_gpu, reduction)
        assert_close(out_gpu, out_cpu, dtype)
        again = cp.full((), cp.nan, dtype=dtype)
        _loss_forward(kind, g_first, g_target, g_weight, None, again, reduction)
        # The fixed two-pass reduction gives the same bits every run.
        np.testing.assert_array_equal(cp.asnumpy(again), cp.asnumpy(out_gpu))


def test_bce_rejects_probabilities_outside_0_1_on_the_gpu():
    prob = cp.asarray(np.array([0.2, 0.5, 1.5, -0.1, 0.3]))
    target = cp.zeros(5)
    with pytest.raises(ValueError, match=r"binary_cross_entropy: prob must hold probabilities in \[0, 1\], "
                                         r"but prob\[2\] = 1.5"):
        _C.bce_loss_forward(prob, target, None, cp.empty(()), "mean")
    prob[2] = cp.nan
    with pytest.raises(ValueError, match=r"binary_cross_entropy_backward: .* prob\[2\] = nan"):
        _C.bce_loss_backward(prob, target, None, cp.ones(()), cp.empty(5), "mean")
    with pytest.raises(ValueError, match=r"binary_cross_entropy: .* prob\[2\] = nan"):
        ops.binary_cross_entropy(prob, target)


# --- cross-entropy --------------------------------------------------------------------------
CROSS_ENTROPY_SHAPES = [(1, 1), (1, 5), (5, 3), (17, 10), (33, 257), (300, 7)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("rows,classes", CROSS_ENTROPY_SHAPES)
@pytest.mark.parametrize("weighted,ignore", [(False, False), (True, False), (True, True)])
def test_cross_entropy(rows, classes, reduction, dtype, weighted, ignore):
    rng = np.random.default_rng(rows * 1000 + classes)
    logits = (3 * rng.standard_normal((rows, classes))).astype(dtype)
    target = rng.integers(0, classes, rows).astype(np.int64)
    if ignore:
        target[:: 3] = -100
    weight = rng.uniform(0.5, 2.0, classes).astype(dtype) if weighted else None
    out_shape = (rows,) if reduction == "none" else ()
    out_cpu, out_gpu = nan_outputs(out_shape, dtype)
    _C.cross_entropy_forward(logits, target, weight, out_cpu, -100, reduction)
    g_logits, g_target, g_weight = on_gpu(logits, target, weight)
    _C.cross_entropy_forward(g_logits, g_target, g_weight, out_gpu, -100, reduction)
    assert_close(out_gpu, out_cpu, dtype)
    assert_close(out_gpu, loss_ref.cross_entropy(logits, target, weight, -100, reduction), dtype)

    dout = np.asarray(rng.standard_normal(out_shape) + 0.5, dtype=dtype)  # 0-d stays an array
    dx_cpu, dx_gpu = nan_outputs((rows, classes), dtype)
    _C.cross_entropy_backward(logits, target, weight, dout, dx_cpu, -100, reduction)
    _C.cross_entropy_backward(g_logits, g_target, g_weight, cp.asarray(dout), dx_gpu, -100, reduction)
    assert_close(dx_gpu, dx_cpu, dtype)
    assert_close(dx_gpu, loss_ref.cross_entropy_grad(logits, target, dout, weight, -100, reduction), dtype)


def test_cross_entropy_all_ignored_mean_is_nan_as_on_the_cpu():
    logits = np.zeros((3, 4))
    target = np.full(3, -100, dtype=np.int64)
    out_cpu, out_gpu = nan_outputs((), np.float64)
    out_gpu[...] = 0.0  # so that a NaN here is the kernel's
    _C.cross_entropy_forward(logits, target, None, out_cpu, -100, "mean")
    _C.cross_entropy_forward(cp.asarray(logits), cp.asarray(target), None, out_gpu, -100, "mean")
    assert np.isnan(out_cpu) and np.isnan(cp.asnumpy(out_gpu))


@pytest.mark.parametrize("bad", [7, -1, 4])
def test_cross_entropy_rejects_out_of_range_targets_on_the_gpu(bad):
    logits = cp.zeros((5, 4))
    target = cp.asarray(np.array([0, 3, bad, 1, bad], dtype=np.int64))
    with pytest.raises(IndexError, match=rf"cross_entropy: target\[2\] = {bad} is not a class index in \[0, 4\)"):
        _C.cross_entropy_forward(logits, target, None, cp.empty(()), -100, "mean")
    with pytest.raises(IndexError, match=rf"cross_entropy_backward: target\[2\] = {bad} is not a class index"):
        _C.cross_entropy_backward(logits, target, None, cp.ones(()), cp.empty((5, 4)), -100, "mean")
    with pytest.raises(IndexError, match=rf"cross_entropy: target\[2\] = {bad}"):
        ops.cross_entropy(logits, target)


def test_cross_entropy_ops_on_gpu_with_spatial_axes():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((2, 5, 3, 4))
    target = rng.integers(0, 5, (2, 3, 4))
    loss = ops.cross_entropy(cp.asarray(logits), cp.asarray(target))
    grad = ops.cross_entropy_backward(cp.asarray(logits), cp.asarray(target), cp.ones(()))
    assert isinstance(loss, cp.ndarray) and isinstance(grad, cp.ndarray)
    assert_close(loss, loss_ref.cross_entropy(logits, target), np.float64)
    assert_close(grad, loss_ref.cross_entropy_grad(logits, target, np.ones(())), np.float64)


def test_losses_reject_mixed_devices():
    x = np.ones(4)
    with pytest.raises(ValueError, match="mse_loss: pred is on cuda but target is on cpu"):
        _C.mse_loss_forward(cp.ones(4), x, cp.empty(()), "sum")
    with pytest.raises(ValueError, match="cross_entropy: logits is on cuda but target is on cpu"):
        _C.cross_entropy_forward(cp.zeros((4, 2)), np.zeros(4, dtype=np.int64), None, cp.empty(()), -100, "sum")


# --- dropout and uniform numbers ------------------------------------------------------------
STREAM_SIZES = [1, 3, 4, 5, 17, 1000, 4099]
OFFSETS = [0, 1, 3, 4, 6, 2**40 + 3]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", STREAM_SIZES)
@pytest.mark.parametrize("offset", OFFSETS)
def test_uniform_equals_the_cpu_and_the_reference(n, offset, dtype):
    seed = 0x1234_5678_9ABC_DEF0
    out_cpu, out_gpu = nan_outputs((n,), dtype)
    _C.uniform_fill(out_cpu, seed, offset)
    _C.uniform_fill(out_gpu, seed, offset)
    np.testing.assert_array_equal(cp.asnumpy(out_gpu), out_cpu)
    np.testing.assert_array_equal(cp.asnumpy(out_gpu).astype(np.float64), dropout_ref.uniform(seed, offset, n))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", STREAM_SIZES)
@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_masks_and_outputs_equal_the_cpu(n, offset, p, dtype):
    rng = np.random.default_rng(n + offset % 1000)
    seed = 42
    x = rng.standard_normal(n).astype(dtype)
    y_cpu, y_gpu = nan_outputs((n,), dtype)
    mask_cpu, mask_gpu = np.full(n, 7, np.uint8), cp.full(n, 7, cp.uint8)  # 7: neither 0 nor 1
    _C.dropout_forward(x, y_cpu, mask_cpu, p, seed, offset)
    _C.dropout_forward(cp.asarray(x), y_gpu, mask_gpu, p, seed, offset)
    np.testing.assert_array_equal(cp.asnumpy(mask_gpu), mask_cpu)
    np.testing.assert_array_equal(cp.asnumpy(y_gpu), y_cpu)
    y_ref, mask_ref = dropout_ref.dropout(x, p, seed, offset, dtype)
    np.testing.assert_array_equal(cp.asnumpy(mask_gpu), mask_ref)
    assert_close(y_gpu, y_ref, dtype)

    dy = rng.standard_normal(n).astype(dtype)
    dx_cpu, dx_gpu = nan_outputs((n,), dtype)
    _C.dropout_backward(dy, mask_cpu, dx_cpu, p)
    _C.dropout_backward(cp.asarray(dy), mask_gpu, dx_gpu, p)
    np.testing.assert_array_equal(cp.asnumpy(dx_gpu), dx_cpu)


def test_dropout_ops_on_gpu_in_place_and_empty():
    x = cp.asarray(np.arange(1.0, 11.0))
    y, mask = ops.dropout(x, 0.5, 9, 4)
    assert isinstance(y, cp.ndarray) and isinstance(mask, cp.ndarray)
    y_host, mask_host = ops.dropout(cp.asnumpy(x), 0.5, 9, 4)
    np.testing.assert_array_equal(cp.asnumpy(mask), mask_host)
    np.testing.assert_array_equal(cp.asnumpy(y), y_host)
    # In place: out is x.
    _C.dropout_forward(x, x, cp.empty(10, cp.uint8), 0.5, 9, 4)
    np.testing.assert_array_equal(cp.asnumpy(x), y_host)
    empty_y, empty_mask = ops.dropout(cp.empty((0, 3)), 0.5, 9, 4)
    assert empty_y.shape == (0, 3) and empty_mask.shape == (0, 3)


# --- optimizer updates ----------------------------------------------------------------------
OPTIM_SIZES = [1, 7, 257, 4099]

SGD_SETTINGS = [dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, dampening=0.3),
                dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
                dict(lr=0.02, weight_decay=0.1, maximize=True)]
ADAM_SETTINGS = [dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.1), dict(lr=1e-2, amsgrad=True),
                 dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
                 dict(lr=3e-3, betas=(0.8, 0.99), maximize=True, amsgrad=True)]
RMSPROP_SETTINGS = [dict(lr=1e-2), dict(lr=1e-2, momentum=0.9), dict(lr=1e-2, centered=True),
                    dict(lr=1e-2, centered=True, momentum=0.5, weight_decay=0.1), dict(lr=1e-2, maximize=True)]


def _sgd(xp, param, grad, state, step, settings):
    buffer = state.setdefault("momentum_buffer", xp.zeros_like(param)) if settings.get("momentum") else None
    _C.sgd_step(param, grad, buffer, settings["lr"], settings.get("momentum", 0.0), settings.get("dampening", 0.0),
                settings.get("weight_decay", 0.0), settings.get("nesterov", False), settings.get("maximize", False),
                step == 1)


def _adam(xp, param, grad, state, step, settings):
    for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        state.setdefault(name, xp.zeros_like(param))
    beta1, beta2 = settings.get("betas", (0.9, 0.999))
    _C.adam_step(param, grad, state["exp_avg"], state["exp_avg_sq"],
                 state["max_exp_avg_sq"] if settings.get("amsgrad") else None, settings["lr"], beta1, beta2, 1e-8,
                 settings.get("weight_decay", 0.0), step, settings.get("decoupled_weight_decay", False),
                 settings.get("amsgrad", False), settings.get("maximize", False))


def _rmsprop(xp, param, grad, state, step, settings):
    for name in ("square_avg", "momentum_buffer", "grad_avg"):
        state.setdefault(name, xp.zeros_like(param))
    _C.rmsprop_step(param, grad, state["square_avg"],
                    state["momentum_buffer"] if settings.get("momentum") else None,
                    state["grad_avg"] if settings.get("centered") else None, settings["lr"], 0.99, 1e-8,
                    settings.get("weight_decay", 0.0), settings.get("momentum", 0.0),
                    settings.get("centered", False), settings.get("maximize", False))


def _reference_step(name, param, grad, state, settings):
    if name == "sgd":
        return optim_ref.sgd(param, grad, state, **settings)
    if name == "rmsprop":
        return optim_ref.rmsprop(param, grad, state, **settings)
    settings = dict(settings)
    decoupled = settings.pop("decoupled_weight_decay", False)
    return optim_ref.adam(param, grad, state, decoupled=decoupled, **settings)


OPTIM_CASES = ([("sgd", _sgd, s) for s in SGD_SETTINGS] + [("adam", _adam, s) for s in ADAM_SETTINGS]
               + [("rmsprop", _rmsprop, s) for s in RMSPROP_SETTINGS])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", OPTIM_SIZES)
@pytest.mark.parametrize("name,step_fn,settings", OPTIM_CASES, ids=lambda v: str(v) if not callable(v) else "")
def test_optimizer_steps_equal_the_cpu_bit_for_bit(name, step_fn, settings, n, dtype):
    rng = np.random.default_rng(n)
    param_cpu = rng.standard_normal(n).astype(dtype)
    param_gpu = cp.asarray(param_cpu)
    reference_param, reference_state = param_cpu.astype(np.float64), {}
    state_cpu, state_gpu = {}, {}
    for step in range(1, 4):
        grad = rng.standard_normal(n).astype(dtype)
        step_fn(np, param_cpu, grad, state_cpu, step, settings)
        step_fn(cp, param_gpu, cp.asarray(grad), state_gpu, step, settings)
        # Same per-element code, no FMA contraction on the GPU: identical bits.
        np.testing.assert_array_equal(cp.asnumpy(param_gpu), param_cpu)
        for key, value in state_cpu.items():
            np.testing.assert_array_equal(cp.asnumpy(state_gpu[key]), value, err_msg=key)
        reference_param = _reference_step(name, reference_param, grad.astype(np.float64), reference_state,
                                          settings)
        assert_close(param_gpu, reference_param, dtype, factor=10)


def test_optimizer_ops_on_gpu_and_mixed_devices():
    param = cp.asarray(np.linspace(-1.0, 1.0, 11))
    grad = cp.asarray(np.linspace(0.5, -0.5, 11))
    expected = cp.asnumpy(param) - 0.1 * cp.asnumpy(grad)
    ops.sgd_step(param, grad, lr=0.1)
    np.testing.assert_array_equal(cp.asnumpy(param), expected)
    with pytest.raises(ValueError, match="sgd_step: param is on cuda but grad is on cpu"):
        _C.sgd_step(param, np.ones(11), None, 0.1, 0.0, 0.0, 0.0, False, False, False)
    with pytest.raises(ValueError, match="adam_step: param is on cuda but exp_avg is on cpu"):
        _C.adam_step(param, grad, np.zeros(11), cp.zeros(11), None, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1,
                     False, False, False)
