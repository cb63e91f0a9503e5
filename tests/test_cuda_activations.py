"""The standalone CUDA activation kernels (kernels/cuda/activations.cu) through the Python layer:
ranvier.ops (relu, leaky_relu, sigmoid, tanh, gelu exact and tanh-approximate, and their
backward functions) with CuPy arrays, and the nn activation modules / Tensor methods on cuda
tensors. nn.Sequential fuses Linear + activation into the linear kernels, so these kernels
are only reached by calling the activations on their own, as here.

Each result is compared with the float64 references in references/activations.py and with
the CPU ops on the same inputs (the CPU kernels compute their transcendental parts with the
vector math, the GPU with the scalar formulas of activation_math.h: they agree to the dtype's
tolerance, not bit for bit). Outputs given with ``out=`` are CuPy arrays filled with NaN, so
that an element a kernel forgets to write shows up; a fresh result and one written into
``out=`` come from the same kernel and must be identical.

The whole module skips without CuPy or without a usable GPU.
"""

import zlib

import numpy as np
import pytest
from conftest import tol
from references import activations as ref

import ranvier
from ranvier import nn, ops

cp = pytest.importorskip("cupy")
if not ranvier.cuda.is_available():
    pytest.skip(f"no usable GPU: {ranvier.cuda.unavailable_reason()}", allow_module_level=True)

DTYPES = [np.float32, np.float64]
# One element, below a warp, just past a warp, several 256-thread blocks with a partial last
# one, and odd 2-D / 4-D shapes (the kernels see the flat size: 33 and 210).
SHAPES = [(1,), (7,), (33,), (1000,), (3, 11), (2, 3, 5, 7)]
SLOPE = 0.07  # leaky_relu's negative slope: not the default, so that the argument must reach the kernel


def _case(name):
    """(forward(x, out=None), backward(saved, dy, out=None), reference f, reference f',
    backward takes the forward output)."""
    return {
        "relu": (ops.relu, ops.relu_backward, ref.relu, ref.relu_grad, False),
        "leaky_relu": (lambda x, out=None: ops.leaky_relu(x, SLOPE, out=out),
                       lambda s, g, out=None: ops.leaky_relu_backward(s, g, SLOPE, out=out),
                       lambda x: ref.leaky_relu(x, SLOPE), lambda x: ref.leaky_relu_grad(x, SLOPE), False),
        "sigmoid": (ops.sigmoid, ops.sigmoid_backward, ref.sigmoid, ref.sigmoid_grad, True),
        "tanh": (ops.tanh, ops.tanh_backward, ref.tanh, ref.tanh_grad, True),
        "gelu": (ops.gelu, ops.gelu_backward, ref.gelu, ref.gelu_grad, False),
        "gelu_tanh": (lambda x, out=None: ops.gelu(x, approximate="tanh", out=out),
                      lambda s, g, out=None: ops.gelu_backward(s, g, approximate="tanh", out=out),
                      ref.gelu_tanh, ref.gelu_tanh_grad, False),
    }[name]


NAMES = ["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh"]


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def host(a):
    assert isinstance(a, cp.ndarray), f"expected a CuPy array, got {type(a).__name__}"
    return cp.asnumpy(a)


def nan_like(shape, dtype):
    return cp.full(shape, cp.nan, dtype=dtype)


def assert_close(actual, expected, dtype, factor=1.0, **override):
    t = dict(tol(dtype), **override)
    np.testing.assert_allclose(host(actual) if isinstance(actual, cp.ndarray) else actual, expected,
                               rtol=t["rtol"] * factor, atol=t["atol"] * factor)


def _grad_tolerance(dtype, uses_output):
    # From y, float32 rounding of y adds about one ulp of y to the derivative (as in
    # test_ops_activations.py).
    return dict(rtol=1e-4, atol=1e-6) if (dtype == np.float32 and uses_output) else {}


# --- values --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_forward_and_backward_match_the_reference_and_the_cpu(name, shape, dtype):
    forward, backward, reference, reference_grad, uses_output = _case(name)
    rng = _rng(name, shape, np.dtype(dtype).name)
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    x[np.abs(x) < 1e-3] = 0.5  # away from relu's kink, where the derivative jumps
    dy = rng.standard_normal(shape).astype(dtype)
    x_gpu, dy_gpu = cp.asarray(x), cp.asarray(dy)

    y = forward(x_gpu)
    assert isinstance(y, cp.ndarray) and y.shape == shape and y.dtype == dtype
    assert_close(y, reference(x), dtype)
    y_cpu = forward(x)
    assert_close(y, y_cpu, dtype, factor=2)
    # out=: every element written, the same bits as the fresh result, out itself returned.
    out = nan_like(shape, dtype)
    assert forward(x_gpu, out=out) is out
    np.testing.assert_array_equal(host(out), host(y))

    saved = y if uses_output else x_gpu
    dx = backward(saved, dy_gpu)
    assert isinstance(dx, cp.ndarray) and dx.shape == shape and dx.dtype == dtype
    assert_close(dx, reference_grad(x) * dy.astype(np.float64), dtype, **_grad_tolerance(dtype, uses_output))
    # The CPU on the very same inputs (for sigmoid/tanh: the GPU's y).
    assert_close(dx, backward(host(saved), dy), dtype, factor=2)
    out = nan_like(shape, dtype)
    assert backward(saved, dy_gpu, out=out) is out
    np.testing.assert_array_equal(host(out), host(dx))
    # The inputs were only read.
    np.testing.assert_array_equal(host(x_gpu), x)
    np.testing.assert_array_equal(host(dy_gpu), dy)


def test_leaky_relu_default_slope_reaches_the_kernel():
    x = _rng("leaky default").standard_normal(40) - 0.5
    x_gpu = cp.asarray(x)
    np.testing.assert_allclose(host(ops.leaky_relu(x_gpu)), ref.leaky_relu(x, 0.01), **tol(np.float64))
    np.testing.assert_allclose(host(ops.leaky_relu_backward(x_gpu, cp.ones(40))), ref.leaky_relu_grad(x, 0.01),
                               **tol(np.float64))
    # And another slope gives other numbers (the slope is not ignored).
    assert not np.allclose(host(ops.leaky_relu(x_gpu, 0.3)), host(ops.leaky_relu(x_gpu)))


@pytest.mark.parametrize("name", NAMES)
def test_in_place(name):
    forward, backward, _, _, uses_output = _case(name)
    rng = _rng("in place", name)
    x = (3 * rng.standard_normal((5, 41))).astype(np.float32)
    dy = rng.standard_normal((5, 41)).astype(np.float32)
    expected_y = host(forward(cp.asarray(x)))
    saved = expected_y if uses_output else x
    expected_dx = host(backward(cp.asarray(saved), cp.asarray(dy)))

    x_gpu = cp.asarray(x)
    assert forward(x_gpu, out=x_gpu) is x_gpu
    np.testing.assert_array_equal(host(x_gpu), expected_y)
    # Backward into grad_output's buffer, and into the saved array's.
    dy_gpu = cp.asarray(dy)
    assert backward(cp.asarray(saved), dy_gpu, out=dy_gpu) is dy_gpu
    np.testing.assert_array_equal(host(dy_gpu), expected_dx)
    saved_gpu = cp.asarray(saved)
    assert backward(saved_gpu, cp.asarray(dy), out=saved_gpu) is saved_gpu
    np.testing.assert_array_equal(host(saved_gpu), expected_dx)


@pytest.mark.parametrize("name", NAMES)
def test_views_offset_and_strided_inputs(name):
    forward, backward, reference, _, uses_output = _case(name)
    rng = _rng("views", name)
    base = 2 * rng.standard_normal(300)
    base_gpu = cp.asarray(base)
    # A contiguous view that starts one element into its buffer: the binding must use the
    # view's own pointer.
    view = base_gpu[1:258]
    y = forward(view)
    np.testing.assert_allclose(host(y), reference(base[1:258]), **tol(np.float64))
    # Written through out= into a view of a larger NaN buffer: only that window changes.
    target = nan_like(300, np.float64)
    forward(view, out=target[3:260])
    result = host(target)
    np.testing.assert_array_equal(result[3:260], host(y))
    assert np.isnan(result[:3]).all() and np.isnan(result[260:]).all()
    # Strided (non-contiguous) inputs are copied once by ops.
    grid = base_gpu.reshape(10, 30)
    strided = grid[:, ::3]
    np.testing.assert_allclose(host(forward(strided)), reference(base.reshape(10, 30)[:, ::3]), **tol(np.float64))
    saved = forward(grid).T if uses_output else grid.T
    dy = cp.asarray(rng.standard_normal((30, 10)))
    expected = backward(cp.ascontiguousarray(saved), cp.ascontiguousarray(dy))
    np.testing.assert_array_equal(host(backward(saved, dy)), host(expected))


@pytest.mark.parametrize("name", NAMES)
def test_mixed_float_dtypes_compute_in_float64_on_the_gpu(name):
    _, backward, _, _, _ = _case(name)
    rng = _rng("mixed", name)
    saved = rng.uniform(-0.9, 0.9, 17).astype(np.float32)  # a valid sigmoid/tanh output too
    dy = rng.standard_normal(17)
    dx = backward(cp.asarray(saved), cp.asarray(dy))
    assert isinstance(dx, cp.ndarray) and dx.dtype == np.float64
    assert_close(dx, backward(saved, dy), np.float64, factor=2)


# --- special values and empty arrays -------------------------------------------------------

SPECIAL = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 1e30, -1e30, 1.0, -1.0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_special_values_propagate_as_on_the_cpu(name, dtype):
    forward, backward, _, _, uses_output = _case(name)
    x = np.array(SPECIAL, dtype=dtype)
    y = forward(cp.asarray(x), out=nan_like(x.shape, dtype))
    y_host, y_cpu = host(y), forward(x)
    # NaN exactly where the CPU has NaN, the same infinities, finite values to tolerance.
    assert_close(y, y_cpu, dtype, factor=2)
    np.testing.assert_array_equal(np.signbit(y_host[np.isinf(y_host)]), np.signbit(y_cpu[np.isinf(y_cpu)]))
    assert np.isnan(y_host[2]), "a NaN input must give a NaN output"
    assert np.all(np.isfinite(y_host[3:])), "finite inputs must give finite outputs"

    # Backward: special values in the saved array (dy all ones), then in dy.
    saved = y if uses_output else cp.asarray(x)
    saved_host = host(saved)
    ones = np.ones_like(x)
    dx = backward(saved, cp.asarray(ones), out=nan_like(x.shape, dtype))
    assert_close(dx, backward(saved_host, ones), dtype, factor=2)
    dy = np.roll(x, 9)  # NaN and infinities now meet other values of x: the NaN meets x = 1
    dx = backward(saved, cp.asarray(dy), out=nan_like(x.shape, dtype))
    dx_host = host(dx)
    assert_close(dx, backward(saved_host, dy), dtype, factor=2)
    # A NaN gradient flowing in stays NaN wherever the derivative is nonzero (x = 1 there).
    nan_at = int(np.flatnonzero(np.isnan(dy))[0])
    assert x[nan_at] == 1.0 and np.isnan(dx_host[nan_at])


@pytest.mark.parametrize("shape", [(0,), (0, 3), (4, 0, 2)], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_empty_and_zero_dimensional_arrays(name, shape):
    forward, backward, reference, reference_grad, uses_output = _case(name)
    empty = cp.empty(shape, dtype=cp.float32)
    y = forward(empty)
    assert isinstance(y, cp.ndarray) and y.shape == shape and y.dtype == np.float32
    assert forward(empty, out=cp.empty(shape, dtype=cp.float32)).shape == shape
    dx = backward(empty, empty)
    assert isinstance(dx, cp.ndarray) and dx.shape == shape
    # 0-d: stays 0-d, on the GPU.
    y0 = forward(cp.asarray(np.float64(0.75)))
    assert isinstance(y0, cp.ndarray) and y0.shape == ()
    np.testing.assert_allclose(host(y0), reference(np.float64(0.75)), **tol(np.float64))
    saved0 = y0 if uses_output else cp.asarray(np.float64(0.75))
    dx0 = backward(saved0, cp.asarray(np.float64(2.0)))
    assert isinstance(dx0, cp.ndarray) and dx0.shape == ()
    np.testing.assert_allclose(host(dx0), 2.0 * reference_grad(np.float64(0.75)), **tol(np.float64))


# --- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_mixed_devices_are_refused(name):
    forward, backward, _, _, _ = _case(name)
    x_gpu, x_cpu = cp.ones((2, 3)), np.ones((2, 3))
    op = name.replace("_tanh", "")
    with pytest.raises(ValueError, match=rf"^{op}: out is on cpu but the inputs are on cuda; move them "
                                         r"to one device"):
        forward(x_gpu, out=np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match=rf"^{op}: out is on cuda but the inputs are on cpu; move them "
                                         r"to one device"):
        forward(x_cpu, out=nan_like((2, 3), np.float64))
    with pytest.raises(ValueError, match=rf"^{op}_backward: out is on cpu but the inputs are on cuda"):
        backward(x_gpu, x_gpu, out=np.full((2, 3), np.nan))
    # Mixed inputs: the message names the op and the argument on the other device.
    with pytest.raises(ValueError, match=rf"^{op}_backward: grad_output is on cpu but "
                                         r"the other inputs are on cuda"):
        backward(x_gpu, x_cpu)
    with pytest.raises(ValueError, match=rf"^{op}_backward: \w+ is on cpu but "
                                         r"the other inputs are on cuda"):
        backward(x_cpu, x_gpu)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_out_and_bad_inputs_on_the_gpu(name):
    forward, backward, _, _, _ = _case(name)
    op = name.replace("_tanh", "")
    x = cp.ones((2, 3))
    with pytest.raises(ValueError, match=rf"^{op}: out has shape \(3, 2\) and dtype float64, expected \(2, 3\)"):
        forward(x, out=nan_like((3, 2), np.float64))
    with pytest.raises(ValueError, match=rf"^{op}: out has shape \(2, 3\) and dtype float32, expected .* float64"):
        forward(x, out=nan_like((2, 3), np.float32))
    with pytest.raises(ValueError, match=rf"^{op}_backward: out has shape \(6,\)"):
        backward(x, x, out=nan_like((6,), np.float64))
    with pytest.raises(ValueError, match="not C-contiguous"):
        forward(x, out=nan_like((3, 2), np.float64).T)
    with pytest.raises(ValueError, match=rf"^{op}_backward: grad_output has shape \(3, 2\) but the forward "
                                         r"array has shape \(2, 3\)"):
        backward(x, cp.ones((3, 2)))
    buffer = nan_like(8, np.float64)
    buffer[:] = 1.0
    with pytest.raises(ValueError, match="partially overlaps"):
        forward(buffer[:6], out=buffer[2:])
    with pytest.raises(TypeError, match=rf"^{op}: x has dtype int64; expected float32 or float64"):
        forward(cp.ones(3, dtype=cp.int64))
    with pytest.raises(TypeError, match=r"float16 is not supported; use float32"):
        forward(cp.ones(3, dtype=cp.float16))
    # A refused call leaves out as it was.
    out = nan_like((3, 2), np.float64)
    with pytest.raises(ValueError):
        forward(x, out=out)
    assert np.isnan(host(out)).all()


# --- the autograd and module path ----------------------------------------------------------

MODULES = [
    ("ReLU", lambda: nn.ReLU()),
    ("LeakyReLU", lambda: nn.LeakyReLU(0.2)),
    ("Sigmoid", lambda: nn.Sigmoid()),
    ("Tanh", lambda: nn.Tanh()),
    ("GELU", lambda: nn.GELU()),
    ("GELU-tanh", lambda: nn.GELU(approximate="tanh")),
    ("Tensor.relu", lambda: (lambda t: t.relu())),
    ("Tensor.sigmoid", lambda: (lambda t: t.sigmoid())),
    ("Tensor.tanh", lambda: (lambda t: t.tanh())),
    ("chain", lambda: nn.Sequential(nn.GELU(), nn.Tanh(), nn.LeakyReLU(0.1), nn.Sigmoid())),
]


def _run_on(device, make, x, weight):
    """Forward through the module on `device`, a weighted sum as the loss, backward: (output,
    gradient of x), both as NumPy arrays, and the device the gradient was on."""
    module = make()
    if isinstance(module, nn.Module):
        module = module.to(device)
    inp = ranvier.tensor(x, device=device, requires_grad=True)
    out = module(inp)
    assert out.device == inp.device and out.requires_grad
    (out * ranvier.tensor(weight, device=device)).sum().backward()
    grad = inp.grad
    return out.detach().cpu().numpy(), grad.cpu().numpy(), grad.device, grad.data


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label,make", MODULES, ids=[m[0] for m in MODULES])
def test_modules_on_cuda_give_the_cpu_grads(label, make, dtype):
    rng = _rng("module", label, np.dtype(dtype).name)
    x = (2 * rng.standard_normal((6, 37))).astype(dtype)
    x[np.abs(x) < 1e-3] = 0.5
    weight = rng.standard_normal((6, 37)).astype(dtype)
    y_cpu, g_cpu, device_cpu, _ = _run_on("cpu", make, x, weight)
    y_gpu, g_gpu, device_gpu, g_data = _run_on("cuda", make, x, weight)
    assert device_cpu == "cpu" and device_gpu == "cuda:0"
    assert isinstance(g_data, cp.ndarray) and g_data.dtype == dtype
    assert y_gpu.dtype == dtype and g_gpu.dtype == dtype
    assert_close(y_gpu, y_cpu, dtype, factor=2)
    assert_close(g_gpu, g_cpu, dtype, factor=4)
    assert np.any(g_gpu != 0)  # the weighted loss gives a gradient that can be wrong


def test_module_output_feeds_the_next_op_on_the_gpu():
    # The activation's output and gradient stay CuPy arrays through the graph.
    x = ranvier.tensor(_rng("graph").standard_normal((4, 9)), device="cuda", requires_grad=True)
    hidden = nn.GELU()(x)
    assert isinstance(hidden.data, cp.ndarray)
    loss = (nn.Sigmoid()(hidden) * hidden).sum()
    loss.backward()
    assert isinstance(x.grad.data, cp.ndarray)
    x_host = x.detach().cpu().numpy()
    h = ref.gelu(x_host)
    s = ref.sigmoid(h)
    expected = (s * (1 - s) * h + s) * ref.gelu_grad(x_host)
    np.testing.assert_allclose(x.grad.cpu().numpy(), expected, rtol=1e-10, atol=1e-12)
