// gemm, batched matmul and the linear layer's kernels (ranvier/matmul.h, cuda namespace).
#include "bindings.h"
#include "ranvier/matmul.h"

namespace emulated {

void bind_matmul(py::module_& m) {
  namespace cuda = ranvier::cuda;
  m.def("gemm", [](bool trans_a, bool trans_b, int64_t rows, int64_t cols, int64_t depth, double alpha,
                   py::array a, int64_t lda, py::array b, int64_t ldb, double beta, py::array c, int64_t ldc) {
    dispatch_float(c, [&](auto t) {
      using T = decltype(t);
      cuda::gemm<T>(trans_a, trans_b, rows, cols, depth, T(alpha), data<T>(a, "a"), lda, data<T>(b, "b"), ldb,
                    T(beta), data<T>(c, "c"), ldc, kStream);
    });
  });
  m.def("matmul", [](py::array a, py::array b, py::array c, int64_t batch, int64_t rows, int64_t cols,
                     int64_t depth, bool trans_a, bool trans_b, int64_t stride_a, int64_t stride_b) {
    dispatch_float(c, [&](auto t) {
      using T = decltype(t);
      cuda::matmul<T>(data<T>(a, "a"), data<T>(b, "b"), data<T>(c, "c"), batch, rows, cols, depth, trans_a,
                      trans_b, stride_a, stride_b, kStream);
    });
  });
  m.def("linear_forward", [](py::array x, py::array w, py::object bias, py::array y, int64_t rows, int64_t in,
                             int64_t out) {
    dispatch_float(y, [&](auto t) {
      using T = decltype(t);
      cuda::linear_forward<T>(data<T>(x, "x"), data<T>(w, "w"), optional_data<T>(bias, "bias"), data<T>(y, "y"),
                              rows, in, out, kStream);
    });
  });
  m.def("linear_backward_input", [](py::array dy, py::array w, py::array dx, int64_t rows, int64_t in,
                                    int64_t out) {
    dispatch_float(dx, [&](auto t) {
      using T = decltype(t);
      cuda::linear_backward_input<T>(data<T>(dy, "dy"), data<T>(w, "w"), data<T>(dx, "dx"), rows, in, out,
                                     kStream);
    });
  });
  m.def("linear_backward_weight", [](py::array dy, py::array x, py::array dw, py::object dbias, int64_t rows,
                                     int64_t in, int64_t out) {
    dispatch_float(dw, [&](auto t) {
      using T = decltype(t);
      cuda::linear_backward_weight<T>(data<T>(dy, "dy"), data<T>(x, "x"), data<T>(dw, "dw"),
                                      optional_data<T>(dbias, "dbias"), rows, in, out, kStream);
    });
  });
}

}  // namespace emulated
