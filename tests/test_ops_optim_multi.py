"""ops.sgd_step_multi / adam_step_multi / rmsprop_step_multi (one call per parameter list)
against the single-tensor ops, which tests/test_ops_optim.py checks against the float64
references: every parameter of a multi-tensor call must come out bit for bit as the
single-tensor op leaves it. Also the optimizers that use them (per-parameter step counts,
groups mixing dtypes, duplicate parameters) and the checks of the multi-tensor binding.
"""

import numpy as np
import pytest

import ranvier
from ranvier import _C, ops, optim

FLOATS = [np.float32, np.float64]
# Odd sizes, 1, primes, empty, sizes that are not multiples of 8/16, and one large enough
# (40009 elements) that the CPU loop splits across threads when there are several.
SHAPES = [(1,), (7,), (0,), (3, 5), (13,), (2, 0, 3), (17, 3), (40009,), (31,), (1, 1), (65,)]
STEPS = 3


def _arrays(rng, dtype, scale=1.0):
    return [(rng.standard_normal(shape) * scale).astype(dtype) for shape in SHAPES]


def _copies(arrays):
    return [a.copy() for a in arrays]


def _assert_identical(actual, expected, what):
    for k, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_array_equal(a, e, err_msg=f"{what}[{k}]")


# --- each multi op equals the single-tensor op, bit for bit -----------------------------------

SGD_OPTIONS = [
    dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
    dict(momentum=0.9, dampening=0.0, weight_decay=0.1, nesterov=True, maximize=False),
    dict(momentum=0.9, dampening=0.3, weight_decay=0.0, nesterov=False, maximize=True),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("options", SGD_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_multi_equals_single(dtype, options, rng):
    params = _arrays(rng, dtype)
    single_params = _copies(params)
    use_momentum = options["momentum"] != 0
    buffers = [np.zeros_like(p) for p in params] if use_momentum else None
    single_buffers = _copies(buffers) if use_momentum else [None] * len(params)
    for step in range(STEPS):
        grads = _arrays(rng, dtype)
        # Parameters start their momentum at different steps (one had no gradient at first).
        first_steps = [step == k % 2 for k in range(len(params))] if use_momentum else None
        ops.sgd_step_multi(params, grads, buffers, first_steps=first_steps, lr=0.05, **options)
        for k, (p, g) in enumerate(zip(single_params, grads)):
            ops.sgd_step(p, g, single_buffers[k], lr=0.05, first_step=bool(first_steps and first_steps[k]),
                         **options)
        _assert_identical(params, single_params, "param")
        if use_momentum:
            _assert_identical(buffers, single_buffers, "momentum_buffer")


ADAM_OPTIONS = [
    dict(weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False, maximize=False),
    dict(weight_decay=0.1, decoupled_weight_decay=False, amsgrad=True, maximize=False),
    dict(weight_decay=0.01, decoupled_weight_decay=True, amsgrad=False, maximize=True),
    dict(weight_decay=0.01, decoupled_weight_decay=True, amsgrad=True, maximize=False),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("options", ADAM_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_adam_multi_equals_single(dtype, options, rng):
    params = _arrays(rng, dtype)
    single_params = _copies(params)
    names = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if options["amsgrad"] else [])
    state = {name: [np.zeros_like(p) for p in params] for name in names}
    single_state = {name: _copies(buffers) for name, buffers in state.items()}
    for step in range(1, STEPS + 1):
        grads = _arrays(rng, dtype)
        steps = [step + k % 3 for k in range(len(params))]  # each parameter its own step number
        ops.adam_step_multi(params, grads, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"),
                            steps=steps, lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, **options)
        for k, (p, g) in enumerate(zip(single_params, grads)):
            ops.adam_step(p, g, single_state["exp_avg"][k], single_state["exp_avg_sq"][k],
                          single_state["max_exp_avg_sq"][k] if options["amsgrad"] else None, step=steps[k],
                          lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, **options)
        _assert_identical(params, single_params, "param")
        for name in names:
            _assert_identical(state[name], single_state[name], name)


RMSPROP_OPTIONS = [
    dict(weight_decay=0.0, momentum=0.0, centered=False, maximize=False),
    dict(weight_decay=0.1, momentum=0.9, centered=False, maximize=True),
    dict(weight_decay=0.0, momentum=0.0, centered=True, maximize=False),
    dict(weight_decay=0.05, momentum=0.5, centered=True, maximize=False),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("options", RMSPROP_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_rmsprop_multi_equals_single(dtype, options, rng):
    params = _arrays(rng, dtype)
    single_params = _copies(params)
    names = (["square_avg"] + (["momentum_buffer"] if options["momentum"] > 0 else [])
             + (["grad_avg"] if options["centered"] else []))
    state = {name: [np.zeros_like(p) for p in params] for name in names}
    single_state = {name: _copies(buffers) for name, buffers in state.items()}
    for _ in range(STEPS):
        grads = _arrays(rng, dtype)
        ops.rmsprop_step_multi(params, grads, state["square_avg"], state.get("momentum_buffer"),
                               state.get("grad_avg"), lr=1e-2, alpha=0.9, eps=1e-6, **options)
        for k, (p, g) in enumerate(zip(single_params, grads)):
            ops.rmsprop_step(p, g, single_state["square_avg"][k],
                             single_state["momentum_buffer"][k] if "momentum_buffer" in names else None,
                             single_state["grad_avg"][k] if "grad_avg" in names else None,
                             lr=1e-2, alpha=0.9, eps=1e-6, **options)
        _assert_identical(params, single_params, "param")
        for name in names:
            _assert_identical(state[name], single_state[name], name)


def test_multi_takes_a_gradient_that_is_its_param_and_converts_gradients(rng):
    # As the single-tensor op: grad may be param itself, and a float64 or strided gradient is
    # converted to param's dtype and layout.
    params = [rng.standard_normal(5).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)]
    single = _copies(params)
    grads = [params[0], rng.standard_normal((3, 4)).T]  # the param itself; float64 and strided
    single_grads = [single[0], grads[1]]
    ops.sgd_step_multi(params, grads, lr=0.1, weight_decay=0.5)
    for p, g in zip(single, single_grads):
        ops.sgd_step(p, g, lr=0.1, weight_decay=0.5)
    _assert_identical(params, single, "param")


def test_multi_with_no_parameters_does_nothing():
    ops.adam_step_multi([], [], [], [], steps=[])
    ops.sgd_step_multi([], [], lr=0.1)
    ops.rmsprop_step_multi([], [], [])


# --- checks: the single-tensor checks, naming the parameter --------------------------------------

def _adam_lists(n=3, dtype=np.float32):
    params = [np.zeros(k + 2, dtype) for k in range(n)]
    return params, [np.ones_like(p) for p in params], [np.zeros_like(p) for p in params], \
        [np.zeros_like(p) for p in params]


def test_multi_checks_name_the_parameter():
    params, grads, exp_avgs, exp_avg_sqs = _adam_lists()
    bad = list(exp_avgs)
    bad[2] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"adam_step_multi: parameter 2: param \(4,\) and exp_avg \(3,\) "
                                         r"must have the same shape"):
        _C.adam_step_multi(params, grads, bad, exp_avg_sqs, None, [1, 1, 1], 1e-3, 0.9, 0.999, 1e-8, 0.0,
                           False, False, False)
    bad = list(exp_avg_sqs)
    bad[1] = np.zeros(3, np.float64)
    with pytest.raises(TypeError, match=r"adam_step_multi: parameter 1: param \(float32\) and exp_avg_sq "
                                        r"\(float64\) must have the same dtype"):
        _C.adam_step_multi(params, grads, exp_avgs, bad, None, [1, 1, 1], 1e-3, 0.9, 0.999, 1e-8, 0.0,
                           False, False, False)
    with pytest.raises(ValueError, match="adam_step_multi: parameter 1: step counts updates from 1"):
        ops.adam_step_multi(params, grads, exp_avgs, exp_avg_sqs, steps=[1, 0, 1])
    with pytest.raises(TypeError, match="adam_step_multi: parameter 2: step must be an integer"):
        ops.adam_step_multi(params, grads, exp_avgs, exp_avg_sqs, steps=[1, 1, 1.5])
    with pytest.raises(ValueError, match="adam_step_multi: max_exp_avg_sqs is required when amsgrad=True, got None"):
        ops.adam_step_multi(params, grads, exp_avgs, exp_avg_sqs, steps=[1, 1, 1], amsgrad=True)
    with pytest.raises(ValueError, match="adam_step_multi: beta1 must satisfy 0 <= beta1 < 1, got 1.0"):
        ops.adam_step_multi(params, grads, exp_avgs, exp_avg_sqs, steps=[1, 1, 1], beta1=1.0)
    read_only = list(params)
    read_only[1] = np.zeros(3, np.float32)
    read_only[1].flags.writeable = False
    with pytest.raises(ValueError, match="adam_step_multi: parameter 1: param is read-only"):
        _C.adam_step_multi(read_only, grads, exp_avgs, exp_avg_sqs, None, [1, 1, 1], 1e-3, 0.9, 0.999, 1e-8,
                           0.0, False, False, False)
    with pytest.raises(TypeError, match="adam_step_multi: parameter 0: grad has dtype int64"):
        ops.adam_step_multi(params, [np.ones(2, np.int64)] + grads[1:], exp_avgs, exp_avg_sqs, steps=[1, 1, 1])
    strided = np.zeros((4, 2), np.float32)[:, 0]
    with pytest.raises(ValueError, match="adam_step_multi: parameter 2: param of shape \\(4,\\) is not C-contiguous"):
        _C.adam_step_multi(params[:2] + [strided], grads, exp_avgs, exp_avg_sqs, None, [1, 1, 1], 1e-3, 0.9,
                           0.999, 1e-8, 0.0, False, False, False)


def test_multi_checks_list_lengths():
    params, grads, exp_avgs, exp_avg_sqs = _adam_lists()
    with pytest.raises(ValueError, match="adam_step_multi: grads has 2 entries but params has 3"):
        ops.adam_step_multi(params, grads[:2], exp_avgs, exp_avg_sqs, steps=[1, 1, 1])
    with pytest.raises(ValueError, match="adam_step_multi: steps has 2 entries but params has 3"):
        ops.adam_step_multi(params, grads, exp_avgs, exp_avg_sqs, steps=[1, 1])
    with pytest.raises(ValueError, match="adam_step_multi: exp_avg_sqs has 4 entries but params has 3"):
        _C.adam_step_multi(params, grads, exp_avgs, exp_avg_sqs + [np.zeros(1)], None, [1, 1, 1], 1e-3, 0.9,
                           0.999, 1e-8, 0.0, False, False, False)
    with pytest.raises(ValueError, match="sgd_step_multi: first_steps has 1 entries but params has 3"):
        ops.sgd_step_multi(params, grads, exp_avgs, first_steps=[True], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="sgd_step_multi: momentum_buffers is required when momentum != 0"):
        ops.sgd_step_multi(params, grads, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="rmsprop_step_multi: grad_avgs is required when centered=True"):
        ops.rmsprop_step_multi(params, grads, exp_avgs, centered=True)


def test_multi_refuses_mixed_dtypes_in_one_call():
    params = [np.zeros(2, np.float32), np.zeros(3, np.float64)]
    grads = [np.ones_like(p) for p in params]
    with pytest.raises(TypeError, match="rmsprop_step_multi: parameter 1 is float64 on cpu but parameter 0 is "
                                        "float32 on cpu; one call takes parameters of one dtype and device"):
        ops.rmsprop_step_multi(params, grads, [np.zeros_like(p) for p in params])


def test_multi_refuses_memory_shared_between_parameters():
    storage = np.zeros(10, np.float32)
    params = [storage[:5], storage[5:], np.zeros(3, np.float32)]
    grads = [np.ones(5, np.float32), np.ones(5, np.float32), np.ones(3, np.float32)]
    buffers = [np.zeros(5, np.float32), np.zeros(5, np.float32), np.zeros(3, np.float32)]
    ops.sgd_step_multi(params, grads, buffers, lr=0.1, momentum=0.9)  # neighbours, but disjoint
    # The same parameter twice: its two updates would race.
    with pytest.raises(ValueError, match="sgd_step_multi: parameter 0's param shares memory with parameter 2's "
                                         "param"):
        ops.sgd_step_multi([params[0], params[1], params[0]], grads[:2] + [grads[0]], lr=0.1)
    # One parameter's state is another's parameter.
    with pytest.raises(ValueError, match="parameter 1's param shares memory with parameter 2's momentum_buffer"):
        ops.sgd_step_multi(params, grads, [buffers[0], buffers[1], params[1][:3]], lr=0.1, momentum=0.9)
    # One parameter's gradient overlaps another's parameter (read while it is written).
    with pytest.raises(ValueError, match="parameter 0's param shares memory with parameter 2's grad"):
        ops.sgd_step_multi(params, grads[:2] + [storage[2:5]], lr=0.1)
    # Gradients may share memory with each other: they are only read.
    shared_grad = np.ones(5, np.float32)
    ops.sgd_step_multi(params[:2], [shared_grad, shared_grad], lr=0.1)


# --- the optimizers --------------------------------------------------------------------------

def _model_params(rng, dtypes):
    return [ranvier.Tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)
            for shape, dtype in zip(SHAPES, dtypes)]


def _old_style_step(optimizer_name, params, grads, states, options, step_counts):
    """The optimizers' former loop: one single-tensor op per parameter with a gradient."""
    for k, (p, g) in enumerate(zip(params, grads)):
        if g is None:
            continue
        s = states[k]
        if optimizer_name == "adam":
            s.setdefault("exp_avg", np.zeros_like(p))
            s.setdefault("exp_avg_sq", np.zeros_like(p))
            s.setdefault("max_exp_avg_sq", np.zeros_like(p))
            step_counts[k] += 1
            ops.adam_step(p, g, s["exp_avg"], s["exp_avg_sq"], s["max_exp_avg_sq"], step=step_counts[k],
                          lr=options["lr"], amsgrad=True, weight_decay=0.1)
        else:
            first = "momentum_buffer" not in s
            s.setdefault("momentum_buffer", np.zeros_like(p))
            ops.sgd_step(p, g, s["momentum_buffer"], lr=options["lr"], momentum=0.9, first_step=first)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_optimizer_with_gradients_missing_in_some_steps_and_mixed_dtypes(name, rng):
    # Parameters with no gradient in some steps get their own step counts (Adam) and start
    # their momentum late (SGD); a group mixing float32 and float64 parameters is split into
    # one multi-tensor call per dtype. The result equals the former one-op-per-parameter loop.
    dtypes = [np.float32 if k % 2 else np.float64 for k in range(len(SHAPES))]
    params = _model_params(rng, dtypes)
    expected = [p.data.copy() for p in params]
    if name == "adam":
        optimizer = optim.Adam(params, lr=1e-2, amsgrad=True, weight_decay=0.1)
    else:
        optimizer = optim.SGD(params, lr=1e-2, momentum=0.9)
    states, step_counts = [{} for _ in params], [0] * len(params)
    for step in range(4):
        grads = [None if (k + step) % 3 == 0 else rng.standard_normal(p.shape).astype(p.data.dtype)
                 for k, p in enumerate(params)]
        for p, g in zip(params, grads):
            p.grad = None if g is None else ranvier.Tensor(g)
        optimizer.step()
        _old_style_step(name, expected, grads, states, {"lr": 1e-2}, step_counts)
        _assert_identical([p.data for p in params], expected, "param")
    if name == "adam":
        assert [optimizer.state[p]["step"] for p in params] == step_counts
        assert len({*step_counts}) > 1  # the counts really differ between parameters
        saved = optimizer.state_dict()["state"]
        assert sorted(saved[0]) == ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"]
        assert [saved[k]["step"] for k in range(len(params))] == step_counts


def test_optimizer_updates_a_duplicated_parameter_twice_as_before(rng):
    p = ranvier.Tensor(rng.standard_normal(5), requires_grad=True)
    q = ranvier.Tensor(rng.standard_normal(3), requires_grad=True)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        optimizer = optim.Adam([p, q, p], lr=0.1)
    p.grad, q.grad = ranvier.Tensor(np.ones(5)), ranvier.Tensor(np.ones(3))
    expected_p = p.data.copy()
    m, v = np.zeros(5), np.zeros(5)
    for step in (1, 2):  # the former loop updated p twice, its step advancing in between
        ops.adam_step(expected_p, np.ones(5), m, v, step=step, lr=0.1)
    optimizer.step()
    np.testing.assert_array_equal(p.data, expected_p)
    assert optimizer.state[p]["step"] == 2 and optimizer.state[q]["step"] == 1


def test_rejected_step_leaves_every_parameter_and_count_unchanged(rng):
    params = _model_params(rng, [np.float32] * 3)
    optimizer = optim.Adam(params)
    before = [p.data.copy() for p in params]
    for p in params[:2]:
        p.grad = ranvier.Tensor(np.ones(p.shape, np.float32))
    params[2]._grad = ranvier.Tensor(np.ones(4, np.float32))  # bypass the setter: a wrong shape
    with pytest.raises(ValueError, match=r"adam_step_multi: parameter 2: param \(0,\) and grad \(4,\) must "
                                         r"have the same shape"):
        optimizer.step()
    _assert_identical([p.data for p in params], before, "param")  # checked before any update
    assert [optimizer.state[p]["step"] for p in params] == [0, 0, 0]
