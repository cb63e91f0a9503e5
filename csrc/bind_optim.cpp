// _C.sgd_step / _C.adam_step / _C.rmsprop_step: fused in-place optimizer updates, CPU or CUDA
// (the CUDA update equals the CPU one bit for bit: kernels/include/ranvier/optim_math.h).
//
// param and the state buffers are updated in place, so they are never copied here: each must
// be a contiguous, writable float array of param's shape and dtype, and no two of them may
// share memory. grad is only read; it may be param itself but no other buffer.
#include <algorithm>
#include <cmath>
#include <string>
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

// The hyper-parameter checks of each optimizer, shared by its single- and multi-tensor calls.
void check_sgd_options(double lr, double momentum, double dampening, double weight_decay, bool nesterov,
                       const char* op) {
  check_nonnegative(lr, op, "lr");
  check_nonnegative(momentum, op, "momentum");
  check_finite(dampening, op, "dampening");
  check_nonnegative(weight_decay, op, "weight_decay");
  if (nesterov && (momentum <= 0.0 || dampening != 0.0)) {
    fail_value(op, "nesterov momentum requires a momentum > 0 and zero dampening, got momentum " +
                       number_str(momentum) + " and dampening " + number_str(dampening));
  }
}

void check_adam_options(double lr, double beta1, double beta2, double eps, double weight_decay, const char* op) {
  check_nonnegative(lr, op, "lr");
  check_decay_rate(beta1, op, "beta1");
  check_decay_rate(beta2, op, "beta2");
  check_nonnegative(eps, op, "eps");
  check_nonnegative(weight_decay, op, "weight_decay");
}

void check_step(int64_t step, const char* op) {
  if (step < 1) fail_value(op, "step counts updates from 1 (bias correction), got " + std::to_string(step));
}

void check_rmsprop_options(double lr, double alpha, double eps, double weight_decay, double momentum,
                           const char* op) {
  check_nonnegative(lr, op, "lr");
  check_nonnegative(alpha, op, "alpha");
  check_nonnegative(eps, op, "eps");
  check_nonnegative(weight_decay, op, "weight_decay");
  check_nonnegative(momentum, op, "momentum");
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
  Device device() const { return param_.device; }
  StreamHandle stream() const { return stream_for(param_); }
  const ArrayView& grad() const { return grad_; }
  // param and the state buffers given so far, with their names.
  const std::vector<std::pair<ArrayView, const char*>>& written() const { return written_; }

 private:
  const char* op_;
  ArrayView param_, grad_;
  std::vector<std::pair<ArrayView, const char*>> written_;
};

void sgd_step(py::handle param_obj, py::handle grad_obj, py::handle momentum_buffer_obj, double lr,
              double momentum, double dampening, double weight_decay, bool nesterov, bool maximize,
              bool first_step) {
  const char* op = "sgd_step";
  check_sgd_options(lr, momentum, dampening, weight_decay, nesterov, op);
  UpdateArrays arrays(param_obj, grad_obj, op);
  dispatch_float(arrays.param().dtype, op, [&](auto zero) {
    using T = decltype(zero);
    T* momentum_buffer =
        arrays.state<T>(momentum_buffer_obj, "momentum_buffer", momentum != 0.0, "when momentum != 0");
    const ArrayView& param = arrays.param();
    const ArrayView& grad = arrays.grad();
    RANVIER_RUN_TYPED_KERNEL(T, arrays.device(), arrays.stream(), sgd_step, param.ptr<T>(), grad.ptr<T>(),
                             momentum_buffer, param.numel(), lr, momentum, dampening, weight_decay, nesterov,
                             maximize, first_step);
  });
}

void adam_step(py::handle param_obj, py::handle grad_obj, py::handle exp_avg_obj, py::handle exp_avg_sq_obj,
               py::handle max_exp_avg_sq_obj, double lr, double beta1, double beta2, double eps,
               double weight_decay, int64_t step, bool decoupled_weight_decay, bool amsgrad, bool maximize) {
  const char* op = "adam_step";
  check_adam_options(lr, beta1, beta2, eps, weight_decay, op);
  check_step(step, op);
  UpdateArrays arrays(param_obj, grad_obj, op);
  dispatch_float(arrays.param().dtype, op, [&](auto zero) {
    using T = decltype(zero);
    T* exp_avg = arrays.state<T>(exp_avg_obj, "exp_avg", true, "");
    T* exp_avg_sq = arrays.state<T>(exp_avg_sq_obj, "exp_avg_sq", true, "");
    T* max_exp_avg_sq = arrays.state<T>(max_exp_avg_sq_obj, "max_exp_avg_sq", amsgrad, "when amsgrad=True");
    const ArrayView& param = arrays.param();
    const ArrayView& grad = arrays.grad();
    RANVIER_RUN_TYPED_KERNEL(T, arrays.device(), arrays.stream(), adam_step, param.ptr<T>(), grad.ptr<T>(),
                             exp_avg, exp_avg_sq, max_exp_avg_sq, param.numel(), lr, beta1, beta2, eps,
                             weight_decay, step, decoupled_weight_decay, amsgrad, maximize);
  });
}

void rmsprop_step(py::handle param_obj, py::handle grad_obj, py::handle square_avg_obj,
                  py::handle momentum_buffer_obj, py::handle grad_avg_obj, double lr, double alpha, double eps,
                  double weight_decay, double momentum, bool centered, bool maximize) {
  const char* op = "rmsprop_step";
  check_rmsprop_options(lr, alpha, eps, weight_decay, momentum, op);
  UpdateArrays arrays(param_obj, grad_obj, op);
  dispatch_float(arrays.param().dtype, op, [&](auto zero) {
    using T = decltype(zero);
    T* square_avg = arrays.state<T>(square_avg_obj, "square_avg", true, "");
    T* momentum_buffer =
        arrays.state<T>(momentum_buffer_obj, "momentum_buffer", momentum > 0.0, "when momentum > 0");
    T* grad_avg = arrays.state<T>(grad_avg_obj, "grad_avg", centered, "when centered=True");
    const ArrayView& param = arrays.param();
    const ArrayView& grad = arrays.grad();
    RANVIER_RUN_TYPED_KERNEL(T, arrays.device(), arrays.stream(), rmsprop_step, param.ptr<T>(), grad.ptr<T>(),
                             square_avg, momentum_buffer, grad_avg, param.numel(), lr, alpha, eps, weight_decay,
                             momentum, centered, maximize);
  });
}

// ---- Multi-tensor updates: one call per parameter group ------------------------------------
// Each list holds one entry per parameter; every entry gets the single-tensor checks (messages
// prefixed with "<op>: parameter <k>"), all entries must share param 0's dtype and device,
// and no array written for one parameter may share memory with any array of another (the
// updates of all parameters run in one parallel loop). Then the GIL is released once.

// The arrays of all parameters of one call, and their memory ranges for the cross checks.
class MultiUpdateArrays {
 public:
  MultiUpdateArrays(py::sequence params, py::sequence grads, const char* op) : op_(op), count_(py::len(params)) {
    check_length(grads, "grads");
    prefixes_.reserve(count_);
    arrays_.reserve(count_);
    for (size_t k = 0; k < count_; ++k) {
      prefixes_.push_back(std::string(op) + ": parameter " + std::to_string(k));
    }
    for (size_t k = 0; k < count_; ++k) {
      arrays_.emplace_back(params[k], grads[k], prefixes_[k].c_str());
      const ArrayView& param = arrays_.back().param();
      if (k > 0) {
        const ArrayView& first = arrays_.front().param();
        if (param.dtype != first.dtype || param.device != first.device) {
          fail_type(op, "parameter " + std::to_string(k) + " is " + param.dtype_str + " on " +
                            device_name(param.device) + " but parameter 0 is " + first.dtype_str + " on " +
                            device_name(first.device) + "; one call takes parameters of one dtype and device");
        }
      }
    }
  }

  void check_length(py::sequence list, const char* name) const {
    if (py::len(list) != count_) {
      fail_value(op_, std::string(name) + " has " + std::to_string(py::len(list)) + " entries but params has " +
                          std::to_string(count_) + "; give one per parameter");
    }
  }

  // State buffer `name` of every parameter, from `list` (None: no such buffer for any).
  template <typename T>
  std::vector<T*> state(py::object list, const char* name, const char* list_name, bool required,
                        const char* needed_because) {
    std::vector<T*> pointers(count_, nullptr);
    if (list.is_none()) {
      if (required) {
        fail_value(op_, std::string(list_name) + " is required" +
                            (needed_because[0] ? std::string(" ") + needed_because : std::string()) +
                            ", got None");
      }
      return pointers;
    }
    const py::sequence buffers = list.cast<py::sequence>();
    check_length(buffers, list_name);
    for (size_t k = 0; k < count_; ++k) {
      pointers[k] = arrays_[k].state<T>(buffers[k], name, required, needed_because);
    }
    return pointers;
  }

  // No array written for one parameter overlaps any array (written or read) of another.
  void check_parameters_disjoint() const {
    std::vector<Range> ranges;
    ranges.reserve(count_ * 6);
    for (size_t k = 0; k < count_; ++k) {
      for (const auto& [view, name] : arrays_[k].written()) ranges.push_back(Range::of(view, k, name, true));
      ranges.push_back(Range::of(arrays_[k].grad(), k, "grad", false));
    }
    std::vector<const Range*> written;
    written.reserve(ranges.size());
    for (const Range& r : ranges) {
      if (r.written && r.end > r.begin) written.push_back(&r);
    }
    std::sort(written.begin(), written.end(), [](const Range* a, const Range* b) { return a->begin < b->begin; });
    for (size_t j = 1; j < written.size(); ++j) {
      // Sorted by start, pairwise disjoint so far: only the previous one can reach into this one.
      if (written[j]->begin < written[j - 1]->end) fail_overlap(*written[j - 1], *written[j]);
    }
    for (const Range& read : ranges) {
      if (read.written || read.end == read.begin) continue;
      // The written ranges are disjoint and sorted, so their ends are sorted too: the ones
      // overlapping [read.begin, read.end) follow the first that ends after read.begin.
      auto it = std::upper_bound(written.begin(), written.end(), read.begin,
                                 [](uintptr_t address, const Range* r) { return address < r->end; });
      for (; it != written.end() && (*it)->begin < read.end; ++it) {
        if ((*it)->parameter != read.parameter) fail_overlap(**it, read);
      }
    }
  }

  size_t count() const { return count_; }
  const UpdateArrays& operator[](size_t k) const { return arrays_[k]; }
  Device device() const { return count_ > 0 ? arrays_.front().device() : Device::CPU; }
  StreamHandle stream() const { return count_ > 0 ? arrays_.front().stream() : nullptr; }
  DType dtype() const { return count_ > 0 ? arrays_.front().param().dtype : DType::Float32; }

 private:
  // The bytes [begin, end) of one array of parameter `parameter`.
  struct Range {
    uintptr_t begin, end;
    size_t parameter;
    const char* name;
    bool written;
    static Range of(const ArrayView& view, size_t parameter, const char* name, bool written) {
      const auto begin = reinterpret_cast<uintptr_t>(view.data);
      return {begin, begin + static_cast<uintptr_t>(view.numel() * view.itemsize()), parameter, name, written};
    }
  };

  [[noreturn]] void fail_overlap(const Range& a, const Range& b) const {
    fail_value(op_, "parameter " + std::to_string(a.parameter) + "'s " + a.name + " shares memory with parameter " +
                        std::to_string(b.parameter) + "'s " + b.name +
                        "; each parameter and its state must have memory of its own");
  }

  const char* op_;
  size_t count_;
  std::vector<std::string> prefixes_;  // "<op>: parameter k", the op name of arrays_[k]'s messages
  std::vector<UpdateArrays> arrays_;
};

void sgd_step_multi(py::sequence params, py::sequence grads, py::object momentum_buffers,
                    py::sequence first_steps, double lr, double momentum, double dampening, double weight_decay,
                    bool nesterov, bool maximize) {
  const char* op = "sgd_step_multi";
  check_sgd_options(lr, momentum, dampening, weight_decay, nesterov, op);
  MultiUpdateArrays arrays(params, grads, op);
  arrays.check_length(first_steps, "first_steps");
  dispatch_float(arrays.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    const std::vector<T*> buffers =
        arrays.state<T>(momentum_buffers, "momentum_buffer", "momentum_buffers", momentum != 0.0, "when momentum != 0");
    arrays.check_parameters_disjoint();
    std::vector<SgdTensor<T>> tensors;
    for (size_t k = 0; k < arrays.count(); ++k) {
      const ArrayView& param = arrays[k].param();
      tensors.push_back({param.ptr<T>(), arrays[k].grad().ptr<const T>(), buffers[k], param.numel(),
                         first_steps[k].cast<bool>()});
    }
    RANVIER_RUN_TYPED_KERNEL(T, arrays.device(), arrays.stream(), sgd_step_multi, tensors.data(),
                             static_cast<int64_t>(tensors.size()), lr, momentum, dampening, weight_decay,
                             nesterov, maximize);
  });
}

void adam_step_multi(py::sequence params, py::sequence grads, py::sequence exp_avgs, py::sequence exp_avg_sqs,
                     py::object max_exp_avg_sqs, py::sequence steps, double lr, double beta1, double beta2,
                     double eps, double weight_decay, bool decoupled_weight_decay, bool amsgrad, bool maximize) {
  const char* op = "adam_step_multi";
  check_adam_options(lr, beta1, beta2, eps, weight_decay, op);
  MultiUpdateArrays arrays(params, grads, op);
  arrays.check_length(steps, "steps");
  std::vector<int64_t> step_numbers;
  for (size_t k = 0; k < arrays.count(); ++k) {
    step_numbers.push_back(steps[k].cast<int64_t>());
    check_step(step_numbers.back(), ("adam_step_multi: parameter " + std::to_string(k)).c_str());
  }
  dispatch_float(arrays.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    const std::vector<T*> exp_avg = arrays.state<T>(exp_avgs, "exp_avg", "exp_avgs", true, "");
    const std::vector<T*> exp_avg_sq = arrays.state<T>(exp_avg_sqs, "exp_avg_sq", "exp_avg_sqs", true, "");
    const std::vector<T*> max_exp_avg_sq =
        arrays.state<T>(max_exp_avg_sqs, "max_exp_avg_sq", "max_exp_avg_sqs", amsgrad, "when amsgrad=True");
    arrays.check_parameters_disjoint();
    std::vector<AdamTensor<T>> tensors;
    for (size_t k = 0; k < arrays.count(); ++k) {
      const ArrayView& param = arrays[k].param();
      tensors.push_back({param.ptr<T>(), arrays[k].grad().ptr<const T>(), exp_avg[k], exp_avg_sq[k],
                         max_exp_avg_sq[k], param.numel(), step_numbers[k]});
    }
    RANVIER_RUN_TYPED_KERNEL(T, arrays.device(), arrays.stream(), adam_step_multi, tensors.data(),
                             static_cast<int64_t>(tensors.size()), lr, beta1, beta2, eps, weight_decay,
                             decoupled_weight_decay, amsgrad, maximize);
  });
}

void rmsprop_step_multi(py::sequence params, py::sequence grads, py::sequence square_avgs,
                        py::object momentum_buffers, py::object grad_avgs, double lr, double alpha, double eps,
                        double weight_decay, double momentum, bool centered, bool maximize) {
  const char* op = "rmsprop_step_multi";
  check_rmsprop_options(lr, alpha, eps, weight_decay, momentum, op);
  MultiUpdateArrays arrays(params, grads, op);
  dispatch_float(arrays.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    const std::vector<T*> square_avg = arrays.state<T>(square_avgs, "square_avg", "square_avgs", true, "");
    const std::vector<T*> momentum_buffer = arrays.state<T>(momentum_buffers, "momentum_buffer", "momentum_buffers",
                                                            momentum > 0.0, "when momentum > 0");
    const std::vector<T*> grad_avg =
        arrays.state<T>(grad_avgs, "grad_avg", "grad_avgs", centered, "when centered=True");
    arrays.check_parameters_disjoint();
    std::vector<RmspropTensor<T>> tensors;
    for (size_t k = 0; k < arrays.count(); ++k) {
      const ArrayView& param = arrays[k].param();
      tensors.push_back({param.ptr<T>(), arrays[k].grad().ptr<const T>(), square_avg[k], momentum_buffer[k],
                         grad_avg[k], param.numel()});
    }
    RANVIER_RUN_TYPED_KERNEL(T, arrays.device(), arrays.stream(), rmsprop_step_multi, tensors.data(),
                             static_cast<int64_t>(tensors.size()), lr, alpha, eps, weight_decay, momentum,
                             centered, maximize);
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
  m.def("sgd_step_multi", &sgd_step_multi, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"),
        py::arg("first_steps"), py::arg("lr"), py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"),
        py::arg("nesterov"), py::arg("maximize"),
        "sgd_step on every parameter of a list (one dtype and device) in one call; momentum_buffers and "
        "first_steps hold one entry per parameter (momentum_buffers may be None when momentum == 0).");
  m.def("adam_step_multi", &adam_step_multi, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"),
        py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"), py::arg("steps"), py::arg("lr"), py::arg("beta1"),
        py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled_weight_decay"),
        py::arg("amsgrad"), py::arg("maximize"),
        "adam_step on every parameter of a list (one dtype and device) in one call; steps holds each "
        "parameter's own step number (max_exp_avg_sqs may be None unless amsgrad).");
  m.def("rmsprop_step_multi", &rmsprop_step_multi, py::arg("params"), py::arg("grads"), py::arg("square_avgs"),
        py::arg("momentum_buffers"), py::arg("grad_avgs"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("momentum"), py::arg("centered"), py::arg("maximize"),
        "rmsprop_step on every parameter of a list (one dtype and device) in one call.");
}

}  // namespace ranvier::binding
