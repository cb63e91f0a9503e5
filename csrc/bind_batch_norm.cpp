// _C.batch_norm_forward / _C.batch_norm_backward: batch normalisation over axis 1, CPU or CUDA.
//
// x is (N, C, *) with any number of trailing dimensions, viewed by the kernels as (N, C, L).
// Every array of a call must live on x's device; CUDA kernels run on CuPy's current stream.
#include <cmath>
#include <string>

#include "array_view.h"
#include "bindings.h"
#include "ranvier/batch_norm.h"

namespace ranvier::binding {

namespace {

constexpr const char* kForward = "batch_norm";
constexpr const char* kBackward = "batch_norm_backward";

struct ChannelView {
  int64_t N = 0, C = 0, L = 1;
};

ChannelView channel_view(const ArrayView& x, const char* op, const char* name) {
  if (x.ndim() < 2) {
    fail_value(op, std::string(name) + " of shape " + x.shape_str() +
                       " must have at least 2 dimensions (N, C, ...): channels are axis 1");
  }
  ChannelView v;
  v.N = x.shape[0];
  v.C = x.shape[1];
  for (int64_t i = 2; i < x.ndim(); ++i) v.L *= x.shape[static_cast<size_t>(i)];
  return v;
}

// An optional per-channel argument: x's device and dtype, shape (C,); None gives an absent
// view, whose ptr<T>() is null.
ArrayView optional_per_channel(py::handle obj, const ArrayView& x, const ChannelView& v, const char* op,
                               const char* name, bool written) {
  const ArrayView a = written ? view_optional_output(obj, op, name) : view_optional(obj, op, name);
  check_like(op, {x, "x"}, {{a, name}});
  if (a.present && (a.ndim() != 1 || a.shape[0] != v.C)) {
    fail_value(op, std::string(name) + " has shape " + a.shape_str() + " but the input of shape " +
                       x.shape_str() + " has " + std::to_string(v.C) + " channels; expected (" +
                       std::to_string(v.C) + ",)");
  }
  return a;
}

// out, save_mean, save_invstd = batch_norm(x, ...); running stats updated in place when training
void batch_norm_forward(py::handle x_obj, py::handle out_obj, py::handle weight_obj, py::handle bias_obj,
                        py::handle running_mean_obj, py::handle running_var_obj,
                        py::handle save_mean_obj, py::handle save_invstd_obj, bool training,
                        double momentum, double eps) {
  const char* op = kForward;
  const ArrayView x = view_array(x_obj, op, "x");
  check_float(x, op, "x");
  const ChannelView v = channel_view(x, op, "x");
  if (!std::isfinite(eps) || eps < 0) fail_value(op, "eps must be finite and >= 0, got " + std::to_string(eps));
  if (!std::isfinite(momentum)) fail_value(op, "momentum must be finite, got " + std::to_string(momentum));
  if (training) {
    const int64_t count = v.N * v.L;
    if (count == 0) {
      fail_value(op, "cannot compute batch statistics of an empty input (shape " + x.shape_str() +
                         ") when training");
    }
    if (count == 1) {
      fail_value(op, "Expected more than 1 value per channel when training, got input of shape " +
                         x.shape_str());
    }
  } else if (running_mean_obj.is_none() || running_var_obj.is_none()) {
    fail_value(op, "running_mean and running_var are required in evaluation mode (training=False)");
  }

  const ArrayView out = view_output(out_obj, op, "out");
  check_same_device(x, out, op, "x", "out");
  require_cuda_built(x, op);
  check_same_dtype(x, out, op, "x", "out");
  check_same_shape(x, out, op, "x", "out");
  check_no_partial_overlap(out, x, op, "out", "x");
  const ArrayView weight = optional_per_channel(weight_obj, x, v, op, "weight", false);
  const ArrayView bias = optional_per_channel(bias_obj, x, v, op, "bias", false);
  // Updated in place when training, only read in evaluation.
  const ArrayView running_mean = optional_per_channel(running_mean_obj, x, v, op, "running_mean", training);
  const ArrayView running_var = optional_per_channel(running_var_obj, x, v, op, "running_var", training);
  const ArrayView save_mean = optional_per_channel(save_mean_obj, x, v, op, "save_mean", true);
  const ArrayView save_invstd = optional_per_channel(save_invstd_obj, x, v, op, "save_invstd", true);
  if (!save_mean.present || !save_invstd.present) {
    fail_value(op, "save_mean and save_invstd (C,) arrays are required");
  }
  // Every written array must be disjoint from every other array of the call, but out may be
  // x itself (checked above). The running stats are written when training, read otherwise.
  const ArrayView absent;
  const ArrayView& mean_written = training ? running_mean : absent;
  const ArrayView& var_written = training ? running_var : absent;
  const ArrayView& mean_read = training ? absent : running_mean;
  const ArrayView& var_read = training ? absent : running_var;
  check_outputs_disjoint(op,
                         {{save_mean, "save_mean"}, {save_invstd, "save_invstd"},
                          {mean_written, "running_mean"}, {var_written, "running_var"}},
                         {{x, "x"}, {weight, "weight"}, {bias, "bias"}, {mean_read, "running_mean"},
                          {var_read, "running_var"}, {out, "out"}});
  check_outputs_disjoint(op, {{out, "out"}},
                         {{weight, "weight"}, {bias, "bias"}, {mean_read, "running_mean"},
                          {var_read, "running_var"}});

  if (training) {
    RANVIER_RUN_FLOAT_KERNEL(x, op, batch_norm_forward_training, x.ptr<T>(), weight.ptr<T>(),
                             bias.ptr<T>(), out.ptr<T>(), save_mean.ptr<T>(), save_invstd.ptr<T>(),
                             running_mean.ptr<T>(), running_var.ptr<T>(), v.N, v.C, v.L, momentum,
                             eps);
  } else {
    RANVIER_RUN_FLOAT_KERNEL(x, op, batch_norm_forward_eval, x.ptr<T>(), weight.ptr<T>(),
                             bias.ptr<T>(), running_mean.ptr<T>(), running_var.ptr<T>(),
                             out.ptr<T>(), save_mean.ptr<T>(), save_invstd.ptr<T>(), v.N, v.C, v.L,
                             eps);
  }
}

// out (x's shape, or None), grad_weight, grad_bias (C) = gradients of batch_norm
void batch_norm_backward(py::handle dy_obj, py::handle x_obj, py::handle save_mean_obj,
                         py::handle save_invstd_obj, py::handle weight_obj, py::handle out_obj,
                         py::handle grad_weight_obj, py::handle grad_bias_obj, bool training) {
  const char* op = kBackward;
  const ArrayView x = view_array(x_obj, op, "x");
  check_float(x, op, "x");
  const ChannelView v = channel_view(x, op, "x");
  const ArrayView dy = view_array(dy_obj, op, "grad_output");
  check_same_device(x, dy, op, "x", "grad_output");
  require_cuda_built(x, op);
  check_same_dtype(x, dy, op, "x", "grad_output");
  check_same_shape(x, dy, op, "x", "grad_output");
  const ArrayView save_mean = optional_per_channel(save_mean_obj, x, v, op, "save_mean", false);
  const ArrayView save_invstd = optional_per_channel(save_invstd_obj, x, v, op, "save_invstd", false);
  if (!save_mean.present || !save_invstd.present) {
    fail_value(op, "save_mean and save_invstd from the forward pass are required");
  }
  const ArrayView weight = optional_per_channel(weight_obj, x, v, op, "weight", false);
  const ArrayView grad_weight = optional_per_channel(grad_weight_obj, x, v, op, "grad_weight", true);
  const ArrayView grad_bias = optional_per_channel(grad_bias_obj, x, v, op, "grad_bias", true);
  if (!grad_weight.present || !grad_bias.present) {
    fail_value(op, "grad_weight and grad_bias (C,) arrays are required");
  }
  const ArrayView out = view_optional_output(out_obj, op, "out");
  check_like(op, {x, "x"}, {{out, "out"}});
  check_same_shape(x, out, op, "x", "out");
  check_outputs_disjoint(op, {{out, "out"}, {grad_weight, "grad_weight"}, {grad_bias, "grad_bias"}},
                         {{dy, "grad_output"}, {x, "x"}, {save_mean, "save_mean"},
                          {save_invstd, "save_invstd"}, {weight, "weight"}});
  if (training && v.N * v.L < 2) {
    fail_value(op, "training-mode batch statistics need more than 1 value per channel; got x of shape " +
                       x.shape_str());
  }

  RANVIER_RUN_FLOAT_KERNEL(x, op, batch_norm_backward, dy.ptr<T>(), x.ptr<T>(), save_mean.ptr<T>(),
                           save_invstd.ptr<T>(), weight.ptr<T>(), out.ptr<T>(),
                           grad_weight.ptr<T>(), grad_bias.ptr<T>(), v.N, v.C, v.L, training);
}

}  // namespace

void bind_batch_norm(py::module_& m) {
  m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("out"), py::arg("weight"),
        py::arg("bias"), py::arg("running_mean"), py::arg("running_var"), py::arg("save_mean"),
        py::arg("save_invstd"), py::arg("training"), py::arg("momentum"), py::arg("eps"),
        "out = batch_norm(x); save_mean/save_invstd receive the statistics used (batch ones when "
        "training, running ones otherwise); running stats are updated in place when training.");
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("grad_output"), py::arg("x"),
        py::arg("save_mean"), py::arg("save_invstd"), py::arg("weight"), py::arg("out"),
        py::arg("grad_weight"), py::arg("grad_bias"), py::arg("training"),
        "out (or None), grad_weight, grad_bias = gradients of batch_norm.");
}

}  // namespace ranvier::binding
