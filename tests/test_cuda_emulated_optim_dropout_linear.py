"""The CUDA optimizer updates (kernels/cuda/optim.cu), dropout and uniform numbers
(dropout.cu) and the fused linear + activation (linear.cu), run by the CPU emulator
(tests/cuda_emulation), against the CPU kernels in ranvier._C and the float64 references.

The contracts of tests/test_cuda_ops.py hold here too: an optimizer step equals the CPU's
bit for bit (the same optim_math.h code; neither the emulator, built by g++ without -mfma,
nor the nvcc build, --fmad=false, contracts into FMAs), and dropout masks, outputs and
uniform numbers equal the CPU's bit for bit for the same (seed, offset). Sizes straddle the
256-thread blocks and, for the multi-tensor updates, the launch table of optim.cu (32
tensors and 192 chunks of 65536 elements per launch) so that its splitting runs. Outputs
start as NaN (masks as 7) and arrays carry guard elements around them, so that an element
a kernel forgets, or one it writes out of bounds, shows.
"""

import numpy as np
import pytest
from conftest import tol
from references import activations as act_ref
from references import dropout as dropout_ref
from references import matmul as matmul_ref
from references import optim as optim_ref

from ranvier import _C

DTYPES = [np.float32, np.float64]
GUARD = 5  # guard elements on each side of a guarded array
SENTINEL = -12345.0


def guarded(values):
    """(buffer, view): the view holds `values` (1-D) with GUARD sentinel elements either side
    in the buffer; the view is C-contiguous, so it passes for a dense device array."""
    values = np.asarray(values)
    buffer = np.full(values.size + 2 * GUARD, SENTINEL, dtype=values.dtype)
    view = buffer[GUARD:GUARD + values.size]
    view[...] = values
    return buffer, view


def assert_guards_intact(buffer, name):
    np.testing.assert_array_equal(buffer[:GUARD], SENTINEL, err_msg=f"{name}: written before its start")
    np.testing.assert_array_equal(buffer[buffer.size - GUARD:], SENTINEL, err_msg=f"{name}: written past its end")


# --- optimizer updates, one tensor ------------------------------------------------------------
# 1, odd, a prime, one block of 256 threads exactly and either side of it, several blocks.
OPTIM_SIZES = [1, 7, 255, 256, 257, 1031]

SGD_SETTINGS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    dict(lr=0.02, weight_decay=0.1, maximize=True),
    dict(lr=0.03, momentum=0.5, dampening=0.5, weight_decay=0.2, maximize=True),
]
ADAM_SETTINGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, weight_decay=0.1),
    dict(lr=1e-2, amsgrad=True),
    dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
    dict(lr=3e-3, betas=(0.8, 0.99), maximize=True, amsgrad=True),
    dict(lr=2e-2, betas=(0.5, 0.9), weight_decay=0.05, decoupled_weight_decay=True, amsgrad=True, maximize=True),
]
RMSPROP_SETTINGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, momentum=0.9),
    dict(lr=1e-2, centered=True),
    dict(lr=1e-2, centered=True, momentum=0.5, weight_decay=0.1),
    dict(lr=1e-2, maximize=True),
    dict(lr=5e-3, alpha=0.9, momentum=0.3, weight_decay=0.02, maximize=True),
]
STATE_NAMES = {
    "sgd": lambda s: ["momentum_buffer"] if s.get("momentum") else [],
    "adam": lambda s: ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if s.get("amsgrad") else []),
    "rmsprop": lambda s: (["square_avg"] + (["momentum_buffer"] if s.get("momentum") else [])
                          + (["grad_avg"] if s.get("centered") else [])),
}


def _run_step(module, name, param, grad, state, step, s):
    """One step of optimizer `name` with settings s, through `module`: the emulator (arrays
    and n) or ranvier._C (arrays alone). state: name -> array (missing: not used)."""
    emulated = module is not _C
    n = (param.size,) if emulated else ()
    if name == "sgd":
        module.sgd_step(param, grad, state.get("momentum_buffer"), *n, s["lr"], s.get("momentum", 0.0),
                        s.get("dampening", 0.0), s.get("weight_decay", 0.0), s.get("nesterov", False),
                        s.get("maximize", False), step == 1)
    elif name == "adam":
        beta1, beta2 = s.get("betas", (0.9, 0.999))
        module.adam_step(param, grad, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"), *n,
                         s["lr"], beta1, beta2, 1e-8, s.get("weight_decay", 0.0), step,
                         s.get("decoupled_weight_decay", False), s.get("amsgrad", False), s.get("maximize", False))
    else:
        module.rmsprop_step(param, grad, state["square_avg"], state.get("momentum_buffer"), state.get("grad_avg"),
                            *n, s["lr"], s.get("alpha", 0.99), 1e-8, s.get("weight_decay", 0.0),
                            s.get("momentum", 0.0), s.get("centered", False), s.get("maximize", False))


def _reference_step(name, param, grad, state, s):
    if name == "sgd":
        return optim_ref.sgd(param, grad, state, **s)
    if name == "rmsprop":
        return optim_ref.rmsprop(param, grad, state, **s)
    s = dict(s)
    decoupled = s.pop("decoupled_weight_decay", False)
    return optim_ref.adam(param, grad, state, decoupled=decoupled, **s)


OPTIM_CASES = ([("sgd", s) for s in SGD_SETTINGS] + [("adam", s) for s in ADAM_SETTINGS]
               + [("rmsprop", s) for s in RMSPROP_SETTINGS])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", OPTIM_SIZES)
@pytest.mark.parametrize("name,settings", OPTIM_CASES, ids=lambda v: str(v))
def test_optimizer_steps_equal_the_cpu_bit_for_bit(emulated_cuda, name, settings, n, dtype):
    rng = np.random.default_rng(n)
    initial = rng.standard_normal(n).astype(dtype)
    param_buffer, param = guarded(initial)
    param_cpu = initial.copy()
    state_names = STATE_NAMES[name](settings)
    # Non-zero starting state, so that a step which ignores a buffer shows (torch starts at 0;
    # the kernels read whatever is there).
    state_values = {key: np.abs(rng.standard_normal(n)).astype(dtype) for key in state_names}
    if "grad_avg" in state_values:  # centered: square_avg > grad_avg^2, else sqrt of a negative
        state_values["square_avg"] += np.square(state_values["grad_avg"])
    state_buffers, state = {}, {}
    for key, values in state_values.items():
        state_buffers[key], state[key] = guarded(values)
    state_cpu = {key: values.copy() for key, values in state_values.items()}
    reference_param = initial.astype(np.float64)
    reference_state = {key: values.astype(np.float64) for key, values in state_values.items()}
    if name == "sgd" and "momentum_buffer" in reference_state:
        reference_state.pop("momentum_buffer")  # the first step starts the buffer from g
    for step in range(1, 4):
        grad = rng.standard_normal(n).astype(dtype)
        _run_step(emulated_cuda, name, param, grad, state, step, settings)
        _run_step(_C, name, param_cpu, grad, state_cpu, step, settings)
        np.testing.assert_array_equal(param, param_cpu, err_msg=f"param, step {step}")
        for key in state_names:
            np.testing.assert_array_equal(state[key], state_cpu[key], err_msg=f"{key}, step {step}")
        reference_param = _reference_step(name, reference_param, grad.astype(np.float64), reference_state,
                                          settings)
        t = tol(dtype)
        np.testing.assert_allclose(param, reference_param, rtol=10 * t["rtol"], atol=10 * t["atol"])
    assert_guards_intact(param_buffer, "param")
    for key, buffer in state_buffers.items():
        assert_guards_intact(buffer, key)


@pytest.mark.parametrize("name,settings", [("sgd", SGD_SETTINGS[3]), ("adam", ADAM_SETTINGS[5]),
                                           ("rmsprop", RMSPROP_SETTINGS[3])], ids=["sgd", "adam", "rmsprop"])
def test_optimizer_step_with_no_elements_writes_nothing(emulated_cuda, name, settings):
    param_buffer, param = guarded(np.zeros(0))
    state = {key: guarded(np.zeros(0))[1] for key in STATE_NAMES[name](settings)}
    _run_step(emulated_cuda, name, param, param, state, 1, settings)
    assert_guards_intact(param_buffer, "param")


def test_optimizer_step_with_grad_the_same_buffer_as_param(emulated_cuda):
    """optim_math.h reads every input of an element before writing: grad may be param."""
    rng = np.random.default_rng(5)
    initial = rng.standard_normal(300)
    for name, settings in [("sgd", SGD_SETTINGS[3]), ("adam", ADAM_SETTINGS[5]), ("rmsprop", RMSPROP_SETTINGS[3])]:
        param, param_cpu = initial.copy(), initial.copy()
        state = {key: np.zeros(300) for key in STATE_NAMES[name](settings)}
        state_cpu = {key: np.zeros(300) for key in state}
        _run_step(emulated_cuda, name, param, param, state, 1, settings)
        _run_step(_C, name, param_cpu, param_cpu, state_cpu, 1, settings)
        np.testing.assert_array_equal(param, param_cpu, err_msg=name)


# --- optimizer updates, many tensors per call ---------------------------------------------------
CHUNK = 65536  # optim.cu's kChunkSize: elements per block of a multi-tensor launch


class Segments:
    """Arrays of the given sizes laid out in one flat buffer per kind, GUARD sentinels
    between them: what a multi-tensor call gets as its lists, and one buffer to compare."""

    def __init__(self, sizes):
        self.sizes = list(sizes)
        self.starts = []
        position = GUARD
        for size in self.sizes:
            self.starts.append(position)
            position += size + GUARD
        self.length = position
        # The guard positions: GUARD before each tensor and after the last.
        self.guards = np.concatenate([np.arange(start - GUARD, start) for start in self.starts]
                                     + [np.arange(self.length - GUARD, self.length)])

    def buffer(self, rng, dtype, positive=False):
        """Uniform numbers in [-1, 1) ([0, 1) when positive: moments), guards set."""
        values = rng.random(self.length, dtype=dtype)
        if not positive:
            values = values * 2 - 1
        return self.with_guards(values)

    def with_guards(self, buffer):
        buffer[self.guards] = SENTINEL
        return buffer

    def views(self, buffer):
        return [buffer[start:start + size] for start, size in zip(self.starts, self.sizes)]

    def assert_guards_intact(self, buffer, name):
        np.testing.assert_array_equal(buffer[self.guards], SENTINEL, err_msg=f"{name}: written outside its tensors")


def assert_identical(actual, expected, name):
    # np.array_equal first: assert_array_equal is slow on the 12M-element buffers.
    if not np.array_equal(actual, expected):
        np.testing.assert_array_equal(actual, expected, err_msg=name)


def _run_multi(module, name, segments, buffers, step_numbers, s):
    """One multi-tensor step of `name` over all tensors of `segments` through `module`
    (emulator or _C: the same list arguments). buffers: kind -> flat buffer."""
    views = {key: segments.views(buffer) for key, buffer in buffers.items()}
    params, grads = views["param"], views["grad"]
    if name == "sgd":
        module.sgd_step_multi(params, grads, views.get("momentum_buffer"), [k == 1 for k in step_numbers], s["lr"],
                              s.get("momentum", 0.0), s.get("dampening", 0.0), s.get("weight_decay", 0.0),
                              s.get("nesterov", False), s.get("maximize", False))
    elif name == "adam":
        beta1, beta2 = s.get("betas", (0.9, 0.999))
        module.adam_step_multi(params, grads, views["exp_avg"], views["exp_avg_sq"], views.get("max_exp_avg_sq"),
                               list(step_numbers), s["lr"], beta1, beta2, 1e-8, s.get("weight_decay", 0.0),
                               s.get("decoupled_weight_decay", False), s.get("amsgrad", False),
                               s.get("maximize", False))
    else:
        module.rmsprop_step_multi(params, grads, views["square_avg"], views.get("momentum_buffer"),
                                  views.get("grad_avg"), s["lr"], s.get("alpha", 0.99), 1e-8,
                                  s.get("weight_decay", 0.0), s.get("momentum", 0.0), s.get("centered", False),
                                  s.get("maximize", False))


def _check_multi_equals_cpu(emulated_cuda, name, settings, sizes, dtype, steps, seed):
    rng = np.random.default_rng(seed)
    segments = Segments(sizes)
    state_names = STATE_NAMES[name](settings)
    buffers = {"param": segments.buffer(rng, dtype)}
    buffers.update({key: segments.buffer(rng, dtype, positive=True) for key in state_names})
    if "grad_avg" in buffers:  # centered: square_avg > grad_avg^2, else sqrt of a negative
        buffers["square_avg"] = segments.with_guards(buffers["square_avg"] + np.square(buffers["grad_avg"]))
    cpu = {key: buffer.copy() for key, buffer in buffers.items()}
    # Each tensor its own step number (SGD: first_step where it is 1): a parameter that had
    # no gradient at first lags behind; a table slot that takes another's values shows.
    step_numbers = [1 + k % 3 for k in range(len(sizes))]
    for _ in range(steps):
        grad = segments.buffer(rng, dtype)
        buffers["grad"] = grad
        cpu["grad"] = grad
        _run_multi(emulated_cuda, name, segments, buffers, step_numbers, settings)
        _run_multi(_C, name, segments, cpu, step_numbers, settings)
        for key in ["param"] + state_names:
            assert_identical(buffers[key], cpu[key], key)
        step_numbers = [k + 1 for k in step_numbers]
    for key in ["param"] + state_names:
        segments.assert_guards_intact(buffers[key], key)


# More than 32 tensors (three tables by tensor count), empty ones among them, sizes around
# the block size.
MANY_SIZES = [(7 * k) % 300 if k % 9 else 0 for k in range(70)] + [1, 255, 256, 257, 513]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,settings", OPTIM_CASES, ids=lambda v: str(v))
def test_multi_tensor_steps_of_many_tensors_equal_the_cpu(emulated_cuda, name, settings, dtype):
    _check_multi_equals_cpu(emulated_cuda, name, settings, MANY_SIZES, dtype, steps=2, seed=len(MANY_SIZES))


def test_multi_tensor_steps_of_no_tensors(emulated_cuda):
    emulated_cuda.sgd_step_multi([], [], None, [], 0.1, 0.0, 0.0, 0.0, False, False)
    emulated_cuda.adam_step_multi([], [], [], [], None, [], 0.1, 0.9, 0.99, 1e-8, 0.0, False, False, False)
    emulated_cuda.rmsprop_step_multi([], [], [], None, None, 0.1, 0.99, 1e-8, 0.0, 0.0, False, False)


# Tensors of many chunks, so that one call fills the 192-chunk table:
#  - "split": a tensor's chunks straddle the table's end (blocks 191, 192 in the first
#    table, its other 4 chunks in slot 0 of the second), then enough small tensors to fill
#    the second table by tensor count;
#  - "boundary": the table fills exactly at a tensor's last chunk, and the next tensor
#    starts the next table.
LARGE_LAYOUTS = {
    "split": [1000, 3 * CHUNK + 5, 185 * CHUNK, 5 * CHUNK + 17] + [3 + 11 * k for k in range(40)],
    "boundary": [2 * CHUNK, 189 * CHUNK - 3, 1, CHUNK + 1, 0, 5],
}


@pytest.mark.parametrize("layout", list(LARGE_LAYOUTS))
@pytest.mark.parametrize("name,settings", [("sgd", SGD_SETTINGS[5]), ("adam", ADAM_SETTINGS[5]),
                                           ("rmsprop", RMSPROP_SETTINGS[3])], ids=["sgd", "adam", "rmsprop"])
def test_multi_tensor_steps_split_over_several_launch_tables(emulated_cuda, name, settings, layout):
    sizes = LARGE_LAYOUTS[layout]
    assert sum(-(-size // CHUNK) for size in sizes) > 192
    _check_multi_equals_cpu(emulated_cuda, name, settings, sizes, np.float32, steps=1, seed=7)


# --- dropout and uniform numbers ----------------------------------------------------------------
# n: 1, not multiples of 4, either side of 256 threads x 4 numbers, several blocks.
STREAM_SIZES = [1, 3, 4, 5, 17, 255, 1023, 1024, 1025, 4099]
# Offsets that are not multiples of 4 (a call starts mid Philox block), large ones (the
# block number's high word), and the very end of the stream.
OFFSETS = [0, 1, 3, 4, 6, 2**32 * 4 + 2, 2**40 + 3]
SEED = 0x1234_5678_9ABC_DEF0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", STREAM_SIZES)
@pytest.mark.parametrize("offset", OFFSETS + ["end"])
def test_uniform_equals_the_cpu_and_the_reference(emulated_cuda, n, offset, dtype):
    offset = 2**64 - n if offset == "end" else offset  # the last n numbers of the stream
    buffer, out = guarded(np.full(n, np.nan, dtype=dtype))
    emulated_cuda.uniform_fill(out, n, SEED, offset)
    out_cpu = np.full(n, np.nan, dtype=dtype)
    _C.uniform_fill(out_cpu, SEED, offset)
    np.testing.assert_array_equal(out, out_cpu)
    np.testing.assert_array_equal(out.astype(np.float64), dropout_ref.uniform(SEED, offset, n))
    assert_guards_intact(buffer, "out")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,p", [(1, 0.5), (3, 0.1), (5, 0.9), (17, 0.5), (255, 0.0), (1023, 0.3),
                                 (1025, 0.5), (4099, 0.9)])
@pytest.mark.parametrize("offset", OFFSETS)
def test_dropout_masks_and_outputs_equal_the_cpu(emulated_cuda, n, p, offset, dtype):
    rng = np.random.default_rng(n + offset % 1000)
    seed = 42
    x = rng.standard_normal(n).astype(dtype)
    y_buffer, y = guarded(np.full(n, np.nan, dtype=dtype))
    mask_buffer = np.full(n + 2 * GUARD, 9, np.uint8)
    mask = mask_buffer[GUARD:GUARD + n]
    mask[...] = 7  # neither 0 nor 1
    emulated_cuda.dropout_forward(x, y, mask, n, p, seed, offset)
    y_cpu, mask_cpu = np.full(n, np.nan, dtype=dtype), np.full(n, 7, np.uint8)
    _C.dropout_forward(x, y_cpu, mask_cpu, p, seed, offset)
    np.testing.assert_array_equal(mask, mask_cpu)
    np.testing.assert_array_equal(y, y_cpu)
    y_ref, mask_ref = dropout_ref.dropout(x, p, seed, offset, dtype)
    np.testing.assert_array_equal(mask, mask_ref)
    np.testing.assert_allclose(y, y_ref, **tol(dtype))
    assert_guards_intact(y_buffer, "y")
    np.testing.assert_array_equal(mask_buffer[:GUARD], 9)
    np.testing.assert_array_equal(mask_buffer[GUARD + n:], 9)

    dy = rng.standard_normal(n).astype(dtype)
    dx_buffer, dx = guarded(np.full(n, np.nan, dtype=dtype))
    emulated_cuda.dropout_backward(dy, mask, dx, n, p)
    dx_cpu = np.full(n, np.nan, dtype=dtype)
    _C.dropout_backward(dy, mask_cpu, dx_cpu, p)
    np.testing.assert_array_equal(dx, dx_cpu)
    np.testing.assert_allclose(dx, np.where(mask_ref == 1, dy / (1.0 - p), 0.0), **tol(dtype))
    assert_guards_intact(dx_buffer, "dx")


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_in_place_and_nan_inputs(emulated_cuda, dtype):
    """y may be x and dx may be dy; a dropped NaN stays NaN (x * 0), as on the CPU."""
    n, p, seed, offset = 1001, 0.5, 9, 5
    x = np.random.default_rng(3).standard_normal(n).astype(dtype)
    x[::7] = np.nan
    y_cpu, mask_cpu = np.empty_like(x), np.empty(n, np.uint8)
    _C.dropout_forward(x, y_cpu, mask_cpu, p, seed, offset)
    in_place, mask = x.copy(), np.full(n, 7, np.uint8)
    emulated_cuda.dropout_forward(in_place, in_place, mask, n, p, seed, offset)
    np.testing.assert_array_equal(mask, mask_cpu)
    np.testing.assert_array_equal(in_place, y_cpu)
    assert np.isnan(in_place[::7]).all()
    dx_cpu = np.empty_like(x)
    _C.dropout_backward(x, mask_cpu, dx_cpu, p)
    emulated_cuda.dropout_backward(x, mask, x, n, p)  # in place: dx is dy
    np.testing.assert_array_equal(x, dx_cpu)


def test_dropout_and_uniform_with_no_elements_write_nothing(emulated_cuda):
    buffer, out = guarded(np.zeros(0))
    mask_buffer = np.full(2 * GUARD, 9, np.uint8)
    emulated_cuda.uniform_fill(out, 0, SEED, 3)
    emulated_cuda.dropout_forward(out, out, mask_buffer[GUARD:GUARD], 0, 0.5, SEED, 3)
    emulated_cuda.dropout_backward(out, mask_buffer[GUARD:GUARD], out, 0, 0.5)
    assert_guards_intact(buffer, "out")
    np.testing.assert_array_equal(mask_buffer, 9)


# --- fused linear + activation ------------------------------------------------------------------
SLOPE = 0.2
# name -> (Activation enum value, f, f') with f and f' float64 references of z.
ACTIVATIONS = {
    "relu": (0, act_ref.relu, act_ref.relu_grad),
    "leaky_relu": (1, lambda z: act_ref.leaky_relu(z, SLOPE), lambda z: act_ref.leaky_relu_grad(z, SLOPE)),
    "sigmoid": (2, act_ref.sigmoid, act_ref.sigmoid_grad),
    "tanh": (3, act_ref.tanh, act_ref.tanh_grad),
    "gelu": (4, act_ref.gelu, act_ref.gelu_grad),
    "gelu_tanh": (5, act_ref.gelu_tanh, act_ref.gelu_tanh_grad),
}
# (rows, in, out): one of each; odd and prime; rows * out either side of 256 threads and out
# either side of the 64-wide GEMM tile; no rows, no inputs, no outputs.
LINEAR_SHAPES = [(1, 1, 1), (7, 13, 5), (2, 5, 129), (3, 17, 85), (33, 9, 65), (0, 4, 3), (4, 0, 3), (5, 3, 0)]


def nan(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


def assert_sum_close(got, expected, magnitude, dtype, factor=1.0):
    """|got - expected| <= factor * (rtol * magnitude + atol) elementwise, magnitude being the
    sum of the absolute terms of each entry (cancelling sums are judged fairly); NaN fails."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    t = tol(dtype)
    error = np.abs(got - expected)
    bound = factor * (t["rtol"] * magnitude + t["atol"])
    assert np.all(error <= bound), f"max error {np.nanmax(error, initial=0):.3g}, NaN: {int(np.isnan(got).sum())}"


def linear_reference(x, w, bias):
    """z (rows, out) = x @ w^T + bias in float64 (matmul_ref.linear cannot take in == 0)."""
    z = matmul_ref.matrix_product(x, np.asarray(w).T)
    return z if bias is None else z + np.asarray(bias, dtype=np.float64)


def _linear_inputs(rng, rows, n_in, n_out, dtype):
    x = rng.standard_normal((rows, n_in)).astype(dtype)
    w = (rng.standard_normal((n_out, n_in)) / np.sqrt(max(n_in, 1))).astype(dtype)
    bias = rng.standard_normal(n_out).astype(dtype)
    return x, w, bias


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,n_in,n_out", LINEAR_SHAPES)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("with_bias,with_pre", [(True, True), (True, False), (False, True), (False, False)])
def test_linear_activation_forward(emulated_cuda, rng, activation, rows, n_in, n_out, dtype, with_bias, with_pre):
    code, f, _ = ACTIVATIONS[activation]
    x, w, bias = _linear_inputs(rng, rows, n_in, n_out, dtype)
    bias = bias if with_bias else None
    alpha = SLOPE if activation == "leaky_relu" else 0.0
    y = nan((rows, n_out), dtype)
    pre = nan((rows, n_out), dtype) if with_pre else None
    emulated_cuda.linear_activation_forward(code, alpha, x, w, bias, pre, y, rows, n_in, n_out)

    z = linear_reference(x, w, bias)
    magnitude = linear_reference(np.abs(x), np.abs(w), None if bias is None else np.abs(bias))
    if with_pre:
        assert_sum_close(pre, z, magnitude, dtype)
        # The activation pass on the emulator's own z: f's rounding alone.
        np.testing.assert_allclose(y, f(pre), **tol(dtype))
    # |f'| <= 1.13 for all six: z's error passes to y at most 1.13-fold, plus f's rounding.
    assert_sum_close(y, f(z), 1.2 * magnitude + np.abs(f(z)), dtype, factor=2)

    y_cpu = nan((rows, n_out), dtype)
    pre_cpu = nan((rows, n_out), dtype) if with_pre else None
    _C.linear_activation_forward(code, x, w, bias, pre_cpu, y_cpu, alpha)
    assert_sum_close(y, y_cpu.astype(np.float64), 2.4 * magnitude + np.abs(f(z)), dtype, factor=2)
    if with_pre:
        assert_sum_close(pre, pre_cpu.astype(np.float64), 2 * magnitude, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,n_in,n_out", LINEAR_SHAPES)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_linear_activation_backward(emulated_cuda, rng, activation, rows, n_in, n_out, dtype):
    code, f, f_grad = ACTIVATIONS[activation]
    x, w, bias = _linear_inputs(rng, rows, n_in, n_out, dtype)
    alpha = SLOPE if activation == "leaky_relu" else 0.0
    z = linear_reference(x, w, bias)
    saved = (f(z) if _C.linear_activation_backward_uses_output(code) else z).astype(dtype)
    dy = rng.standard_normal((rows, n_out)).astype(dtype)
    dz_expected = dy.astype(np.float64) * f_grad(z)

    dz, dx = nan((rows, n_out), dtype), nan((rows, n_in), dtype)
    dw, dbias = nan((n_out, n_in), dtype), nan(n_out, dtype)
    emulated_cuda.linear_activation_backward(code, alpha, saved, dy, x, w, dz, dx, dw, dbias, rows, n_in, n_out)
    # saved is rounded to dtype: f' at the rounded point (sigmoid, tanh: from the rounded y).
    np.testing.assert_allclose(dz, dz_expected, rtol=8 * tol(dtype)["rtol"], atol=8 * tol(dtype)["atol"])
    # The GEMMs and the column sums on the emulator's own dz.
    dz64 = dz.astype(np.float64)
    assert_sum_close(dx, matmul_ref.matrix_product(dz64, w), matmul_ref.matrix_product(np.abs(dz64), np.abs(w)), dtype)
    assert_sum_close(dw, matmul_ref.matrix_product(dz64.T, x), matmul_ref.matrix_product(np.abs(dz64.T), np.abs(x)),
                     dtype)
    assert_sum_close(dbias, dz64.sum(axis=0), np.abs(dz64).sum(axis=0), dtype)

    dz_cpu, dx_cpu, dw_cpu, dbias_cpu = (nan(a.shape, dtype) for a in (dz, dx, dw, dbias))
    _C.linear_activation_backward(code, saved, dy, x, w, dz_cpu, dx_cpu, dw_cpu, dbias_cpu, alpha)
    np.testing.assert_allclose(dz, dz_cpu, **tol(dtype))
    assert_sum_close(dx, dx_cpu.astype(np.float64), 2 * matmul_ref.matrix_product(np.abs(dz64), np.abs(w)), dtype)
    assert_sum_close(dw, dw_cpu.astype(np.float64), 2 * matmul_ref.matrix_product(np.abs(dz64.T), np.abs(x)), dtype)
    assert_sum_close(dbias, dbias_cpu.astype(np.float64), 2 * np.abs(dz64).sum(axis=0), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("skipped", ["dx", "dw", "dbias", "all"])
def test_linear_activation_backward_skips_null_outputs(emulated_cuda, rng, activation, skipped, dtype):
    """dx, dw and dbias may each be null: the others come out as with all three."""
    code, f, _ = ACTIVATIONS[activation]
    rows, n_in, n_out = 9, 6, 70
    x, w, bias = _linear_inputs(rng, rows, n_in, n_out, dtype)
    alpha = SLOPE if activation == "leaky_relu" else 0.0
    z = linear_reference(x, w, bias)
    saved = (f(z) if _C.linear_activation_backward_uses_output(code) else z).astype(dtype)
    dy = rng.standard_normal((rows, n_out)).astype(dtype)
    shapes = {"dx": (rows, n_in), "dw": (n_out, n_in), "dbias": (n_out,)}
    full = {key: nan(shape, dtype) for key, shape in shapes.items()}
    dz_full = nan((rows, n_out), dtype)
    emulated_cuda.linear_activation_backward(code, alpha, saved, dy, x, w, dz_full, full["dx"], full["dw"],
                                             full["dbias"], rows, n_in, n_out)
    partial = {key: None if skipped in (key, "all") else nan(shape, dtype) for key, shape in shapes.items()}
    dz = nan((rows, n_out), dtype)
    emulated_cuda.linear_activation_backward(code, alpha, saved, dy, x, w, dz, partial["dx"], partial["dw"],
                                             partial["dbias"], rows, n_in, n_out)
    np.testing.assert_array_equal(dz, dz_full)
    for key, value in partial.items():
        if value is not None:
            np.testing.assert_array_equal(value, full[key], err_msg=key)
