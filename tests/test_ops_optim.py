"""ranvier.ops sgd_step / adam_step / rmsprop_step against tests/references/optim.py."""

import itertools

import numpy as np
import pytest
from conftest import tol
from references import optim as ref

from ranvier import _C, ops

FLOATS = [np.float32, np.float64]
SHAPES = [(1,), (7,), (3, 5, 7), (1000,), (0,)]
STEPS = 4


def _run(dtype, shape, rng, kernel_step, reference_step, state_names, steps=STEPS):
    """Several updates with fresh gradients; compare param and state after each step."""
    param = rng.standard_normal(shape).astype(dtype)
    state = {name: np.zeros(shape, dtype) for name in state_names}
    ref_param, ref_state = param.astype(np.float64), {}
    param_before = param
    for step in range(1, steps + 1):
        grad = rng.standard_normal(shape).astype(dtype)
        result = kernel_step(param, grad, state, step)
        assert result is None  # in place
        ref_param = reference_step(ref_param, grad, ref_state)
        np.testing.assert_allclose(param, ref_param, **tol(dtype))
        for name in state_names:
            if name in ref_state:
                np.testing.assert_allclose(state[name], ref_state[name], **tol(dtype), err_msg=name)
    assert param is param_before and param.dtype == dtype


# --- SGD --------------------------------------------------------------------------------------

SGD_OPTIONS = [
    dict(momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
    for momentum, dampening, weight_decay, nesterov, maximize in itertools.product(
        [0.0, 0.9], [0.0, 0.3], [0.0, 0.1], [False, True], [False, True])
    if not (nesterov and (momentum == 0 or dampening != 0)) and not (momentum == 0 and dampening != 0)
]


def _sgd_kernel(lr, options):
    def step_fn(param, grad, state, step):
        buffer = state.get("momentum_buffer") if options["momentum"] != 0 else None
        return ops.sgd_step(param, grad, buffer, lr=lr, first_step=step == 1, **options)
    return step_fn


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("options", SGD_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_matches_reference(dtype, options, rng):
    lr = 0.05
    _run(dtype, (7, 3), rng, _sgd_kernel(lr, options),
         lambda p, g, s: ref.sgd(p, g, s, lr=lr, **options), ["momentum_buffer"])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
def test_sgd_shapes(dtype, shape, rng):
    options = dict(momentum=0.8, dampening=0.1, weight_decay=0.01, nesterov=False, maximize=False)
    _run(dtype, shape, rng, _sgd_kernel(0.1, options), lambda p, g, s: ref.sgd(p, g, s, lr=0.1, **options),
         ["momentum_buffer"])


# --- Adam / AdamW -----------------------------------------------------------------------------

ADAM_OPTIONS = [
    dict(weight_decay=weight_decay, decoupled_weight_decay=decoupled, amsgrad=amsgrad, maximize=maximize)
    for weight_decay, decoupled, amsgrad, maximize in itertools.product(
        [0.0, 0.05], [False, True], [False, True], [False, True])
]


def _adam_kernel(lr, betas, eps, options):
    def step_fn(param, grad, state, step):
        return ops.adam_step(param, grad, state["exp_avg"], state["exp_avg_sq"],
                             state["max_exp_avg_sq"] if options["amsgrad"] else None, step=step, lr=lr,
                             beta1=betas[0], beta2=betas[1], eps=eps, **options)
    return step_fn


def _adam_reference(lr, betas, eps, options):
    def step_fn(p, g, s):
        return ref.adam(p, g, s, lr=lr, betas=betas, eps=eps, weight_decay=options["weight_decay"],
                        amsgrad=options["amsgrad"], maximize=options["maximize"],
                        decoupled=options["decoupled_weight_decay"])
    return step_fn


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("options", ADAM_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_adam_matches_reference(dtype, options, rng):
    lr, betas, eps = 0.01, (0.9, 0.999), 1e-8
    _run(dtype, (5, 4), rng, _adam_kernel(lr, betas, eps, options), _adam_reference(lr, betas, eps, options),
         ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"], steps=6)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("betas, eps", [((0.5, 0.7), 1e-3), ((0.0, 0.0), 1e-6), ((0.95, 0.9999), 0.0)])
def test_adam_other_betas_and_eps(dtype, betas, eps, rng):
    options = dict(weight_decay=0.0, decoupled_weight_decay=False, amsgrad=True, maximize=False)
    _run(dtype, (13,), rng, _adam_kernel(0.02, betas, eps, options), _adam_reference(0.02, betas, eps, options),
         ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
def test_adam_shapes(dtype, shape, rng):
    options = dict(weight_decay=0.01, decoupled_weight_decay=True, amsgrad=False, maximize=False)
    _run(dtype, shape, rng, _adam_kernel(1e-3, (0.9, 0.999), 1e-8, options),
         _adam_reference(1e-3, (0.9, 0.999), 1e-8, options), ["exp_avg", "exp_avg_sq"])


def test_adamw_differs_from_adam_with_weight_decay(rng):
    # The two weight-decay flavours must give different parameters (else one is ignored).
    param = rng.standard_normal(10)
    grad = rng.standard_normal(10)
    results = []
    for decoupled in (False, True):
        p = param.copy()
        ops.adam_step(p, grad, np.zeros(10), np.zeros(10), step=1, lr=0.1, weight_decay=0.5,
                      decoupled_weight_decay=decoupled)
        results.append(p)
    assert np.max(np.abs(results[0] - results[1])) > 1e-3


# --- RMSprop --------------------------------------------------------------------------------

RMSPROP_OPTIONS = [
    dict(centered=centered, momentum=momentum, weight_decay=weight_decay, maximize=maximize)
    for centered, momentum, weight_decay, maximize in itertools.product(
        [False, True], [0.0, 0.5], [0.0, 0.1], [False, True])
]


def _rmsprop_kernel(lr, alpha, eps, options):
    def step_fn(param, grad, state, step):
        return ops.rmsprop_step(param, grad, state["square_avg"],
                                state["momentum_buffer"] if options["momentum"] > 0 else None,
                                state["grad_avg"] if options["centered"] else None,
                                lr=lr, alpha=alpha, eps=eps, **options)
    return step_fn


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("options", RMSPROP_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_rmsprop_matches_reference(dtype, options, rng):
    lr, alpha, eps = 0.01, 0.9, 1e-8
    _run(dtype, (6, 5), rng, _rmsprop_kernel(lr, alpha, eps, options),
         lambda p, g, s: ref.rmsprop(p, g, s, lr=lr, alpha=alpha, eps=eps, **options),
         ["square_avg", "momentum_buffer", "grad_avg"], steps=5)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
def test_rmsprop_shapes(dtype, shape, rng):
    options = dict(centered=True, momentum=0.3, weight_decay=0.0, maximize=False)
    _run(dtype, shape, rng, _rmsprop_kernel(1e-2, 0.99, 1e-8, options),
         lambda p, g, s: ref.rmsprop(p, g, s, lr=1e-2, alpha=0.99, eps=1e-8, **options),
         ["square_avg", "momentum_buffer", "grad_avg"])


# --- the threaded path, once each -------------------------------------------------------------

def test_large_parameters_use_the_threaded_path(rng):
    shape = (1_000_003,)
    sgd_options = dict(momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=True, maximize=False)
    _run(np.float32, shape, rng, _sgd_kernel(0.1, sgd_options),
         lambda p, g, s: ref.sgd(p, g, s, lr=0.1, **sgd_options), ["momentum_buffer"], steps=2)
    adam_options = dict(weight_decay=0.01, decoupled_weight_decay=True, amsgrad=True, maximize=False)
    _run(np.float32, shape, rng, _adam_kernel(1e-3, (0.9, 0.999), 1e-8, adam_options),
         _adam_reference(1e-3, (0.9, 0.999), 1e-8, adam_options),
         ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"], steps=2)
    rms_options = dict(centered=True, momentum=0.5, weight_decay=0.0, maximize=False)
    _run(np.float32, shape, rng, _rmsprop_kernel(1e-2, 0.99, 1e-8, rms_options),
         lambda p, g, s: ref.rmsprop(p, g, s, lr=1e-2, alpha=0.99, eps=1e-8, **rms_options),
         ["square_avg", "momentum_buffer", "grad_avg"], steps=2)


# --- conversions and aliasing ----------------------------------------------------------------

def test_grad_is_converted_to_param_dtype(rng):
    param = rng.standard_normal(9).astype(np.float32)
    grad64 = rng.standard_normal(9)
    expected = ref.sgd(param, grad64.astype(np.float32), {}, lr=0.1)
    ops.sgd_step(param, grad64, lr=0.1)
    np.testing.assert_allclose(param, expected, **tol(np.float32))


def test_strided_grad_is_accepted(rng):
    param = rng.standard_normal(5)
    grad = rng.standard_normal(10)[::2]
    expected = ref.sgd(param, grad, {}, lr=0.3)
    ops.sgd_step(param, grad, lr=0.3)
    np.testing.assert_allclose(param, expected, **tol(np.float64))


def test_grad_may_be_param_itself(rng):
    param = rng.standard_normal(8)
    expected = ref.adam(param, param.copy(), {}, lr=0.1)
    ops.adam_step(param, param, np.zeros(8), np.zeros(8), step=1, lr=0.1)
    np.testing.assert_allclose(param, expected, **tol(np.float64))


def test_sgd_first_step_ignores_old_buffer_contents(rng):
    param = rng.standard_normal(6)
    grad = rng.standard_normal(6)
    buffer = np.full(6, 1e9)
    expected = ref.sgd(param, grad, {}, lr=0.1, momentum=0.9, dampening=0.5)
    ops.sgd_step(param, grad, buffer, lr=0.1, momentum=0.9, dampening=0.5, first_step=True)
    np.testing.assert_allclose(param, expected, **tol(np.float64))
    np.testing.assert_array_equal(buffer, grad)


# --- bad input ------------------------------------------------------------------------------

def _adam_args(n=4, dtype=np.float64):
    return np.zeros(n, dtype), np.ones(n, dtype), np.zeros(n, dtype), np.zeros(n, dtype)


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"sgd_step: grad has shape \(5,\) but param has shape \(4,\)"):
        ops.sgd_step(np.zeros(4), np.ones(5), lr=0.1)
    param, grad, m, v = _adam_args()
    with pytest.raises(ValueError, match=r"adam_step: exp_avg_sq has shape \(3,\) but param has shape \(4,\)"):
        ops.adam_step(param, grad, m, np.zeros(3), step=1)
    with pytest.raises(ValueError, match=r"rmsprop_step: square_avg has shape \(2, 2\) but param has shape \(4,\)"):
        ops.rmsprop_step(param, grad, np.zeros((2, 2)))


def test_rejects_read_only_param_and_state():
    param, grad, m, v = _adam_args()
    param.flags.writeable = False
    with pytest.raises(ValueError, match="sgd_step: param is read-only but it is updated in place"):
        ops.sgd_step(param, grad, lr=0.1)
    param, grad, m, v = _adam_args()
    v.flags.writeable = False
    with pytest.raises(ValueError, match="adam_step: exp_avg_sq is read-only"):
        ops.adam_step(param, grad, m, v, step=1)


def test_rejects_non_contiguous_param_and_state():
    with pytest.raises(ValueError, match=r"sgd_step: param of shape \(4,\) is not C-contiguous; it is updated in place"):
        ops.sgd_step(np.zeros(8)[::2], np.ones(4), lr=0.1)
    with pytest.raises(ValueError, match=r"rmsprop_step: square_avg of shape \(3, 2\) is not C-contiguous"):
        ops.rmsprop_step(np.zeros((3, 2)), np.ones((3, 2)), np.zeros((2, 3)).T)


def test_rejects_missing_state_buffers():
    param, grad, m, v = _adam_args()
    with pytest.raises(ValueError, match="sgd_step: momentum_buffer is required when momentum != 0, got None"):
        ops.sgd_step(param, grad, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="adam_step: max_exp_avg_sq is required when amsgrad=True"):
        ops.adam_step(param, grad, m, v, step=1, amsgrad=True)
    with pytest.raises(ValueError, match="rmsprop_step: momentum_buffer is required when momentum > 0"):
        ops.rmsprop_step(param, grad, m, momentum=0.5)
    with pytest.raises(ValueError, match="rmsprop_step: grad_avg is required when centered=True"):
        ops.rmsprop_step(param, grad, m, centered=True)
    with pytest.raises(ValueError, match="adam_step: exp_avg is required, got None"):
        ops.adam_step(param, grad, None, v, step=1)


@pytest.mark.parametrize("call, match", [
    (lambda a: ops.sgd_step(*a[:2], lr=-1.0), "sgd_step: lr must be a finite number >= 0, got -1.0"),
    (lambda a: ops.sgd_step(*a[:2], lr=float("nan")), "sgd_step: lr must be a finite number >= 0, got nan"),
    (lambda a: ops.sgd_step(*a[:2], lr=0.1, weight_decay=-0.1), "sgd_step: weight_decay must be a finite"),
    (lambda a: ops.sgd_step(*a[:2], lr=0.1, dampening=float("inf")), "sgd_step: dampening must be finite"),
    (lambda a: ops.sgd_step(*a[:2], lr=0.1, nesterov=True), "sgd_step: nesterov momentum requires a momentum > 0"),
    (lambda a: ops.adam_step(*a, step=0), "adam_step: step counts updates from 1"),
    (lambda a: ops.adam_step(*a, step=-3), "adam_step: step counts updates from 1 .*, got -3"),
    (lambda a: ops.adam_step(*a, step=1, lr=-1e-3), "adam_step: lr must be a finite number >= 0"),
    (lambda a: ops.adam_step(*a, step=1, beta1=1.0), "adam_step: beta1 must satisfy 0 <= beta1 < 1, got 1.0"),
    (lambda a: ops.adam_step(*a, step=1, beta2=-0.1), "adam_step: beta2 must satisfy 0 <= beta2 < 1"),
    (lambda a: ops.adam_step(*a, step=1, eps=float("inf")), "adam_step: eps must be a finite number >= 0"),
    (lambda a: ops.rmsprop_step(*a[:3], alpha=-0.5), "rmsprop_step: alpha must be a finite number >= 0"),
    (lambda a: ops.rmsprop_step(*a[:3], momentum=-0.5), "rmsprop_step: momentum must be a finite number >= 0"),
])
def test_rejects_bad_hyper_parameters(call, match):
    args = _adam_args()
    before = args[0].copy()
    with pytest.raises(ValueError, match=match):
        call(args)
    np.testing.assert_array_equal(args[0], before)  # nothing written


def test_rejects_non_integer_step():
    with pytest.raises(TypeError, match="adam_step: step must be an integer, got float"):
        ops.adam_step(*_adam_args(), step=1.0)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.bool_])
def test_rejects_non_float_dtypes(dtype):
    with pytest.raises(TypeError, match=f"sgd_step: param has dtype {np.dtype(dtype)}"):
        ops.sgd_step(np.zeros(4, dtype), np.ones(4), lr=0.1)
    with pytest.raises(TypeError, match=f"sgd_step: grad has dtype {np.dtype(dtype)}"):
        ops.sgd_step(np.zeros(4), np.ones(4, dtype), lr=0.1)


def test_rejects_state_of_another_dtype():
    param, grad, m, v = _adam_args(dtype=np.float32)
    with pytest.raises(TypeError, match="adam_step: exp_avg has dtype float64 but param has dtype float32"):
        ops.adam_step(param, grad, m.astype(np.float64), v, step=1)


def test_rejects_non_arrays():
    with pytest.raises(TypeError, match="sgd_step: param must be a NumPy or CuPy array .* got list"):
        ops.sgd_step([0.0, 1.0], [1.0, 1.0], lr=0.1)


def test_binding_rejects_shared_state_buffers():
    param, grad, m, _ = _adam_args()
    with pytest.raises(ValueError, match="adam_step: exp_avg_sq must not share memory with exp_avg"):
        _C.adam_step(param, grad, m, m, None, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False, False, False)
    with pytest.raises(ValueError, match="sgd_step: momentum_buffer must not share memory with param"):
        _C.sgd_step(param, grad, param, 0.1, 0.9, 0.0, 0.0, False, False, False)
    storage = np.zeros(8)
    with pytest.raises(ValueError, match="rmsprop_step: param partially overlaps grad"):
        _C.rmsprop_step(storage[:4], storage[2:6], np.zeros(4), None, None, 0.01, 0.99, 1e-8, 0.0, 0.0,
                        False, False)


def test_binding_checks_dtypes_and_shapes_on_its_own():
    with pytest.raises(TypeError, match="sgd_step: param \\(float64\\) and grad \\(float32\\) must have the same dtype"):
        _C.sgd_step(np.zeros(4), np.ones(4, np.float32), None, 0.1, 0.0, 0.0, 0.0, False, False, False)
    with pytest.raises(ValueError, match="adam_step: param \\(4,\\) and exp_avg \\(3,\\) must have the same shape"):
        _C.adam_step(np.zeros(4), np.ones(4), np.zeros(3), np.zeros(4), None, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1,
                     False, False, False)


class _FakeCudaArray:
    def __init__(self, n):
        self.__cuda_array_interface__ = {"shape": (n,), "typestr": "<f4", "data": (256, False), "version": 3,
                                         "strides": None}


def test_binding_rejects_mixed_devices():
    # The updates have CUDA twins (tests/test_cuda_ops.py): device arrays are accepted, but never
    # mixed with host ones; the check comes before any pointer is used.
    with pytest.raises(ValueError, match="sgd_step: param is on cuda but grad is on cpu"):
        _C.sgd_step(_FakeCudaArray(4), np.ones(4, np.float32), None, 0.1, 0.0, 0.0, 0.0, False, False, False)
