// _C.matmul, _C.linear_forward, _C.linear_backward_input, _C.linear_backward_weight and _C.gemm
// (the BLAS-style kernel itself, with alpha and beta), each on CPU (NumPy) or CUDA (CuPy)
// arrays: every argument on one device, checked before anything else. Which CPU GEMM path runs:
// _C.cpu_gemm_path, _C.cpu_features, _C.gemm_blocking. The fused layer:
// _C.linear_activation_forward / _C.linear_activation_backward (linear + bias + activation).
#include <cmath>
#include <string>
#include <vector>

#include "array_view.h"
#include "bindings.h"
#include "host_memory_pool.h"
#include "ranvier/matmul.h"

namespace ranvier::binding {

namespace {

// out (batch, m, n) or (m, n) = op(a) @ op(b), a (batch, .., ..) or 2-D, b likewise.
// op(a) is (m, k): a is (m, k), or (k, m) when trans_a; op(b) is (k, n): b is (k, n), or
// (n, k) when trans_b. A 2-D operand is shared by every matrix of the other's batch.
void matmul(py::handle a_obj, py::handle b_obj, py::handle out_obj, bool trans_a, bool trans_b) {
  const char* op = "matmul";
  const ArrayView a = view_array(a_obj, op, "a");
  const ArrayView b = view_array(b_obj, op, "b");
  const ArrayView out = view_output(out_obj, op, "out");
  check_float_args(op, {a, "a"}, {{b, "b"}, {out, "out"}});
  if (a.ndim() != 2 && a.ndim() != 3) fail_value(op, "a must be 2-D or 3-D, got shape " + a.shape_str());
  if (b.ndim() != 2 && b.ndim() != 3) fail_value(op, "b must be 2-D or 3-D, got shape " + b.shape_str());

  const int64_t m = trans_a ? a.dim(-1) : a.dim(-2);
  const int64_t k = trans_a ? a.dim(-2) : a.dim(-1);
  const int64_t k_b = trans_b ? b.dim(-1) : b.dim(-2);
  const int64_t n = trans_b ? b.dim(-2) : b.dim(-1);
  if (k != k_b) {
    fail_value(op, "a " + a.shape_str() + (trans_a ? " (transposed)" : "") + " has " +
                       std::to_string(k) + " columns but b " + b.shape_str() +
                       (trans_b ? " (transposed)" : "") + " has " + std::to_string(k_b) + " rows");
  }
  const bool a_batched = a.ndim() == 3;
  const bool b_batched = b.ndim() == 3;
  if (a_batched && b_batched && a.shape[0] != b.shape[0]) {
    fail_value(op, "batch sizes differ: a " + a.shape_str() + " and b " + b.shape_str());
  }
  const int64_t batch = a_batched ? a.shape[0] : (b_batched ? b.shape[0] : 1);
  if (a_batched || b_batched) {
    check_shape(out, {batch, m, n}, op, "out");
  } else {
    check_shape(out, {m, n}, op, "out");
  }
  check_outputs_disjoint(op, {{out, "out"}}, {{a, "a"}, {b, "b"}});

  const int64_t stride_a = a_batched ? m * k : 0;
  const int64_t stride_b = b_batched ? k * n : 0;
  RANVIER_RUN_FLOAT_KERNEL(a, op, matmul, a.ptr<T>(), b.ptr<T>(), out.ptr<T>(), batch, m, n, k,
                           trans_a, trans_b, stride_a, stride_b);
}

// ops.matmul's fast path for its commonest call: a and b NumPy matrices (exact ndarrays,
// 2-D, C-contiguous, aligned, both float32 or both float64) whose inner dimensions agree.
// Returns op(a) @ op(b) as a new (m, n) array from the host cache, or None for any other
// input, which ops.matmul then converts, checks and reports on itself. Why: for a 64x64
// product, the Python checks, the output's allocation and the binding's views cost ~4 us
// around a ~6 us kernel, and NumPy's whole call takes ~8.5 us.
template <typename T>
bool is_plain_matrix_of(const py::array& x, const py::dtype& dtype) {
  return x.ndim() == 2 && x.dtype().is(dtype) && (x.flags() & py::array::c_style) &&
         reinterpret_cast<uintptr_t>(x.data()) % sizeof(T) == 0;
}

template <typename T>
py::object matmul_plain_matrices(const py::array& a, const py::array& b, bool trans_a,
                                 bool trans_b) {
  // NumPy's float32 and float64 dtypes are singletons; an equal but distinct (or a
  // byte-swapped) dtype object takes ops.matmul's general path.
  const py::dtype dtype = py::dtype::of<T>();
  if (!is_plain_matrix_of<T>(a, dtype) || !is_plain_matrix_of<T>(b, dtype)) return py::none();
  const int64_t m = trans_a ? a.shape(1) : a.shape(0);
  const int64_t k = trans_a ? a.shape(0) : a.shape(1);
  const int64_t k_b = trans_b ? b.shape(1) : b.shape(0);
  const int64_t n = trans_b ? b.shape(0) : b.shape(1);
  if (k != k_b) return py::none();
  py::array c = host_empty({m, n}, dtype);
  const T* a_data = static_cast<const T*>(a.data());
  const T* b_data = static_cast<const T*>(b.data());
  T* c_data = static_cast<T*>(c.mutable_data());
  {
    py::gil_scoped_release nogil;
    cpu::matmul<T>(a_data, b_data, c_data, 1, m, n, k, trans_a, trans_b, 0, 0);
  }
  return std::move(c);
}

py::object matmul_matrices(py::handle a_obj, py::handle b_obj, bool trans_a, bool trans_b) {
  if (!py::isinstance<py::array>(a_obj) || !py::isinstance<py::array>(b_obj)) return py::none();
  const auto a = py::reinterpret_borrow<py::array>(a_obj);
  const auto b = py::reinterpret_borrow<py::array>(b_obj);
  py::object c = matmul_plain_matrices<float>(a, b, trans_a, trans_b);
  return c.is_none() ? matmul_plain_matrices<double>(a, b, trans_a, trans_b) : c;
}

// The sizes of a linear layer's forward pass, checked: x (rows, in), weight (out_features,
// in), bias (out_features) when given, out (rows, out_features).
struct LinearDims {
  int64_t rows, in, out_features;
};

LinearDims linear_dims(const ArrayView& x, const ArrayView& w, const ArrayView& bias,
                       const ArrayView& y, const char* op) {
  check_ndim(x, 2, op, "x");
  check_ndim(w, 2, op, "weight");
  const int64_t rows = x.shape[0], in = x.shape[1], out_features = w.shape[0];
  if (w.shape[1] != in) {
    fail_value(op, "x " + x.shape_str() + " has " + std::to_string(in) + " features but weight " +
                       w.shape_str() + " expects " + std::to_string(w.shape[1]));
  }
  check_shape(bias, {out_features}, op, "bias");
  check_shape(y, {rows, out_features}, op, "out");
  return {rows, in, out_features};
}

// out (rows, out_features) = x (rows, in) @ w (out_features, in)^T + bias (out_features).
void linear_forward(py::handle x_obj, py::handle w_obj, py::object bias_obj,
                    py::handle out_obj) {
  const char* op = "linear_forward";
  const ArrayView x = view_array(x_obj, op, "x");
  const ArrayView w = view_array(w_obj, op, "weight");
  const ArrayView y = view_output(out_obj, op, "out");
  const ArrayView bias = view_optional(bias_obj, op, "bias");
  check_float_args(op, {x, "x"}, {{w, "weight"}, {y, "out"}, {bias, "bias"}});
  const LinearDims d = linear_dims(x, w, bias, y, op);
  check_outputs_disjoint(op, {{y, "out"}}, {{x, "x"}, {w, "weight"}, {bias, "bias"}});

  RANVIER_RUN_FLOAT_KERNEL(x, op, linear_forward, x.ptr<T>(), w.ptr<T>(), bias.ptr<T>(), y.ptr<T>(),
                           d.rows, d.in, d.out_features);
}

// out (rows, in) = grad_output (rows, out_features) @ w (out_features, in).
void linear_backward_input(py::handle dy_obj, py::handle w_obj, py::handle out_obj) {
  const char* op = "linear_backward_input";
  const ArrayView dy = view_array(dy_obj, op, "grad_output");
  const ArrayView w = view_array(w_obj, op, "weight");
  const ArrayView dx = view_output(out_obj, op, "out");
  check_float_args(op, {dy, "grad_output"}, {{w, "weight"}, {dx, "out"}});
  check_ndim(dy, 2, op, "grad_output");
  check_ndim(w, 2, op, "weight");
  const int64_t rows = dy.shape[0], out_features = dy.shape[1], in = w.shape[1];
  if (w.shape[0] != out_features) {
    fail_value(op, "grad_output " + dy.shape_str() + " has " + std::to_string(out_features) +
                       " features but weight " + w.shape_str() + " has " +
                       std::to_string(w.shape[0]) + " outputs");
  }
  check_shape(dx, {rows, in}, op, "out");
  check_outputs_disjoint(op, {{dx, "out"}}, {{dy, "grad_output"}, {w, "weight"}});

  RANVIER_RUN_FLOAT_KERNEL(dy, op, linear_backward_input, dy.ptr<T>(), w.ptr<T>(), dx.ptr<T>(),
                           rows, in, out_features);
}

// out_weight (out_features, in) = grad_output (rows, out_features)^T @ x (rows, in);
// out_bias (out_features) = column sums of grad_output, when given.
void linear_backward_weight(py::handle dy_obj, py::handle x_obj, py::handle dw_obj,
                            py::object db_obj) {
  const char* op = "linear_backward_weight";
  const ArrayView dy = view_array(dy_obj, op, "grad_output");
  const ArrayView x = view_array(x_obj, op, "x");
  const ArrayView dw = view_output(dw_obj, op, "out_weight");
  const ArrayView db = view_optional_output(db_obj, op, "out_bias");
  check_float_args(op, {dy, "grad_output"}, {{x, "x"}, {dw, "out_weight"}, {db, "out_bias"}});
  check_ndim(dy, 2, op, "grad_output");
  check_ndim(x, 2, op, "x");
  const int64_t rows = dy.shape[0], out_features = dy.shape[1], in = x.shape[1];
  if (x.shape[0] != rows) {
    fail_value(op, "grad_output " + dy.shape_str() + " has " + std::to_string(rows) +
                       " rows but x " + x.shape_str() + " has " + std::to_string(x.shape[0]));
  }
  check_shape(dw, {out_features, in}, op, "out_weight");
  check_shape(db, {out_features}, op, "out_bias");
  check_outputs_disjoint(op, {{db, "out_bias"}, {dw, "out_weight"}}, {{dy, "grad_output"}, {x, "x"}});

  RANVIER_RUN_FLOAT_KERNEL(dy, op, linear_backward_weight, dy.ptr<T>(), x.ptr<T>(), dw.ptr<T>(),
                           db.ptr<T>(), rows, in, out_features);
}

// c (m, n) = alpha * op(a) @ op(b) + beta * c, in place; a (m, k) or (k, m) when trans_a,
// b (k, n) or (n, k) when trans_b. beta == 0 overwrites c without reading it.
void gemm(py::handle a_obj, py::handle b_obj, py::handle c_obj, double alpha, double beta,
          bool trans_a, bool trans_b) {
  const char* op = "gemm";
  const ArrayView a = view_array(a_obj, op, "a");
  const ArrayView b = view_array(b_obj, op, "b");
  const ArrayView c = view_output(c_obj, op, "c");
  check_float_args(op, {a, "a"}, {{b, "b"}, {c, "c"}});
  check_ndim(a, 2, op, "a");
  check_ndim(b, 2, op, "b");
  check_ndim(c, 2, op, "c");
  if (!std::isfinite(alpha)) fail_value(op, "alpha must be finite, got " + std::to_string(alpha));
  if (!std::isfinite(beta)) fail_value(op, "beta must be finite, got " + std::to_string(beta));
  const int64_t m = trans_a ? a.shape[1] : a.shape[0];
  const int64_t k = trans_a ? a.shape[0] : a.shape[1];
  const int64_t k_b = trans_b ? b.shape[1] : b.shape[0];
  const int64_t n = trans_b ? b.shape[0] : b.shape[1];
  if (k != k_b) {
    fail_value(op, "a " + a.shape_str() + (trans_a ? " (transposed)" : "") + " has " +
                       std::to_string(k) + " columns but b " + b.shape_str() +
                       (trans_b ? " (transposed)" : "") + " has " + std::to_string(k_b) + " rows");
  }
  check_shape(c, {m, n}, op, "c");
  check_outputs_disjoint(op, {{c, "c"}}, {{a, "a"}, {b, "b"}});
  RANVIER_RUN_FLOAT_KERNEL(a, op, gemm, trans_a, trans_b, m, n, k, static_cast<T>(alpha),
                           a.ptr<T>(), a.shape[1], b.ptr<T>(), b.shape[1], static_cast<T>(beta),
                           c.ptr<T>(), n);
}

// out (rows, out_features) = f(x (rows, in) @ w (out_features, in)^T + bias (out_features));
// pre receives the pre-activation when it is not None.
void linear_activation_forward(int code, py::handle x_obj, py::handle w_obj, py::object bias_obj,
                               py::object pre_obj, py::handle out_obj, double alpha) {
  const char* op = "linear_activation_forward";
  const Activation act = parse_activation(code, op);
  const ArrayView x = view_array(x_obj, op, "x");
  const ArrayView w = view_array(w_obj, op, "weight");
  const ArrayView y = view_output(out_obj, op, "out");
  const ArrayView bias = view_optional(bias_obj, op, "bias");
  const ArrayView pre = view_optional_output(pre_obj, op, "pre");
  check_float_args(op, {x, "x"}, {{w, "weight"}, {y, "out"}, {bias, "bias"}, {pre, "pre"}});
  const LinearDims d = linear_dims(x, w, bias, y, op);
  check_shape(pre, {d.rows, d.out_features}, op, "pre");
  check_outputs_disjoint(op, {{pre, "pre"}, {y, "out"}}, {{x, "x"}, {w, "weight"}, {bias, "bias"}});

  RANVIER_RUN_FLOAT_KERNEL(x, op, linear_activation_forward, act, static_cast<T>(alpha), x.ptr<T>(),
                           w.ptr<T>(), bias.ptr<T>(), pre.ptr<T>(), y.ptr<T>(), d.rows, d.in,
                           d.out_features);
}

// From grad_output (rows, out_features) of the activated output and `saved` (rows,
// out_features; y or the pre-activation, as linear_activation_backward_uses_output says):
// grad_pre (rows, out_features) = f'(.) * grad_output, then out_x (rows, in) = grad_pre @ w,
// out_weight (out_features, in) = grad_pre^T @ x, out_bias (out_features) = column sums of
// grad_pre. out_x, out_weight and out_bias may each be None (not computed).
void linear_activation_backward(int code, py::handle saved_obj, py::handle dy_obj,
                                py::handle x_obj, py::handle w_obj, py::handle dz_obj,
                                py::object dx_obj, py::object dw_obj, py::object db_obj,
                                double alpha) {
  const char* op = "linear_activation_backward";
  const Activation act = parse_activation(code, op);
  const ArrayView saved = view_array(saved_obj, op, "saved");
  const ArrayView dy = view_array(dy_obj, op, "grad_output");
  const ArrayView x = view_array(x_obj, op, "x");
  const ArrayView w = view_array(w_obj, op, "weight");
  const ArrayView dz = view_output(dz_obj, op, "grad_pre");
  const ArrayView dx = view_optional_output(dx_obj, op, "out_x");
  const ArrayView dw = view_optional_output(dw_obj, op, "out_weight");
  const ArrayView db = view_optional_output(db_obj, op, "out_bias");
  check_float_args(op, {dy, "grad_output"},
                   {{saved, "saved"}, {x, "x"}, {w, "weight"}, {dz, "grad_pre"}, {dx, "out_x"},
                    {dw, "out_weight"}, {db, "out_bias"}});
  check_ndim(dy, 2, op, "grad_output");
  check_ndim(x, 2, op, "x");
  check_ndim(w, 2, op, "weight");
  const int64_t rows = dy.shape[0], out_features = dy.shape[1], in = x.shape[1];
  check_shape(saved, {rows, out_features}, op, "saved");
  check_shape(x, {rows, in}, op, "x");
  check_shape(w, {out_features, in}, op, "weight");
  check_shape(dz, {rows, out_features}, op, "grad_pre");
  check_shape(dx, {rows, in}, op, "out_x");
  check_shape(dw, {out_features, in}, op, "out_weight");
  check_shape(db, {out_features}, op, "out_bias");
  // Every output is written while inputs (and grad_pre, for the GEMMs) are still read.
  check_outputs_disjoint(op, {{dz, "grad_pre"}, {dx, "out_x"}, {dw, "out_weight"}, {db, "out_bias"}},
                         {{saved, "saved"}, {dy, "grad_output"}, {x, "x"}, {w, "weight"}});

  RANVIER_RUN_FLOAT_KERNEL(dy, op, linear_activation_backward, act, static_cast<T>(alpha),
                           saved.ptr<T>(), dy.ptr<T>(), x.ptr<T>(), w.ptr<T>(), dz.ptr<T>(),
                           dx.ptr<T>(), dw.ptr<T>(), db.ptr<T>(), rows, in, out_features);
}

py::dict cpu_features() {
  const cpu::CpuFeatures f = cpu::cpu_features();
  py::dict d;
  d["avx2"] = f.avx2;
  d["fma"] = f.fma;
  d["avx512f"] = f.avx512f;
  return d;
}

py::dict gemm_blocking(const std::string& dtype) {
  cpu::GemmBlocking b;
  if (dtype == "float32") {
    b = cpu::gemm_blocking<float>();
  } else if (dtype == "float64") {
    b = cpu::gemm_blocking<double>();
  } else {
    fail_value("gemm_blocking", "dtype must be 'float32' or 'float64', got '" + dtype + "'");
  }
  py::dict d;
  d["mr"] = b.mr;
  d["nr"] = b.nr;
  d["mc"] = b.mc;
  d["kc"] = b.kc;
  d["nc"] = b.nc;
  return d;
}

py::dict cache_sizes() {
  const cpu::CacheSizes s = cpu::cache_sizes();
  py::dict d;
  d["l1d"] = s.l1d;
  d["l2"] = s.l2;
  d["l3"] = s.l3;
  return d;
}

}  // namespace

void bind_matmul(py::module_& m) {
  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("trans_a") = false,
        py::arg("trans_b") = false,
        "out = op(a) @ op(b) for 2-D or 3-D (batched) contiguous arrays; a 2-D operand is "
        "broadcast over the other's batch. out must not share memory with a or b.");
  m.def("matmul_matrices", &matmul_matrices, py::arg("a"), py::arg("b"),
        py::arg("trans_a") = false, py::arg("trans_b") = false,
        "op(a) @ op(b) as a new array when a and b are C-contiguous 2-D NumPy arrays of one "
        "float dtype whose inner dimensions agree; None otherwise (ops.matmul's fast path).");
  m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("out"), "out (rows, out) = x (rows, in) @ weight (out, in)^T + bias (out) or None.");
  m.def("linear_backward_input", &linear_backward_input, py::arg("grad_output"), py::arg("weight"),
        py::arg("out"), "out (rows, in) = grad_output (rows, out) @ weight (out, in).");
  m.def("linear_backward_weight", &linear_backward_weight, py::arg("grad_output"), py::arg("x"),
        py::arg("out_weight"), py::arg("out_bias"),
        "out_weight (out, in) = grad_output^T @ x; out_bias (out) = column sums of grad_output "
        "(skipped when None).");
  m.def("linear_activation_forward", &linear_activation_forward, py::arg("activation"),
        py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("pre"), py::arg("out"),
        py::arg("alpha") = 0.0,
        "out (rows, out) = f(x (rows, in) @ weight (out, in)^T + bias (out) or None), the bias "
        "and activation applied in one pass after the GEMM; pre (rows, out) receives the "
        "pre-activation unless None.");
  m.def("linear_activation_backward", &linear_activation_backward, py::arg("activation"),
        py::arg("saved"), py::arg("grad_output"), py::arg("x"), py::arg("weight"),
        py::arg("grad_pre"), py::arg("out_x"), py::arg("out_weight"), py::arg("out_bias"),
        py::arg("alpha") = 0.0,
        "grad_pre = f'(saved) * grad_output (saved: the output for ReLU, Sigmoid, Tanh, else "
        "the pre-activation), with out_bias = its column sums in the same pass; then out_x = "
        "grad_pre @ weight and out_weight = grad_pre^T @ x. Outputs given as None are skipped.");
  m.def("linear_activation_backward_uses_output",
        [](int code) {
          return linear_activation_backward_uses_output(
              parse_activation(code, "linear_activation_backward_uses_output"));
        },
        py::arg("activation"),
        "Whether the fused backward takes the output (True) or the pre-activation (False).");
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("alpha") = 1.0,
        py::arg("beta") = 0.0, py::arg("trans_a") = false, py::arg("trans_b") = false,
        "c = alpha * op(a) @ op(b) + beta * c in place (2-D, contiguous, one float dtype); "
        "beta == 0 overwrites c without reading it.");
  m.def("cpu_gemm_path", &cpu::gemm_path,
        "The GEMM micro-kernel path in use: 'avx512', 'avx2' or 'portable' (chosen at the first "
        "GEMM from the CPU's features, or RANVIER_CPU_PATH).");
  m.def("cpu_gemm_path_requested", &cpu::gemm_path_requested,
        "RANVIER_CPU_PATH as read at the first GEMM ('' when unset).");
  m.def("cpu_features", &cpu_features, "{'avx2', 'fma', 'avx512f'}: what the CPU and OS support.");
  m.def("gemm_blocking", &gemm_blocking, py::arg("dtype"),
        "GEMM micro-tile (mr, nr) and cache blocks (mc, kc, nc) for 'float32' or 'float64'.");
  m.def("cpu_fma_peak_gflops", &cpu::fma_peak_gflops, py::arg("threads") = 1,
        py::arg("iterations") = 20000000,
        "Measured float32 FMA peak (GFLOP/s) with the GEMM path's instruction set, for "
        "benchmarks.");
  m.def("cpu_cache_sizes", &cache_sizes, "{'l1d', 'l2', 'l3'} in bytes as reported (0: unknown).");
}

}  // namespace ranvier::binding
