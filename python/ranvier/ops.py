"""The array floor: ranvier's kernels as functions on NumPy (CPU) or CuPy (GPU) arrays.

No autograd here: each function validates its inputs, allocates its output and calls the
compiled kernel for the arrays' device and dtype. Code written for NumPy gets our kernels
by calling these, and ranvier's autograd floor is built on them.

Input rules (see ranvier._arrays): float32 and float64 are computed natively; a call that
mixes them is computed in float64; other dtypes raise TypeError; strided inputs are copied
once to contiguous memory; read-only inputs are fine. Results are new contiguous arrays
unless ``out=`` is given (it must be contiguous, writable and of the result's shape and dtype).

Backward functions take the forward's saved arrays and ``grad_output`` (the gradient of
the loss with respect to the forward's output) and return the gradient(s) of its inputs.
"""

from __future__ import annotations

from . import _C
from ._arrays import float_inputs, output

# --- activations -------------------------------------------------------------------------
# The backward of relu, leaky_relu and gelu takes the forward input x; the backward of
# sigmoid and tanh takes the forward output y (their derivatives are cheapest from y).

_ACT = _C.Activation


def _activation(op, code, x, alpha=0.0, out=None):
    xp, dtype, (x,) = float_inputs(op, x=x)
    y = output(xp, x.shape, dtype, out, op)
    _C.activation_forward(code, x, y, alpha)
    return y


def _activation_backward(op, code, saved, grad_output, alpha=0.0, out=None):
    xp, dtype, (saved, grad_output) = float_inputs(op, saved=saved, grad_output=grad_output)
    if saved.shape != grad_output.shape:
        raise ValueError(f"{op}: grad_output has shape {grad_output.shape} but the forward "
                         f"array has shape {saved.shape}")
    dx = output(xp, saved.shape, dtype, out, op)
    _C.activation_backward(code, saved, grad_output, dx, alpha)
    return dx


def relu(x, out=None):
    """max(x, 0) elementwise."""
    return _activation("relu", _ACT.ReLU, x, out=out)


def relu_backward(x, grad_output, out=None):
    return _activation_backward("relu_backward", _ACT.ReLU, x, grad_output, out=out)


def leaky_relu(x, negative_slope=0.01, out=None):
    """x where x >= 0, negative_slope * x elsewhere."""
    return _activation("leaky_relu", _ACT.LeakyReLU, x, float(negative_slope), out=out)


def leaky_relu_backward(x, grad_output, negative_slope=0.01, out=None):
    return _activation_backward("leaky_relu_backward", _ACT.LeakyReLU, x, grad_output,
                                float(negative_slope), out=out)


def sigmoid(x, out=None):
    """1 / (1 + exp(-x)), computed without overflow."""
    return _activation("sigmoid", _ACT.Sigmoid, x, out=out)


def sigmoid_backward(y, grad_output, out=None):
    """Gradient of sigmoid from its output y: grad_output * y * (1 - y)."""
    return _activation_backward("sigmoid_backward", _ACT.Sigmoid, y, grad_output, out=out)


def tanh(x, out=None):
    return _activation("tanh", _ACT.Tanh, x, out=out)


def tanh_backward(y, grad_output, out=None):
    """Gradient of tanh from its output y: grad_output * (1 - y^2)."""
    return _activation_backward("tanh_backward", _ACT.Tanh, y, grad_output, out=out)


def _gelu_code(op, approximate):
    if approximate == "none":
        return _ACT.GELU
    if approximate == "tanh":
        return _ACT.GELUTanh
    raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got {approximate!r}")


def gelu(x, approximate="none", out=None):
    """x * Phi(x) (exact, through erf), or PyTorch's tanh approximation with approximate='tanh'."""
    return _activation("gelu", _gelu_code("gelu", approximate), x, out=out)


def gelu_backward(x, grad_output, approximate="none", out=None):
    return _activation_backward("gelu_backward", _gelu_code("gelu_backward", approximate), x,
                                grad_output, out=out)
