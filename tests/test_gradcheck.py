"""Every differentiable op and functional against central finite differences in float64.

Each case builds float64 leaf tensors from the seeded `rng` fixture and a function of them;
ranvier.autograd.gradcheck compares the analytic Jacobian (one backward per output element)
with (f(x + eps) - f(x - eps)) / 2 eps for every input element. Inputs stay away from kinks
(relu at 0, abs at 0, clamp bounds, ties for max) and from the edges of log/sqrt/div domains.
The last tests make sure the checker itself catches wrong gradients.
"""

import numpy as np
import pytest

import ranvier
import ranvier.nn.functional as F
from ranvier.autograd import Function, GradcheckError, gradcheck


def leaf(rng, *shape, low=None, high=None):
    """A float64 leaf requiring grad: standard normal, or uniform in [low, high)."""
    data = rng.standard_normal(shape) if low is None else rng.uniform(low, high, shape)
    return ranvier.tensor(np.asarray(data, dtype=np.float64), requires_grad=True)


def away_from_zero(rng, *shape):
    """Normal values with |x| >= 0.2 (denominators, kinks at 0)."""
    data = rng.standard_normal(shape)
    data = np.where(np.abs(data) < 0.2, np.copysign(0.2, data) + data, data)
    return ranvier.tensor(data, requires_grad=True)


def constant(rng, *shape, low=None, high=None):
    data = rng.standard_normal(shape) if low is None else rng.uniform(low, high, shape)
    return ranvier.tensor(np.asarray(data, dtype=np.float64))


def seeded(fn, seed=7):
    """fn with ranvier reseeded on every call, so random ops (dropout) repeat their mask."""
    def wrapper(*args):
        ranvier.manual_seed(seed)
        return fn(*args)
    return wrapper


# Each case: name -> rng -> (function, inputs)
TENSOR_OP_CASES = {
    # arithmetic with broadcasting
    "add": lambda r: (lambda a, b: a + b, (leaf(r, 3, 4), leaf(r, 3, 4))),
    "add_broadcast_3x1_1x4": lambda r: (lambda a, b: a + b, (leaf(r, 3, 1), leaf(r, 1, 4))),
    "add_broadcast_leading": lambda r: (lambda a, b: a + b, (leaf(r, 2, 3, 4), leaf(r, 4))),
    "add_0d_and_vector": lambda r: (lambda a, b: a + b, (leaf(r), leaf(r, 5))),
    "add_python_scalar": lambda r: (lambda a: 2.5 + a + 1, (leaf(r, 3),)),
    "add_numpy_array_left": lambda r: (lambda a: np.ones((2, 3)) + a, (leaf(r, 3),)),
    "sub_broadcast": lambda r: (lambda a, b: a - b, (leaf(r, 3, 1), leaf(r, 1, 4))),
    "rsub_scalar": lambda r: (lambda a: 1.0 - a, (leaf(r, 2, 3),)),
    "mul_broadcast": lambda r: (lambda a, b: a * b, (leaf(r, 2, 1, 3), leaf(r, 4, 1))),
    "mul_scalar_both_sides": lambda r: (lambda a: 3.0 * a * -2.0, (leaf(r, 4),)),
    "mul_same_tensor": lambda r: (lambda a: a * a, (leaf(r, 5),)),
    "div": lambda r: (lambda a, b: a / b, (leaf(r, 3, 4), away_from_zero(r, 3, 4))),
    "div_broadcast": lambda r: (lambda a, b: a / b, (leaf(r, 3, 1), away_from_zero(r, 4))),
    "rdiv_scalar": lambda r: (lambda a: 2.0 / a, (away_from_zero(r, 3),)),
    "neg": lambda r: (lambda a: -a, (leaf(r, 2, 2),)),
    "pow_float_exponent": lambda r: (lambda a: a ** 2.5, (leaf(r, 3, 2, low=0.3, high=2.0),)),
    "pow_int_exponent": lambda r: (lambda a: a ** 3, (leaf(r, 4),)),
    "pow_negative_exponent": lambda r: (lambda a: a ** -2, (away_from_zero(r, 4),)),
    "pow_scalar_base": lambda r: (lambda a: 2.0 ** a, (leaf(r, 3),)),
    "pow_tensor_tensor": lambda r: (lambda a, b: a ** b,
                                    (leaf(r, 3, 1, low=0.3, high=2.0), leaf(r, 1, 4))),
    # matmul through ops.matmul (1-D handled like torch.matmul)
    "matmul_2d": lambda r: (lambda a, b: a @ b, (leaf(r, 3, 4), leaf(r, 4, 5))),
    "matmul_batch": lambda r: (lambda a, b: a @ b, (leaf(r, 2, 3, 4), leaf(r, 2, 4, 5))),
    "matmul_batch_broadcast": lambda r: (lambda a, b: a @ b, (leaf(r, 2, 1, 3, 4),
                                                              leaf(r, 3, 4, 2))),
    "matmul_batch_by_matrix": lambda r: (lambda a, b: a @ b, (leaf(r, 2, 3, 4), leaf(r, 4, 5))),
    "matmul_matrix_by_batch": lambda r: (lambda a, b: a @ b, (leaf(r, 3, 4), leaf(r, 2, 4, 5))),
    "matmul_vector_vector": lambda r: (lambda a, b: a @ b, (leaf(r, 4), leaf(r, 4))),
    "matmul_matrix_vector": lambda r: (lambda a, b: a @ b, (leaf(r, 3, 4), leaf(r, 4))),
    "matmul_vector_matrix": lambda r: (lambda a, b: a @ b, (leaf(r, 4), leaf(r, 4, 5))),
    "matmul_batch_vector": lambda r: (lambda a, b: a @ b, (leaf(r, 2, 3, 4), leaf(r, 4))),
    "matmul_vector_batch": lambda r: (lambda a, b: a @ b, (leaf(r, 4), leaf(r, 2, 4, 5))),
    "matmul_numpy_left": lambda r: (lambda b: np.ones((2, 3)) @ b, (leaf(r, 3, 2),)),
    # elementwise math
    "exp": lambda r: (lambda a: a.exp(), (leaf(r, 3, 4),)),
    "log": lambda r: (lambda a: a.log(), (leaf(r, 3, 4, low=0.2, high=3.0),)),
    "sqrt": lambda r: (lambda a: a.sqrt(), (leaf(r, 3, 4, low=0.2, high=3.0),)),
    "abs": lambda r: (lambda a: abs(a), (away_from_zero(r, 3, 4),)),
    "clamp": lambda r: (lambda a: a.clamp(-0.5, 0.5), (leaf(r, 4, 5),)),
    "clamp_min": lambda r: (lambda a: a.clamp(min=0.1), (leaf(r, 4, 5),)),
    "clamp_max": lambda r: (lambda a: a.clamp(max=-0.1), (leaf(r, 4, 5),)),
    # reductions
    "sum_all": lambda r: (lambda a: a.sum(), (leaf(r, 3, 4),)),
    "sum_dim": lambda r: (lambda a: a.sum(1), (leaf(r, 2, 3, 4),)),
    "sum_negative_dim_keepdim": lambda r: (lambda a: a.sum(-1, keepdim=True), (leaf(r, 2, 3, 4),)),
    "sum_tuple_dims": lambda r: (lambda a: a.sum((0, 2)), (leaf(r, 2, 3, 4),)),
    "sum_tuple_dims_keepdim": lambda r: (lambda a: a.sum((0, -1), keepdim=True),
                                         (leaf(r, 2, 3, 4),)),
    "sum_0d": lambda r: (lambda a: a.sum(), (leaf(r),)),
    "mean_all": lambda r: (lambda a: a.mean(), (leaf(r, 3, 4),)),
    "mean_dim": lambda r: (lambda a: a.mean(0), (leaf(r, 3, 4),)),
    "mean_tuple_dims": lambda r: (lambda a: a.mean((1, 2)), (leaf(r, 2, 3, 4),)),
    "mean_tuple_dims_keepdim": lambda r: (lambda a: a.mean((0, 2), keepdim=True),
                                          (leaf(r, 2, 3, 4),)),
    "max_all": lambda r: (lambda a: a.max(), (leaf(r, 3, 4),)),
    "min_all": lambda r: (lambda a: a.min(), (leaf(r, 3, 4),)),
    "max_dim": lambda r: (lambda a: a.max(dim=1).values, (leaf(r, 3, 4, 2),)),
    "min_dim_keepdim": lambda r: (lambda a: a.min(dim=-1, keepdim=True).values,
                                  (leaf(r, 3, 4),)),
    # shapes
    "reshape": lambda r: (lambda a: a.reshape(4, 6), (leaf(r, 2, 3, 4),)),
    "view_minus_one": lambda r: (lambda a: a.view(-1, 2), (leaf(r, 2, 3, 4),)),
    "flatten": lambda r: (lambda a: a.flatten(1), (leaf(r, 2, 3, 4),)),
    "flatten_range": lambda r: (lambda a: a.flatten(0, 1), (leaf(r, 2, 3, 4),)),
    "transpose": lambda r: (lambda a: a.transpose(0, 2), (leaf(r, 2, 3, 4),)),
    "permute": lambda r: (lambda a: a.permute(2, 0, 1), (leaf(r, 2, 3, 4),)),
    "T": lambda r: (lambda a: a.T, (leaf(r, 3, 4),)),
    "unsqueeze": lambda r: (lambda a: a.unsqueeze(1), (leaf(r, 3, 4),)),
    "squeeze": lambda r: (lambda a: a.squeeze(), (leaf(r, 3, 1, 4, 1),)),
    "squeeze_dim": lambda r: (lambda a: a.squeeze(1), (leaf(r, 3, 1, 4),)),
    "transposed_then_matmul": lambda r: (lambda a, b: a.T @ b, (leaf(r, 4, 3), leaf(r, 4, 2))),
    # indexing
    "index_int": lambda r: (lambda a: a[1], (leaf(r, 3, 4),)),
    "index_negative_int": lambda r: (lambda a: a[-1, 2], (leaf(r, 3, 4),)),
    "index_slice": lambda r: (lambda a: a[1:3, ::2], (leaf(r, 4, 5),)),
    "index_negative_step": lambda r: (lambda a: a[::-1], (leaf(r, 4),)),
    "index_ellipsis_none": lambda r: (lambda a: a[..., None, 1], (leaf(r, 2, 3, 4),)),
    "index_int_array_repeated": lambda r: (lambda a: a[[0, 2, 0, 0]], (leaf(r, 3, 4),)),
    "index_arrays_repeated_pairs": lambda r: (
        lambda a: a[np.array([0, 1, 0]), np.array([2, 2, 2])], (leaf(r, 3, 4),)),
    "index_slice_and_array": lambda r: (lambda a: a[:, [1, 1, 3]], (leaf(r, 3, 4),)),
    "index_bool_mask": lambda r: (lambda a: a[a.detach() > 0], (leaf(r, 4, 5),)),
    "index_tensor": lambda r: (lambda a: a[ranvier.tensor([2, 2, 1])], (leaf(r, 3, 2),)),
    # casts and copies
    "clone": lambda r: (lambda a: a.clone() * 2, (leaf(r, 3),)),
    "to_same_dtype": lambda r: (lambda a: a.to(ranvier.float64).double(), (leaf(r, 3),)),
    # activations as methods
    "method_relu": lambda r: (lambda a: a.relu(), (away_from_zero(r, 3, 4),)),
    "method_sigmoid": lambda r: (lambda a: a.sigmoid(), (leaf(r, 3, 4),)),
    "method_tanh": lambda r: (lambda a: a.tanh(), (leaf(r, 3, 4),)),
    "method_softmax": lambda r: (lambda a: a.softmax(1), (leaf(r, 3, 4),)),
    "method_log_softmax": lambda r: (lambda a: a.log_softmax(-1), (leaf(r, 3, 4),)),
    # a composite graph: shared weight used twice, broadcasting, reductions
    "composite": lambda r: (
        lambda x, w, b: ((x @ w + b).tanh() @ w.T).exp().mean((0, 1)) + (w * w).sum(),
        (leaf(r, 5, 3), leaf(r, 3, 3), leaf(r, 3))),
}


def _labels(rng, shape, classes):
    return ranvier.tensor(rng.integers(0, classes, shape))


FUNCTIONAL_CASES = {
    "linear": lambda r: (F.linear, (leaf(r, 4, 5), leaf(r, 3, 5), leaf(r, 3))),
    "linear_no_bias": lambda r: (F.linear, (leaf(r, 4, 5), leaf(r, 3, 5))),
    "linear_3d_input": lambda r: (F.linear, (leaf(r, 2, 3, 5), leaf(r, 4, 5), leaf(r, 4))),
    "linear_1d_input": lambda r: (F.linear, (leaf(r, 5), leaf(r, 2, 5), leaf(r, 2))),
    "linear_constant_weight": lambda r: (
        lambda x: F.linear(x, constant(np.random.default_rng(0), 3, 5)), (leaf(r, 4, 5),)),
    "relu": lambda r: (F.relu, (away_from_zero(r, 3, 5),)),
    "leaky_relu": lambda r: (lambda x: F.leaky_relu(x, 0.2), (away_from_zero(r, 3, 5),)),
    "leaky_relu_default_slope": lambda r: (F.leaky_relu, (away_from_zero(r, 7),)),
    "sigmoid": lambda r: (F.sigmoid, (leaf(r, 3, 5),)),
    "tanh": lambda r: (F.tanh, (leaf(r, 3, 5),)),
    "gelu": lambda r: (F.gelu, (leaf(r, 3, 5),)),
    "gelu_tanh": lambda r: (lambda x: F.gelu(x, approximate="tanh"), (leaf(r, 3, 5),)),
    "softmax_dim0": lambda r: (lambda x: F.softmax(x, dim=0), (leaf(r, 3, 4),)),
    "softmax_middle_dim": lambda r: (lambda x: F.softmax(x, dim=1), (leaf(r, 2, 3, 4),)),
    "softmax_1d": lambda r: (lambda x: F.softmax(x, dim=0), (leaf(r, 5),)),
    "log_softmax_last": lambda r: (lambda x: F.log_softmax(x, dim=-1), (leaf(r, 2, 3, 4),)),
    "log_softmax_dim0": lambda r: (lambda x: F.log_softmax(x, dim=0), (leaf(r, 3, 4),)),
    "dropout": lambda r: (seeded(lambda x: F.dropout(x, p=0.3)), (leaf(r, 4, 5),)),
    "dropout_eval_is_identity": lambda r: (lambda x: F.dropout(x, 0.5, training=False) * 1,
                                           (leaf(r, 4),)),
    "mse_loss_mean": lambda r: (F.mse_loss, (leaf(r, 3, 4), constant(r, 3, 4))),
    "mse_loss_sum": lambda r: (lambda x, t: F.mse_loss(x, t, reduction="sum"),
                               (leaf(r, 3, 4), constant(r, 3, 4))),
    "mse_loss_none": lambda r: (lambda x, t: F.mse_loss(x, t, reduction="none"),
                                (leaf(r, 3, 4), constant(r, 3, 4))),
    "mse_loss_target_requires_grad": lambda r: (F.mse_loss, (leaf(r, 3, 4), leaf(r, 3, 4))),
    "mse_loss_only_target": lambda r: (lambda t, x: F.mse_loss(x, t, reduction="sum"),
                                       (leaf(r, 5), constant(r, 5))),
    "bce_mean": lambda r: (lambda p, t: F.binary_cross_entropy(p, t),
                           (leaf(r, 3, 4, low=0.1, high=0.9), constant(r, 3, 4, low=0, high=1))),
    "bce_sum_weighted": lambda r: (
        lambda p, t, w: F.binary_cross_entropy(p, t, weight=w, reduction="sum"),
        (leaf(r, 3, 4, low=0.1, high=0.9), constant(r, 3, 4, low=0, high=1),
         constant(r, 3, 4, low=0.5, high=2))),
    "bce_none_broadcast_weight": lambda r: (
        lambda p, t, w: F.binary_cross_entropy(p, t, weight=w, reduction="none"),
        (leaf(r, 3, 4, low=0.1, high=0.9), constant(r, 3, 4, low=0, high=1),
         constant(r, 4, low=0.5, high=2))),
    "bce_with_logits_mean": lambda r: (F.binary_cross_entropy_with_logits,
                                       (leaf(r, 3, 4), constant(r, 3, 4, low=0, high=1))),
    "bce_with_logits_weight_pos_weight": lambda r: (
        lambda z, t, w, pw: F.binary_cross_entropy_with_logits(z, t, weight=w, pos_weight=pw,
                                                               reduction="sum"),
        (leaf(r, 3, 4), constant(r, 3, 4, low=0, high=1), constant(r, 3, 1, low=0.5, high=2),
         constant(r, 4, low=0.5, high=3))),
    "bce_with_logits_none_large_logits": lambda r: (
        lambda z, t: F.binary_cross_entropy_with_logits(z * 20, t, reduction="none"),
        (leaf(r, 5), constant(r, 5, low=0, high=1))),
    "cross_entropy_mean": lambda r: (lambda x: F.cross_entropy(x, _labels(np.random.default_rng(1),
                                                                          (4,), 5)),
                                     (leaf(r, 4, 5),)),
    "cross_entropy_weighted_ignore": lambda r: (
        lambda x, w: F.cross_entropy(x, ranvier.tensor([0, 3, -100, 3, 1]), weight=w),
        (leaf(r, 5, 4), constant(r, 4, low=0.5, high=2))),
    "cross_entropy_custom_ignore_sum": lambda r: (
        lambda x: F.cross_entropy(x, ranvier.tensor([2, 1, 2]), ignore_index=2, reduction="sum"),
        (leaf(r, 3, 3),)),
    "cross_entropy_none": lambda r: (
        lambda x: F.cross_entropy(x, ranvier.tensor([1, 0, 2]), reduction="none"),
        (leaf(r, 3, 3),)),
    "cross_entropy_spatial": lambda r: (
        lambda x: F.cross_entropy(x, ranvier.tensor([[0, 2], [1, 1]]), reduction="none"),
        (leaf(r, 2, 3, 2),)),
    "cross_entropy_spatial_mean": lambda r: (
        lambda x: F.cross_entropy(x, ranvier.tensor([[[0, 2], [1, 1]], [[2, 2], [0, 1]]])),
        (leaf(r, 2, 3, 2, 2),)),
    "cross_entropy_unbatched": lambda r: (lambda x: F.cross_entropy(x, ranvier.tensor(2)),
                                          (leaf(r, 4),)),
    "mlp_with_cross_entropy": lambda r: (
        lambda x, w1, b1, w2: F.cross_entropy(
            F.linear(F.gelu(F.linear(x, w1, b1)), w2), ranvier.tensor([0, 2, 1, 2])),
        (leaf(r, 4, 3), leaf(r, 5, 3), leaf(r, 5), leaf(r, 3, 5))),
    # convolution (issue 3); more cases in test_ops_conv.py
    "conv1d": lambda r: (lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1, groups=2),
                         (leaf(r, 2, 4, 7), leaf(r, 4, 2, 3), leaf(r, 4))),
    "conv2d": lambda r: (lambda x, w: F.conv2d(x, w, padding="same", dilation=(1, 2)),
                         (leaf(r, 1, 2, 4, 5), leaf(r, 3, 2, 2, 3))),
}

# convolution issue: pooling and batch normalisation (more cases in test_ops_pooling.py and
# test_ops_batch_norm.py). Random normal inputs have no ties for max pooling.
FUNCTIONAL_CASES.update({
    "max_pool1d": lambda r: (lambda x: F.max_pool1d(x, 3, stride=2, padding=1), (leaf(r, 2, 2, 7),)),
    "max_pool2d": lambda r: (lambda x: F.max_pool2d(x, 2, stride=1), (leaf(r, 1, 2, 3, 4),)),
    "avg_pool1d": lambda r: (lambda x: F.avg_pool1d(x, 3, stride=2, padding=1), (leaf(r, 2, 2, 7),)),
    "avg_pool2d": lambda r: (lambda x: F.avg_pool2d(x, 2, padding=1, count_include_pad=False),
                             (leaf(r, 1, 2, 3, 4),)),
    "adaptive_avg_pool1d": lambda r: (lambda x: F.adaptive_avg_pool1d(x, 3), (leaf(r, 2, 2, 7),)),
    "adaptive_avg_pool2d": lambda r: (lambda x: F.adaptive_avg_pool2d(x, (2, 3)), (leaf(r, 1, 2, 3, 4),)),
    "batch_norm_training": lambda r: (
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        (leaf(r, 3, 2, 4), leaf(r, 2, low=0.5, high=1.5), leaf(r, 2))),
    "batch_norm_eval": lambda r: (
        lambda x, w, b: F.batch_norm(x, np.zeros(2), np.full(2, 2.0), w, b, training=False),
        (leaf(r, 3, 2, 4), leaf(r, 2, low=0.5, high=1.5), leaf(r, 2))),
})


@pytest.mark.parametrize("name", sorted(TENSOR_OP_CASES))
def test_tensor_op_gradient(rng, name):
    fn, inputs = TENSOR_OP_CASES[name](rng)
    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("name", sorted(FUNCTIONAL_CASES))
def test_functional_gradient(rng, name):
    fn, inputs = FUNCTIONAL_CASES[name](rng)
    assert gradcheck(fn, inputs)


def test_every_functional_is_covered():
    covered = " ".join(FUNCTIONAL_CASES)
    for name in F.__all__:
        short = {"binary_cross_entropy": "bce", "binary_cross_entropy_with_logits":
                 "bce_with_logits"}.get(name, name)
        assert short in covered, f"no gradcheck case for F.{name}"


def test_cast_gradient_comes_back_in_input_dtype():
    # float64 -> float32 cannot go through finite differences (float32 rounding), so check
    # the rule directly: the gradient of a cast is the upstream gradient in the input dtype.
    x = ranvier.tensor([1.0, 2.0, 3.0], dtype="float64", requires_grad=True)
    y = x.float()
    assert y.dtype == np.float32
    (y * ranvier.tensor([1.0, 2.0, 4.0])).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0, 4.0])


def test_max_all_splits_gradient_among_ties():
    x = ranvier.tensor([1.0, 3.0, 3.0, 0.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.5, 0.5, 0.0])


def test_max_dim_gradient_goes_to_first_argmax():
    x = ranvier.tensor([[1.0, 5.0, 5.0], [2.0, 0.0, 1.0]], requires_grad=True)
    x.max(dim=1).values.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0], [1, 0, 0]])


def test_pow_gradient_at_zero_base():
    # d/dx x^0 := 0 and d/de 0^e := 0 for e >= 0 (the limits, as PyTorch), not NaN.
    x = ranvier.tensor([0.0, 2.0], requires_grad=True)
    e = ranvier.tensor([0.0, 2.0], requires_grad=True)
    (x ** e).sum().backward()
    assert np.isfinite(x.grad.numpy()).all() and np.isfinite(e.grad.numpy()).all()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 4.0])
    np.testing.assert_allclose(e.grad.numpy(), [0.0, 4.0 * np.log(2.0)], rtol=1e-6)


# --- the checker must catch wrong gradients ----------------------------------------------

class _WrongSquare(Function):
    """x^2 with a wrong derivative (3x instead of 2x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_arrays
        return grad * 3 * x


class _OneWrongElement(Function):
    """2x with the gradient of element 2 dropped: the error must point at that element."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        grad = 2 * grad
        grad[2] = 0
        return grad


class _RightSquare(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_arrays
        return 2 * grad * x


def test_gradcheck_catches_a_wrong_backward(rng):
    x = leaf(rng, 3, 2, low=0.5, high=1.5)
    with pytest.raises(GradcheckError, match="gradient of output 0 with respect to input 0 is "
                                             "wrong.*analytic.*numerical"):
        gradcheck(_WrongSquare.apply, (x,))


def test_gradcheck_points_at_the_wrong_element(rng):
    x = leaf(rng, 4)
    with pytest.raises(GradcheckError, match=r"input element \(2,\), output element \(2,\): "
                                             r"analytic 0, numerical 2"):
        gradcheck(_OneWrongElement.apply, (x,))


def test_gradcheck_catches_a_wrong_gradient_in_the_second_input(rng):
    def fn(a, b):
        return a * 2 + _WrongSquare.apply(b)

    with pytest.raises(GradcheckError, match="with respect to input 1"):
        gradcheck(fn, (leaf(rng, 3), leaf(rng, 3, low=0.5, high=1.5)))


def test_gradcheck_passes_a_right_custom_function(rng):
    assert gradcheck(_RightSquare.apply, (leaf(rng, 3, 2),))


def test_gradcheck_leaves_existing_grads_alone(rng):
    x = leaf(rng, 3)
    x.grad = ranvier.full((3,), 7.0, dtype="float64")
    gradcheck(lambda a: a * 2, (x,))
    np.testing.assert_array_equal(x.grad.numpy(), [7.0, 7.0, 7.0])


def test_gradcheck_rejects_float32_and_missing_grads():
    with pytest.raises(TypeError, match="gradcheck: input 0 has dtype float32; gradcheck needs "
                                        "float64"):
        gradcheck(lambda a: a * 2, (ranvier.ones(2, requires_grad=True),))
    with pytest.raises(ValueError, match="gradcheck: no input is a Tensor that requires grad"):
        gradcheck(lambda a: a * 2, (ranvier.ones(2, dtype="float64"),))
