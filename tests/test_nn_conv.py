"""nn.Conv1d / nn.Conv2d: layout, state dict, initialisation, repr, input validation, and
outputs and gradients against the direct-loop reference and (when installed) PyTorch."""

import math

import numpy as np
import pytest
from conftest import tol
from references.conv import conv_backward, conv_forward

import ranvier
from ranvier import nn

DTYPES = [np.float32, np.float64]


def tensor(array, requires_grad=False):
    return ranvier.Tensor(np.asarray(array), requires_grad=requires_grad)


def assert_matches(actual, expected, dtype):
    t = tol(dtype)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=t["rtol"], atol=10 * t["atol"] * scale)


# --- layout, state dict, init, repr ----------------------------------------------------------

def test_parameter_layout_and_state_dict_keys():
    conv = nn.Conv2d(6, 8, kernel_size=(3, 2), groups=2)
    assert conv.weight.shape == (8, 3, 3, 2) and conv.bias.shape == (8,)
    assert conv.weight.dtype == np.float32 and conv.weight.requires_grad
    assert conv.kernel_size == (3, 2) and conv.stride == (1, 1) and conv.padding == (0, 0)
    assert conv.dilation == (1, 1) and conv.groups == 2 and conv.padding_mode == "zeros"
    assert list(conv.state_dict()) == ["weight", "bias"]
    assert list(nn.Conv1d(4, 5, 7, bias=False).state_dict()) == ["weight"]
    conv1 = nn.Conv1d(4, 6, 5, stride=2, padding=2, dtype=np.float64)
    assert conv1.weight.shape == (6, 4, 5) and conv1.weight.dtype == np.float64
    assert conv1.kernel_size == (5,) and conv1.stride == (2,) and conv1.padding == (2,)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


@pytest.mark.parametrize("make, fan_in", [
    (lambda: nn.Conv2d(16, 32, 3), 16 * 9),
    (lambda: nn.Conv2d(16, 32, (5, 3), groups=4), 4 * 15),
    (lambda: nn.Conv1d(4, 64, 11), 4 * 11),
    (lambda: nn.Conv1d(8, 8, 7, groups=8), 7),
])
def test_initialisation_bounds(make, fan_in):
    ranvier.manual_seed(5)
    conv = make()
    bound = 1 / math.sqrt(fan_in)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.bias.data).max() <= bound
    assert np.abs(conv.weight.data).max() > 0.8 * bound  # spread over the interval
    # U(-b, b) has standard deviation b / sqrt(3).
    np.testing.assert_allclose(conv.weight.data.std(), bound / math.sqrt(3), rtol=0.2)
    ranvier.manual_seed(5)
    np.testing.assert_array_equal(make().weight.data, conv.weight.data)


@pytest.mark.parametrize("make, expected", [
    (lambda: nn.Conv2d(3, 16, 3), "Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1))"),
    (lambda: nn.Conv2d(4, 8, (3, 5), stride=2, padding=(1, 2), dilation=2, groups=4, bias=False),
     "Conv2d(4, 8, kernel_size=(3, 5), stride=(2, 2), padding=(1, 2), dilation=(2, 2), "
     "groups=4, bias=False)"),
    (lambda: nn.Conv2d(2, 2, 4, padding="same"),
     "Conv2d(2, 2, kernel_size=(4, 4), stride=(1, 1), padding=same)"),
    (lambda: nn.Conv1d(4, 32, 11, padding="valid"),
     "Conv1d(4, 32, kernel_size=(11,), stride=(1,), padding=valid)"),
    (lambda: nn.Conv1d(4, 32, 11, stride=3, padding=5),
     "Conv1d(4, 32, kernel_size=(11,), stride=(3,), padding=(5,))"),
])
def test_repr(make, expected):
    assert repr(make()) == expected


def test_repr_matches_pytorch():
    torch = pytest.importorskip("torch")
    pairs = [
        (nn.Conv2d(3, 16, 3), torch.nn.Conv2d(3, 16, 3)),
        (nn.Conv2d(4, 8, (3, 5), stride=(2, 1), padding=(1, 2), dilation=2, groups=2, bias=False),
         torch.nn.Conv2d(4, 8, (3, 5), stride=(2, 1), padding=(1, 2), dilation=2, groups=2,
                         bias=False)),
        (nn.Conv2d(2, 2, 4, padding="same"), torch.nn.Conv2d(2, 2, 4, padding="same")),
        (nn.Conv1d(4, 32, 11, padding="valid", dilation=2),
         torch.nn.Conv1d(4, 32, 11, padding="valid", dilation=2)),
    ]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)


# --- values and gradients --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_layer_matches_reference(rng, dtype):
    conv = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2,
                     dtype=dtype)
    x = tensor(rng.standard_normal((3, 4, 7, 8)).astype(dtype), requires_grad=True)
    y = conv(x)
    hyper = dict(stride=(2, 1), padding=((1, 1), (0, 0)), dilation=(1, 2), groups=2)
    w, b = conv.weight.data, conv.bias.data
    assert_matches(y.data, conv_forward(x.data, w, b, **hyper), dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    y.backward(dy)
    dx, dw, db = conv_backward(x.data, w, dy, **hyper)
    assert_matches(x.grad.data, dx, dtype)
    assert_matches(conv.weight.grad.data, dw, dtype)
    assert_matches(conv.bias.grad.data, db, dtype)


def test_conv1d_layer_same_padding_keeps_the_length(rng):
    conv = nn.Conv1d(4, 3, 6, padding="same", bias=False, dtype=np.float64)
    x = rng.standard_normal((2, 4, 20))
    y = conv(tensor(x))
    assert y.shape == (2, 3, 20)
    # total padding 5 = 2 before + 3 after, as PyTorch
    np.testing.assert_allclose(y.data, conv_forward(x, conv.weight.data, None, (1,), ((2, 3),),
                                                    (1,), 1), **tol(np.float64))


def test_unbatched_input(rng):
    conv = nn.Conv2d(3, 5, 3, padding=1)
    x = rng.standard_normal((3, 6, 7)).astype(np.float32)
    y = conv(tensor(x))
    assert y.shape == (5, 6, 7)
    np.testing.assert_allclose(y.data, conv(tensor(x[None])).data[0], **tol(np.float32))


def _torch_cases():
    return [
        (nn.Conv2d, "conv2d", (2, 4, 9, 8), (4, 6, 3), dict(padding=1)),
        (nn.Conv2d, "conv2d", (1, 6, 7, 10), (6, 9, (3, 2)),
         dict(stride=(2, 3), padding=(2, 1), dilation=(1, 2), groups=3)),
        (nn.Conv2d, "conv2d", (3, 5, 8, 8), (5, 10, 3), dict(groups=5, padding=1, bias=False)),
        (nn.Conv2d, "conv2d", (2, 3, 7, 6), (3, 4, (4, 3)), dict(padding="same", dilation=(1, 2))),
        (nn.Conv2d, "conv2d", (2, 3, 5, 5), (3, 4, 1), dict(stride=2)),
        (nn.Conv1d, "conv1d", (4, 4, 30), (4, 8, 7), dict(padding="same")),
        (nn.Conv1d, "conv1d", (2, 6, 25), (6, 4, 4), dict(stride=3, padding=2, dilation=2, groups=2)),
        (nn.Conv1d, "conv1d", (3, 4, 12), (4, 5, 2), dict(padding="same", bias=False)),
    ]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # PyTorch's own note
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index", range(len(_torch_cases())))
def test_layers_match_pytorch(rng, dtype, index):
    torch = pytest.importorskip("torch")
    layer_class, name, x_shape, (c_in, c_out, k), kwargs = _torch_cases()[index]
    ours = layer_class(c_in, c_out, k, dtype=dtype, **kwargs)
    torch_dtype = torch.float32 if dtype == np.float32 else torch.float64
    theirs = getattr(torch.nn, layer_class.__name__)(c_in, c_out, k, dtype=torch_dtype, **kwargs)
    with torch.no_grad():  # PyTorch's layer takes our weights through its state dict
        theirs.load_state_dict({key: torch.from_numpy(v) for key, v in ours.state_dict().items()})
    x = rng.standard_normal(x_shape).astype(dtype)
    x_ours, x_theirs = tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
    assert y_ours.shape == tuple(y_theirs.shape)
    assert_matches(y_ours.data, y_theirs.detach().numpy(), dtype)
    dy = rng.standard_normal(y_ours.shape).astype(dtype)
    y_ours.backward(dy)
    y_theirs.backward(torch.from_numpy(dy))
    assert_matches(x_ours.grad.data, x_theirs.grad.numpy(), dtype)
    assert_matches(ours.weight.grad.data, theirs.weight.grad.numpy(), dtype)
    if ours.bias is not None:
        assert_matches(ours.bias.grad.data, theirs.bias.grad.numpy(), dtype)
    # The functional form agrees with PyTorch's too.
    functional = getattr(ranvier.nn.functional, name)
    torch_functional = getattr(torch.nn.functional, name)
    hyper = {key: v for key, v in kwargs.items() if key != "bias"}
    bias = None if ours.bias is None else ours.bias
    assert_matches(functional(tensor(x), ours.weight, bias, **hyper).data,
                   torch_functional(torch.tensor(x), theirs.weight, theirs.bias, **hyper)
                   .detach().numpy(), dtype)


def test_small_cnn_trains_end_to_end(rng):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, stride=2),
                          nn.Flatten(), nn.Linear(2 * 3 * 3, 3))
    x = tensor(rng.standard_normal((8, 1, 7, 7)).astype(np.float32))
    target = tensor(rng.integers(0, 3, 8))
    optimizer = ranvier.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# --- bad input ---------------------------------------------------------------------------------

def test_forward_rejects_wrong_rank_and_channels():
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4, kernel_size=\(3, 3\), stride=\(1, 1\)\): "
                                         r"expected a 4-D input \(N, C, H, W\) or \(C, H, W\), "
                                         r"got shape \(2, 3, 5, 5, 1\)"):
        conv(tensor(np.zeros((2, 3, 5, 5, 1), np.float32)))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*: input of shape \(2, 5, 8, 8\) has 5 "
                                         r"channels, expected 3 \(in_channels\)"):
        conv(tensor(np.zeros((2, 5, 8, 8), np.float32)))
    with pytest.raises(ValueError, match=r"Conv1d\(4, 2.*expected a 3-D input \(N, C, L\) or "
                                         r"\(C, L\), got shape \(4,\)"):
        nn.Conv1d(4, 2, 3)(tensor(np.zeros(4, np.float32)))


def test_forward_rejects_a_kernel_larger_than_the_padded_input():
    with pytest.raises(ValueError, match=r"Conv2d\(1, 2, kernel_size=\(5, 5\), stride=\(1, 1\), "
                                         r"padding=\(1, 1\)\): the kernel \(5 x 5 after dilation\) is "
                                         r"larger than the padded input \(4 x 9; input shape "
                                         r"\(3, 1, 2, 7\)\)"):
        nn.Conv2d(1, 2, 5, padding=1)(tensor(np.zeros((3, 1, 2, 7), np.float32)))
    with pytest.raises(ValueError, match=r"Conv1d\(4, 8, kernel_size=\(5,\), stride=\(1,\), "
                                         r"dilation=\(3,\)\): the kernel \(13 after dilation\) is "
                                         r"larger than the padded input \(10; input shape \(2, 4, 10\)\)"):
        nn.Conv1d(4, 8, 5, dilation=3)(tensor(np.zeros((2, 4, 10), np.float32)))
    # 'same' always fits
    assert nn.Conv1d(4, 8, 5, dilation=3, padding="same")(
        tensor(np.zeros((2, 4, 1), np.float32))).shape == (2, 8, 1)


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((6, 8, 3), dict(groups=4), ValueError, r"Conv2d: in_channels \(6\) must be divisible by groups \(4\)"),
    ((6, 8, 3), dict(groups=3), ValueError, r"Conv2d: out_channels \(8\) must be divisible by groups \(3\)"),
    ((0, 8, 3), {}, ValueError, r"Conv2d: in_channels must be positive, got 0"),
    ((3, 8, 0), {}, ValueError, r"Conv2d: kernel_size must be >= 1, got 0"),
    ((3, 8, (3, 3, 3)), {}, TypeError, r"Conv2d: kernel_size must be an int or a tuple of 2 ints"),
    ((3, 8, 2.5), {}, TypeError, r"Conv2d: kernel_size must be an int or a tuple of 2 ints"),
    ((3, 8, 3), dict(stride=0), ValueError, r"Conv2d: stride must be >= 1, got 0"),
    ((3, 8, 3), dict(padding=-1), ValueError, r"Conv2d: padding must be >= 0, got -1"),
    ((3, 8, 3), dict(padding="full"), ValueError, r"Conv2d: invalid padding string 'full'"),
    ((3, 8, 3), dict(padding="same", stride=2), ValueError,
     r"Conv2d: padding='same' is not supported for strided convolutions"),
    ((3, 8, 3), dict(dilation=(1, 0)), ValueError, r"Conv2d: dilation must be >= 1, got \(1, 0\)"),
    ((3, 8, 3), dict(groups=0), ValueError, r"Conv2d: groups must be positive"),
    ((3, 8, 3), dict(bias=1), TypeError, r"Conv2d: bias must be True or False"),
    ((3, 8, 3), dict(dtype=np.float16), TypeError, r"Conv2d: dtype must be float32 or float64"),
    ((3, 8, 3), dict(padding_mode="reflect"), NotImplementedError,
     r"Conv2d: padding_mode='reflect' is not implemented yet; only 'zeros' is supported"),
    ((3, 8, 3), dict(padding_mode="circular"), NotImplementedError, r"padding_mode='circular'"),
    ((3, 8, 3), dict(padding_mode="mirror"), ValueError, r"Conv2d: padding_mode must be one of"),
])
def test_constructor_rejects_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        nn.Conv2d(*args, **kwargs)


def test_conv1d_constructor_checks():
    with pytest.raises(ValueError, match=r"Conv1d: in_channels \(4\) must be divisible by groups \(3\)"):
        nn.Conv1d(4, 6, 3, groups=3)
    with pytest.raises(TypeError, match=r"Conv1d: kernel_size must be an int or a tuple of 1 ints"):
        nn.Conv1d(4, 6, (3, 3))
    with pytest.raises(NotImplementedError, match=r"Conv1d: padding_mode='replicate'"):
        nn.Conv1d(4, 6, 3, padding_mode="replicate")
