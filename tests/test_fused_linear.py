"""The fused linear + bias + activation layer: ops.linear(activation=...),
ops.linear_activation / linear_activation_backward against NumPy float64 references and
central finite differences, and nn.Sequential's automatic fusion against the unfused modules.

On a GPU the same cases run on CuPy arrays (skipped cleanly without one).
"""

import numpy as np
import pytest
from conftest import tol
from references import activations as act_ref
from references import matmul as matmul_ref
from references.finite_difference import numeric_grad

import ranvier
from ranvier import nn, ops

GPU = ranvier.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not GPU, reason=f"no usable GPU: {ranvier.cuda.unavailable_reason()}"))]
DTYPES = [np.float32, np.float64]
SLOPE = 0.2  # leaky_relu's negative slope in these tests

# name -> (f, f') as float64 references of the activation applied to the pre-activation z.
REFERENCES = {
    "relu": (act_ref.relu, act_ref.relu_grad),
    "leaky_relu": (lambda z: act_ref.leaky_relu(z, SLOPE),
                   lambda z: act_ref.leaky_relu_grad(z, SLOPE)),
    "sigmoid": (act_ref.sigmoid, act_ref.sigmoid_grad),
    "tanh": (act_ref.tanh, act_ref.tanh_grad),
    "gelu": (act_ref.gelu, act_ref.gelu_grad),
    "gelu_tanh": (act_ref.gelu_tanh, act_ref.gelu_tanh_grad),
}
ACTIVATIONS = list(REFERENCES)
# (leading dims, in_features, out_features): one row, odd sizes, primes, sizes that are not
# multiples of the SIMD widths, several leading dims, no rows at all.
SHAPES = [((1,), 1, 1), ((7,), 13, 5), ((3, 5), 17, 31), ((33,), 9, 19), ((0,), 4, 3)]


def to_device(array, device):
    if device == "cpu" or array is None:
        return array
    import cupy
    return cupy.asarray(array)


def to_host(array):
    return array if isinstance(array, np.ndarray) or array is None else array.get()


def make(rng, lead, n_in, n_out, dtype, bias=True):
    x = rng.standard_normal(lead + (n_in,)).astype(dtype)
    w = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype) if bias else None
    return x, w, b


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("lead,n_in,n_out", SHAPES)
def test_forward_and_backward_match_float64_references(rng, device, dtype, activation, lead,
                                                       n_in, n_out):
    f, f_grad = REFERENCES[activation]
    x, w, b = make(rng, lead, n_in, n_out, dtype)
    dy = rng.standard_normal(lead + (n_out,)).astype(dtype)
    z = matmul_ref.linear(x, w, b)
    expected_y = f(z)
    dz = dy.astype(np.float64) * f_grad(z)

    xd, wd, bd, dyd = (to_device(a, device) for a in (x, w, b, dy))
    y_only = ops.linear(xd, wd, bd, activation=activation, negative_slope=SLOPE)
    y, saved = ops.linear_activation(xd, wd, bd, activation, negative_slope=SLOPE)
    assert y_only.dtype == dtype and y.shape == lead + (n_out,)
    np.testing.assert_allclose(to_host(y_only), expected_y, **tol(dtype))
    np.testing.assert_allclose(to_host(y), expected_y, **tol(dtype))
    if activation in ("relu", "sigmoid", "tanh"):
        assert saved is y  # the derivative follows from the output
    else:
        np.testing.assert_allclose(to_host(saved), z, **tol(dtype))  # the pre-activation

    gx, gw, gb = ops.linear_activation_backward(saved, dyd, xd, wd, activation,
                                                negative_slope=SLOPE)
    np.testing.assert_allclose(to_host(gx), matmul_ref.linear_backward_input(dz, w), **tol(dtype))
    ref_gw, ref_gb = matmul_ref.linear_backward_weight(dz, x)
    np.testing.assert_allclose(to_host(gw), ref_gw, **tol(dtype))
    np.testing.assert_allclose(to_host(gb), ref_gb, **tol(dtype))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_no_bias_and_skipped_gradients(rng, activation):
    f, f_grad = REFERENCES[activation]
    x, w, _ = make(rng, (6,), 11, 9, np.float64, bias=False)
    dy = rng.standard_normal((6, 9))
    z = matmul_ref.linear(x, w)
    np.testing.assert_allclose(ops.linear(x, w, activation=activation, negative_slope=SLOPE),
                               f(z), **tol(np.float64))
    _, saved = ops.linear_activation(x, w, None, activation, negative_slope=SLOPE)
    gx, gw, gb = ops.linear_activation_backward(saved, dy, x, w, activation, bias=False,
                                                negative_slope=SLOPE, weight_grad=False)
    assert gw is None and gb is None
    np.testing.assert_allclose(gx, matmul_ref.linear_backward_input(dy * f_grad(z), w),
                               **tol(np.float64))
    gx, gw, gb = ops.linear_activation_backward(saved, dy, x, w, activation, negative_slope=SLOPE,
                                                input_grad=False)
    assert gx is None
    np.testing.assert_allclose(gb, (dy * f_grad(z)).sum(axis=0), **tol(np.float64))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backward_matches_finite_differences(rng, activation):
    x, w, b = make(rng, (4,), 5, 3, np.float64)
    # Keep pre-activations away from ReLU's kink, where differences are not derivatives.
    b += np.sign(matmul_ref.linear(x, w, b).mean(axis=0)) * 0.05
    dy = rng.standard_normal((4, 3))

    def loss(x_, w_, b_):
        return float((ops.linear(x_, w_, b_, activation=activation, negative_slope=SLOPE)
                      * dy).sum())

    _, saved = ops.linear_activation(x, w, b, activation, negative_slope=SLOPE)
    gx, gw, gb = ops.linear_activation_backward(saved, dy, x, w, activation, negative_slope=SLOPE)
    np.testing.assert_allclose(gx, numeric_grad(lambda v: loss(v, w, b), x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gw, numeric_grad(lambda v: loss(x, v, b), w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gb, numeric_grad(lambda v: loss(x, w, v), b), rtol=1e-6, atol=1e-7)


def test_mixed_dtypes_promote_and_strided_inputs_are_copied(rng):
    x, w, b = make(rng, (5,), 8, 4, np.float64)
    wide = np.repeat(x, 2, axis=1)[:, ::2]  # a strided view holding x's values
    y = ops.linear(wide, w.astype(np.float32), b, activation="tanh")
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, act_ref.tanh(matmul_ref.linear(x, w.astype(np.float32), b)),
                               **tol(np.float64))


def test_bad_arguments_raise_clear_errors(rng):
    x, w, b = make(rng, (3,), 4, 2, np.float32)
    with pytest.raises(ValueError, match=r"linear: activation must be None or one of .*'softplus'"):
        ops.linear(x, w, b, activation="softplus")
    with pytest.raises(ValueError, match="linear_activation: activation must be"):
        ops.linear_activation(x, w, b, 3)
    with pytest.raises(ValueError, match=r"linear_activation: x has 5 features"):
        ops.linear_activation(np.ones((3, 5), np.float32), w, b, "relu")
    with pytest.raises(ValueError, match=r"linear_activation: bias has shape \(3,\)"):
        ops.linear_activation(x, w, np.ones(3, np.float32), "relu")
    with pytest.raises(TypeError, match=r"linear: x has dtype int64"):
        ops.linear(np.ones((3, 4), np.int64), w, b, activation="relu")
    y, saved = ops.linear_activation(x, w, b, "gelu")
    with pytest.raises(ValueError, match=r"linear_activation_backward: saved has shape \(3, 3\)"):
        ops.linear_activation_backward(np.ones((3, 3), np.float32), y, x, w, "gelu")
    with pytest.raises(ValueError, match=r"linear_activation_backward: weight has shape \(2, 5\)"):
        ops.linear_activation_backward(saved, y, x, np.ones((2, 5), np.float32), "gelu")
    with pytest.raises(ValueError, match="linear_activation_backward: grad_output .* same leading"):
        ops.linear_activation_backward(saved[:2], y[:2], x, w, "gelu")


def test_kernel_refuses_overlapping_outputs(rng):
    x, w, b = make(rng, (3,), 4, 2, np.float32)
    y = np.empty((3, 2), np.float32)
    with pytest.raises(ValueError, match="linear_activation_forward: pre must not share memory with out"):
        ranvier._C.linear_activation_forward(ranvier._C.Activation.GELU, x, w, b, y, y)
    with pytest.raises(ValueError, match="linear_activation_forward: unknown activation code 9"):
        ranvier._C.linear_activation_forward(9, x, w, b, None, y)
    dz = np.empty((3, 2), np.float32)
    with pytest.raises(ValueError, match="linear_activation_backward: grad_pre must not share memory with out_bias"):
        ranvier._C.linear_activation_backward(ranvier._C.Activation.ReLU, y, y, x, w, dz, None,
                                              None, dz[0])


# --- nn.Sequential fuses Linear + activation -----------------------------------------------

def activation_layers():
    return [nn.ReLU(), nn.LeakyReLU(SLOPE), nn.Sigmoid(), nn.Tanh(), nn.GELU(),
            nn.GELU(approximate="tanh")]


def run_unfused(modules, x):
    for module in modules:
        x = module(x)
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", range(6))
def test_sequential_fuses_and_matches_the_unfused_modules(rng, dtype, layer):
    model = nn.Sequential(nn.Linear(7, 11, dtype=dtype), activation_layers()[layer],
                          nn.Linear(11, 3, dtype=dtype))
    x_array = rng.standard_normal((5, 7)).astype(dtype)
    x = ranvier.tensor(x_array, requires_grad=True)
    fused = model(x)
    assert fused.grad_fn is not None
    (fused * ranvier.tensor(np.arange(15.0).reshape(5, 3).astype(dtype))).sum().backward()
    fused_grads = [p.grad.numpy().copy() for p in model.parameters()] + [x.grad.numpy().copy()]

    model.zero_grad()
    x2 = ranvier.tensor(x_array, requires_grad=True)
    plain = run_unfused(list(model), x2)
    (plain * ranvier.tensor(np.arange(15.0).reshape(5, 3).astype(dtype))).sum().backward()
    plain_grads = [p.grad.numpy() for p in model.parameters()] + [x2.grad.numpy()]
    np.testing.assert_allclose(fused.detach().numpy(), plain.detach().numpy(), **tol(dtype))
    for a, b in zip(fused_grads, plain_grads):
        np.testing.assert_allclose(a, b, **tol(dtype))


def test_sequential_fused_graph_has_one_node_per_layer(rng):
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2), nn.Tanh())
    out = model(ranvier.tensor(rng.standard_normal((3, 4)).astype(np.float32)))
    # Params require grad, so the graph is recorded: tanh(linear(relu(linear(x)))) is two
    # fused nodes, the outer one fed by the inner one.
    assert repr(out.grad_fn) == "<LinearActivationBackward>"
    assert repr(out.grad_fn.inputs[0].grad_fn) == "<LinearActivationBackward>"


def test_sequential_gradcheck_through_fused_layers(rng):
    model = nn.Sequential(nn.Linear(3, 4, dtype=np.float64), nn.GELU(),
                          nn.Linear(4, 2, dtype=np.float64), nn.Sigmoid())
    x = ranvier.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    weight = model[0].weight
    assert ranvier.autograd.gradcheck(lambda x_, w_: model(x_), (x, weight))


def test_sequential_fused_matches_float64_reference(rng):
    model = nn.Sequential(nn.Linear(5, 4, dtype=np.float64), nn.Tanh())
    x = rng.standard_normal((3, 5))
    w, b = model[0].weight.detach().numpy(), model[0].bias.detach().numpy()
    with ranvier.no_grad():
        out = model(ranvier.tensor(x))
    assert out.grad_fn is None
    np.testing.assert_allclose(out.numpy(), act_ref.tanh(matmul_ref.linear(x, w, b)),
                               **tol(np.float64))


class DoubledReLU(nn.ReLU):
    def forward(self, input):
        return super().forward(input) * 2


def test_sequential_does_not_fuse_subclasses_or_replaced_forwards(rng):
    x = ranvier.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    model = nn.Sequential(nn.Linear(4, 5), DoubledReLU())
    out = model(x)
    assert repr(out.grad_fn) != "<LinearActivationBackward>"
    expected = 2 * np.maximum(x.numpy() @ model[0].weight.detach().numpy().T + model[0].bias.detach().numpy(), 0)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-5, atol=1e-6)

    model = nn.Sequential(nn.Linear(4, 5), nn.Sigmoid())
    model[1].forward = lambda input: input  # the instance's own forward must be honoured
    out = model(x)
    np.testing.assert_allclose(out.detach().numpy(),
                               x.numpy() @ model[0].weight.detach().numpy().T + model[0].bias.detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_sequential_fused_layer_keeps_linear_input_errors():
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU())
    with pytest.raises(ValueError, match=r"Linear\(in_features=4.*input has 3 features"):
        model(ranvier.tensor(np.ones((2, 3), np.float32)))
