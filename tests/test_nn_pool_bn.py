"""nn pooling and batch-norm layers: shapes, repr, state dicts, modes, errors that name the
layer, and (when PyTorch is installed) outputs, gradients and running statistics compared
with torch.nn given the same weights."""

import numpy as np
import pytest

import ranvier
import ranvier.nn as nn


def _tensor(array, requires_grad=False):
    return ranvier.Tensor(np.array(array), requires_grad=requires_grad)


# --- pooling layers ------------------------------------------------------------------------

@pytest.mark.parametrize("layer, shape, expected", [
    (nn.MaxPool2d(2), (2, 3, 8, 9), (2, 3, 4, 4)),
    (nn.MaxPool2d((3, 2), stride=(2, 1), padding=1, ceil_mode=True), (1, 2, 7, 6), (1, 2, 4, 7)),
    (nn.MaxPool1d(3, stride=2), (4, 2, 21), (4, 2, 10)),
    (nn.AvgPool2d(3, stride=1, padding=1), (2, 1, 5, 5), (2, 1, 5, 5)),
    (nn.AvgPool1d(4), (3, 2, 17), (3, 2, 4)),
    (nn.AdaptiveAvgPool2d((3, None)), (2, 4, 10, 7), (2, 4, 3, 7)),
    (nn.AdaptiveAvgPool2d(1), (2, 4, 10, 7), (2, 4, 1, 1)),
    (nn.AdaptiveAvgPool1d(5), (2, 4, 13), (2, 4, 5)),
    (nn.MaxPool2d(2), (3, 8, 8), (3, 4, 4)),  # unbatched
])
def test_pooling_layer_shapes(layer, shape, expected, rng):
    assert layer(_tensor(rng.standard_normal(shape))).shape == expected


def test_pooling_reprs_match_pytorch():
    assert repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
    assert repr(nn.MaxPool2d((2, 3), stride=1)) == \
        "MaxPool2d(kernel_size=(2, 3), stride=1, padding=0, dilation=1, ceil_mode=False)"
    assert repr(nn.MaxPool1d(3)) == "MaxPool1d(kernel_size=3, stride=3, padding=0, dilation=1, ceil_mode=False)"
    assert repr(nn.AvgPool1d(3)) == "AvgPool1d(kernel_size=(3,), stride=(3,), padding=(0,))"
    assert repr(nn.AvgPool2d(2)) == "AvgPool2d(kernel_size=2, stride=2, padding=0)"
    assert repr(nn.AdaptiveAvgPool2d((5, None))) == "AdaptiveAvgPool2d(output_size=(5, None))"
    assert repr(nn.AdaptiveAvgPool1d(4)) == "AdaptiveAvgPool1d(output_size=4)"
    assert nn.MaxPool2d(2).state_dict() == {} and list(nn.AvgPool2d(2).parameters()) == []


def _input_with_hard_windows(rng, shape, dtype):
    """Random values with, in the first quarter, windows whose maximum is zero, -0.0 or
    negative, ties between positive maxima, and a NaN: the cases where ReLU and max
    pooling could disagree about an element."""
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    quarter = flat.size // 4
    flat[:quarter:3] = 0.0
    flat[1:quarter:5] = -0.0
    flat[2:quarter:7] = -np.abs(flat[2:quarter:7])
    flat[quarter:2 * quarter:2] = 1.5  # ties
    flat[quarter + 5] = np.nan
    return x


@pytest.mark.parametrize("dims, pool", [
    (2, nn.MaxPool2d(2)),
    (2, nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)),
    (1, nn.MaxPool1d(4)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequential_runs_relu_after_max_pooling_with_the_same_results(dims, pool, dtype, rng,
                                                                      monkeypatch):
    # Sequential runs ReLU -> MaxPool as MaxPool -> ReLU (nn/container.py): the values and
    # both gradients must be those of the layers called in the written order.
    conv = (nn.Conv2d if dims == 2 else nn.Conv1d)(3, 4, 3, padding=1, dtype=dtype)
    relu = nn.ReLU()
    model = nn.Sequential(conv, relu, pool)
    shape = (2, 3, 9, 10) if dims == 2 else (2, 3, 23)
    x_data = _input_with_hard_windows(rng, shape, dtype)
    # The conv's output carries the hard windows: zero weights and bias for its first filter.
    conv.weight.data[0] = 0.0
    conv.bias.data[0] = 0.0

    relu_inputs = []
    relu_function = nn.functional.relu
    monkeypatch.setattr(nn.functional, "relu",
                        lambda t: relu_inputs.append(t.shape) or relu_function(t))

    results = []
    for run in (lambda x: model(x), lambda x: pool(relu(conv(x)))):
        for p in model.parameters():
            p.grad = None
        x = ranvier.Tensor(x_data.copy(), requires_grad=True)
        out = run(x)
        weights = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
        (out * ranvier.Tensor(weights)).sum().backward()
        results.append((out.detach().numpy(), x.grad.numpy(), conv.weight.grad.numpy()))
    assert relu_inputs[0] == results[0][0].shape  # Sequential: ReLU on the pooled values
    assert relu_inputs[1] == conv(ranvier.Tensor(x_data)).shape
    for swapped, written in zip(*results):
        np.testing.assert_array_equal(swapped, written)
    assert np.isnan(results[0][0]).any()


def test_sequential_keeps_relu_first_for_pools_returning_indices(rng):
    pool = nn.MaxPool2d(2, return_indices=True)
    model = nn.Sequential(nn.ReLU(), pool)
    x = ranvier.Tensor(rng.standard_normal((1, 2, 4, 4)))
    values, indices = model(x)
    expected_values, expected_indices = pool(nn.ReLU()(x))
    np.testing.assert_array_equal(values.numpy(), expected_values.numpy())
    np.testing.assert_array_equal(np.asarray(indices.numpy()), np.asarray(expected_indices.numpy()))


def test_pooling_layer_errors_name_the_layer(rng):
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=5.*\): max_pool2d: the pooling window .* input of shape \(1, 1, 4, 4\)"):
        nn.MaxPool2d(5)(_tensor(np.zeros((1, 1, 4, 4))))
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=2.*\): expected a 4-D input \(N, C, H, W\) or 3-D unbatched .* got shape \(4, 4\)"):
        nn.MaxPool2d(2)(_tensor(np.zeros((4, 4))))
    with pytest.raises(ValueError, match=r"AvgPool1d\(.*\): expected a 3-D input \(N, C, L\)"):
        nn.AvgPool1d(2)(_tensor(np.zeros((1, 1, 4, 4))))
    with pytest.raises(ValueError, match=r"AvgPool2d\(kernel_size=3, stride=3, padding=2\): avg_pool2d: padding \(2, 2\) must be at most half"):
        nn.AvgPool2d(3, padding=2)(_tensor(np.zeros((1, 1, 9, 9))))
    with pytest.raises(ValueError, match="MaxPool2d: kernel_size must be >= 1"):
        nn.MaxPool2d(0)
    with pytest.raises(TypeError, match="AvgPool2d: kernel_size must be an int or a tuple of 2 ints"):
        nn.AvgPool2d(2.5)
    with pytest.raises(ValueError, match="AdaptiveAvgPool2d: output_size must be positive"):
        nn.AdaptiveAvgPool2d(0)


# --- batch norm layers -----------------------------------------------------------------------

def test_batch_norm_parameters_buffers_and_state_dict():
    bn = nn.BatchNorm2d(3)
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(bn.weight.detach().numpy(), np.ones(3, np.float32))
    np.testing.assert_array_equal(bn.bias.detach().numpy(), np.zeros(3, np.float32))
    np.testing.assert_array_equal(bn.running_mean, np.zeros(3))
    np.testing.assert_array_equal(bn.running_var, np.ones(3))
    assert bn.num_batches_tracked.dtype == np.int64 and bn.num_batches_tracked.shape == ()
    assert [name for name, _ in bn.named_parameters()] == ["weight", "bias"]
    assert list(nn.BatchNorm1d(4, affine=False).state_dict()) == ["running_mean", "running_var",
                                                                  "num_batches_tracked"]
    assert list(nn.BatchNorm1d(4, track_running_stats=False).state_dict()) == ["weight", "bias"]
    assert list(nn.BatchNorm1d(4, bias=False).state_dict())[:2] == ["weight", "running_mean"]
    assert nn.BatchNorm1d(2, dtype=np.float64).running_var.dtype == np.float64


def test_batch_norm_reprs_match_pytorch():
    assert repr(nn.BatchNorm1d(3)) == \
        "BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)"
    assert repr(nn.BatchNorm2d(4, momentum=None, affine=False)) == \
        "BatchNorm2d(4, eps=1e-05, momentum=None, affine=False, bias=False, track_running_stats=True)"


def test_batch_norm_state_dict_round_trip_and_save(tmp_path, rng):
    bn = nn.BatchNorm1d(3)
    for _ in range(2):
        bn(_tensor(rng.standard_normal((5, 3)).astype(np.float32)))
    state = bn.state_dict()
    assert int(state["num_batches_tracked"]) == 2
    ranvier.save(state, tmp_path / "bn.safetensors")
    fresh = nn.BatchNorm1d(3)
    fresh.load_state_dict(ranvier.load(tmp_path / "bn.safetensors"))
    for key, value in state.items():
        np.testing.assert_array_equal(fresh.state_dict()[key], value)
    assert fresh.num_batches_tracked.dtype == np.int64


def test_batch_norm_modes(rng):
    bn = nn.BatchNorm1d(2, momentum=0.5)
    x = _tensor(rng.standard_normal((6, 2, 4)))
    y = bn(x).detach().numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(bn.running_mean, 0.5 * x.numpy().mean(axis=(0, 2)), rtol=1e-5)
    bn.eval()
    stats = bn.running_mean.copy(), bn.running_var.copy(), int(bn.num_batches_tracked)
    expected = (x.numpy() - stats[0][None, :, None]) / np.sqrt(stats[1][None, :, None] + 1e-5)
    np.testing.assert_allclose(bn(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bn.running_mean, stats[0])
    assert int(bn.num_batches_tracked) == stats[2]
    # Without running statistics the batch statistics are used in evaluation mode too.
    plain = nn.BatchNorm1d(2, track_running_stats=False).eval()
    np.testing.assert_allclose(plain(x).detach().numpy(), y, rtol=1e-5, atol=1e-6)


def test_momentum_none_is_a_cumulative_average(rng):
    bn = nn.BatchNorm1d(3, momentum=None)
    batches = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(3)]
    for batch in batches:
        bn(_tensor(batch))
    np.testing.assert_allclose(bn.running_mean, np.mean([b.mean(axis=0) for b in batches], axis=0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var, np.mean([b.var(axis=0, ddof=1) for b in batches], axis=0),
                               rtol=1e-5)


def test_batch_norm_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3, .*\): expected 2D or 3D input \(N, C\) or \(N, C, L\), got 4D input of shape \(2, 3, 4, 4\)"):
        nn.BatchNorm1d(3)(_tensor(np.zeros((2, 3, 4, 4))))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3, .*\): expected input with 3 channels \(dim 1\), got input of shape \(2, 4, 5, 5\)"):
        nn.BatchNorm2d(3)(_tensor(np.zeros((2, 4, 5, 5))))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3, .*\): expected 4D input"):
        nn.BatchNorm2d(3)(_tensor(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        nn.BatchNorm1d(3)(_tensor(np.zeros((1, 3))))
    with pytest.raises(ValueError, match="BatchNorm1d: num_features must be positive"):
        nn.BatchNorm1d(0)
    with pytest.raises(TypeError, match="BatchNorm2d: affine must be True or False"):
        nn.BatchNorm2d(3, affine=1)
    with pytest.raises(ValueError, match="BatchNorm2d: eps must be finite"):
        nn.BatchNorm2d(3, eps=float("inf"))


# --- against PyTorch ------------------------------------------------------------------------

POOL_PAIRS = [
    (lambda m: m.MaxPool2d(3, stride=2, padding=1), (2, 3, 9, 8)),
    (lambda m: m.MaxPool2d((2, 3), stride=(1, 2), dilation=(2, 1), ceil_mode=True), (1, 2, 7, 10)),
    (lambda m: m.MaxPool1d(4, stride=3, padding=2), (2, 3, 19)),
    (lambda m: m.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True), (2, 3, 8, 9)),
    (lambda m: m.AvgPool2d(2, divisor_override=3), (1, 2, 6, 5)),
    (lambda m: m.AvgPool1d(3, stride=2, padding=1), (2, 3, 12)),
    (lambda m: m.AdaptiveAvgPool2d((4, 3)), (2, 3, 9, 7)),
    (lambda m: m.AdaptiveAvgPool1d(6), (2, 3, 17)),
]


@pytest.mark.parametrize("make, shape", POOL_PAIRS)
def test_pooling_matches_pytorch(make, shape, rng):
    torch = pytest.importorskip("torch")
    data = rng.standard_normal(shape)
    data[..., 0] = data[..., 1]  # ties: both must take the first maximum
    x = _tensor(data, requires_grad=True)
    xt = torch.tensor(data, requires_grad=True)
    y, yt = make(nn)(x), make(torch.nn)(xt)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    grad = rng.standard_normal(y.shape)
    y.backward(grad)
    yt.backward(torch.tensor(grad))
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_max_pool_indices_match_pytorch_with_ties_and_nan(rng):
    torch = pytest.importorskip("torch")
    data = np.round(rng.standard_normal((2, 2, 7, 7)))  # many ties
    data[0, 0, 1, 1] = np.nan
    y, idx = nn.functional.max_pool2d(_tensor(data), 3, stride=2, padding=1, return_indices=True)
    yt, idxt = torch.nn.functional.max_pool2d(torch.tensor(data), 3, stride=2, padding=1, return_indices=True)
    np.testing.assert_array_equal(y.numpy(), yt.numpy())
    np.testing.assert_array_equal(idx.numpy(), idxt.numpy())


@pytest.mark.parametrize("layer, shape, kwargs", [
    ("BatchNorm1d", (6, 4), {}),
    ("BatchNorm1d", (5, 3, 7), dict(momentum=0.3, eps=1e-3)),
    ("BatchNorm2d", (4, 3, 5, 6), {}),
    ("BatchNorm2d", (3, 2, 4, 4), dict(momentum=None)),
    ("BatchNorm2d", (3, 2, 4, 4), dict(affine=False)),
])
def test_batch_norm_training_steps_match_pytorch(layer, shape, kwargs, rng):
    torch = pytest.importorskip("torch")
    ours = getattr(nn, layer)(shape[1], dtype=np.float64, **kwargs)
    theirs = getattr(torch.nn, layer)(shape[1], **kwargs).double()
    if ours.weight is not None:  # same non-trivial affine parameters on both sides
        w, b = rng.random(shape[1]) + 0.5, rng.standard_normal(shape[1])
        ours.weight.data[...] = w
        ours.bias.data[...] = b
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w))
            theirs.bias.copy_(torch.tensor(b))
    for step in range(3):
        data = rng.standard_normal(shape) * (step + 1) + step
        grad = rng.standard_normal(shape)
        x = _tensor(data, requires_grad=True)
        xt = torch.tensor(data, requires_grad=True)
        y, yt = ours(x), theirs(xt)
        np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        y.backward(grad)
        yt.backward(torch.tensor(grad))
        np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-11)
        if ours.weight is not None:
            np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-10)
            np.testing.assert_allclose(ours.bias.grad.numpy(), theirs.bias.grad.numpy(), rtol=1e-10)
            ours.zero_grad()
            theirs.zero_grad()
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-10, err_msg=key)
    # Evaluation mode with the accumulated running statistics, gradient included.
    ours.eval()
    theirs.eval()
    data, grad = rng.standard_normal(shape), rng.standard_normal(shape)
    x, xt = _tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    y, yt = ours(x), theirs(xt)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    y.backward(grad)
    yt.backward(torch.tensor(grad))
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_pytorch_batch_norm_state_dict_loads(rng):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.BatchNorm2d(3)
    theirs(torch.tensor(rng.standard_normal((4, 3, 5, 5)), dtype=torch.float32))
    ours = nn.BatchNorm2d(3)
    ours.load_state_dict(theirs.state_dict())
    assert int(ours.num_batches_tracked) == 1
    ours.eval()
    theirs.eval()
    data = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(ours(_tensor(data)).detach().numpy(), theirs(torch.tensor(data)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
