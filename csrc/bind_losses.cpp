// _C.*_loss_forward / _C.*_loss_backward: mse, binary cross-entropy (on probabilities and on
// logits) and cross-entropy, each with reduction 'none', 'mean' or 'sum' (CPU or CUDA).
//
// Shapes the bindings accept (n = the number of elements of the first argument):
//   forward:  out has the input's shape for 'none', shape () otherwise.
//   backward: grad_output has the input's shape for 'none', shape () otherwise; out has the
//             input's shape.
//   cross-entropy: logits (rows, classes), target int64 with `rows` elements (any shape; the
//             shape only serves the error messages), 'none' output of target's shape.
// Device arrays: every argument must be on the input's device. The value checks (targets in
// range, probabilities in [0, 1]) run on the device for CUDA arrays: a kernel finds the first
// offending index and the binding waits for it (one synchronisation per call, the price of
// raising IndexError/ValueError before the loss kernel could index out of bounds).
#include <sstream>
#include <string>
#include <vector>

#include "array_view.h"
#include "bindings.h"
#include "ranvier/losses.h"

namespace ranvier::binding {

namespace {

// The index of flat element `flat` in an array of `shape`, written as NumPy indexes: "[1, 2]".
std::string index_str(const std::vector<int64_t>& shape, int64_t flat) {
  if (shape.empty()) return "[()]";
  std::vector<int64_t> index(shape.size());
  for (size_t k = shape.size(); k-- > 0;) {
    index[k] = shape[k] > 0 ? flat % shape[k] : 0;
    flat = shape[k] > 0 ? flat / shape[k] : 0;
  }
  std::ostringstream s;
  s << "[";
  for (size_t k = 0; k < index.size(); ++k) s << (k ? ", " : "") << index[k];
  s << "]";
  return s.str();
}

std::string value_str(double v) {
  std::ostringstream s;
  s.precision(9);
  s << v;
  return s.str();
}

const std::vector<int64_t> kScalarShape{};

// The shape the forward output must have, and grad_output in backward.
const std::vector<int64_t>& reduced_shape(const ArrayView& input, Reduction reduction) {
  return reduction == Reduction::None ? input.shape : kScalarShape;
}

// The inputs shared by the elementwise losses: input (pred/prob/logits), a target of the
// same shape and dtype, and an optional per-element weight of that shape (absent when None).
struct ElementwiseInputs {
  ArrayView input, target, weight;
};

ElementwiseInputs view_elementwise(const char* op, const char* input_name, py::handle input_obj,
                                   py::handle target_obj, py::handle weight_obj) {
  ElementwiseInputs v;
  v.input = view_array(input_obj, op, input_name);
  v.target = view_array(target_obj, op, "target");
  check_float_args(op, {v.input, input_name}, {{v.target, "target"}});
  check_same_shape(v.input, v.target, op, input_name, "target");
  v.weight = view_optional(weight_obj, op, "weight");
  check_like(op, {v.input, input_name}, {{v.weight, "weight"}});
  check_shape(v.weight, v.input.shape, op, "weight");
  return v;
}

// out of forward: the per-element losses or one value.
ArrayView view_forward_out(const ElementwiseInputs& in, py::handle out_obj, Reduction reduction,
                           const char* op, const char* input_name) {
  ArrayView out = view_output(out_obj, op, "out");
  check_like(op, {in.input, input_name}, {{out, "out"}});
  check_shape(out, reduced_shape(in.input, reduction), op, "out");
  // Element i of out is written after element i of every input is read, so out may be an
  // input itself but must not overlap one partially.
  check_no_partial_overlap(out, in.input, op, "out", input_name);
  check_no_partial_overlap(out, in.target, op, "out", "target");
  check_no_partial_overlap(out, in.weight, op, "out", "weight");
  return out;
}

// grad_output and out of backward.
struct BackwardArrays {
  ArrayView grad_output, out;
};

BackwardArrays view_backward(const ElementwiseInputs& in, py::handle dout_obj, py::handle out_obj,
                             Reduction reduction, const char* op, const char* input_name) {
  BackwardArrays b;
  b.grad_output = view_array(dout_obj, op, "grad_output");
  b.out = view_output(out_obj, op, "out");
  check_like(op, {in.input, input_name}, {{b.grad_output, "grad_output"}, {b.out, "out"}});
  if (reduction != Reduction::None && b.grad_output.ndim() != 0) {
    fail_value(op, "grad_output must be a scalar (shape ()) for a reduced loss, got shape " +
                       b.grad_output.shape_str());
  }
  check_shape(b.grad_output, reduced_shape(in.input, reduction), op, "grad_output");
  check_shape(b.out, in.input.shape, op, "out");
  check_no_partial_overlap(b.out, in.input, op, "out", input_name);
  check_no_partial_overlap(b.out, in.target, op, "out", "target");
  check_no_partial_overlap(b.out, b.grad_output, op, "out", "grad_output");
  check_no_partial_overlap(b.out, in.weight, op, "out", "weight");
  return b;
}

// ---------------------------------------------------------------------------------------
// mse

void mse_loss_forward(py::handle pred_obj, py::handle target_obj, py::handle out_obj,
                      const std::string& reduction_name) {
  const char* op = "mse_loss";
  const Reduction reduction = parse_reduction(reduction_name, op);
  const ElementwiseInputs in = view_elementwise(op, "pred", pred_obj, target_obj, py::none());
  const ArrayView out = view_forward_out(in, out_obj, reduction, op, "pred");
  RANVIER_RUN_FLOAT_KERNEL(in.input, op, mse_loss_forward, in.input.ptr<T>(), in.target.ptr<T>(),
                           out.ptr<T>(), in.input.numel(), reduction);
}

void mse_loss_backward(py::handle pred_obj, py::handle target_obj, py::handle dout_obj,
                       py::handle out_obj, const std::string& reduction_name) {
  const char* op = "mse_loss_backward";
  const Reduction reduction = parse_reduction(reduction_name, op);
  const ElementwiseInputs in = view_elementwise(op, "pred", pred_obj, target_obj, py::none());
  const BackwardArrays b = view_backward(in, dout_obj, out_obj, reduction, op, "pred");
  RANVIER_RUN_FLOAT_KERNEL(in.input, op, mse_loss_backward, in.input.ptr<T>(), in.target.ptr<T>(),
                           b.grad_output.ptr<T>(), b.out.ptr<T>(), in.input.numel(), reduction);
}

// ---------------------------------------------------------------------------------------
// binary cross-entropy on probabilities

// Probabilities must lie in [0, 1] (NaN does not), as PyTorch requires.
void check_probabilities(const ArrayView& prob, const char* op) {
  int64_t bad = -1;
  double bad_value = 0;
  dispatch_float(prob.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    const T* p = prob.ptr<T>();
    const int64_t n = prob.numel();
    if (prob.device == Device::CUDA) {
#ifdef RANVIER_WITH_CUDA
      const StreamHandle stream = current_cuda_stream();
      py::gil_scoped_release nogil;
      bad = cuda::first_invalid_probability<T>(p, n, &bad_value, stream);
#endif
      return;
    }
    py::gil_scoped_release nogil;
    for (int64_t i = 0; i < n; ++i) {
      if (!(p[i] >= T(0) && p[i] <= T(1))) {
        bad = i;
        bad_value = static_cast<double>(p[i]);
        break;
      }
    }
  });
  if (bad >= 0) {
    fail_value(op, "prob must hold probabilities in [0, 1], but prob" + index_str(prob.shape, bad) +
                       " = " + value_str(bad_value) + " (pass logits to binary_cross_entropy_with_logits)");
  }
}

void bce_loss_forward(py::handle prob_obj, py::handle target_obj, py::handle weight_obj,
                      py::handle out_obj, const std::string& reduction_name) {
  const char* op = "binary_cross_entropy";
  const Reduction reduction = parse_reduction(reduction_name, op);
  const ElementwiseInputs in = view_elementwise(op, "prob", prob_obj, target_obj, weight_obj);
  const ArrayView out = view_forward_out(in, out_obj, reduction, op, "prob");
  check_probabilities(in.input, op);
  RANVIER_RUN_FLOAT_KERNEL(in.input, op, bce_loss_forward, in.input.ptr<T>(), in.target.ptr<T>(),
                           in.weight.ptr<T>(), out.ptr<T>(), in.input.numel(), reduction);
}

void bce_loss_backward(py::handle prob_obj, py::handle target_obj, py::handle weight_obj,
                       py::handle dout_obj, py::handle out_obj, const std::string& reduction_name) {
  const char* op = "binary_cross_entropy_backward";
  const Reduction reduction = parse_reduction(reduction_name, op);
  const ElementwiseInputs in = view_elementwise(op, "prob", prob_obj, target_obj, weight_obj);
  const BackwardArrays b = view_backward(in, dout_obj, out_obj, reduction, op, "prob");
  check_probabilities(in.input, op);
  RANVIER_RUN_FLOAT_KERNEL(in.input, op, bce_loss_backward, in.input.ptr<T>(), in.target.ptr<T>(),
                           in.weight.ptr<T>(), b.grad_output.ptr<T>(), b.out.ptr<T>(),
                           in.input.numel(), reduction);
}

// ---------------------------------------------------------------------------------------
// binary cross-entropy on logits

// pos_weight holds one weight per entry of the last axis (a 0-d input counts as one entry);
// view is absent when pos_weight is None.
struct PosWeight {
  ArrayView view;
  int64_t classes = 1;
};

PosWeight view_pos_weight(const ElementwiseInputs& in, py::handle pos_weight_obj, const char* op) {
  PosWeight pw;
  pw.classes = in.input.ndim() == 0 ? 1 : in.input.shape.back();
  pw.view = view_optional(pos_weight_obj, op, "pos_weight");
  check_like(op, {in.input, "logits"}, {{pw.view, "pos_weight"}});
  if (pw.view.present && pw.view.shape != std::vector<int64_t>{pw.classes}) {
    fail_value(op, "pos_weight has shape " + pw.view.shape_str() + " but must have shape (" +
                       std::to_string(pw.classes) + ",), one weight per entry of the last axis of logits " +
                       in.input.shape_str());
  }
  return pw;
}

void bce_with_logits_forward(py::handle logits_obj, py::handle target_obj, py::handle weight_obj,
                             py::handle pos_weight_obj, py::handle out_obj,
                             const std::string& reduction_name) {
  const char* op = "binary_cross_entropy_with_logits";
  const Reduction reduction = parse_reduction(reduction_name, op);
  const ElementwiseInputs in = view_elementwise(op, "logits", logits_obj, target_obj, weight_obj);
  const PosWeight pw = view_pos_weight(in, pos_weight_obj, op);
  const ArrayView out = view_forward_out(in, out_obj, reduction, op, "logits");
  check_disjoint(out, pw.view, op, "out", "pos_weight");
  RANVIER_RUN_FLOAT_KERNEL(in.input, op, bce_with_logits_forward, in.input.ptr<T>(),
                           in.target.ptr<T>(), in.weight.ptr<T>(), pw.view.ptr<T>(), out.ptr<T>(),
                           in.input.numel(), pw.classes, reduction);
}

void bce_with_logits_backward(py::handle logits_obj, py::handle target_obj, py::handle weight_obj,
                              py::handle pos_weight_obj, py::handle dout_obj, py::handle out_obj,
                              const std::string& reduction_name) {
  const char* op = "binary_cross_entropy_with_logits_backward";
  const Reduction reduction = parse_reduction(reduction_name, op);
  const ElementwiseInputs in = view_elementwise(op, "logits", logits_obj, target_obj, weight_obj);
  const PosWeight pw = view_pos_weight(in, pos_weight_obj, op);
  const BackwardArrays b = view_backward(in, dout_obj, out_obj, reduction, op, "logits");
  check_disjoint(b.out, pw.view, op, "out", "pos_weight");
  RANVIER_RUN_FLOAT_KERNEL(in.input, op, bce_with_logits_backward, in.input.ptr<T>(),
                           in.target.ptr<T>(), in.weight.ptr<T>(), pw.view.ptr<T>(),
                           b.grad_output.ptr<T>(), b.out.ptr<T>(), in.input.numel(), pw.classes,
                           reduction);
}

// ---------------------------------------------------------------------------------------
// cross-entropy

struct CrossEntropyInputs {
  ArrayView logits, target, weight;  // weight absent when None
  int64_t rows = 0, classes = 0;
};

CrossEntropyInputs view_cross_entropy(const char* op, py::handle logits_obj, py::handle target_obj,
                                      py::handle weight_obj, int64_t ignore_index) {
  CrossEntropyInputs v;
  v.logits = view_array(logits_obj, op, "logits");
  v.target = view_array(target_obj, op, "target");
  check_float_args(op, {v.logits, "logits"}, {}, {{v.target, "target"}});
  check_ndim(v.logits, 2, op, "logits");
  if (v.target.dtype != DType::Int64) {
    fail_type(op, "target must hold int64 class indices, got dtype " + v.target.dtype_str +
                      " (class probabilities as targets are not supported)");
  }
  v.rows = v.logits.shape[0];
  v.classes = v.logits.shape[1];
  if (v.target.numel() != v.rows) {
    fail_value(op, "target of shape " + v.target.shape_str() + " has " + std::to_string(v.target.numel()) +
                       " elements but logits " + v.logits.shape_str() + " have " + std::to_string(v.rows) +
                       " rows");
  }
  v.weight = view_optional(weight_obj, op, "weight");
  check_like(op, {v.logits, "logits"}, {{v.weight, "weight"}});
  if (v.weight.present && v.weight.shape != std::vector<int64_t>{v.classes}) {
    fail_value(op, "weight has shape " + v.weight.shape_str() + " but must have shape (" +
                       std::to_string(v.classes) + ",), one weight per class");
  }
  // Every target must name a class or be ignore_index: the kernel indexes with it.
  int64_t bad = -1, bad_value = 0;
  if (v.target.device == Device::CUDA) {
#ifdef RANVIER_WITH_CUDA
    const StreamHandle stream = current_cuda_stream();
    py::gil_scoped_release nogil;
    bad = cuda::first_invalid_class_target(v.target.ptr<int64_t>(), v.rows, v.classes, ignore_index, &bad_value,
                                           stream);
#endif
  } else {
    const int64_t* t = v.target.ptr<int64_t>();
    const int64_t rows = v.rows, classes = v.classes;
    py::gil_scoped_release nogil;
    for (int64_t r = 0; r < rows; ++r) {
      if (t[r] != ignore_index && (t[r] < 0 || t[r] >= classes)) {
        bad = r;
        bad_value = t[r];
        break;
      }
    }
  }
  if (bad >= 0) {
    throw py::index_error(std::string(op) + ": target" + index_str(v.target.shape, bad) + " = " +
                          std::to_string(bad_value) + " is not a class index in [0, " +
                          std::to_string(v.classes) + ") for logits with " + std::to_string(v.classes) +
                          " classes (nor ignore_index = " + std::to_string(ignore_index) + ")");
  }
  return v;
}

void cross_entropy_forward(py::handle logits_obj, py::handle target_obj, py::handle weight_obj,
                           py::handle out_obj, int64_t ignore_index, const std::string& reduction_name) {
  const char* op = "cross_entropy";
  const Reduction reduction = parse_reduction(reduction_name, op);
  const CrossEntropyInputs in = view_cross_entropy(op, logits_obj, target_obj, weight_obj, ignore_index);
  ArrayView out = view_output(out_obj, op, "out");
  check_like(op, {in.logits, "logits"}, {{out, "out"}});
  check_shape(out, reduction == Reduction::None ? in.target.shape : kScalarShape, op, "out");
  check_outputs_disjoint(op, {{out, "out"}}, {{in.logits, "logits"}, {in.target, "target"}, {in.weight, "weight"}});
  RANVIER_RUN_FLOAT_KERNEL(in.logits, op, cross_entropy_forward, in.logits.ptr<T>(),
                           in.target.ptr<int64_t>(), in.weight.ptr<T>(), out.ptr<T>(), in.rows,
                           in.classes, ignore_index, reduction);
}

void cross_entropy_backward(py::handle logits_obj, py::handle target_obj, py::handle weight_obj,
                            py::handle dout_obj, py::handle out_obj, int64_t ignore_index,
                            const std::string& reduction_name) {
  const char* op = "cross_entropy_backward";
  const Reduction reduction = parse_reduction(reduction_name, op);
  const CrossEntropyInputs in = view_cross_entropy(op, logits_obj, target_obj, weight_obj, ignore_index);
  const ArrayView dout = view_array(dout_obj, op, "grad_output");
  ArrayView out = view_output(out_obj, op, "out");
  check_like(op, {in.logits, "logits"}, {{dout, "grad_output"}, {out, "out"}});
  if (reduction != Reduction::None && dout.ndim() != 0) {
    fail_value(op, "grad_output must be a scalar (shape ()) for a reduced loss, got shape " + dout.shape_str());
  }
  check_shape(dout, reduction == Reduction::None ? in.target.shape : kScalarShape, op, "grad_output");
  check_shape(out, in.logits.shape, op, "out");
  check_outputs_disjoint(op, {{out, "out"}},
                         {{in.logits, "logits"}, {in.target, "target"}, {dout, "grad_output"}, {in.weight, "weight"}});
  RANVIER_RUN_FLOAT_KERNEL(in.logits, op, cross_entropy_backward, in.logits.ptr<T>(),
                           in.target.ptr<int64_t>(), in.weight.ptr<T>(), dout.ptr<T>(),
                           out.ptr<T>(), in.rows, in.classes, ignore_index, reduction);
}

}  // namespace

void bind_losses(py::module_& m) {
  m.def("mse_loss_forward", &mse_loss_forward, py::arg("pred"), py::arg("target"), py::arg("out"),
        py::arg("reduction"), "out = the (pred - target)^2 losses, reduced as `reduction` says.");
  m.def("mse_loss_backward", &mse_loss_backward, py::arg("pred"), py::arg("target"),
        py::arg("grad_output"), py::arg("out"), py::arg("reduction"), "out = d loss / d pred.");
  m.def("bce_loss_forward", &bce_loss_forward, py::arg("prob"), py::arg("target"), py::arg("weight"),
        py::arg("out"), py::arg("reduction"), "out = binary cross-entropy of probabilities.");
  m.def("bce_loss_backward", &bce_loss_backward, py::arg("prob"), py::arg("target"), py::arg("weight"),
        py::arg("grad_output"), py::arg("out"), py::arg("reduction"), "out = d loss / d prob.");
  m.def("bce_with_logits_forward", &bce_with_logits_forward, py::arg("logits"), py::arg("target"),
        py::arg("weight"), py::arg("pos_weight"), py::arg("out"), py::arg("reduction"),
        "out = binary cross-entropy of sigmoid(logits), computed stably from the logits.");
  m.def("bce_with_logits_backward", &bce_with_logits_backward, py::arg("logits"), py::arg("target"),
        py::arg("weight"), py::arg("pos_weight"), py::arg("grad_output"), py::arg("out"),
        py::arg("reduction"), "out = d loss / d logits.");
  m.def("cross_entropy_forward", &cross_entropy_forward, py::arg("logits"), py::arg("target"),
        py::arg("weight"), py::arg("out"), py::arg("ignore_index"), py::arg("reduction"),
        "out = cross-entropy of logits (rows, classes) against int64 class targets.");
  m.def("cross_entropy_backward", &cross_entropy_backward, py::arg("logits"), py::arg("target"),
        py::arg("weight"), py::arg("grad_output"), py::arg("out"), py::arg("ignore_index"),
        py::arg("reduction"), "out = d loss / d logits, shape (rows, classes).");
}

}  // namespace ranvier::binding
