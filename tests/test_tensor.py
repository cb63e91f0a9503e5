"""Tensor construction, dtype rules, properties, conversions, forward values and errors.

Gradients are checked in test_gradcheck.py and the graph machinery in test_autograd.py;
here forward results are compared with the same expression on plain NumPy arrays.
"""

import warnings

import numpy as np
import pytest

import ranvier
from ranvier import Tensor


# --- construction and dtype rules --------------------------------------------------------

@pytest.mark.parametrize("data, dtype", [
    (1.5, np.float32),
    ([1.0, 2.0], np.float32),
    ([[1, 2], [3, 4.5]], np.float32),      # any float in a list -> float32
    (3, np.int64),
    ([1, 2, 3], np.int64),
    (True, np.bool_),
    ([True, False], np.bool_),
    (np.arange(3, dtype=np.int32), np.int32),        # arrays keep their dtype
    (np.ones(2, dtype=np.float64), np.float64),
    (np.ones(2, dtype=np.uint8), np.uint8),
    (np.float64(2.0), np.float64),
])
def test_tensor_dtype_rules(data, dtype):
    t = ranvier.tensor(data)
    assert t.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(t.numpy(), np.asarray(data))


def test_tensor_explicit_dtype_and_copy():
    source = np.arange(4, dtype=np.float32)
    t = ranvier.tensor(source, dtype=ranvier.float64)
    assert t.dtype == np.float64
    copied = ranvier.tensor(source)
    source[0] = 100
    assert copied.numpy()[0] == 0                      # tensor() copies
    shared = ranvier.from_numpy(source)
    assert shared.numpy()[0] == 100
    source[1] = 7
    assert shared.numpy()[1] == 7                      # from_numpy shares
    assert Tensor(source).data is source               # Tensor() wraps without copying


def test_tensor_from_tensor_copies_and_detaches():
    a = ranvier.ones(3, requires_grad=True)
    b = ranvier.tensor(a)
    assert not b.requires_grad and b.is_leaf
    b.data[0] = 5
    assert a.data[0] == 1


def test_requires_grad_only_for_floats():
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients.*int64"):
        ranvier.tensor([1, 2], requires_grad=True)
    t = ranvier.tensor([1, 2])
    with pytest.raises(TypeError, match="only floating-point"):
        t.requires_grad = True
    assert ranvier.tensor([1.0], requires_grad=True).requires_grad


@pytest.mark.parametrize("make", [
    lambda: ranvier.tensor(np.ones(2, dtype=np.float16)),
    lambda: ranvier.tensor([1.0], dtype=np.float16),
    lambda: ranvier.zeros(2, dtype="float16"),
    lambda: Tensor(np.ones(2, dtype=np.float16)),
])
def test_float16_rejected(make):
    with pytest.raises(TypeError, match="float16 is not supported; use float32"):
        make()


@pytest.mark.parametrize("data, match", [
    (["a", "b"], "dtype <U1 is not supported"),
    ([1 + 2j], "dtype complex128 is not supported"),
    ({"a": 1}, "cannot make a tensor from an object of type dict"),
    (np.ones(2, dtype=np.longdouble) if np.dtype(np.longdouble) != np.float64 else ["x"],
     "is not supported"),
])
def test_unsupported_data_rejected(data, match):
    with pytest.raises(TypeError, match=match):
        ranvier.tensor(data)


def test_ragged_list_rejected():
    with pytest.raises(ValueError, match="tensor: cannot make a tensor from this data"):
        ranvier.tensor([[1.0, 2.0], [3.0]])


def test_bad_dtype_argument():
    with pytest.raises(TypeError, match="tensor: 'banana' is not a dtype|tensor: .*not"):
        ranvier.tensor([1.0], dtype="banana")


# --- properties --------------------------------------------------------------------------

def test_properties():
    t = ranvier.zeros(2, 3, 5)
    assert t.shape == (2, 3, 5)
    assert t.dtype == np.float32 and t.dtype == ranvier.float32
    assert t.device == "cpu"
    assert t.ndim == 3 and t.dim() == 3
    assert t.size() == (2, 3, 5) and t.size(1) == 3 and t.size(-1) == 5
    assert t.numel() == 30
    assert len(t) == 2
    assert t.is_leaf and t.grad_fn is None and t.grad is None and not t.requires_grad
    with pytest.raises(IndexError, match="size: dim 3 is out of range"):
        t.size(3)


def test_requires_grad_setter_and_non_leaf():
    x = ranvier.ones(2)
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad = False
    assert not x.requires_grad
    x.requires_grad = True
    y = x * 2
    assert y.requires_grad and not y.is_leaf and y.grad_fn is not None
    with pytest.raises(RuntimeError, match="only leaf tensors can change requires_grad"):
        y.requires_grad = False


def test_grad_setter_checks_shape():
    x = ranvier.ones(2, 3, requires_grad=True)
    x.grad = ranvier.zeros(2, 3)
    assert x.grad.shape == (2, 3)
    x.grad = None
    with pytest.raises(ValueError, match=r"grad: assigned gradient has shape \(3,\) but the "
                                         r"tensor has shape \(2, 3\)"):
        x.grad = ranvier.zeros(3)


# --- conversions -------------------------------------------------------------------------

def test_numpy_item_tolist():
    t = ranvier.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert isinstance(t.numpy(), np.ndarray)
    assert t.numpy() is t.data
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert ranvier.tensor([2.5]).item() == 2.5
    assert isinstance(ranvier.tensor(3).item(), int)
    assert float(ranvier.tensor(1.5)) == 1.5 and int(ranvier.tensor(7)) == 7
    with pytest.raises(ValueError, match=r"item: only one-element tensors.*shape \(2, 2\)"):
        t.item()


def test_numpy_refused_when_requires_grad():
    x = ranvier.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"use tensor.detach\(\).numpy\(\)"):
        x.numpy()
    assert np.array_equal(x.detach().numpy(), [1.0, 1.0])


def test_np_asarray_for_leaves_and_detached():
    w = ranvier.ones(2, 3, requires_grad=True)          # a parameter: state dicts need this
    assert np.asarray(w).shape == (2, 3)
    assert np.asarray(w, dtype=np.float64).dtype == np.float64
    y = w * 2
    np.testing.assert_array_equal(np.asarray(y.detach()), np.full((2, 3), 2.0))
    with pytest.raises(RuntimeError, match="part of an autograd graph; use tensor.detach"):
        np.asarray(y)


def test_detach_shares_data_and_cuts_graph():
    x = ranvier.ones(3, requires_grad=True)
    y = x * 3
    d = y.detach()
    assert d.is_leaf and not d.requires_grad and d.data is y.data


def test_zero_fill_copy_in_place():
    t = ranvier.ones(2, 2)
    assert t.zero_() is t
    np.testing.assert_array_equal(t.numpy(), np.zeros((2, 2)))
    t.fill_(3)
    np.testing.assert_array_equal(t.numpy(), np.full((2, 2), 3.0))
    t.copy_(ranvier.tensor([1.0, 2.0]))                 # broadcast over rows
    np.testing.assert_array_equal(t.numpy(), [[1, 2], [1, 2]])
    t.add_(ranvier.ones(2, 2), alpha=2).mul_(2).sub_(1).div_(2)
    np.testing.assert_array_equal(t.numpy(), [[2.5, 3.5], [2.5, 3.5]])   # ((x + 2) * 2 - 1) / 2
    t[0, 1] = 9
    assert t.numpy()[0, 1] == 9


def test_in_place_rules():
    w = ranvier.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="zero_: a leaf tensor that requires grad cannot be "
                                           "modified in place.*no_grad"):
        w.zero_()
    with pytest.raises(RuntimeError, match="a leaf tensor that requires grad"):
        w += 1
    with pytest.raises(RuntimeError, match="__setitem__: a leaf tensor that requires grad"):
        w[0] = 2
    with ranvier.no_grad():                              # a parameter update is fine
        w -= 0.5 * ranvier.ones(3)
        w.uniform_(-1, 1)
    assert w.requires_grad
    y = w * 2
    with pytest.raises(RuntimeError, match="fill_: this tensor is the result of a recorded op"):
        y.fill_(0)
    # += on a graph result rebinds to the out-of-place result: the graph stays correct
    z = y
    z += 1
    assert z is not y and z.grad_fn is not None
    z.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 2.0, 2.0])


def test_clone_and_casts():
    x = ranvier.tensor([1.5, -2.5], requires_grad=True)
    c = x.clone()
    assert c.data is not x.data and not c.is_leaf
    np.testing.assert_array_equal(c.detach().numpy(), x.detach().numpy())
    assert x.double().dtype == np.float64 and x.double().requires_grad
    assert x.float() is x
    assert x.to(ranvier.float64).dtype == np.float64
    assert x.to("float64").dtype == np.float64
    assert x.to("cpu") is x
    i = x.long()
    assert i.dtype == np.int64 and not i.requires_grad      # integer results leave the graph
    np.testing.assert_array_equal(i.numpy(), [1, -2])
    assert ranvier.tensor([0.0, 2.0]).bool().tolist() == [False, True]
    assert ranvier.tensor([1.7]).int().dtype == np.int32
    with pytest.raises(ValueError, match="to: unknown device 'tpu'"):
        x.to(device="tpu")
    with pytest.raises(TypeError, match="to: float16 is not supported"):
        x.to(np.float16)


def test_len_and_iteration():
    t = ranvier.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert len(t) == 3
    rows = list(t)
    assert len(rows) == 3 and rows[2].tolist() == [5.0, 6.0]
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(ranvier.tensor(1.0))
    with pytest.raises(ValueError, match="truth value of a tensor with 3 elements is ambiguous"):
        bool(ranvier.ones(3))


def test_repr():
    assert repr(ranvier.tensor([1.0, 2.5])) == "tensor([1. , 2.5])"
    assert repr(ranvier.tensor([1.0, 2.0], requires_grad=True)) == \
        "tensor([1., 2.], requires_grad=True)"
    assert repr(ranvier.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(ranvier.tensor([1.0], dtype="float64")) == "tensor([1.], dtype=float64)"
    y = ranvier.tensor([1.0], requires_grad=True) * 2
    assert repr(y) == "tensor([2.], grad_fn=<MulBackward>)"
    assert repr(ranvier.tensor(3.0)) == "tensor(3.)"
    assert repr(ranvier.zeros(0)) == "tensor([])"


def test_hash_is_identity():
    a, b = ranvier.ones(2), ranvier.ones(2)
    assert len({a, b}) == 2 and {a: 1}[a] == 1


# --- factories ---------------------------------------------------------------------------

def test_factories():
    assert ranvier.zeros(2, 3).shape == (2, 3) and ranvier.zeros((2, 3)).dtype == np.float32
    np.testing.assert_array_equal(ranvier.ones([2]).numpy(), [1.0, 1.0])
    assert ranvier.ones(2, dtype=ranvier.float64).dtype == np.float64
    assert ranvier.empty(4, 1).shape == (4, 1)
    f = ranvier.full((2, 2), 7)
    assert f.dtype == np.int64 and f.tolist() == [[7, 7], [7, 7]]
    assert ranvier.full((2,), 0.5).dtype == np.float32
    assert ranvier.full((2,), True).dtype == np.bool_
    like = ranvier.tensor([[1, 2]], dtype="int32")
    assert ranvier.zeros_like(like).dtype == np.int32 and ranvier.zeros_like(like).shape == (1, 2)
    assert ranvier.ones_like(like, dtype="float64").dtype == np.float64
    assert ranvier.ones(3, requires_grad=True).requires_grad
    assert ranvier.zeros_like(ranvier.ones(2), requires_grad=True).requires_grad
    np.testing.assert_array_equal(ranvier.arange(4).numpy(), [0, 1, 2, 3])
    assert ranvier.arange(4).dtype == np.int64
    assert ranvier.arange(0, 1, 0.25).dtype == np.float32
    np.testing.assert_array_equal(ranvier.arange(1, 7, 2).numpy(), [1, 3, 5])
    with pytest.raises(ValueError, match="zeros: negative size"):
        ranvier.zeros(-1)
    with pytest.raises(ValueError, match="arange: step must be nonzero"):
        ranvier.arange(0, 3, 0)
    with pytest.raises(TypeError, match="only floating-point"):
        ranvier.zeros(2, dtype="int64", requires_grad=True)


def test_random_factories_follow_manual_seed():
    ranvier.manual_seed(42)
    a, u = ranvier.randn(3, 4), ranvier.rand(5)
    ranvier.manual_seed(42)
    b, v = ranvier.randn(3, 4), ranvier.rand(5)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(u.numpy(), v.numpy())
    assert a.dtype == np.float32 and ranvier.randn(2, dtype="float64").dtype == np.float64
    assert (u.numpy() >= 0).all() and (u.numpy() < 1).all()
    expected = np.random.Generator(np.random.PCG64(42)).standard_normal((3, 4), dtype=np.float32)
    np.testing.assert_array_equal(a.numpy(), expected)
    with pytest.raises(TypeError, match="randn: needs a float dtype"):
        ranvier.randn(2, dtype="int64")


# --- forward values against NumPy --------------------------------------------------------

def _pair(rng, shape_a, shape_b, dtype=np.float32):
    a = rng.standard_normal(shape_a).astype(dtype)
    b = rng.standard_normal(shape_b).astype(dtype)
    return a, b


@pytest.mark.parametrize("op", ["add", "sub", "mul", "truediv"])
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)),
                                    ((), (5,)), ((1,), ())])
def test_binary_forward_matches_numpy(rng, op, shapes):
    a, b = _pair(rng, *shapes)
    b = np.where(np.abs(b) < 0.1, 0.5, b).astype(np.float32)
    name = f"__{op}__"
    expected = getattr(a, name)(b)
    result = getattr(ranvier.tensor(a), name)(ranvier.tensor(b))
    assert result.shape == np.shape(expected) and result.dtype == np.float32
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-6)
    # with a plain array or a Python number on either side
    np.testing.assert_allclose(getattr(ranvier.tensor(a), name)(b).numpy(), expected, rtol=1e-6)
    rexpected = getattr(np.asarray(b), name)(a)
    np.testing.assert_allclose(getattr(ranvier.tensor(a), f"__r{op}__")(b).numpy(), rexpected,
                               rtol=1e-6)


def test_numpy_array_on_the_left_stays_a_tensor():
    a = np.ones(3, dtype=np.float32)
    x = ranvier.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for result in (a + x, a - x, a * x, a / x, a ** x):
        assert isinstance(result, Tensor) and result.requires_grad


def test_dtype_promotion_follows_numpy():
    x32 = ranvier.ones(2)
    assert (x32 * 2.5).dtype == np.float32
    assert (2.5 - x32).dtype == np.float32
    assert (x32 + ranvier.ones(2, dtype="float64")).dtype == np.float64
    assert (ranvier.tensor([1, 2]) + 1).dtype == np.int64
    assert (x32 ** 2).dtype == np.float32


def test_pow_and_unary_forward(rng):
    a = rng.uniform(0.5, 2.0, (3, 4))
    t = ranvier.tensor(a)
    np.testing.assert_allclose((t ** 3).numpy(), a ** 3)
    np.testing.assert_allclose((2.0 ** t).numpy(), 2.0 ** a)
    np.testing.assert_allclose((t ** t).numpy(), a ** a)
    np.testing.assert_allclose((-t).numpy(), -a)
    np.testing.assert_allclose(t.exp().numpy(), np.exp(a))
    np.testing.assert_allclose(t.log().numpy(), np.log(a))
    np.testing.assert_allclose(t.sqrt().numpy(), np.sqrt(a))
    np.testing.assert_allclose(abs(-t).numpy(), a)
    np.testing.assert_allclose(t.clamp(0.8, 1.5).numpy(), np.clip(a, 0.8, 1.5))
    np.testing.assert_allclose(t.clamp(min=1.0).numpy(), np.maximum(a, 1.0))
    with pytest.raises(ValueError, match="clamp: at least one of min and max"):
        t.clamp()


def test_division_by_zero_is_quiet_inf():
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # NumPy's RuntimeWarning would raise
        r = ranvier.tensor([1.0, -1.0]) / ranvier.tensor([0.0, 0.0])
        assert ranvier.tensor([0.0]).log().tolist() == [-np.inf]
    assert r.tolist() == [np.inf, -np.inf]


def test_comparisons_are_boolean_and_outside_the_graph():
    x = ranvier.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for result, expected in ((x < 2, [True, False, False]), (x > 2, [False, False, True]),
                             (x == 2, [False, True, False]), (x <= 2, [True, True, False]),
                             (x >= 2, [False, True, True]), (x != 2, [True, False, True]),
                             (x < ranvier.tensor([2.0, 2.0, 4.0]), [True, False, True])):
        assert result.dtype == np.bool_ and not result.requires_grad
        assert result.tolist() == expected
    assert (x > 0).all().item() and (x > 2).any().item()


def test_reductions_forward(rng):
    a = rng.standard_normal((2, 3, 4))
    t = ranvier.tensor(a)
    np.testing.assert_allclose(t.sum().numpy(), a.sum())
    np.testing.assert_allclose(t.sum(1).numpy(), a.sum(1))
    np.testing.assert_allclose(t.sum((0, 2), keepdim=True).numpy(), a.sum((0, 2), keepdims=True))
    np.testing.assert_allclose(t.mean(-1).numpy(), a.mean(-1))
    np.testing.assert_allclose(t.mean((0, -1)).numpy(), a.mean((0, 2)))
    assert t.max().item() == a.max() and t.min().item() == a.min()
    values, indices = t.max(dim=1)
    np.testing.assert_array_equal(values.numpy(), a.max(1))
    np.testing.assert_array_equal(indices.numpy(), a.argmax(1))
    assert indices.dtype == np.int64
    values, indices = t.min(dim=-1, keepdim=True)
    np.testing.assert_array_equal(values.numpy(), a.min(-1, keepdims=True))
    np.testing.assert_array_equal(indices.numpy(), a.argmin(-1)[..., None])
    np.testing.assert_array_equal(t.argmax(2).numpy(), a.argmax(2))
    assert t.argmin().item() == a.argmin()
    with pytest.raises(IndexError, match="sum: dim 3 is out of range for a tensor with 3 dim"):
        t.sum(3)
    with pytest.raises(ValueError, match="mean: dim \\(1, -2\\) names an axis twice"):
        t.mean((1, -2))
    with pytest.raises(TypeError, match="mean: needs a floating-point tensor"):
        ranvier.tensor([1, 2]).mean()
    with pytest.raises(ValueError, match="max: the tensor is empty"):
        ranvier.zeros(0).max()


def test_shape_ops_forward(rng):
    a = rng.standard_normal((2, 3, 4))
    t = ranvier.tensor(a)
    assert t.reshape(6, 4).shape == (6, 4) and t.reshape((4, -1)).shape == (4, 6)
    assert t.view(-1).shape == (24,)
    assert t.flatten().shape == (24,) and t.flatten(1).shape == (2, 12)
    assert t.flatten(0, 1).shape == (6, 4)
    np.testing.assert_array_equal(t.transpose(0, 2).numpy(), a.transpose(2, 1, 0))
    np.testing.assert_array_equal(t.permute(2, 0, 1).numpy(), a.transpose(2, 0, 1))
    np.testing.assert_array_equal(t[0].T.numpy(), a[0].T)
    assert t.unsqueeze(0).shape == (1, 2, 3, 4) and t.unsqueeze(-1).shape == (2, 3, 4, 1)
    assert t.unsqueeze(1).squeeze().shape == (2, 3, 4)
    assert ranvier.zeros(1, 3, 1).squeeze(0).shape == (3, 1)
    assert ranvier.zeros(1, 3, 1).squeeze(1).shape == (1, 3, 1)    # not length 1: kept
    with pytest.raises(ValueError, match=r"reshape: cannot reshape a tensor of shape \(2, 3, 4\) "
                                         r"into \(5, 5\)"):
        t.reshape(5, 5)
    with pytest.raises(ValueError, match="permute: got 2 dims"):
        t.permute(0, 1)
    with pytest.raises(ValueError, match="permute: dims \\(0, 0, 1\\) repeat an axis"):
        t.permute(0, 0, 1)
    with pytest.raises(ValueError, match="T: only for tensors of at most 2 dimensions"):
        t.T
    with pytest.raises(IndexError, match="unsqueeze: dim 5 is out of range"):
        t.unsqueeze(5)


@pytest.mark.parametrize("index", [
    1, -1, slice(1, 3), (Ellipsis, 2), (None, 0), (slice(None), [0, 2, 2]),
    [3, 0, 3], (np.array([0, 1]), np.array([2, 2])),
])
def test_indexing_forward(rng, index):
    a = rng.standard_normal((4, 3))
    np.testing.assert_array_equal(ranvier.tensor(a)[index].numpy(), a[index])


def test_indexing_with_tensors(rng):
    a = rng.standard_normal((4, 3))
    t = ranvier.tensor(a)
    mask = ranvier.tensor(a > 0)
    np.testing.assert_array_equal(t[mask].numpy(), a[a > 0])
    np.testing.assert_array_equal(t[ranvier.tensor([2, 0])].numpy(), a[[2, 0]])
    np.testing.assert_array_equal(t[ranvier.tensor(1), 2].numpy(), a[1, 2])


def test_matmul_shape_errors():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) cannot be "
                                         r"multiplied \(3 != 4\)"):
        ranvier.ones(2, 3) @ ranvier.ones(4, 5)
    with pytest.raises(ValueError, match="matmul: both operands need at least 1 dimension"):
        ranvier.ones(2, 3) @ ranvier.tensor(2.0)
