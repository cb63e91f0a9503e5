"""Vector-math cases for tests/test_vector_math.py, shared by the test and the subprocess that
runs them on one forced SIMD path (see tests/simd_paths.py).

The subprocess computes, on its path: each vector function (_C.cpu_vector_math) over a wide
grid of inputs, on prefixes of every length up to a few registers and in place (the tails),
the row maximum (_C.cpu_vector_max) on such lengths with NaN and -inf in various places,
and the activations, softmax and losses built on them, forward and backward; it saves the
outputs.
The test rebuilds the same inputs from the same seeds and compares with float64 references.

    python tests/vector_math_path_cases.py OUTPUT.npz      # the subprocess side
"""

import sys

import numpy as np

FUNCTIONS = ("exp", "sigmoid", "tanh", "erf", "log", "log1p")
DTYPES = ("float32", "float64")

# Where each function's interesting range ends (past overflow / saturation / the point where
# the result rounds to its limit), per dtype; for log and log1p nearly the largest finite
# value (linspace's end - start must not overflow).
_RANGE_END = {
    ("exp", "float32"): 110.0, ("exp", "float64"): 760.0,
    ("sigmoid", "float32"): 120.0, ("sigmoid", "float64"): 760.0,
    ("tanh", "float32"): 12.0, ("tanh", "float64"): 25.0,
    ("erf", "float32"): 5.0, ("erf", "float64"): 7.0,
    ("log", "float32"): 3e38, ("log", "float64"): 8e307,
    ("log1p", "float32"): 3e38, ("log1p", "float64"): 8e307,
}


def special_values(dtype):
    """NaN, the infinities, signed zeros, the smallest and largest magnitudes."""
    finfo = np.finfo(dtype)
    values = [np.nan, np.inf, -np.inf, 0.0, -0.0, finfo.smallest_subnormal,
              -finfo.smallest_subnormal, finfo.tiny, -finfo.tiny, finfo.max, -finfo.max]
    return np.array(values, dtype=dtype)


def grid(function, dtype):
    """The inputs for `function` in `dtype`: a dense linspace over the whole range (overflow,
    underflow through the subnormals, saturation), a denser one over [-1.5, 1.5] (the branch
    switch points of tanh and erf; log near 1, log1p near 0 and -1), magnitudes of both signs
    from the smallest subnormal up, random values, and the special values."""
    end = _RANGE_END[(function, dtype)]
    finfo = np.finfo(dtype)
    magnitudes = np.geomspace(float(finfo.smallest_subnormal), end, 20001)
    rng = np.random.default_rng(7)
    parts = [np.linspace(-end, end, 200_001), np.linspace(-1.5, 1.5, 60_001), magnitudes,
             -magnitudes, rng.standard_normal(20_001) * (end / 4),
             -np.geomspace(1e-30, 1, 20001) + 1]  # log1p down to -1, log near 1
    return np.concatenate([p.astype(dtype) for p in parts] + [special_values(dtype)])


# Prefix lengths: 0, every length through several AVX-512 registers of floats (16 lanes),
# and around the activations' 256-element blocks.
PREFIX_LENGTHS = tuple(range(0, 50)) + (255, 256, 257, 513)


def prefix_input(dtype):
    return np.random.default_rng(11).standard_normal(600).astype(dtype) * 4


def max_inputs(dtype, n):
    """Arrays of length n for the max: random; NaN last, in the middle, first; all -inf; the
    largest value last (in the tail after whole registers)."""
    x = prefix_input(dtype)[:n]
    variants = [x.copy() for _ in range(6)]
    variants[1][n - 1] = np.nan
    variants[2][n // 2] = np.nan
    variants[3][0] = np.nan
    variants[4][:] = -np.inf
    variants[5][n - 1] = 100
    return variants


# (activation name, shape): sizes 1, odd, prime, a multiple of 256 plus one.
ACTIVATIONS = ("sigmoid", "tanh", "gelu", "gelu_tanh")
ACTIVATION_SHAPES = [(1,), (7,), (31,), (257,), (3, 173)]


def activation_inputs(dtype, shape, index):
    rng = np.random.default_rng(100 + index)
    x = rng.standard_normal(shape) * 3
    x.flat[0] = -9.5  # deep in the tails, where the GELUs' 1 + erf and 1 + tanh cancel
    return x.astype(dtype), rng.standard_normal(shape).astype(dtype)


# (shape, axis, backward too): rows (inner == 1) and lines with inner > 1; dims past one
# 256-element block (forward only: the reference gradient is quadratic in dim).
SOFTMAX_CASES = [((1, 1), -1, True), ((4, 37), -1, True), ((2, 3, 5), 1, True),
                 ((3, 700), -1, False), ((2, 9, 300), 1, False), ((2, 300, 3), 1, False)]


def softmax_inputs(dtype, index):
    shape = SOFTMAX_CASES[index][0]
    rng = np.random.default_rng(200 + index)
    return (rng.standard_normal(shape) * 4).astype(dtype), rng.standard_normal(shape).astype(dtype)


# The losses with exp/log on the vector math: (name, reduction), inputs from loss_inputs.
LOSS_CASES = [("bce", "none"), ("bce", "mean"), ("bce_with_logits", "none"),
              ("bce_with_logits", "sum"), ("cross_entropy", "none"), ("cross_entropy", "mean")]


def loss_inputs(dtype, index):
    """(inputs, target, pos_weight or None, grad_output) of LOSS_CASES[index]: probabilities
    including exact 0 and 1 (the -100 log floor); logits up to +-60 with a pos_weight per
    class; cross-entropy rows past one 256-element block."""
    name, reduction = LOSS_CASES[index]
    rng = np.random.default_rng(300 + index)
    pos_weight = None
    if name == "bce":
        x = rng.uniform(0, 1, 601)
        x[:4] = [0.0, 1.0, 1e-30, 1 - 1e-12]
        target = rng.uniform(0, 1, x.shape)
    elif name == "bce_with_logits":
        x = rng.standard_normal((7, 61)) * 12
        x[0, :4] = [60.0, -60.0, 0.0, 1e-8]
        target = (rng.uniform(0, 1, x.shape) < 0.5).astype(float)
        pos_weight = rng.uniform(0.5, 3.0, 61)
    else:
        x = rng.standard_normal((5, 300)) * 4
        target = rng.integers(0, 300, 5)
    g_shape = (target.shape if name == "cross_entropy" else x.shape) if reduction == "none" else ()
    g = rng.uniform(0.5, 2.0, g_shape)
    cast = (lambda a: None if a is None else a.astype(dtype))
    return (x.astype(dtype), target if name == "cross_entropy" else target.astype(dtype),
            cast(pos_weight), np.asarray(g, dtype=dtype))


def run_all(output_path):
    from ranvier import _C, ops

    def apply(function, x, out=None):
        out = np.empty_like(x) if out is None else out
        _C.cpu_vector_math(function, x, out)
        return out

    outputs = {}
    for function in FUNCTIONS:
        for dtype in DTYPES:
            outputs[f"grid_{function}_{dtype}"] = apply(function, grid(function, dtype))
            x = prefix_input(dtype)
            for n in PREFIX_LENGTHS:
                outputs[f"prefix_{function}_{dtype}_{n}"] = apply(function, x[:n].copy())
            if function == "exp":  # the max, once per dtype
                for n in PREFIX_LENGTHS[1:]:
                    outputs[f"max_{dtype}_{n}"] = np.array(
                        [_C.cpu_vector_max(v) for v in max_inputs(dtype, n)])
            in_place = x.copy()
            apply(function, in_place, in_place)
            outputs[f"in_place_{function}_{dtype}"] = in_place
    forward = {"sigmoid": ops.sigmoid, "tanh": ops.tanh, "gelu": ops.gelu,
               "gelu_tanh": lambda v: ops.gelu(v, approximate="tanh")}
    backward = {"sigmoid": lambda x, y, g: ops.sigmoid_backward(y, g),
                "tanh": lambda x, y, g: ops.tanh_backward(y, g),
                "gelu": lambda x, y, g: ops.gelu_backward(x, g),
                "gelu_tanh": lambda x, y, g: ops.gelu_backward(x, g, approximate="tanh")}
    for dtype in DTYPES:
        for name in ACTIVATIONS:
            for index, shape in enumerate(ACTIVATION_SHAPES):
                x, g = activation_inputs(dtype, shape, index)
                y = forward[name](x)
                outputs[f"act_{name}_{dtype}_{index}"] = y
                outputs[f"act_grad_{name}_{dtype}_{index}"] = backward[name](x, y, g)
        for index, (shape, axis, with_backward) in enumerate(SOFTMAX_CASES):
            x, g = softmax_inputs(dtype, index)
            for log, f, f_backward in ((False, ops.softmax, ops.softmax_backward),
                                       (True, ops.log_softmax, ops.log_softmax_backward)):
                y = f(x, axis=axis)
                outputs[f"softmax_{int(log)}_{dtype}_{index}"] = y
                if with_backward:
                    outputs[f"softmax_grad_{int(log)}_{dtype}_{index}"] = f_backward(y, g, axis=axis)
        for index, (name, reduction) in enumerate(LOSS_CASES):
            x, target, pos_weight, g = loss_inputs(dtype, index)
            if name == "bce":
                loss = ops.binary_cross_entropy(x, target, reduction=reduction)
                grad = ops.binary_cross_entropy_backward(x, target, g, reduction=reduction)
            elif name == "bce_with_logits":
                loss = ops.binary_cross_entropy_with_logits(x, target, pos_weight=pos_weight,
                                                            reduction=reduction)
                grad = ops.binary_cross_entropy_with_logits_backward(
                    x, target, g, pos_weight=pos_weight, reduction=reduction)
            else:
                loss = ops.cross_entropy(x, target, reduction=reduction)
                grad = ops.cross_entropy_backward(x, target, g, reduction=reduction)
            outputs[f"loss_{dtype}_{index}"] = loss
            outputs[f"loss_grad_{dtype}_{index}"] = grad
    np.savez(output_path, **outputs)
    print(f"path={_C.cpu_simd_path()}")


if __name__ == "__main__":
    run_all(sys.argv[1])
