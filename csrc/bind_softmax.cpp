// _C.softmax_forward / _C.softmax_backward: softmax and log_softmax along one axis, CPU or CUDA.
#include <string>

#include "array_view.h"
#include "bindings.h"
#include "ranvier/softmax.h"

namespace ranvier::binding {

namespace {

// The (outer, dim, inner) view of `shape` around `axis` (negative counts from the end). A
// 0-d array is one value, whose softmax runs over itself (axis 0 or -1, as PyTorch).
struct AxisSplit {
  int64_t outer = 1, dim = 1, inner = 1;
};

AxisSplit split_at_axis(const ArrayView& a, int64_t axis, const char* op) {
  const int64_t ndim = a.ndim();
  const int64_t extent = ndim == 0 ? 1 : ndim;
  if (axis < -extent || axis >= extent) {
    throw py::index_error(std::string(op) + ": axis " + std::to_string(axis) +
                          " is out of range for an array of shape " + a.shape_str());
  }
  AxisSplit s;
  if (ndim == 0) return s;
  const int64_t k = axis < 0 ? axis + ndim : axis;
  for (int64_t i = 0; i < k; ++i) s.outer *= a.shape[static_cast<size_t>(i)];
  s.dim = a.shape[static_cast<size_t>(k)];
  for (int64_t i = k + 1; i < ndim; ++i) s.inner *= a.shape[static_cast<size_t>(i)];
  return s;
}

// out = softmax(x) or log_softmax(x) along `axis`; out may be x itself.
void softmax_forward(py::handle x_obj, py::handle out_obj, int64_t axis, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  const ArrayView x = view_array(x_obj, op, "x");
  const ArrayView out = view_output(out_obj, op, "out");
  check_float_args(op, {x, "x"}, {{out, "out"}});
  check_same_shape(x, out, op, "x", "out");
  check_no_partial_overlap(out, x, op, "out", "x");
  const AxisSplit s = split_at_axis(x, axis, op);
  RANVIER_RUN_FLOAT_KERNEL(x, op, softmax_forward, x.ptr<T>(), out.ptr<T>(), s.outer, s.dim,
                           s.inner, log);
}

// out = the gradient with respect to x, from the forward output y and grad_output.
void softmax_backward(py::handle y_obj, py::handle dy_obj, py::handle out_obj, int64_t axis, bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  const ArrayView y = view_array(y_obj, op, "y");
  const ArrayView dy = view_array(dy_obj, op, "grad_output");
  const ArrayView out = view_output(out_obj, op, "out");
  check_float_args(op, {y, "y"}, {{dy, "grad_output"}, {out, "out"}});
  check_same_shape(y, dy, op, "y", "grad_output");
  check_same_shape(y, out, op, "y", "out");
  check_no_partial_overlap(out, y, op, "out", "y");
  check_no_partial_overlap(out, dy, op, "out", "grad_output");
  const AxisSplit s = split_at_axis(y, axis, op);
  RANVIER_RUN_FLOAT_KERNEL(y, op, softmax_backward, y.ptr<T>(), dy.ptr<T>(), out.ptr<T>(), s.outer,
                           s.dim, s.inner, log);
}

}  // namespace

void bind_softmax(py::module_& m) {
  m.def("softmax_forward", &softmax_forward, py::arg("x"), py::arg("out"), py::arg("axis"),
        py::arg("log"), "out = softmax(x) (log_softmax when log) along axis; out may be x.");
  m.def("softmax_backward", &softmax_backward, py::arg("y"), py::arg("grad_output"), py::arg("out"),
        py::arg("axis"), py::arg("log"),
        "out = gradient of softmax (log_softmax when log) from its output y and grad_output.");
}

}  // namespace ranvier::binding
