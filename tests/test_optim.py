"""ranvier.optim: SGD, Adam, AdamW, RMSprop against tests/references/optim.py, parameter
groups, state dicts, zero_grad and PyTorch's validation messages."""

import copy
import itertools

import numpy as np
import pytest
from conftest import tol
from references import optim as ref

import ranvier
from ranvier import optim

FLOATS = [np.float32, np.float64]
SHAPES = [(3, 4), (5,), (1,), (2, 3, 7)]


def _params(rng, dtype, shapes=SHAPES):
    return [ranvier.Tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in shapes]


def _set_grads(params, rng):
    for p in params:
        p.grad = ranvier.Tensor(rng.standard_normal(p.shape).astype(p.dtype))


# Optimizer class, its kwargs, and the reference update with the same options.
CASES = (
    [("SGD", dict(lr=0.05, momentum=m, dampening=d, weight_decay=wd, nesterov=n, maximize=mx),
      lambda p, g, s, o: ref.sgd(p, g, s, **o))
     for m, d, wd, n, mx in itertools.product([0, 0.9], [0, 0.2], [0, 0.1], [False, True], [False, True])
     if not (n and (m == 0 or d != 0)) and not (m == 0 and d != 0)]
    + [("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-8, weight_decay=wd, amsgrad=a, maximize=mx),
        lambda p, g, s, o: ref.adam(p, g, s, **o))
       for wd, a, mx in itertools.product([0, 0.05], [False, True], [False, True])]
    + [("AdamW", dict(lr=0.01, weight_decay=wd, amsgrad=a, maximize=mx),
        lambda p, g, s, o: ref.adamw(p, g, s, **o))
       for wd, a, mx in itertools.product([1e-2, 0.3], [False, True], [False, True])]
    + [("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-8, weight_decay=wd, momentum=m, centered=c, maximize=mx),
        lambda p, g, s, o: ref.rmsprop(p, g, s, **o))
       for wd, m, c, mx in itertools.product([0, 0.1], [0, 0.5], [False, True], [False, True])]
)


def _case_id(case):
    name, options, _ = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in options.items() if k not in ("lr", "eps", "betas", "alpha"))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_optimizer_matches_reference(dtype, case, rng):
    name, options, reference = case
    params = _params(rng, dtype)
    arrays_before = [p.data for p in params]
    expected = [p.data.astype(np.float64) for p in params]
    ref_states = [{} for _ in params]
    optimizer = getattr(optim, name)(params, **options)
    for _ in range(5):
        _set_grads(params, rng)
        assert optimizer.step() is None
        for i, p in enumerate(params):
            expected[i] = reference(expected[i], p.grad.data, ref_states[i], options)
            np.testing.assert_allclose(p.data, expected[i], **tol(dtype))
    for p, before in zip(params, arrays_before):
        assert p.data is before  # updated in place
        assert p.dtype == dtype
    for p in params:
        for key, value in optimizer.state[p].items():
            if key != "step":
                assert value.dtype == dtype and value.shape == p.shape, key


def test_adamw_defaults_are_decoupled_with_weight_decay():
    p = ranvier.Tensor(np.ones(3), requires_grad=True)
    group = optim.AdamW([p]).param_groups[0]
    assert group["weight_decay"] == 1e-2 and group["decoupled_weight_decay"] is True
    assert optim.Adam([p]).param_groups[0]["weight_decay"] == 0


def test_defaults_as_pytorch():
    p = ranvier.Tensor(np.ones(3), requires_grad=True)
    assert optim.SGD([p]).defaults == dict(lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                                           maximize=False)
    assert optim.Adam([p]).defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
                                            maximize=False, decoupled_weight_decay=False)
    assert optim.RMSprop([p]).defaults == dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                                               centered=False, maximize=False)


def test_parameters_without_grad_are_skipped(rng):
    params = _params(rng, np.float64, [(4,), (3,)])
    before = params[1].data.copy()
    optimizer = optim.Adam(params, lr=0.1)
    params[0].grad = ranvier.Tensor(np.ones(4))
    optimizer.step()
    np.testing.assert_array_equal(params[1].data, before)
    assert params[1] not in optimizer.state and optimizer.state[params[0]]["step"] == 1


def test_sgd_without_momentum_keeps_no_state(rng):
    params = _params(rng, np.float64, [(4,)])
    optimizer = optim.SGD(params, lr=0.1)
    _set_grads(params, rng)
    optimizer.step()
    assert len(optimizer.state) == 0
    assert optimizer.state_dict()["state"] == {}


@pytest.mark.parametrize("dtype", FLOATS)
def test_parameter_groups_with_their_own_options(dtype, rng):
    first, second = _params(rng, dtype, [(3, 2)]), _params(rng, dtype, [(4,), (1,)])
    optimizer = optim.SGD([{"params": first}, {"params": second, "lr": 0.01, "momentum": 0.5}], lr=0.1,
                          momentum=0.9)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.01]
    assert [g["momentum"] for g in optimizer.param_groups] == [0.9, 0.5]
    assert optimizer.param_groups[1]["dampening"] == 0
    expected = {id(p): p.data.astype(np.float64) for p in first + second}
    states = {id(p): {} for p in first + second}
    for _ in range(3):
        _set_grads(first + second, rng)
        optimizer.step()
        for params, lr, momentum in ((first, 0.1, 0.9), (second, 0.01, 0.5)):
            for p in params:
                expected[id(p)] = ref.sgd(expected[id(p)], p.grad.data, states[id(p)], lr=lr, momentum=momentum)
                np.testing.assert_allclose(p.data, expected[id(p)], **tol(dtype))


def test_changing_lr_in_param_groups_takes_effect(rng):
    params = _params(rng, np.float64, [(5,)])
    optimizer = optim.SGD(params, lr=0.1)
    optimizer.param_groups[0]["lr"] = 0.5  # as a learning-rate scheduler does
    expected = ref.sgd(params[0].data, np.ones(5), {}, lr=0.5)
    params[0].grad = ranvier.Tensor(np.ones(5))
    optimizer.step()
    np.testing.assert_allclose(params[0].data, expected, **tol(np.float64))


def test_add_param_group(rng):
    first, second = _params(rng, np.float64, [(2,)]), _params(rng, np.float64, [(3,)])
    optimizer = optim.Adam(first, lr=0.1)
    optimizer.add_param_group({"params": second, "lr": 0.2})
    assert len(optimizer.param_groups) == 2 and optimizer.param_groups[1]["betas"] == (0.9, 0.999)
    assert optimizer.param_groups[1]["lr"] == 0.2
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        optimizer.add_param_group({"params": first})
    with pytest.raises(ValueError, match="Invalid learning rate: -0.5"):
        optimizer.add_param_group({"params": _params(rng, np.float64, [(1,)]), "lr": -0.5})
    with pytest.raises(ValueError, match="param_group has unknown options \\['momentum'\\]"):
        optimizer.add_param_group({"params": _params(rng, np.float64, [(1,)]), "momentum": 0.9})


# --- state dicts ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, options", [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
])
def test_state_dict_round_trip_continues_exactly(name, options, rng):
    params = _params(rng, np.float32)
    optimizer = getattr(optim, name)([{"params": params[:2]}, {"params": params[2:], "lr": 0.003}], **options)
    for _ in range(3):
        _set_grads(params, rng)
        optimizer.step()
    saved = optimizer.state_dict()
    restored_params = [ranvier.Tensor(p.data.copy(), requires_grad=True) for p in params]
    restored = getattr(optim, name)([{"params": restored_params[:2]}, {"params": restored_params[2:]}], lr=1.0)
    restored.load_state_dict(copy.deepcopy(saved))
    assert [g["lr"] for g in restored.param_groups] == [g["lr"] for g in optimizer.param_groups]
    for _ in range(3):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
        for p, q, g in zip(params, restored_params, grads):
            p.grad, q.grad = ranvier.Tensor(g), ranvier.Tensor(g.copy())
        optimizer.step()
        restored.step()
        for p, q in zip(params, restored_params):
            np.testing.assert_array_equal(p.data, q.data)


def test_state_dict_layout(rng):
    params = _params(rng, np.float64, [(2,), (3,), (4,)])
    optimizer = optim.Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.5}], amsgrad=True)
    _set_grads(params[:2], rng)
    optimizer.step()
    saved = optimizer.state_dict()
    assert set(saved) == {"state", "param_groups"}
    assert [g["params"] for g in saved["param_groups"]] == [[0], [1, 2]]
    assert saved["param_groups"][1] == dict(lr=0.5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=True,
                                            maximize=False, decoupled_weight_decay=False, params=[1, 2])
    assert list(saved["state"]) == [0, 1]  # parameter 2 had no gradient: no state
    assert set(saved["state"][1]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert saved["state"][1]["step"] == 1 and isinstance(saved["state"][1]["step"], int)
    # The saved arrays are copies: training on does not change a saved state dict.
    exp_avg = saved["state"][0]["exp_avg"].copy()
    _set_grads(params, rng)
    optimizer.step()
    np.testing.assert_array_equal(saved["state"][0]["exp_avg"], exp_avg)
    assert not np.shares_memory(saved["state"][0]["exp_avg"], optimizer.state[params[0]]["exp_avg"])


def test_load_state_dict_converts_dtype_and_copies(rng):
    params64 = _params(rng, np.float64, [(3,)])
    optimizer = optim.RMSprop(params64, momentum=0.2)
    _set_grads(params64, rng)
    optimizer.step()
    saved = optimizer.state_dict()
    params32 = [ranvier.Tensor(params64[0].data.astype(np.float32), requires_grad=True)]
    restored = optim.RMSprop(params32)
    restored.load_state_dict(saved)
    state = restored.state[params32[0]]
    assert state["square_avg"].dtype == np.float32 and state["momentum_buffer"].dtype == np.float32
    assert not np.shares_memory(state["square_avg"], saved["state"][0]["square_avg"])
    assert restored.param_groups[0]["momentum"] == 0.2 and restored.param_groups[0]["params"] == params32


def test_load_state_dict_validation(rng):
    params = _params(rng, np.float64, [(2,), (3,)])
    optimizer = optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1, momentum=0.9)
    _set_grads(params, rng)
    optimizer.step()
    saved = optimizer.state_dict()

    one_group = optim.SGD(_params(rng, np.float64, [(2,), (3,)]), lr=0.1)
    with pytest.raises(ValueError, match="loaded state dict has a different number of parameter groups"):
        one_group.load_state_dict(saved)
    other = _params(rng, np.float64, [(2,), (3,), (4,)])
    sizes_differ = optim.SGD([{"params": other[:1]}, {"params": other[1:]}], lr=0.1)
    with pytest.raises(ValueError, match="loaded state dict contains a parameter group that doesn't match the "
                                         "size of optimizer's group: group 1 has 1 parameters"):
        sizes_differ.load_state_dict(saved)
    shapes = _params(rng, np.float64, [(2,), (4,)])
    shapes_differ = optim.SGD([{"params": shapes[:1]}, {"params": shapes[1:]}], lr=0.1)
    with pytest.raises(ValueError, match=r"parameter 1 has state 'momentum_buffer' of shape \(3,\) but the "
                                         r"parameter has shape \(4,\)"):
        shapes_differ.load_state_dict(saved)
    with pytest.raises(ValueError, match="expected a dict with 'state' and 'param_groups'"):
        shapes_differ.load_state_dict({"state": {}})
    bad_index = copy.deepcopy(saved)
    bad_index["state"][7] = bad_index["state"].pop(1)
    fresh = _params(rng, np.float64, [(2,), (3,)])
    target = optim.SGD([{"params": fresh[:1]}, {"params": fresh[1:]}], lr=0.1)
    with pytest.raises(ValueError, match="state for parameter 7, which is in none of its parameter groups"):
        target.load_state_dict(bad_index)
    bad_lr = copy.deepcopy(saved)
    bad_lr["param_groups"][0]["lr"] = -1
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        target.load_state_dict(bad_lr)


# --- zero_grad, closure, autograd ---------------------------------------------------------------

def test_zero_grad(rng):
    params = _params(rng, np.float64, [(3,), (2,)])
    optimizer = optim.SGD(params, lr=0.1)
    _set_grads(params, rng)
    grad_array = params[0].grad.data
    optimizer.zero_grad(set_to_none=False)
    assert params[0].grad.data is grad_array
    np.testing.assert_array_equal(grad_array, 0.0)
    optimizer.zero_grad()
    assert all(p.grad is None for p in params)
    optimizer.zero_grad()  # no gradients: nothing to do


def test_step_with_closure_and_backward(rng):
    # Minimize sum(w^2) with autograd-computed gradients 2 w.
    w = ranvier.Tensor(rng.standard_normal(6), requires_grad=True)
    expected, state = w.data.copy(), {}
    optimizer = optim.SGD([w], lr=0.1, momentum=0.9)

    def closure():
        optimizer.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    for _ in range(4):
        grad = 2 * expected
        loss = optimizer.step(closure)
        assert float(loss.item()) == pytest.approx(float(np.sum(expected ** 2)))
        expected = ref.sgd(expected, grad, state, lr=0.1, momentum=0.9)
        np.testing.assert_allclose(w.data, expected, **tol(np.float64))


def test_closure_runs_with_grad_enabled(rng):
    w = ranvier.Tensor(np.ones(2), requires_grad=True)
    optimizer = optim.Adam([w])
    seen = []
    with ranvier.no_grad():
        optimizer.step(lambda: seen.append(ranvier.is_grad_enabled()))
    assert seen == [True]


def test_parameters_from_a_generator(rng):
    params = _params(rng, np.float64, [(2,), (3,)])
    optimizer = optim.SGD((p for p in params), lr=0.1)
    assert optimizer.param_groups[0]["params"] == params


# --- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("make, match", [
    (lambda p: optim.SGD(p, lr=-1), "Invalid learning rate: -1"),
    (lambda p: optim.SGD(p, lr=float("nan")), "Invalid learning rate: nan"),
    (lambda p: optim.SGD(p, momentum=-0.1), "Invalid momentum value: -0.1"),
    (lambda p: optim.SGD(p, weight_decay=-1e-4), "Invalid weight_decay value: -0.0001"),
    (lambda p: optim.SGD(p, nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (lambda p: optim.SGD(p, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov momentum requires"),
    (lambda p: optim.Adam(p, lr=-1e-3), "Invalid learning rate: -0.001"),
    (lambda p: optim.Adam(p, eps=-1), "Invalid epsilon value: -1"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    (lambda p: optim.Adam(p, betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    (lambda p: optim.Adam(p, weight_decay=-1), "Invalid weight_decay value: -1"),
    (lambda p: optim.AdamW(p, betas=(0.9, 1.5)), "Invalid beta parameter at index 1: 1.5"),
    (lambda p: optim.RMSprop(p, lr=-0.1), "Invalid learning rate: -0.1"),
    (lambda p: optim.RMSprop(p, eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (lambda p: optim.RMSprop(p, momentum=-1), "Invalid momentum value: -1"),
    (lambda p: optim.RMSprop(p, weight_decay=-1), "Invalid weight_decay value: -1"),
    (lambda p: optim.RMSprop(p, alpha=-0.5), "Invalid alpha value: -0.5"),
])
def test_invalid_options(make, match):
    with pytest.raises(ValueError, match=match):
        make([ranvier.Tensor(np.ones(2), requires_grad=True)])


def test_invalid_parameters():
    p = ranvier.Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="should be an iterable of Tensors or dicts, but got ranvier.Tensor"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors, but one of the params is numpy.ndarray"):
        optim.SGD([np.ones(2)], lr=0.1)
    with pytest.raises(TypeError, match="ordering of tensors in sets will change between runs"):
        optim.SGD({p}, lr=0.1)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        optim.SGD([p, p], lr=0.1)


def test_step_reports_bad_gradients_clearly():
    p = ranvier.Tensor(np.ones(3), requires_grad=True)
    optimizer = optim.Adam([p])
    p._grad = ranvier.Tensor(np.ones(3, dtype=np.int64))  # bypass the setter: an int gradient
    with pytest.raises(TypeError, match="adam_step_multi: parameter 0: grad has dtype int64"):
        optimizer.step()
    assert optimizer.state[p]["step"] == 0  # the rejected step did not count


def test_repr_like_pytorch():
    p = ranvier.Tensor(np.ones(2), requires_grad=True)
    text = repr(optim.SGD([p], lr=0.1, momentum=0.9))
    assert text == ("SGD (\nParameter Group 0\n    dampening: 0\n    lr: 0.1\n    maximize: False\n"
                    "    momentum: 0.9\n    nesterov: False\n    weight_decay: 0\n)")
    assert repr(optim.Adam([p])).startswith("Adam (\nParameter Group 0\n    amsgrad: False\n    betas: (0.9, 0.999)")
