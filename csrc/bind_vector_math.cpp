// _C.cpu_vector_math, _C.cpu_vector_max: the CPU vector math (ranvier/vector_math.h) on one array, for tests
// and benchmarks; the kernels call it directly.
#include <string>

#include "array_view.h"
#include "bindings.h"
#include "ranvier/simd_path.h"
#include "ranvier/vector_math.h"

namespace ranvier::binding {

namespace {

// out = f(x) elementwise on one thread; f is 'exp', 'sigmoid', 'tanh', 'erf', 'log' or 'log1p'.
void cpu_vector_math(const std::string& function, py::handle x_obj, py::handle out_obj) {
  const char* op = "cpu_vector_math";
  const ArrayView x = view_array(x_obj, op, "x");
  const ArrayView out = view_output(out_obj, op, "out");
  check_float(x, op, "x");
  check_same_dtype(x, out, op, "x", "out");
  check_same_shape(x, out, op, "x", "out");
  require_cpu(x, op, "x");
  require_cpu(out, op, "out");
  check_no_partial_overlap(out, x, op, "out", "x");
  dispatch_float(x.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    void (*kernel)(const T*, T*, int64_t) = nullptr;
    if (function == "exp") kernel = cpu::vector_exp<T>;
    if (function == "sigmoid") kernel = cpu::vector_sigmoid<T>;
    if (function == "tanh") kernel = cpu::vector_tanh<T>;
    if (function == "erf") kernel = cpu::vector_erf<T>;
    if (function == "log") kernel = cpu::vector_log<T>;
    if (function == "log1p") kernel = cpu::vector_log1p<T>;
    if (kernel == nullptr) {
      fail_value(op, "function must be 'exp', 'sigmoid', 'tanh', 'erf', 'log' or 'log1p', got '" +
                         function + "'");
    }
    py::gil_scoped_release nogil;
    kernel(x.ptr<T>(), out.ptr<T>(), x.numel());
  });
}

// The largest element of x (NaN if any is NaN), with the vector math's max.
double cpu_vector_max(py::handle x_obj) {
  const char* op = "cpu_vector_max";
  const ArrayView x = view_array(x_obj, op, "x");
  check_float(x, op, "x");
  require_cpu(x, op, "x");
  if (x.numel() == 0) fail_value(op, "x is empty: it has no largest element");
  return dispatch_float(x.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    py::gil_scoped_release nogil;
    return static_cast<double>(cpu::vector_max<T>(x.ptr<T>(), x.numel()));
  });
}

}  // namespace

void bind_vector_math(py::module_& m) {
  m.def("cpu_vector_math", &cpu_vector_math, py::arg("function"), py::arg("x"), py::arg("out"),
        "out = f(x) elementwise with the CPU vector math on the chosen SIMD path (one thread); "
        "f is 'exp', 'sigmoid', 'tanh', 'erf', 'log' or 'log1p'. out may be x itself.");
  m.def("cpu_vector_max", &cpu_vector_max, py::arg("x"),
        "The largest element of x (NaN if any is NaN) with the CPU vector math, as a float.");
  m.def("cpu_simd_path", [] { return cpu::simd_path_name(cpu::simd_path()); },
        "The SIMD path of the CPU kernels (GEMM and vector math): 'avx512', 'avx2' or "
        "'portable' (RANVIER_CPU_PATH or the best the CPU has).");
}

}  // namespace ranvier::binding
