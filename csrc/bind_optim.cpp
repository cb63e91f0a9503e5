// _C.sgd_step / _C.adam_step / _C.rmsprop_step: fused in-place optimizer updates, CPU or CUDA
// (the CUDA update equals the CPU one bit for bit: kernels/include/ranvier/optim_math.h).
//
// param and the state buffers are updated in place, so they are never copied here: each must
// be a contiguous, writable float array of param's shape and dtype, and no two of them may
// share memory. grad is only read; it may be param itself but no other buffer.
#include <cmath>
#include <vector>

#include "array_view.h"
#include "bindings.h"
#include "ranvier/optim.h"

namespace ranvier::binding {

namespace {

std::string number_str(double v) { return py::str(py::float_(v)).cast<std::string>(); }

void check_finite(double v, const char* op, const char* name) {
  if (!std::isfinite(v)) fail_value(op, std::string(name) + " must be finite, got " + number_str(v));
}

void check_nonnegative(double v, const char* op, const char* name) {
  if (!(std::isfinite(v) && v >= 0.0)) {
    fail_value(op, std::string(name) + " must be a finite number >= 0, got " + number_str(v));
  }
}

// A decay rate (Adam's betas): 0 <= v < 1.
void check_decay_rate(double v, const char* op, const char* name) {
  if (!(v >= 0.0 && v < 1.0)) {
    fail_value(op, std::string(name) + " must satisfy 0 <= " + name + " < 1, got " + number_str(v));
  }
}

// The arrays of one update: param and the state buffers (written), grad (read).
class UpdateArrays {
 public:
  UpdateArrays(py::handle param_obj, py::handle grad_obj, const char* op) : op_(op) {
    param_ = view_output(param_obj, op, "param");
    check_float(param_, op, "param");
    grad_ = view_array(grad_obj, op, "grad");
    check_same_dtype(param_, grad_, op, "param", "grad");
    check_same_shape(param_, grad_, op, "param", "grad");
    check_same_device(param_, grad_, op, "param", "grad");
    require_cuda_built(param_, op);
    check_no_partial_overlap(param_, grad_, op, "param", "grad");
    written_.push_back({param_, "param"});
  }

  // A state buffer; None gives a null pointer, which is an error when `required`.
  template <typename T>
  T* state(py::handle obj, const char* name, bool required, const char* needed_because) {
    if (obj.is_none()) {
      if (required) {
        fail_value(op_, std::string(name) + " is required" +
                            (needed_because[0] ? std::string(" ") + needed_because : std::string()) +
                            ", got None");
      }
      return nullptr;
    }
    const ArrayView buffer = view_output(obj, op_, name);
    check_same_dtype(param_, buffer, op_, "param", name);
    check_same_shape(param_, buffer, op_, "param", name);
    check_same_device(param_, buffer, op_, "param", name);
    for (const auto& [other, other_name] : written_) check_disjoint(buffer, other, op_, name, other_name);
    check_no_partial_overlap(buffer, grad_, op_, name, "grad");
    written_.push_back({buffer, name});
    return buffer.ptr<T>();
  }

  const ArrayView& param() const { return param_; }
  bool on_cuda() const { return param_.device == Device::CUDA; }
  StreamHandle stream() const { return on_cuda() ? current_cuda_stream() : nullptr; }
  const ArrayView& grad() const { return grad_; }

 private:
  const char* op_;
  ArrayView param_, grad_;
  std::vector<std::pair<ArrayView, const char*>> written_;
};

void sgd_step(py::handle param_obj, py::handle grad_obj, py::handle momentum_buffer_obj, double lr,
              double momentum, double dampening, double weight_decay, bool nesterov, bool maximize,
              bool first_step) {
  const char* op = "sgd_step";
  check_nonnegative(lr, op, "lr");
  check_nonnegative(momentum, op, "momentum");
  check_finite(dampening, op, "dampening");
  check_nonnegative(weight_decay, op, "weight_decay");
  if (nesterov && (momentum <= 0.0 || dampening != 0.0)) {
    fail_value(op, "nesterov momentum requires a momentum > 0 and zero dampening, got momentum " +
                       number_str(momentum) + " and dampening " + number_str(dampening));
  }
  UpdateArrays arrays(param_obj, grad_obj, op);
  dispatch_float(arrays.param().dtype, op, [&](auto zero) {
    using T = decltype(zero);
    T* momentum_buffer =
        arrays.state<T>(momentum_buffer_obj, "momentum_buffer", momentum != 0.0, "when momentum != 0");
    const ArrayView& param = arrays.param();
    const ArrayView& grad = arrays.grad();
    const StreamHandle stream = arrays.stream();
    py::gil_scoped_release nogil;
    if (!arrays.on_cuda()) {
      cpu::sgd_step<T>(param.ptr<T>(), grad.ptr<T>(), momentum_buffer, param.numel(), lr, momentum, dampening,
                       weight_decay, nesterov, maximize, first_step);
    } else {
#ifdef RANVIER_WITH_CUDA
      cuda::sgd_step<T>(param.ptr<T>(), grad.ptr<T>(), momentum_buffer, param.numel(), lr, momentum, dampening,
                        weight_decay, nesterov, maximize, first_step, stream);
#endif
    }
    (void)stream;
  });
}

void adam_step(py::handle param_obj, py::handle grad_obj, py::handle exp_avg_obj, py::handle exp_avg_sq_obj,
               py::handle max_exp_avg_sq_obj, double lr, double beta1, double beta2, double eps,
               double weight_decay, int64_t step, bool decoupled_weight_decay, bool amsgrad, bool maximize) {
  const char* op = "adam_step";
  check_nonnegative(lr, op, "lr");
  check_decay_rate(beta1, op, "beta1");
  check_decay_rate(beta2, op, "beta2");
  check_nonnegative(eps, op, "eps");
  check_nonnegative(weight_decay, op, "weight_decay");
  if (step < 1) fail_value(op, "step counts updates from 1 (bias correction), got " + std::to_string(step));
  UpdateArrays arrays(param_obj, grad_obj, op);
  dispatch_float(arrays.param().dtype, op, [&](auto zero) {
    using T = decltype(zero);
    T* exp_avg = arrays.state<T>(exp_avg_obj, "exp_avg", true, "");
    T* exp_avg_sq = arrays.state<T>(exp_avg_sq_obj, "exp_avg_sq", true, "");
    T* max_exp_avg_sq = arrays.state<T>(max_exp_avg_sq_obj, "max_exp_avg_sq", amsgrad, "when amsgrad=True");
    const ArrayView& param = arrays.param();
    const ArrayView& grad = arrays.grad();
    const StreamHandle stream = arrays.stream();
    py::gil_scoped_release nogil;
    if (!arrays.on_cuda()) {
      cpu::adam_step<T>(param.ptr<T>(), grad.ptr<T>(), exp_avg, exp_avg_sq, max_exp_avg_sq, param.numel(), lr,
                        beta1, beta2, eps, weight_decay, step, decoupled_weight_decay, amsgrad, maximize);
    } else {
#ifdef RANVIER_WITH_CUDA
      cuda::adam_step<T>(param.ptr<T>(), grad.ptr<T>(), exp_avg, exp_avg_sq, max_exp_avg_sq, param.numel(), lr,
                         beta1, beta2, eps, weight_decay, step, decoupled_weight_decay, amsgrad, maximize, stream);
#endif
    }
    (void)stream;
  });
}

void rmsprop_step(py::handle param_obj, py::handle grad_obj, py::handle square_avg_obj,
                  py::handle momentum_buffer_obj, py::handle grad_avg_obj, double lr, double alpha, double eps,
                  double weight_decay, double momentum, bool centered, bool maximize) {
  const char* op = "rmsprop_step";
  check_nonnegative(lr, op, "lr");
  check_nonnegative(alpha, op, "alpha");
  check_nonnegative(eps, op, "eps");
  check_nonnegative(weight_decay, op, "weight_decay");
  check_nonnegative(momentum, op, "momentum");
  UpdateArrays arrays(param_obj, grad_obj, op);
  dispatch_float(arrays.param().dtype, op, [&](auto zero) {
    using T = decltype(zero);
    T* square_avg = arrays.state<T>(square_avg_obj, "square_avg", true, "");
    T* momentum_buffer =
        arrays.state<T>(momentum_buffer_obj, "momentum_buffer", momentum > 0.0, "when momentum > 0");
    T* grad_avg = arrays.state<T>(grad_avg_obj, "grad_avg", centered, "when centered=True");
    const ArrayView& param = arrays.param();
    const ArrayView& grad = arrays.grad();
    const StreamHandle stream = arrays.stream();
    py::gil_scoped_release nogil;
    if (!arrays.on_cuda()) {
      cpu::rmsprop_step<T>(param.ptr<T>(), grad.ptr<T>(), square_avg, momentum_buffer, grad_avg, param.numel(),
                           lr, alpha, eps, weight_decay, momentum, centered, maximize);
    } else {
#ifdef RANVIER_WITH_CUDA
      cuda::rmsprop_step<T>(param.ptr<T>(), grad.ptr<T>(), square_avg, momentum_buffer, grad_avg, param.numel(),
                            lr, alpha, eps, weight_decay, momentum, centered, maximize, stream);
#endif
    }
    (void)stream;
  });
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def("sgd_step", &sgd_step, py::arg("param"), py::arg("grad"), py::arg("momentum_buffer"), py::arg("lr"),
        py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
        py::arg("maximize"), py::arg("first_step"),
        "In-place SGD update of param (and momentum_buffer), as torch.optim.SGD.");
  m.def("adam_step", &adam_step, py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
        py::arg("max_exp_avg_sq"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("step"), py::arg("decoupled_weight_decay"), py::arg("amsgrad"),
        py::arg("maximize"), "In-place Adam / AdamW update of param and its moments, as torch.optim.Adam(W).");
  m.def("rmsprop_step", &rmsprop_step, py::arg("param"), py::arg("grad"), py::arg("square_avg"),
        py::arg("momentum_buffer"), py::arg("grad_avg"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("momentum"), py::arg("centered"), py::arg("maximize"),
        "In-place RMSprop update of param and its state, as torch.optim.RMSprop.");
}

}  // namespace ranvier::binding
