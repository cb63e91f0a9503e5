"""The vectorised CPU optimizer loops (kernels/cpu/optim.cpp) give every element exactly what
the scalar code gives it, for every option combination.

A whole-array update runs SIMD lanes plus a scalar tail; the same update applied element by
element (one call per 1-element view) runs scalar code only. Sizes are 1, primes and other
sizes that are not multiples of 2/4/8/16 lanes, so both the vector body and the tail are hit.
The multi-tensor op over all sizes at once must agree bit for bit too. (The float64
references in tests/test_ops_optim.py check the values themselves.)
"""

import numpy as np
import pytest
from test_ops_optim import ADAM_OPTIONS, RMSPROP_OPTIONS, SGD_OPTIONS

from ranvier import ops

FLOATS = [np.float32, np.float64]
SIZES = [1, 3, 17, 37, 103]
STEPS = 3


def _check_elementwise(rng, dtype, state_names, single, multi):
    """single(param, grad, states, step) updates one array; multi(params, grads, states, step)
    a list of them. Compares both with element-by-element single calls, bit for bit."""
    params = [rng.standard_normal(size).astype(dtype) for size in SIZES]
    states = {name: [np.zeros(size, dtype) for size in SIZES] for name in state_names}
    multi_params = [p.copy() for p in params]
    multi_states = {name: [s.copy() for s in arrays] for name, arrays in states.items()}
    scalar_params = [p.copy() for p in params]
    scalar_states = {name: [s.copy() for s in arrays] for name, arrays in states.items()}
    for step in range(1, STEPS + 1):
        grads = [rng.standard_normal(size).astype(dtype) for size in SIZES]
        multi(multi_params, grads, multi_states, step)
        for k, size in enumerate(SIZES):
            single(params[k], grads[k], {name: arrays[k] for name, arrays in states.items()}, step)
            for i in range(size):
                single(scalar_params[k][i:i + 1], grads[k][i:i + 1],
                       {name: arrays[k][i:i + 1] for name, arrays in scalar_states.items()}, step)
        for k, size in enumerate(SIZES):
            what = f"size {size}, step {step}"
            np.testing.assert_array_equal(params[k], scalar_params[k], err_msg=f"param, {what}")
            np.testing.assert_array_equal(multi_params[k], scalar_params[k], err_msg=f"multi param, {what}")
            for name in state_names:
                np.testing.assert_array_equal(states[name][k], scalar_states[name][k], err_msg=f"{name}, {what}")
                np.testing.assert_array_equal(multi_states[name][k], scalar_states[name][k],
                                              err_msg=f"multi {name}, {what}")
    assert all(np.isfinite(p).all() for p in params)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("options", SGD_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_vector_loop_equals_scalar(dtype, options, rng):
    use_momentum = options["momentum"] != 0

    def single(param, grad, states, step):
        ops.sgd_step(param, grad, states["momentum_buffer"] if use_momentum else None, lr=0.05,
                     first_step=step == 1, **options)

    def multi(params, grads, states, step):
        ops.sgd_step_multi(params, grads, states["momentum_buffer"] if use_momentum else None,
                           first_steps=[step == 1] * len(params), lr=0.05, **options)

    _check_elementwise(rng, dtype, ["momentum_buffer"], single, multi)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("options", ADAM_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_adam_vector_loop_equals_scalar(dtype, options, rng):
    names = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if options["amsgrad"] else [])
    hyper = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, **options)

    def single(param, grad, states, step):
        ops.adam_step(param, grad, states["exp_avg"], states["exp_avg_sq"], states.get("max_exp_avg_sq"),
                      step=step, **hyper)

    def multi(params, grads, states, step):
        ops.adam_step_multi(params, grads, states["exp_avg"], states["exp_avg_sq"], states.get("max_exp_avg_sq"),
                            steps=[step] * len(params), **hyper)

    _check_elementwise(rng, dtype, names, single, multi)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("options", RMSPROP_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_rmsprop_vector_loop_equals_scalar(dtype, options, rng):
    names = (["square_avg"] + (["momentum_buffer"] if options["momentum"] > 0 else [])
             + (["grad_avg"] if options["centered"] else []))
    hyper = dict(lr=0.01, alpha=0.9, eps=1e-8, **options)

    def single(param, grad, states, step):
        ops.rmsprop_step(param, grad, states["square_avg"], states.get("momentum_buffer"), states.get("grad_avg"),
                         **hyper)

    def multi(params, grads, states, step):
        ops.rmsprop_step_multi(params, grads, states["square_avg"], states.get("momentum_buffer"),
                               states.get("grad_avg"), **hyper)

    _check_elementwise(rng, dtype, names, single, multi)
