// _C.dropout_forward / _C.dropout_backward / _C.uniform_fill: dropout masks and uniform
// numbers from the counter-based Philox stream (kernels/include/ranvier/random.h), CPU or
// CUDA: both map element i to the same stream index, so their masks are identical.
#include <cmath>
#include <limits>

#include "array_view.h"
#include "bindings.h"
#include "ranvier/dropout.h"

namespace ranvier::binding {

namespace {

// Dropout probability of the kernel: 0 <= p < 1 (p == 1 is handled by ranvier.ops).
void check_probability(double p, const char* op) {
  if (!(p >= 0.0 && p < 1.0)) {
    fail_value(op, "p must satisfy 0 <= p < 1 here, got " + py::str(py::float_(p)).cast<std::string>());
  }
}

// Indices offset .. offset + n - 1 of the stream must not wrap around 2^64.
void check_stream_range(uint64_t offset, int64_t n, const char* op) {
  if (n > 0 && offset > std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(n - 1)) {
    fail_value(op, "offset " + std::to_string(offset) + " + " + std::to_string(n) +
                       " numbers run past the end of the random stream (2^64)");
  }
}

// out = x * mask / (1 - p), mask = (uniform(seed, offset + i) >= p); out may be x itself.
void dropout_forward(py::handle x_obj, py::handle y_obj, py::handle mask_obj, double p, uint64_t seed,
                     uint64_t offset) {
  const char* op = "dropout_forward";
  const ArrayView x = view_array(x_obj, op, "x");
  const ArrayView y = view_output(y_obj, op, "out");
  const ArrayView mask = view_output(mask_obj, op, "mask");
  check_float_args(op, {x, "x"}, {{y, "out"}}, {{mask, "mask"}});
  check_dtype(mask, DType::UInt8, op, "mask");
  check_same_shape(x, y, op, "x", "out");
  check_same_shape(x, mask, op, "x", "mask");
  check_no_partial_overlap(y, x, op, "out", "x");
  check_disjoint(mask, x, op, "mask", "x");
  check_disjoint(mask, y, op, "mask", "out");
  check_probability(p, op);
  check_stream_range(offset, x.numel(), op);
  RANVIER_RUN_FLOAT_KERNEL(x, op, dropout_forward, x.ptr<T>(), y.ptr<T>(), mask.ptr<uint8_t>(),
                           x.numel(), static_cast<T>(p), seed, offset);
}

// out = grad_output * mask / (1 - p); out may be grad_output itself.
void dropout_backward(py::handle dy_obj, py::handle mask_obj, py::handle dx_obj, double p) {
  const char* op = "dropout_backward";
  const ArrayView dy = view_array(dy_obj, op, "grad_output");
  const ArrayView mask = view_array(mask_obj, op, "mask");
  const ArrayView dx = view_output(dx_obj, op, "out");
  check_float_args(op, {dy, "grad_output"}, {{dx, "out"}}, {{mask, "mask"}});
  check_dtype(mask, DType::UInt8, op, "mask");
  check_same_shape(dy, mask, op, "grad_output", "mask");
  check_same_shape(dy, dx, op, "grad_output", "out");
  check_no_partial_overlap(dx, dy, op, "out", "grad_output");
  check_disjoint(dx, mask, op, "out", "mask");
  check_probability(p, op);
  RANVIER_RUN_FLOAT_KERNEL(dy, op, dropout_backward, dy.ptr<T>(), mask.ptr<uint8_t>(), dx.ptr<T>(),
                           dy.numel(), static_cast<T>(p));
}

// out = uniform numbers in [0, 1) at indices offset .. offset + out.size - 1 of stream seed.
void uniform_fill(py::handle out_obj, uint64_t seed, uint64_t offset) {
  const char* op = "uniform_fill";
  const ArrayView out = view_output(out_obj, op, "out");
  check_float(out, op, "out");
  require_cuda_built(out, op);
  check_stream_range(offset, out.numel(), op);
  RANVIER_RUN_FLOAT_KERNEL(out, op, uniform_fill, out.ptr<T>(), out.numel(), seed, offset);
}

}  // namespace

void bind_dropout(py::module_& m) {
  m.def("dropout_forward", &dropout_forward, py::arg("x"), py::arg("out"), py::arg("mask"), py::arg("p"),
        py::arg("seed"), py::arg("offset"),
        "out = x * mask / (1 - p) with mask[i] = uniform(seed, offset + i) >= p; 0 <= p < 1.");
  m.def("dropout_backward", &dropout_backward, py::arg("grad_output"), py::arg("mask"), py::arg("out"),
        py::arg("p"), "out = grad_output * mask / (1 - p).");
  m.def("uniform_fill", &uniform_fill, py::arg("out"), py::arg("seed"), py::arg("offset"),
        "out[i] = uniform number in [0, 1) at index offset + i of Philox stream `seed`.");
}

}  // namespace ranvier::binding
