"""The benchmark sections: each op run by ranvier and by its peer on the same inputs.

A section is a function (quick, timer) -> list[Row]. Before timing, every row checks that
ranvier and the peer computed the same result (a benchmark of a wrong answer means nothing);
a row whose results differ says MISMATCH in its note. A section whose ranvier op does not
exist in this build raises SectionUnavailable with the reason, and the table says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .timing import median_seconds


@dataclass
class Row:
    section: str
    op: str
    size: str
    ranvier_s: float | None
    peer: str
    peer_s: float | None
    flops: float | None = None  # floating-point operations per call, where meaningful
    note: str = ""

    @property
    def speed_ratio(self) -> float | None:
        """Peer time / ranvier time: above 1 ranvier is faster, below 1 the peer is."""
        if self.ranvier_s is None or self.peer_s is None or self.ranvier_s <= 0:
            return None
        return self.peer_s / self.ranvier_s

    def gflops(self, seconds: float | None) -> float | None:
        if self.flops is None or seconds is None or seconds <= 0:
            return None
        return self.flops / seconds / 1e9


class SectionUnavailable(Exception):
    """This build of ranvier lacks what the section needs (the message says what)."""


def _ops_function(name: str):
    from ranvier import ops

    fn = getattr(ops, name, None)
    if fn is None:
        raise SectionUnavailable(f"ranvier.ops.{name} does not exist in this build")
    return fn


def _same(ours, theirs, rtol=1e-4, atol=1e-5) -> str:
    """'' when the two results agree to float32 accuracy, else a MISMATCH note."""
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape:
        return f"MISMATCH: shape {ours.shape} vs {theirs.shape}"
    scale = max(1.0, float(np.abs(theirs).max(initial=0.0)))
    error = float(np.abs(ours - theirs).max(initial=0.0))
    if not (error <= atol * scale + rtol * scale):
        return f"MISMATCH: max abs difference {error:.3g}"
    return ""


def _random(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


# --- matmul -------------------------------------------------------------------------------

def _fma_peak_gflops(quick: bool):
    """This machine's float32 FMA peak (GFLOP/s) on the threads ranvier uses, measured by
    _C.cpu_fma_peak_gflops (vector FMA chains in the GEMM path's instruction set), best of 3;
    None where the build lacks it."""
    import os

    import ranvier

    peak = getattr(ranvier._C, "cpu_fma_peak_gflops", None)
    if peak is None:
        return None
    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or (os.cpu_count() or 1)
    return max(peak(threads, 2_000_000 if quick else 20_000_000) for _ in range(3))


def matmul(quick: bool, timer) -> list[Row]:
    ranvier_matmul = _ops_function("matmul")
    rng = np.random.default_rng(0)
    rows = []
    # GEMM GFLOP/s as a fraction of the measured FMA peak, in each row's note.
    peak = _fma_peak_gflops(quick)
    for n in ((16, 33) if quick else (64, 128, 256, 512, 1024, 2048)):
        a, b = _random(rng, n, n), _random(rng, n, n)
        # float32 sums of n products: allow the rounding of a length-n dot product.
        note = _same(ranvier_matmul(a, b), a @ b, rtol=1e-4 * math.sqrt(n), atol=1e-4 * math.sqrt(n))
        row = Row("matmul", "matmul float32", f"{n}x{n} @ {n}x{n}",
                  median_seconds(lambda: ranvier_matmul(a, b), timer), "numpy @",
                  median_seconds(lambda: a @ b, timer), flops=2.0 * n ** 3, note=note)
        if peak and not row.note:
            import ranvier

            row.note = (f"{row.gflops(row.ranvier_s) / peak:.0%} of FMA peak {peak:.0f} GFLOP/s "
                        f"({ranvier.cpu_capabilities()['path']}); numpy "
                        f"{row.gflops(row.peer_s) / peak:.0%}")
        rows.append(row)
    return rows


# --- linear -------------------------------------------------------------------------------

def linear(quick: bool, timer) -> list[Row]:
    ranvier_linear = _ops_function("linear")
    rng = np.random.default_rng(1)
    rows = []
    for batch, features_in, features_out in (((8, 17, 17),) if quick else
                                             ((256, 512, 512), (256, 1024, 1024))):
        x = _random(rng, batch, features_in)
        weight = _random(rng, features_out, features_in) / np.float32(math.sqrt(features_in))
        bias = _random(rng, features_out)
        note = _same(ranvier_linear(x, weight, bias), x @ weight.T + bias,
                     rtol=1e-4 * math.sqrt(features_in), atol=1e-4 * math.sqrt(features_in))
        rows.append(Row("linear", "linear float32 (+bias)",
                        f"({batch},{features_in}) -> ({batch},{features_out})",
                        median_seconds(lambda: ranvier_linear(x, weight, bias), timer),
                        "numpy x @ w.T + b", median_seconds(lambda: x @ weight.T + bias, timer),
                        flops=2.0 * batch * features_in * features_out + batch * features_out,
                        note=note))
    return rows


# --- activations --------------------------------------------------------------------------

def _numpy_gelu():
    """NumPy's best GELU: exact through scipy's erf if scipy is there, else the tanh form."""
    try:
        from scipy.special import erf
    except ImportError:
        def gelu_tanh(x):
            inner = np.float32(math.sqrt(2.0 / math.pi)) * (x + np.float32(0.044715) * x * x * x)
            return np.float32(0.5) * x * (np.float32(1.0) + np.tanh(inner))
        return "tanh", "numpy tanh formula", gelu_tanh

    def gelu_erf(x):
        return np.float32(0.5) * x * (np.float32(1.0) + erf(x * np.float32(1.0 / math.sqrt(2.0))))
    return "none", "numpy + scipy erf", gelu_erf


def activations(quick: bool, timer) -> list[Row]:
    from ranvier import ops

    rng = np.random.default_rng(2)
    n = 1000 if quick else 1_000_000
    x = _random(rng, n)
    gelu_mode, gelu_peer, numpy_gelu = _numpy_gelu()
    cases = [
        ("relu", ops.relu, "numpy maximum", lambda: np.maximum(x, np.float32(0))),
        ("sigmoid", ops.sigmoid, "numpy 1/(1+exp(-x))",
         lambda: np.float32(1) / (np.float32(1) + np.exp(-x))),
        ("tanh", ops.tanh, "numpy tanh", lambda: np.tanh(x)),
        (f"gelu (approximate={gelu_mode!r})", lambda v: ops.gelu(v, approximate=gelu_mode),
         gelu_peer, lambda: numpy_gelu(x)),
    ]
    rows = []
    for name, ours, peer_name, theirs in cases:
        note = _same(ours(x), theirs())
        rows.append(Row("activations", f"{name} float32", f"{n:,} elements",
                        median_seconds(lambda: ours(x), timer), peer_name,
                        median_seconds(theirs, timer), note=note))
    return rows


# --- softmax ------------------------------------------------------------------------------

def softmax(quick: bool, timer) -> list[Row]:
    ranvier_softmax = _ops_function("softmax")
    rng = np.random.default_rng(3)
    rows_n, cols = (13, 7) if quick else (4096, 1000)
    x = _random(rng, rows_n, cols) * np.float32(3)

    def numpy_softmax():
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    note = _same(ranvier_softmax(x), numpy_softmax())
    return [Row("softmax", "softmax float32 (rows)", f"{rows_n}x{cols}",
                median_seconds(lambda: ranvier_softmax(x), timer), "numpy exp/sum",
                median_seconds(numpy_softmax, timer), note=note)]


# --- a whole training step -----------------------------------------------------------------

def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def training_step(quick: bool, timer) -> list[Row]:
    import ranvier

    for needed in ("nn", "optim", "tensor"):
        if not hasattr(ranvier, needed):
            raise SectionUnavailable(f"ranvier.{needed} does not exist in this build")
    rng = np.random.default_rng(4)
    batch, features_in, hidden, classes = 32, 30, 64, 2
    x = _random(rng, batch, features_in)
    y = rng.integers(0, classes, batch).astype(np.int64)

    nn = ranvier.nn
    ranvier.manual_seed(0)
    model = nn.Sequential(nn.Linear(features_in, hidden), nn.ReLU(), nn.Linear(hidden, classes))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = ranvier.optim.Adam(model.parameters(), lr=1e-3)
    x_ranvier, y_ranvier = ranvier.tensor(x), ranvier.tensor(y)

    def ranvier_step():
        loss = loss_fn(model(x_ranvier), y_ranvier)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss

    size = f"{features_in}-{hidden}-{classes}, batch {batch}"
    op = "MLP step: forward, cross-entropy, backward, Adam, zero_grad"
    torch = _torch()
    if torch is None:
        return [Row("train", op, size, median_seconds(ranvier_step, timer), "torch", None,
                    note="PyTorch not installed (pip install '.[bench]')")]

    # PyTorch starts from ranvier's initial weights (same state-dict keys and layouts), so
    # that one step of each can be compared before both are timed.
    torch_model = torch.nn.Sequential(torch.nn.Linear(features_in, hidden), torch.nn.ReLU(),
                                      torch.nn.Linear(hidden, classes))
    torch_model.load_state_dict({key: torch.from_numpy(np.array(value))
                                 for key, value in model.state_dict().items()})
    torch_loss_fn = torch.nn.CrossEntropyLoss()
    torch_optimizer = torch.optim.Adam(torch_model.parameters(), lr=1e-3)
    x_torch, y_torch = torch.from_numpy(x), torch.from_numpy(y)

    def torch_step():
        loss = torch_loss_fn(torch_model(x_torch), y_torch)
        loss.backward()
        torch_optimizer.step()
        torch_optimizer.zero_grad()
        return loss

    note = _same(float(ranvier_step().item()), float(torch_step().item()))
    if not note:  # the weights after one Adam step (gradients of both, through the update)
        theirs = torch_model.state_dict()
        for key, value in model.state_dict().items():
            note = note or _same(np.array(value), theirs[key].numpy())
    return [Row("train", op, size, median_seconds(ranvier_step, timer), f"torch {torch.__version__}",
                median_seconds(torch_step, timer), note=note)]


# --- convolution ----------------------------------------------------------------------------
# conv2d forward, and forward + both backward passes (input, weight and bias), against
# PyTorch's CPU convolution on the same float32 arrays. GFLOP/s counts 2*N*K*P*Q*C/g*R*S per
# pass (three passes for forward + backward).

CONV_CASES = (  # (name, x shape, weight shape, padding)
    ("ResNet-like 3x3", (32, 64, 32, 32), (64, 64, 3, 3), 1),
    ("digits CNN layer 2", (64, 16, 8, 8), (32, 16, 3, 3), 1),
    ("DNA motif conv1d", (64, 4, 200), (64, 4, 11), 5),
)
CONV_QUICK_CASES = (
    ("tiny 3x3", (2, 3, 9, 9), (4, 3, 3, 3), 1),
    ("tiny conv1d", (2, 4, 20), (3, 4, 5), 2),
)


def conv(quick: bool, timer) -> list[Row]:
    from ranvier import ops

    for name in ("conv2d", "conv2d_backward_input", "conv2d_backward_weight", "conv1d"):
        _ops_function(name)
    torch = _torch()
    rng = np.random.default_rng(5)
    rows = []
    for name, x_shape, w_shape, padding in (CONV_QUICK_CASES if quick else CONV_CASES):
        spatial = len(x_shape) - 2
        forward, backward_input, backward_weight = (
            (ops.conv1d, ops.conv1d_backward_input, ops.conv1d_backward_weight) if spatial == 1
            else (ops.conv2d, ops.conv2d_backward_input, ops.conv2d_backward_weight))
        x = _random(rng, *x_shape)
        weight = _random(rng, *w_shape) / np.float32(math.sqrt(math.prod(w_shape[1:])))
        bias = _random(rng, w_shape[0])
        y = forward(x, weight, bias, padding=padding)
        grad_output = _random(rng, *y.shape)
        flops_per_pass = 2.0 * y.size * math.prod(w_shape[1:])
        size = f"x {x_shape}, w {w_shape}, pad {padding}"

        def ranvier_forward():
            return forward(x, weight, bias, padding=padding)

        def ranvier_training():
            forward(x, weight, bias, padding=padding)
            grad_x = backward_input(grad_output, weight, x.shape, padding=padding)
            grad_w, grad_b = backward_weight(grad_output, x, weight.shape, padding=padding)
            return grad_x, grad_w, grad_b

        op = f"conv{spatial}d float32, {name}"
        if torch is None:
            for label, fn, passes in (("forward", ranvier_forward, 1),
                                      ("forward+backward", ranvier_training, 3)):
                rows.append(Row("conv", f"{op} {label}", size, median_seconds(fn, timer), "torch",
                                None, flops=passes * flops_per_pass,
                                note="PyTorch not installed (pip install '.[bench]')"))
            continue

        torch_conv = getattr(torch.nn.functional, f"conv{spatial}d")
        x_t, w_t, b_t = (torch.from_numpy(a).requires_grad_() for a in (x, weight, bias))
        dy_t = torch.from_numpy(grad_output)

        def torch_forward():
            with torch.no_grad():
                return torch_conv(x_t, w_t, b_t, padding=padding)

        def torch_training():
            for t in (x_t, w_t, b_t):
                t.grad = None
            torch_conv(x_t, w_t, b_t, padding=padding).backward(dy_t)
            return x_t.grad, w_t.grad, b_t.grad

        # Sums of C/g*R*S products (forward), K*R*S (input grad), N*P*Q (weight grad).
        depth = math.sqrt(max(math.prod(w_shape[1:]), y.size // w_shape[0]))
        tolerance = dict(rtol=1e-4 * depth, atol=1e-4 * depth)
        note = _same(ranvier_forward(), torch_forward().numpy(), **tolerance)
        rows.append(Row("conv", f"{op} forward", size, median_seconds(ranvier_forward, timer),
                        f"torch {torch.__version__}", median_seconds(torch_forward, timer),
                        flops=flops_per_pass, note=note))
        ours, theirs = ranvier_training(), torch_training()
        note = ""
        for a, b in zip(ours, theirs):
            note = note or _same(a, b.numpy(), **tolerance)
        rows.append(Row("conv", f"{op} forward+backward", size,
                        median_seconds(ranvier_training, timer), f"torch {torch.__version__}",
                        median_seconds(torch_training, timer), flops=3 * flops_per_pass,
                        note=note))
    return rows


# --- GPU matmul ------------------------------------------------------------------------------
# Our CUDA GEMM (kernels/cuda/gemm.cu) against cuBLAS through CuPy's matmul, float32, square
# n x n. Both write into a preallocated output and are timed on the GPU with CUDA events
# (cupyx.profiler.benchmark: per-call device time, median), so that launch overhead and host
# timing do not blur the small sizes. CuPy runs cuBLAS in full float32 (no TF32) unless
# CUPY_TF32=1 is set. The targets: >= 80% of cuBLAS at 4096, >= 60% at 512.
GPU_MATMUL_SIZES = (512, 1024, 2048, 4096, 8192)
GPU_MATMUL_QUICK_SIZES = (127, 256)


def _gpu_median_seconds(fn, quick: bool) -> float:
    from cupyx.profiler import benchmark

    result = benchmark(fn, n_warmup=1 if quick else 3, n_repeat=3 if quick else 20)
    return float(np.median(result.gpu_times[0]))


def gpu_matmul(quick: bool, timer) -> list[Row]:
    del timer  # GPU time comes from CUDA events, not the host timer
    import ranvier

    if not ranvier.cuda.is_available():
        raise SectionUnavailable(f"no usable GPU ({ranvier.cuda.unavailable_reason()})")
    import cupy as cp

    from ranvier import ops

    gpu = ranvier.cuda.get_device_name()
    rng = np.random.default_rng(6)
    rows = []
    for n in (GPU_MATMUL_QUICK_SIZES if quick else GPU_MATMUL_SIZES):
        a = cp.asarray(_random(rng, n, n))
        b = cp.asarray(_random(rng, n, n))
        ours_out = cp.empty((n, n), dtype=cp.float32)
        cublas_out = cp.empty((n, n), dtype=cp.float32)
        ops.matmul(a, b, out=ours_out)
        cp.matmul(a, b, out=cublas_out)
        note = _same(cp.asnumpy(ours_out), cp.asnumpy(cublas_out), rtol=1e-4 * math.sqrt(n),
                     atol=1e-4 * math.sqrt(n))
        row = Row("gpu_matmul", "matmul float32 (CUDA)", f"{n}x{n} @ {n}x{n}",
                  _gpu_median_seconds(lambda: ops.matmul(a, b, out=ours_out), quick),
                  "cupy matmul (cuBLAS)",
                  _gpu_median_seconds(lambda: cp.matmul(a, b, out=cublas_out), quick),
                  flops=2.0 * n ** 3, note=note)
        if not row.note:
            ours_tflops = row.gflops(row.ranvier_s) / 1e3
            cublas_tflops = row.gflops(row.peer_s) / 1e3
            row.note = (f"{ours_tflops:.1f} vs {cublas_tflops:.1f} TFLOP/s: "
                        f"{row.speed_ratio:.0%} of cuBLAS on {gpu}")
        rows.append(row)
        del a, b, ours_out, cublas_out
    return rows


SECTIONS = {
    "matmul": matmul,
    "linear": linear,
    "activations": activations,
    "softmax": softmax,
    "train": training_step,
    "conv": conv,
    "gpu_matmul": gpu_matmul,
}
