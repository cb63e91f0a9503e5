"""The graph machinery: order of the backward walk, accumulation, retain_graph, grad mode."""

import sys
import threading

import numpy as np
import pytest

import ranvier
from ranvier.autograd import Function


class _Recorder(Function):
    """Identity that appends its name to a log when its backward runs."""

    @staticmethod
    def forward(ctx, x, name, log):
        ctx.name, ctx.log = name, log
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        ctx.log.append(ctx.name)
        return grad, None, None


def test_diamond_graph_reverse_topological_order():
    #        x
    #        |
    #        a
    #       / \
    #      b   c      (c goes through two more nodes, so a naive depth-first walk would
    #      |   c2      reach a from b before c's branch has delivered its gradient)
    #      |   c3
    #       \ /
    #        d
    log = []
    x = ranvier.tensor([1.0, 2.0], requires_grad=True)
    a = _Recorder.apply(x, "a", log)
    b = _Recorder.apply(a * 2, "b", log)
    c = _Recorder.apply(_Recorder.apply(_Recorder.apply(a * 3, "c", log), "c2", log), "c3", log)
    d = _Recorder.apply(b + c, "d", log)
    d.sum().backward()
    assert log[0] == "d" and log[-1] == "a"
    assert log.index("c3") < log.index("c2") < log.index("c") < log.index("a")
    assert log.count("a") == 1                       # each node runs once, with the summed grad
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 5.0])


def test_tensor_used_twice_accumulates():
    x = ranvier.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = x * x + x                                    # x used three times
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1.0, -2.0, 3.0]) + 1)


def test_same_tensor_on_both_sides():
    x = ranvier.tensor([3.0], requires_grad=True)
    (x * x).backward(ranvier.ones(1))
    assert x.grad.item() == 6.0
    x.grad = None
    (x / x).sum().backward()
    assert x.grad.item() == pytest.approx(0.0)


def test_grads_accumulate_across_backward_calls_until_zeroed():
    x = ranvier.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])
    x.grad.zero_()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


def test_leaf_grad_is_a_private_copy():
    x = ranvier.tensor([1.0, 2.0], requires_grad=True)
    g = ranvier.tensor([5.0, 7.0])
    (x + 0).backward(g)
    x.grad.data[0] = -1                              # must not change the gradient we passed
    assert g.tolist() == [5.0, 7.0]
    assert x.grad.data.flags["C_CONTIGUOUS"] and x.grad.dtype == x.dtype


def test_grad_dtype_matches_leaf_after_promotion():
    x = ranvier.tensor([1.0, 2.0], requires_grad=True)            # float32
    y = x * ranvier.tensor([2.0, 2.0], dtype="float64")           # result float64
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_retain_graph():
    x = ranvier.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 8.0])      # 2 * 2x
    with pytest.raises(RuntimeError, match="backward through the graph a second time.*"
                                           "retain_graph=True"):
        y.backward()


def test_freed_graph_detected_from_a_new_root():
    x = ranvier.tensor([1.0], requires_grad=True)
    h = x * 2
    h.sum().backward()                               # frees h's node
    with pytest.raises(RuntimeError, match="a second time"):
        (h * 3).sum().backward()


def test_backward_frees_saved_arrays():
    x = ranvier.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    node = y.grad_fn
    assert hasattr(node, "saved_arrays")
    y.sum().backward()
    assert not hasattr(node, "saved_arrays")


def test_non_scalar_backward_needs_gradient():
    x = ranvier.ones(2, 3, requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"grad can be implicitly created only for scalar "
                                           r"outputs; this tensor has shape \(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"backward: gradient has shape \(3,\) but the tensor "
                                         r"has shape \(2, 3\)"):
        y.backward(ranvier.ones(3))
    y.backward(ranvier.full((2, 3), 0.5))
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 3)))
    z = ranvier.ones(1, 1, requires_grad=True) * 4   # one element: no gradient needed
    z.backward()


def test_backward_on_tensor_without_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        ranvier.ones(2).sum().backward()


def test_backward_on_a_leaf():
    x = ranvier.tensor(2.0, requires_grad=True)
    x.backward()
    assert x.grad.item() == 1.0


def test_no_grad_context_and_decorator():
    x = ranvier.ones(2, requires_grad=True)
    assert ranvier.is_grad_enabled()
    with ranvier.no_grad():
        assert not ranvier.is_grad_enabled()
        y = x * 2
        with ranvier.enable_grad():
            assert ranvier.is_grad_enabled()
            z = x * 2
        assert not ranvier.is_grad_enabled()
    assert ranvier.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert z.requires_grad

    @ranvier.no_grad()
    def predict(t):
        return t * 3

    assert not predict(x).requires_grad
    assert ranvier.is_grad_enabled()


def test_no_grad_restores_mode_after_exception():
    with pytest.raises(KeyError):
        with ranvier.no_grad():
            raise KeyError("boom")
    assert ranvier.is_grad_enabled()


def test_set_grad_enabled():
    with ranvier.set_grad_enabled(False):
        assert not ranvier.is_grad_enabled()
    assert ranvier.is_grad_enabled()
    ranvier.set_grad_enabled(False)
    assert not ranvier.is_grad_enabled()
    ranvier.set_grad_enabled(True)

    @ranvier.set_grad_enabled(False)
    def f():
        return ranvier.is_grad_enabled()

    assert ranvier.is_grad_enabled() and f() is False and ranvier.is_grad_enabled()


def test_grad_mode_is_thread_local():
    seen = []
    with ranvier.no_grad():
        thread = threading.Thread(target=lambda: seen.append(ranvier.is_grad_enabled()))
        thread.start()
        thread.join()
    assert seen == [True]


def test_deep_chain_without_recursion_limit():
    depth = 10_000
    assert depth > sys.getrecursionlimit()
    x = ranvier.tensor([0.5], dtype="float64", requires_grad=True)
    y = x
    for _ in range(depth):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** depth], rtol=1e-9)


def test_deep_chain_with_retained_graph_can_be_dropped():
    x = ranvier.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(20_000):
        y = y + 1
    y.backward(retain_graph=True)
    del y                                            # deallocating a long chain must not crash
    assert x.grad.item() == 1.0


def test_only_needed_gradients_are_computed():
    seen = []

    class Probe(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * b

        @staticmethod
        def backward(ctx, grad):
            seen.append(ctx.needs_input_grad)
            return None, grad

    a = ranvier.ones(2)
    b = ranvier.ones(2, requires_grad=True)
    Probe.apply(a, b).sum().backward()
    assert seen == [(False, True)]
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0])
    assert a.grad is None


def test_backward_returning_wrong_shape_or_count_is_reported():
    class WrongShape(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            return grad.sum(keepdims=True)

    class WrongCount(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            return grad, grad

    x = ranvier.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"WrongShape.backward returned a gradient of shape "
                                           r"\(1,\) for an input of shape \(3,\)"):
        WrongShape.apply(x).sum().backward()
    with pytest.raises(RuntimeError, match="WrongCount.backward returned 2 gradients for 1 inputs"):
        WrongCount.apply(x).sum().backward()


def test_integer_results_are_not_recorded():
    x = ranvier.tensor([1.5, 2.5], requires_grad=True)
    assert not x.argmax().requires_grad
    assert not (x > 2).requires_grad
    assert not x.long().requires_grad


def test_detach_stops_gradient():
    x = ranvier.tensor([2.0], requires_grad=True)
    y = x * x.detach()                               # d/dx = x.detach() only
    y.backward()
    assert x.grad.item() == 2.0
