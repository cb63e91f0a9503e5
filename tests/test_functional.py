"""ranvier.nn.functional: forward values against direct NumPy formulas, dtypes, argument
checks and dropout's randomness. Gradients are in test_gradcheck.py."""

import numpy as np
import pytest
from conftest import tol

import ranvier
import ranvier.nn.functional as F


def _log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_values(rng, dtype):
    x = rng.standard_normal((3, 5))
    w, b = rng.standard_normal((4, 5)), rng.standard_normal(4)
    t = lambda a: ranvier.tensor(a.astype(dtype))  # noqa: E731
    cases = [
        (F.linear(t(x), t(w), t(b)), x @ w.T + b),
        (F.linear(t(x), t(w)), x @ w.T),
        (F.relu(t(x)), np.maximum(x, 0)),
        (F.leaky_relu(t(x), 0.2), np.where(x >= 0, x, 0.2 * x)),
        (F.sigmoid(t(x)), 1 / (1 + np.exp(-x))),
        (F.tanh(t(x)), np.tanh(x)),
        (F.gelu(t(x), approximate="tanh"),
         0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))),
        (F.softmax(t(x), dim=1), np.exp(_log_softmax(x, 1))),
        (F.log_softmax(t(x), dim=0), _log_softmax(x, 0)),
    ]
    for result, expected in cases:
        assert result.dtype == dtype and result.shape == expected.shape
        np.testing.assert_allclose(result.numpy(), expected, rtol=10 * tol(dtype)["rtol"],
                                   atol=10 * tol(dtype)["atol"])


def test_loss_values(rng):
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    P, T = ranvier.tensor(pred, dtype="float64"), ranvier.tensor(target, dtype="float64")
    np.testing.assert_allclose(F.mse_loss(P, T).item(), ((pred - target) ** 2).mean())
    np.testing.assert_allclose(F.mse_loss(P, T, reduction="sum").item(),
                               ((pred - target) ** 2).sum())
    assert F.mse_loss(P, T, reduction="none").shape == (4, 3)

    prob, labels = rng.uniform(0.05, 0.95, (4, 3)), rng.uniform(0, 1, (4, 3))
    bce = -(labels * np.log(prob) + (1 - labels) * np.log(1 - prob))
    np.testing.assert_allclose(
        F.binary_cross_entropy(ranvier.tensor(prob), ranvier.tensor(labels)).item(), bce.mean(),
        rtol=1e-12)
    logits = np.log(prob / (1 - prob))
    np.testing.assert_allclose(
        F.binary_cross_entropy_with_logits(ranvier.tensor(logits), ranvier.tensor(labels),
                                           reduction="none").numpy(), bce, rtol=1e-10)

    classes = np.array([2, 0, 1, 2])
    picked = -_log_softmax(pred, 1)[np.arange(4), classes]
    np.testing.assert_allclose(F.cross_entropy(P, ranvier.tensor(classes)).item(), picked.mean())
    weight = np.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(
        F.cross_entropy(P, ranvier.tensor(classes), weight=ranvier.tensor(weight, dtype="float64")
                        ).item(),
        (weight[classes] * picked).sum() / weight[classes].sum())
    ignored = np.array([2, -100, 1, 2])
    keep = ignored != -100
    np.testing.assert_allclose(F.cross_entropy(P, ranvier.tensor(ignored)).item(),
                               picked[keep].mean())


def test_cross_entropy_spatial_matches_flattened(rng):
    x = rng.standard_normal((2, 3, 4, 5))                   # (N, C, H, W)
    target = rng.integers(0, 3, (2, 4, 5))
    spatial = F.cross_entropy(ranvier.tensor(x), ranvier.tensor(target), reduction="none")
    assert spatial.shape == (2, 4, 5)
    rows = x.transpose(0, 2, 3, 1).reshape(-1, 3)
    expected = -_log_softmax(rows, 1)[np.arange(rows.shape[0]), target.reshape(-1)]
    np.testing.assert_allclose(spatial.numpy().reshape(-1), expected, rtol=1e-5, atol=1e-6)


def test_mse_loss_target_gradient_is_minus_input_gradient(rng):
    x = ranvier.tensor(rng.standard_normal(5), requires_grad=True)
    y = ranvier.tensor(rng.standard_normal(5), requires_grad=True)
    F.mse_loss(x, y).backward()
    np.testing.assert_allclose(y.grad.numpy(), -x.grad.numpy())
    np.testing.assert_allclose(x.grad.numpy(), 2 * (x.detach().numpy() - y.detach().numpy()) / 5,
                               rtol=1e-6)


def test_targets_are_not_differentiated():
    x = ranvier.tensor([0.3, 0.6], requires_grad=True)
    t = ranvier.tensor([0.0, 1.0], requires_grad=True)
    F.binary_cross_entropy(x, t).backward()
    assert t.grad is None and x.grad is not None


# --- dropout -----------------------------------------------------------------------------

def test_dropout_scales_kept_and_zeroes_dropped():
    x = ranvier.ones(1000, requires_grad=True)
    y = F.dropout(x, p=0.25)
    values = y.detach().numpy()
    kept = values != 0
    np.testing.assert_allclose(values[kept], 1 / 0.75, rtol=1e-6)
    assert 0.15 < 1 - kept.mean() < 0.35
    y.sum().backward()                                      # gradient only through kept elements
    np.testing.assert_allclose(x.grad.numpy(), np.where(kept, 1 / 0.75, 0), rtol=1e-6)


def test_dropout_is_reproducible_and_advances():
    x = ranvier.ones(64)
    ranvier.manual_seed(5)
    a, b = F.dropout(x, 0.5), F.dropout(x, 0.5)
    ranvier.manual_seed(5)
    c = F.dropout(x, 0.5)
    np.testing.assert_array_equal(a.numpy(), c.numpy())
    assert not np.array_equal(a.numpy(), b.numpy())         # the stream moved on


def test_dropout_eval_p0_p1():
    x = ranvier.ones(3, requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    y = F.dropout(x, 1.0)
    np.testing.assert_array_equal(y.detach().numpy(), np.zeros(3))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros(3))


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match="dropout: probability p must be between 0 and 1"):
        F.dropout(ranvier.ones(2), p)


# --- argument checks ---------------------------------------------------------------------

def test_argument_errors():
    x = ranvier.ones(2, 3)
    with pytest.raises(TypeError, match="softmax: dim must be given"):
        F.softmax(x)
    with pytest.raises(IndexError, match=r"log_softmax: dim 2 is out of range for input of "
                                         r"shape \(2, 3\)"):
        F.log_softmax(x, dim=2)
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh'"):
        F.gelu(x, approximate="fast")
    with pytest.raises(TypeError, match="relu: input must be a ranvier Tensor, got ndarray"):
        F.relu(np.ones(3))
    with pytest.raises(ValueError, match=r"mse_loss: input has shape \(2, 3\) but target has "
                                         r"shape \(3,\)"):
        F.mse_loss(x, ranvier.ones(3))
    with pytest.raises(ValueError, match="mse_loss: reduction must be 'none', 'mean' or 'sum', "
                                         "got 'avg'"):
        F.mse_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match=r"binary_cross_entropy: weight of shape \(2,\) cannot "
                                         r"be broadcast to the input's shape \(2, 3\)"):
        F.binary_cross_entropy(x * 0.5, x, weight=ranvier.ones(2))
    with pytest.raises(ValueError, match=r"cross_entropy: input of shape \(2, 3\) needs a target "
                                         r"of shape \(2,\), got \(3,\)"):
        F.cross_entropy(x, ranvier.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="cross_entropy: target must hold integer class indices"):
        F.cross_entropy(x, ranvier.tensor([0.0, 1.0]))
    with pytest.raises(IndexError, match="cross_entropy"):
        F.cross_entropy(x, ranvier.tensor([0, 3]))          # class 3 of 3: out of range
    with pytest.raises(ValueError, match=r"linear"):
        F.linear(x, ranvier.ones(4, 2))                     # in_features 3 vs 2


def test_tensor_methods_use_functional(rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    x = ranvier.tensor(a)
    np.testing.assert_allclose(x.relu().numpy(), F.relu(x).numpy())
    np.testing.assert_allclose(x.softmax(0).numpy(), F.softmax(x, 0).numpy())
    np.testing.assert_allclose(x.log_softmax(1).numpy(), F.log_softmax(x, 1).numpy())
    np.testing.assert_allclose(x.sigmoid().numpy(), F.sigmoid(x).numpy())
    np.testing.assert_allclose(x.tanh().numpy(), F.tanh(x).numpy())
