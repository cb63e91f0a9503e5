"""nn layers: forward against NumPy float64 references, initialisation, modes, argument checks."""

import math

import numpy as np
import pytest
from conftest import tol
from references import nn_layers as ref

import ranvier
from ranvier import nn
from ranvier.nn import functional as F

DTYPES = [np.float32, np.float64]


def tensor(array, requires_grad=False):
    return ranvier.Tensor(np.asarray(array), requires_grad=requires_grad)


# ---------------------------------------------------------------------------------- Linear


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_shape, in_features, out_features", [
    ((1,), 1, 1), ((5,), 3, 4), ((7,), 13, 11), ((2, 3), 17, 9), ((), 6, 5), ((0,), 4, 3),
])
def test_linear_forward_matches_reference(rng, dtype, batch_shape, in_features, out_features):
    layer = nn.Linear(in_features, out_features, dtype=dtype)
    x = rng.standard_normal(batch_shape + (in_features,)).astype(dtype)
    out = layer(tensor(x))
    assert out.dtype == dtype and out.shape == batch_shape + (out_features,)
    expected = ref.linear(x, layer.weight.data, layer.bias.data)
    np.testing.assert_allclose(out.data, expected, **tol(dtype))


def test_linear_without_bias(rng):
    layer = nn.Linear(5, 3, bias=False)
    assert layer.bias is None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    x = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(layer(tensor(x)).data, ref.linear(x, layer.weight.data),
                               **tol(np.float32))


def test_linear_layout_and_dtype():
    layer = nn.Linear(3, 7)
    assert layer.weight.shape == (7, 3) and layer.bias.shape == (7,)
    assert layer.weight.dtype == np.float32 and layer.weight.requires_grad
    assert nn.Linear(3, 7, dtype=np.float64).weight.dtype == np.float64
    assert nn.Linear(3, 7, dtype="float64").bias.dtype == np.float64


def test_linear_backward_reaches_parameters(rng):
    layer = nn.Linear(4, 3, dtype=np.float64)
    x = rng.standard_normal((5, 4))
    layer(tensor(x)).sum().backward()
    np.testing.assert_allclose(layer.weight.grad.data, np.tile(x.sum(axis=0), (3, 1)),
                               **tol(np.float64))
    np.testing.assert_allclose(layer.bias.grad.data, np.full(3, 5.0), **tol(np.float64))


def test_linear_wrong_feature_count_names_the_shapes():
    layer = nn.Linear(4, 3)
    with pytest.raises(ValueError, match=r"Linear\(in_features=4, out_features=3, bias=True\): "
                                         r"input has 5 features \(shape \(3, 5\)\)"):
        layer(tensor(np.zeros((3, 5), np.float32)))
    with pytest.raises(ValueError, match=r"input has no features \(shape \(\)\)"):
        layer(tensor(np.float32(1.0)))


@pytest.mark.parametrize("args, error, match", [
    ((0, 3), ValueError, r"Linear: in_features must be positive, got 0"),
    ((3, -1), ValueError, r"Linear: out_features must be positive, got -1"),
    ((3.0, 2), TypeError, r"Linear: in_features must be an integer, got 3.0"),
    ((True, 2), TypeError, r"Linear: in_features must be an integer, got True"),
    ((3, "2"), TypeError, r"Linear: out_features must be an integer, got '2'"),
])
def test_linear_bad_constructor_args(args, error, match):
    with pytest.raises(error, match=match):
        nn.Linear(*args)


def test_linear_bad_dtype_and_bias():
    with pytest.raises(TypeError, match=r"Linear: dtype must be float32 or float64, got int64"):
        nn.Linear(2, 2, dtype=np.int64)
    with pytest.raises(TypeError, match=r"Linear: dtype must be float32 or float64, got float16"):
        nn.Linear(2, 2, dtype=np.float16)
    with pytest.raises(TypeError, match=r"Linear: bias must be True or False, got 'yes'"):
        nn.Linear(2, 2, bias="yes")


def test_linear_initialisation_statistics():
    in_features, out_features = 400, 500
    layer = nn.Linear(in_features, out_features, dtype=np.float64)
    bound = 1.0 / math.sqrt(in_features)
    weight = layer.weight.data.ravel()
    assert np.all(np.abs(weight) <= bound)
    # 200000 draws of U(-b, b): min/max near the bounds, mean 0, variance b^2 / 3.
    assert weight.min() < -0.999 * bound and weight.max() > 0.999 * bound
    assert abs(weight.mean()) < 0.01 * bound
    assert weight.var() == pytest.approx(bound ** 2 / 3, rel=0.02)
    counts, _ = np.histogram(weight, bins=10, range=(-bound, bound))
    np.testing.assert_allclose(counts / weight.size, 0.1, atol=0.005)
    bias = layer.bias.data
    assert np.all(np.abs(bias) <= bound) and bias.std() > 0.4 * bound


def test_linear_initialisation_follows_manual_seed():
    ranvier.manual_seed(7)
    first = nn.Linear(6, 5)
    ranvier.manual_seed(7)
    second = nn.Linear(6, 5)
    third = nn.Linear(6, 5)
    np.testing.assert_array_equal(first.weight.data, second.weight.data)
    np.testing.assert_array_equal(first.bias.data, second.bias.data)
    assert not np.array_equal(second.weight.data, third.weight.data)


def test_reset_parameters_redraws_in_place():
    layer = nn.Linear(8, 8)
    weight_array = layer.weight.data
    before = weight_array.copy()
    layer.reset_parameters()
    assert layer.weight.data is weight_array
    assert not np.array_equal(before, weight_array)


# ------------------------------------------------------------------------ Identity, Flatten


def test_identity_returns_its_input():
    x = tensor(np.ones(3, np.float32))
    assert nn.Identity()(x) is x
    assert nn.Identity(54, unused="argument")(x) is x
    assert repr(nn.Identity()) == "Identity()"


@pytest.mark.parametrize("shape, start, end, expected", [
    ((32, 1, 5, 5), 1, -1, (32, 25)),
    ((32, 1, 5, 5), 0, -1, (800,)),
    ((2, 3, 4, 5), 1, 2, (2, 12, 5)),
    ((2, 3, 4, 5), -3, -2, (2, 12, 5)),
    ((2, 3), 1, -1, (2, 3)),
    ((7,), 0, 0, (7,)),
    ((0, 3, 4), 1, -1, (0, 12)),
    ((3, 0, 4), 1, -1, (3, 0)),
])
def test_flatten_shapes(shape, start, end, expected):
    x = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    out = nn.Flatten(start, end)(tensor(x))
    assert out.shape == expected
    np.testing.assert_array_equal(out.data.ravel(), x.ravel())  # C order kept


def test_flatten_backward_restores_shape(rng):
    x = tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    (nn.Flatten()(x) * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad.data, np.full((2, 3, 4), 2.0))


def test_flatten_bad_dims():
    with pytest.raises(IndexError, match=r"Flatten\(start_dim=1, end_dim=-1\): dimension out "
                                         r"of range for an input of shape \(5,\)"):
        nn.Flatten()(tensor(np.zeros(5, np.float32)))
    with pytest.raises(ValueError, match=r"start_dim \(2\) comes after end_dim \(1\)"):
        nn.Flatten(2, 1)(tensor(np.zeros((2, 3, 4), np.float32)))
    with pytest.raises(TypeError, match=r"Flatten: start_dim must be an integer, got 1.5"):
        nn.Flatten(1.5)
    assert repr(nn.Flatten()) == "Flatten(start_dim=1, end_dim=-1)"


# ------------------------------------------------------------------------------ activations


ELEMENTWISE = [
    (lambda: nn.ReLU(), ref.relu),
    (lambda: nn.LeakyReLU(), lambda x: ref.leaky_relu(x, 0.01)),
    (lambda: nn.LeakyReLU(0.2), lambda x: ref.leaky_relu(x, 0.2)),
    (lambda: nn.Sigmoid(), ref.sigmoid),
    (lambda: nn.Tanh(), lambda x: np.tanh(np.asarray(x, np.float64))),
    (lambda: nn.GELU(), ref.gelu_exact),
    (lambda: nn.GELU(approximate="tanh"), ref.gelu_tanh),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make, reference", ELEMENTWISE)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 17), (2, 3, 5)])
def test_elementwise_activations_match_reference(rng, make, reference, dtype, shape):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    out = make()(tensor(x))
    assert out.shape == shape and out.dtype == dtype
    np.testing.assert_allclose(out.data, reference(x), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, dim", [((4, 7), 1), ((4, 7), 0), ((2, 3, 5), -1),
                                        ((2, 3, 5), 1), ((1, 1), 1), ((11,), 0)])
def test_softmax_layers_match_reference(rng, dtype, shape, dim):
    x = (4 * rng.standard_normal(shape)).astype(dtype)
    np.testing.assert_allclose(nn.Softmax(dim=dim)(tensor(x)).data, ref.softmax(x, dim),
                               **tol(dtype))
    np.testing.assert_allclose(nn.LogSoftmax(dim=dim)(tensor(x)).data, ref.log_softmax(x, dim),
                               **tol(dtype))


def test_activation_arguments_and_reprs():
    with pytest.raises(ValueError, match=r"Softmax: dim is required \(e.g. Softmax\(dim=1\)"):
        nn.Softmax()
    with pytest.raises(ValueError, match=r"LogSoftmax: dim is required"):
        nn.LogSoftmax()
    with pytest.raises(TypeError, match=r"Softmax: dim must be an integer, got 1.0"):
        nn.Softmax(dim=1.0)
    with pytest.raises(ValueError, match=r"GELU: approximate must be 'none' or 'tanh', "
                                         r"got 'erf'"):
        nn.GELU(approximate="erf")
    with pytest.raises(TypeError, match=r"LeakyReLU: negative_slope must be a number"):
        nn.LeakyReLU("0.1")
    with pytest.raises(ValueError, match=r"LeakyReLU: negative_slope must be finite, got nan"):
        nn.LeakyReLU(float("nan"))
    assert repr(nn.ReLU()) == "ReLU()"
    assert repr(nn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(nn.GELU()) == "GELU(approximate='none')"
    assert repr(nn.Softmax(dim=-1)) == "Softmax(dim=-1)"
    assert repr(nn.LogSoftmax(1)) == "LogSoftmax(dim=1)"
    assert repr(nn.Sigmoid()) == "Sigmoid()" and repr(nn.Tanh()) == "Tanh()"


# ---------------------------------------------------------------------------------- Dropout


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_in_training_mode(p):
    x = np.full((200, 300), 2.0, np.float32)
    layer = nn.Dropout(p)
    out = layer(tensor(x)).data
    dropped = out == 0
    # 60000 Bernoulli(p) draws: the fraction dropped is within 6 standard deviations of p.
    assert abs(dropped.mean() - p) < 6 * math.sqrt(p * (1 - p) / x.size)
    np.testing.assert_allclose(out[~dropped], 2.0 / (1 - p), rtol=1e-6)


def test_dropout_is_identity_in_eval_mode_and_for_p_zero():
    x = tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    layer = nn.Dropout(0.5)
    layer.eval()
    np.testing.assert_array_equal(layer(x).data, x.data)
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).data, x.data)
    np.testing.assert_array_equal(nn.Dropout(1.0)(x).data, np.zeros((3, 4)))


def test_dropout_follows_model_mode_and_seed():
    model = nn.Sequential(nn.Identity(), nn.Dropout(0.5))
    x = tensor(np.ones((50, 50), np.float32))
    ranvier.manual_seed(5)
    first = model(x).data
    ranvier.manual_seed(5)
    np.testing.assert_array_equal(model(x).data, first)
    model.eval()
    np.testing.assert_array_equal(model(x).data, x.data)


@pytest.mark.parametrize("p, error, match", [
    (-0.1, ValueError, r"between 0 and 1, but got -0.1"),
    (1.5, ValueError, r"between 0 and 1, but got 1.5"),
    (float("nan"), ValueError, r"Dropout: p must be finite, got nan"),
    ("0.5", TypeError, r"Dropout: p must be a number, got '0.5'"),
])
def test_dropout_bad_p(p, error, match):
    with pytest.raises(error, match=match):
        nn.Dropout(p)


# ----------------------------------------------------------------------------------- losses


def test_loss_modules_equal_functional(rng):
    logits = tensor(rng.standard_normal((6, 4)))
    labels = tensor(rng.integers(0, 4, size=6))
    values = tensor(rng.standard_normal((6, 4)))
    probabilities = tensor(rng.uniform(0.05, 0.95, size=(6, 4)))
    binary = tensor(rng.integers(0, 2, size=(6, 4)).astype(np.float64))
    class_weight = rng.uniform(0.5, 2.0, size=4)
    pos_weight = rng.uniform(0.5, 3.0, size=4)
    for reduction in ("mean", "sum", "none"):
        pairs = [
            (nn.MSELoss(reduction=reduction)(logits, values),
             F.mse_loss(logits, values, reduction=reduction)),
            (nn.BCELoss(reduction=reduction)(probabilities, binary),
             F.binary_cross_entropy(probabilities, binary, reduction=reduction)),
            (nn.BCELoss(weight=class_weight, reduction=reduction)(probabilities, binary),
             F.binary_cross_entropy(probabilities, binary, weight=class_weight,
                                    reduction=reduction)),
            (nn.BCEWithLogitsLoss(reduction=reduction, pos_weight=pos_weight)(logits, binary),
             F.binary_cross_entropy_with_logits(logits, binary, reduction=reduction,
                                                pos_weight=pos_weight)),
            (nn.CrossEntropyLoss(weight=class_weight, reduction=reduction)(logits, labels),
             F.cross_entropy(logits, labels, weight=class_weight, reduction=reduction)),
            (nn.CrossEntropyLoss(ignore_index=2, reduction=reduction)(logits, labels),
             F.cross_entropy(logits, labels, ignore_index=2, reduction=reduction)),
        ]
        for module_value, functional_value in pairs:
            np.testing.assert_array_equal(module_value.data, functional_value.data)


def test_mse_and_cross_entropy_values_against_numpy(rng):
    x = rng.standard_normal((5, 3))
    y = rng.standard_normal((5, 3))
    assert nn.MSELoss()(tensor(x), tensor(y)).item() == pytest.approx(np.mean((x - y) ** 2))
    labels = rng.integers(0, 3, size=5)
    expected = -np.mean(ref.log_softmax(x, 1)[np.arange(5), labels])
    assert nn.CrossEntropyLoss()(tensor(x), tensor(labels)).item() == pytest.approx(expected)


def test_loss_weights_are_buffers():
    weight = np.array([1.0, 2.0, 0.5])
    criterion = nn.CrossEntropyLoss(weight=weight)
    assert list(criterion.state_dict()) == ["weight"]
    assert list(nn.CrossEntropyLoss().state_dict()) == []
    assert list(nn.BCEWithLogitsLoss(pos_weight=np.ones(3)).state_dict()) == ["pos_weight"]
    np.testing.assert_array_equal(criterion.weight, weight)


def test_loss_bad_arguments_and_reprs():
    with pytest.raises(ValueError, match=r"MSELoss: reduction must be one of 'none', 'mean', "
                                         r"'sum', got 'average'"):
        nn.MSELoss(reduction="average")
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: reduction must be one of"):
        nn.CrossEntropyLoss(reduction=None)
    with pytest.raises(TypeError, match=r"CrossEntropyLoss: ignore_index must be an integer"):
        nn.CrossEntropyLoss(ignore_index=1.5)
    assert repr(nn.MSELoss()) == "MSELoss()"
    assert repr(nn.BCELoss(reduction="sum")) == "BCELoss(reduction='sum')"


def test_training_step_through_a_model_reduces_the_loss(rng):
    # Layers, loss and autograd together: plain gradient descent on a separable problem.
    x = rng.standard_normal((64, 5))
    labels = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    model = nn.Sequential(nn.Linear(5, 16, dtype=np.float64), nn.Tanh(),
                          nn.Linear(16, 2, dtype=np.float64))
    criterion = nn.CrossEntropyLoss()
    losses = []
    for _ in range(30):
        model.zero_grad()
        loss = criterion(model(tensor(x)), tensor(labels))
        loss.backward()
        losses.append(loss.item())
        for p in model.parameters():
            p.data[...] -= 0.5 * p.grad.data
    assert losses[-1] < 0.5 * losses[0]


# ------------------------------------------------------------------------------------- init


def test_calculate_gain_table():
    assert nn.init.calculate_gain("linear") == 1.0
    assert nn.init.calculate_gain("conv2d") == 1.0
    assert nn.init.calculate_gain("sigmoid") == 1.0
    assert nn.init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert nn.init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert nn.init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    assert nn.init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert nn.init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match=r"Unsupported nonlinearity softplus"):
        nn.init.calculate_gain("softplus")
    with pytest.raises(ValueError, match=r"negative_slope a not a valid number"):
        nn.init.calculate_gain("leaky_relu", "a")


def test_uniform_inits_respect_their_bounds():
    weight = nn.Parameter(np.zeros((300, 200), np.float64))
    nn.init.xavier_uniform_(weight, gain=2.0)
    bound = 2.0 * math.sqrt(6.0 / (200 + 300))
    assert np.all(np.abs(weight.data) <= bound) and np.abs(weight.data).max() > 0.99 * bound
    nn.init.kaiming_uniform_(weight, nonlinearity="relu")
    bound = math.sqrt(2.0) * math.sqrt(3.0 / 200)
    assert np.all(np.abs(weight.data) <= bound) and np.abs(weight.data).max() > 0.99 * bound
    nn.init.kaiming_uniform_(weight, mode="fan_out", nonlinearity="relu")
    bound = math.sqrt(2.0) * math.sqrt(3.0 / 300)
    assert np.all(np.abs(weight.data) <= bound) and np.abs(weight.data).max() > 0.99 * bound
    assert nn.init.uniform_(weight, -0.1, 0.3) is weight
    assert weight.data.min() >= -0.1 and weight.data.max() <= 0.3


def test_normal_inits_have_their_standard_deviation():
    weight = np.zeros((400, 250))
    nn.init.normal_(weight, mean=1.0, std=0.5)
    assert weight.mean() == pytest.approx(1.0, abs=0.01)
    assert weight.std() == pytest.approx(0.5, rel=0.02)
    nn.init.xavier_normal_(weight)
    assert weight.std() == pytest.approx(math.sqrt(2.0 / 650), rel=0.02)
    nn.init.kaiming_normal_(weight, nonlinearity="relu")
    assert weight.std() == pytest.approx(math.sqrt(2.0 / 250), rel=0.02)


def test_constant_inits_and_conv_fans():
    weight = nn.Parameter(np.empty((4, 3, 5, 5), np.float32))
    nn.init.constant_(weight, 0.25)
    assert np.all(weight.data == 0.25)
    nn.init.zeros_(weight)
    assert np.all(weight.data == 0)
    nn.init.ones_(weight)
    assert np.all(weight.data == 1)
    # Conv layout (out, in, kh, kw): fan_in = 3 * 25, fan_out = 4 * 25.
    nn.init.xavier_uniform_(weight)
    bound = math.sqrt(6.0 / (75 + 100))
    assert np.all(np.abs(weight.data) <= bound) and weight.dtype == np.float32


def test_init_generator_argument_and_errors():
    a, b = np.zeros((3, 4)), np.zeros((3, 4))
    nn.init.normal_(a, generator=ranvier.random.Generator(3))
    nn.init.normal_(b, generator=np.random.default_rng(np.random.PCG64(3)))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"fewer than 2 dimensions \(shape \(5,\)\)"):
        nn.init.xavier_uniform_(np.zeros(5))
    with pytest.raises(ValueError, match=r"mode 'fan_avg' not supported"):
        nn.init.kaiming_uniform_(np.zeros((2, 2)), mode="fan_avg")
    with pytest.raises(TypeError, match=r"uniform_: expected a floating-point array, got "
                                        r"dtype int64"):
        nn.init.uniform_(np.zeros(3, np.int64))
    with pytest.raises(TypeError, match=r"normal_: expected a Parameter, Tensor or array"):
        nn.init.normal_([0.0, 1.0])
    with pytest.raises(ValueError, match=r"uniform_: expected a <= b, got a=1, b=0"):
        nn.init.uniform_(np.zeros(3), 1, 0)
    with pytest.warns(UserWarning, match=r"zero-element"):
        nn.init.kaiming_uniform_(np.zeros((0, 3)))


def test_gradcheck_through_a_model_of_every_layer(rng):
    # Finite differences in float64 for the input and every parameter of a small model.
    model = nn.Sequential(nn.Linear(4, 5, dtype=np.float64), nn.Tanh(), nn.GELU(),
                          nn.Linear(5, 6, dtype=np.float64), nn.LeakyReLU(0.1), nn.Sigmoid(),
                          nn.Flatten(0), nn.Identity(), nn.LogSoftmax(dim=0))
    x = tensor(rng.standard_normal((3, 4)), requires_grad=True)
    assert ranvier.autograd.gradcheck(lambda x, *params: model(x),
                                      [x, *model.parameters()])
