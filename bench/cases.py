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
    # GEMM GFLOP/s as a fraction of the measured FMA peak, in each row's note. The peak is
    # measured before and after the rows, and the larger kept: on a shared machine one
    # measurement can catch the other core busy (a two-thread peak of one core's worth).
    peak_before = _fma_peak_gflops(quick)
    for n in ((16, 33) if quick else (64, 128, 256, 512, 1024, 2048)):
        a, b = _random(rng, n, n), _random(rng, n, n)
        # float32 sums of n products: allow the rounding of a length-n dot product.
        note = _same(ranvier_matmul(a, b), a @ b, rtol=1e-4 * math.sqrt(n), atol=1e-4 * math.sqrt(n))
        rows.append(Row("matmul", "matmul float32", f"{n}x{n} @ {n}x{n}",
                        median_seconds(lambda: ranvier_matmul(a, b), timer), "numpy @",
                        median_seconds(lambda: a @ b, timer), flops=2.0 * n ** 3, note=note))
    if peak_before:
        import ranvier

        peak = max(peak_before, _fma_peak_gflops(quick))
        path = ranvier.cpu_capabilities()["path"]
        for row in rows:
            if row.note:
                continue
            ours, numpy = row.gflops(row.ranvier_s) / peak, row.gflops(row.peer_s) / peak
            if max(ours, numpy) > 1.0:
                row.note = (f"above the FMA peak measured, {peak:.0f} GFLOP/s ({path}): that "
                            "measurement was disturbed (a core busy with other work)")
            else:
                row.note = f"{ours:.0%} of FMA peak {peak:.0f} GFLOP/s ({path}); numpy {numpy:.0%}"
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


# --- whole training steps -------------------------------------------------------------------
# One step = forward, loss, backward, optimizer step, zero_grad, for a model built by the same
# code from ranvier.nn and torch.nn (same layer names, layouts and state-dict keys). PyTorch
# starts from ranvier's initial weights; before timing, the losses of the first steps of both
# must agree (which checks forward, backward and the update together).

def _row_without_torch(section: str, op: str, size: str, fn, timer, flops=None) -> Row:
    """A row of ranvier's time alone, for a case whose peer, PyTorch, is not installed."""
    return Row(section, op, size, median_seconds(fn, timer), "torch", None, flops=flops,
               note="PyTorch not installed (pip install '.[bench]')")


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


@dataclass(frozen=True)
class TrainingCase:
    """A model, its data and its optimizer, written once for ranvier and PyTorch.

    build(nn) -> model and optimizer(optim, params) -> optimizer take the library's module
    (ranvier.nn / torch.nn, ranvier.optim / torch.optim); inputs: the input shape with the
    batch first; classes: the number of classes of the integer targets.
    """
    name: str
    size: str
    build: object
    optimizer: object
    inputs: tuple
    classes: int


def _tiny_mlp(nn):
    return nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 2))


def _wide_mlp(nn):
    return nn.Sequential(nn.Linear(5000, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))


def _mnist_cnn(nn):
    return nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # (N, 32, 14, 14)
        nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, 64, 7, 7)
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def _digits_cnn(nn):
    """examples/digits_cnn.py's network (8x8 images) without its dropout, whose random mask
    PyTorch cannot reproduce."""
    return nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, kernel_size=3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 2 * 2, 10))


def _adam(optim, params):
    return optim.Adam(params, lr=1e-3)


def _sgd_momentum(optim, params):
    return optim.SGD(params, lr=0.01, momentum=0.9)


TINY_MLP = TrainingCase("tiny MLP, Adam", "30-64-2, batch 32", _tiny_mlp, _adam, (32, 30), 2)
WIDE_MLP = TrainingCase("MLP, Adam", "5000-256-256-2, batch 256", _wide_mlp, _adam, (256, 5000), 2)
MNIST_CNN = TrainingCase("MNIST-sized CNN, SGD momentum",
                         "conv32-pool-conv64-pool-dense128-10, 1x28x28, batch 64",
                         _mnist_cnn, _sgd_momentum, (64, 1, 28, 28), 10)
DIGITS_CNN = TrainingCase("digits CNN (examples/digits_cnn.py), Adam",
                          "3 conv+BN, 2 pools, dense 10, 1x8x8, batch 64",
                          _digits_cnn, _adam, (64, 1, 8, 8), 10)
QUICK_CNN = TrainingCase("small CNN, SGD momentum", "conv8-pool-dense10, 1x8x8, batch 4",
                         lambda nn: nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                                  nn.Flatten(), nn.Linear(8 * 4 * 4, 10)),
                         _sgd_momentum, (4, 1, 8, 8), 10)


class _TrainingPair:
    """The same case set up in ranvier and (when installed) PyTorch on one device, with step
    functions that end with the device synchronised, so that host timing sees the work."""

    def __init__(self, case: TrainingCase, device: str, seed: int):
        import ranvier

        rng = np.random.default_rng(seed)
        x = _random(rng, *case.inputs)
        y = rng.integers(0, case.classes, case.inputs[0]).astype(np.int64)
        ranvier.manual_seed(seed)
        self.model = case.build(ranvier.nn).to(device)
        self.loss_fn = ranvier.nn.CrossEntropyLoss()
        self.optimizer = case.optimizer(ranvier.optim, self.model.parameters())
        self.x, self.y = ranvier.tensor(x, device=device), ranvier.tensor(y, device=device)
        self.sync = _no_sync
        if device != "cpu":
            import cupy

            self.sync = cupy.cuda.Device().synchronize
        self.torch = _torch()
        if self.torch is None:
            return
        torch = self.torch
        self.torch_model = case.build(torch.nn)
        self.torch_model.load_state_dict({key: torch.from_numpy(np.array(value))
                                          for key, value in self.model.state_dict().items()})
        self.torch_model.to(device)
        self.torch_loss_fn = torch.nn.CrossEntropyLoss()
        self.torch_optimizer = case.optimizer(torch.optim, self.torch_model.parameters())
        self.x_torch, self.y_torch = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        self.torch_sync = torch.cuda.synchronize if device != "cpu" else _no_sync

    def step(self, x=None, y=None):
        loss = self.loss_fn(self.model(self.x if x is None else x), self.y if y is None else y)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.sync()
        return loss

    def torch_step(self):
        loss = self.torch_loss_fn(self.torch_model(self.x_torch), self.y_torch)
        loss.backward()
        self.torch_optimizer.step()
        self.torch_optimizer.zero_grad()
        self.torch_sync()
        return loss

    def compare_steps(self, steps: int = 3) -> str:
        """'' when the losses of the first `steps` steps agree, else a MISMATCH note."""
        for _ in range(steps):
            ours, theirs = float(self.step().item()), float(self.torch_step().item())
            note = _same(ours, theirs, rtol=1e-3, atol=1e-4)
            if note:
                return note
        return ""


def _no_sync():
    pass


def _training_rows(section: str, cases, device: str, timer) -> list[Row]:
    rows = []
    for seed, case in enumerate(cases):
        pair = _TrainingPair(case, device, seed)
        op = f"train step: {case.name}"
        if pair.torch is None:
            rows.append(_row_without_torch(section, op, case.size, pair.step, timer))
            continue
        note = pair.compare_steps()
        rows.append(Row(section, op, case.size, median_seconds(pair.step, timer),
                        f"torch {pair.torch.__version__}", median_seconds(pair.torch_step, timer),
                        note=note))
    return rows


def _sklearn_epoch_row(quick: bool, timer) -> Row | None:
    """An epoch of the 5000-256-256-2 MLP against scikit-learn's MLPClassifier.partial_fit
    (one pass over the data in shuffled mini-batches of 256, Adam, no L2 penalty). The two start
    from different random weights, so their results are not compared, only their speed."""
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None
    import ranvier

    samples, features, hidden = (64, 50, 16) if quick else (2048, 5000, 256)
    batch = 16 if quick else 256
    rng = np.random.default_rng(7)
    x = _random(rng, samples, features)
    y = rng.integers(0, 2, samples).astype(np.int64)
    nn = ranvier.nn
    ranvier.manual_seed(7)
    model = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, 2))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = ranvier.optim.Adam(model.parameters(), lr=1e-3)

    def ranvier_epoch():
        order = rng.permutation(samples)
        for start in range(0, samples, batch):
            rows = order[start:start + batch]
            loss = loss_fn(model(ranvier.tensor(x[rows])), ranvier.tensor(y[rows]))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    classifier = MLPClassifier(hidden_layer_sizes=(hidden, hidden), activation="relu", solver="adam",
                               alpha=0.0, batch_size=batch, learning_rate_init=1e-3, shuffle=True,
                               random_state=7)
    classifier.partial_fit(x, y, classes=np.arange(2))
    import sklearn

    return Row("train", "train epoch: MLP, Adam", f"{features}-{hidden}-{hidden}-2, {samples} samples, "
               f"batch {batch}", median_seconds(ranvier_epoch, timer), f"sklearn {sklearn.__version__} "
               "MLPClassifier.partial_fit", median_seconds(lambda: classifier.partial_fit(x, y), timer),
               note="different initial weights: speed only")


def training_steps(quick: bool, timer) -> list[Row]:
    import ranvier

    for needed in ("nn", "optim", "tensor"):
        if not hasattr(ranvier, needed):
            raise SectionUnavailable(f"ranvier.{needed} does not exist in this build")
    rows = _training_rows("train", (TINY_MLP, QUICK_CNN) if quick else (TINY_MLP, WIDE_MLP, MNIST_CNN),
                          "cpu", timer)
    sklearn_row = _sklearn_epoch_row(quick, timer)
    return rows if sklearn_row is None else [*rows, sklearn_row]


# --- convolution ----------------------------------------------------------------------------
# conv2d forward, and forward + both backward passes (input, weight and bias), against
# PyTorch's convolution on the same float32 arrays: its CPU kernels in the "conv" section,
# cuDNN in "gpu_conv" (with TF32 switched off, so that both compute in full float32).
# GFLOP/s counts 2*N*K*P*Q*C/g*R*S per pass (three passes for forward + backward).

CONV_CASES = (  # (name, x shape, weight shape, padding, groups)
    ("N32 C32 H32 K64 3x3", (32, 32, 32, 32), (64, 32, 3, 3), 1, 1),
    ("N64 C64 H16 K128 3x3", (64, 64, 16, 16), (128, 64, 3, 3), 1, 1),
    ("ResNet-like 3x3", (32, 64, 32, 32), (64, 64, 3, 3), 1, 1),
    ("depthwise 3x3", (32, 64, 32, 32), (64, 1, 3, 3), 1, 64),
    ("digits CNN layer 2", (64, 16, 8, 8), (32, 16, 3, 3), 1, 1),
    ("DNA motif conv1d", (64, 4, 200), (64, 4, 11), 5, 1),
)
CONV_QUICK_CASES = (
    ("tiny 3x3", (2, 3, 9, 9), (4, 3, 3, 3), 1, 1),
    ("tiny conv1d", (2, 4, 20), (3, 4, 5), 2, 1),
)


def _conv_rows(section: str, cases, device: str, timer) -> list[Row]:
    from ranvier import ops

    for name in ("conv2d", "conv2d_backward_input", "conv2d_backward_weight", "conv1d"):
        _ops_function(name)
    torch = _torch()
    on_gpu = device != "cpu"
    if on_gpu:
        import cupy

        to_device, to_host, sync = cupy.asarray, cupy.asnumpy, cupy.cuda.Device().synchronize
    else:
        to_device, to_host, sync = np.asarray, np.asarray, _no_sync
    rng = np.random.default_rng(5)
    rows = []
    for name, x_shape, w_shape, padding, groups in cases:
        spatial = len(x_shape) - 2
        forward, backward_input, backward_weight = (
            (ops.conv1d, ops.conv1d_backward_input, ops.conv1d_backward_weight) if spatial == 1
            else (ops.conv2d, ops.conv2d_backward_input, ops.conv2d_backward_weight))
        x_host = _random(rng, *x_shape)
        weight_host = _random(rng, *w_shape) / np.float32(math.sqrt(math.prod(w_shape[1:])))
        bias_host = _random(rng, w_shape[0])
        x, weight, bias = to_device(x_host), to_device(weight_host), to_device(bias_host)
        y = forward(x, weight, bias, padding=padding, groups=groups)
        grad_output_host = _random(rng, *y.shape)
        grad_output = to_device(grad_output_host)
        flops_per_pass = 2.0 * y.size * math.prod(w_shape[1:])
        size = f"x {x_shape}, w {w_shape}, pad {padding}" + (f", groups {groups}" if groups > 1 else "")

        def ranvier_forward():
            y = forward(x, weight, bias, padding=padding, groups=groups)
            sync()
            return y

        def ranvier_training():
            forward(x, weight, bias, padding=padding, groups=groups)
            grad_x = backward_input(grad_output, weight, x.shape, padding=padding, groups=groups)
            grad_w, grad_b = backward_weight(grad_output, x, weight.shape, padding=padding, groups=groups)
            sync()
            return grad_x, grad_w, grad_b

        op = f"conv{spatial}d float32, {name}"
        if torch is None:
            for label, fn, passes in (("forward", ranvier_forward, 1),
                                      ("forward+backward", ranvier_training, 3)):
                rows.append(_row_without_torch(section, f"{op} {label}", size, fn, timer,
                                               flops=passes * flops_per_pass))
            continue

        torch_conv = getattr(torch.nn.functional, f"conv{spatial}d")
        x_t, w_t, b_t = (torch.from_numpy(a).to(device).requires_grad_()
                         for a in (x_host, weight_host, bias_host))
        dy_t = torch.from_numpy(grad_output_host).to(device)
        torch_sync = torch.cuda.synchronize if on_gpu else _no_sync
        peer = f"torch {torch.__version__}" + (" (cuDNN)" if on_gpu else "")

        def torch_forward():
            with torch.no_grad():
                y = torch_conv(x_t, w_t, b_t, padding=padding, groups=groups)
            torch_sync()
            return y

        def torch_training():
            for t in (x_t, w_t, b_t):
                t.grad = None
            torch_conv(x_t, w_t, b_t, padding=padding, groups=groups).backward(dy_t)
            torch_sync()
            return x_t.grad, w_t.grad, b_t.grad

        # Sums of C/g*R*S products (forward), K*R*S (input grad), N*P*Q (weight grad).
        depth = math.sqrt(max(math.prod(w_shape[1:]), y.size // w_shape[0]))
        tolerance = dict(rtol=1e-4 * depth, atol=1e-4 * depth)
        note = _same(to_host(ranvier_forward()), torch_forward().cpu().numpy(), **tolerance)
        rows.append(Row(section, f"{op} forward", size, median_seconds(ranvier_forward, timer), peer,
                        median_seconds(torch_forward, timer), flops=flops_per_pass, note=note))
        ours, theirs = ranvier_training(), torch_training()
        note = ""
        for a, b in zip(ours, theirs):
            note = note or _same(to_host(a), b.cpu().numpy(), **tolerance)
        rows.append(Row(section, f"{op} forward+backward", size, median_seconds(ranvier_training, timer),
                        peer, median_seconds(torch_training, timer), flops=3 * flops_per_pass, note=note))
    return rows


def conv(quick: bool, timer) -> list[Row]:
    return _conv_rows("conv", CONV_QUICK_CASES if quick else CONV_CASES, "cpu", timer)


# --- pooling ---------------------------------------------------------------------------------
# nn.MaxPool2d(2) on the MNIST-sized CNN's two activations, forward (values and arg-max
# indices, as training needs them) and forward+backward, against PyTorch.
POOL_CASES = (  # (name, x shape, kernel size)
    ("MNIST CNN pool 1", (64, 32, 28, 28), 2),
    ("MNIST CNN pool 2", (64, 64, 14, 14), 2),
)
POOL_QUICK_CASES = (("tiny", (2, 3, 9, 7), 2),)


def pool(quick: bool, timer) -> list[Row]:
    ranvier_pool = _ops_function("max_pool2d")
    ranvier_pool_backward = _ops_function("max_pool2d_backward")
    torch = _torch()
    rng = np.random.default_rng(6)
    rows = []
    for name, x_shape, kernel in POOL_QUICK_CASES if quick else POOL_CASES:
        x = _random(rng, *x_shape)
        y, _ = ranvier_pool(x, kernel)
        grad_output = _random(rng, *y.shape)
        size = f"x {x_shape}, kernel {kernel}"

        def ranvier_forward():
            return ranvier_pool(x, kernel)[0]

        def ranvier_training():
            _, indices = ranvier_pool(x, kernel)
            return ranvier_pool_backward(grad_output, indices, x.shape, kernel)

        op = f"max_pool2d float32, {name}"
        if torch is None:
            for label, fn in (("forward", ranvier_forward), ("forward+backward", ranvier_training)):
                rows.append(_row_without_torch("pool", f"{op} {label}", size, fn, timer))
            continue
        x_t = torch.from_numpy(x).requires_grad_()
        grad_output_t = torch.from_numpy(grad_output)
        peer = f"torch {torch.__version__}"

        def torch_forward():
            with torch.no_grad():
                return torch.nn.functional.max_pool2d(x_t, kernel, return_indices=True)[0]

        def torch_training():
            x_t.grad = None
            torch.nn.functional.max_pool2d(x_t, kernel).backward(grad_output_t)
            return x_t.grad

        note = _same(ranvier_forward(), torch_forward().numpy(), rtol=0, atol=0)
        rows.append(Row("pool", f"{op} forward", size, median_seconds(ranvier_forward, timer), peer,
                        median_seconds(torch_forward, timer), note=note))
        note = _same(ranvier_training(), torch_training().numpy(), rtol=0, atol=0)
        rows.append(Row("pool", f"{op} forward+backward", size, median_seconds(ranvier_training, timer),
                        peer, median_seconds(torch_training, timer), note=note))
    return rows


def _require_gpu():
    import ranvier

    if not ranvier.cuda.is_available():
        raise SectionUnavailable(f"no usable GPU ({ranvier.cuda.unavailable_reason()})")


def _torch_on_gpu():
    """PyTorch with CUDA and TF32 off (full float32, as ranvier computes), or None."""
    torch = _torch()
    if torch is None or not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


def gpu_conv(quick: bool, timer) -> list[Row]:
    _require_gpu()
    if _torch_on_gpu() is None:
        raise SectionUnavailable("needs PyTorch with CUDA as the peer (cuDNN)")
    return _conv_rows("gpu_conv", CONV_QUICK_CASES if quick else CONV_CASES, "cuda", timer)


def gpu_training_steps(quick: bool, timer) -> list[Row]:
    _require_gpu()
    if _torch_on_gpu() is None:
        raise SectionUnavailable("needs PyTorch with CUDA as the peer")
    return _training_rows("gpu_train", (TINY_MLP, QUICK_CNN) if quick else
                          (TINY_MLP, DIGITS_CNN, MNIST_CNN, WIDE_MLP), "cuda", timer)


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
    _require_gpu()
    import cupy as cp

    import ranvier

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
    "train": training_steps,
    "conv": conv,
    "pool": pool,
    "gpu_matmul": gpu_matmul,
    "gpu_conv": gpu_conv,
    "gpu_train": gpu_training_steps,
}
