// The optimizer updates (ranvier/optim.h), dropout and uniform numbers (ranvier/dropout.h) and
// the fused linear + activation (ranvier/matmul.h), cuda namespace. The *_step_multi
// functions take one Python list per array kind (one entry per parameter, None for a list or
// an entry that is absent) and build the SgdTensor / AdamTensor / RmspropTensor table from
// them; every entry's n is the length of its param array.
#include <vector>

#include "bindings.h"
#include "ranvier/dropout.h"
#include "ranvier/matmul.h"
#include "ranvier/optim.h"

namespace emulated {

namespace {

// Entry k of `list` as T* (None: null); `list` itself may be None (all null).
template <typename T>
T* list_entry(const py::object& list, size_t k, const char* name) {
  if (list.is_none()) return nullptr;
  return optional_data<T>(list.cast<py::sequence>()[k], name);
}

// The first param of a (non-empty) list decides the dtype; an empty list runs as float32.
template <typename F>
auto dispatch_list(const py::sequence& params, F&& f) {
  if (py::len(params) == 0) return f(float{});
  return dispatch_float(params[0].cast<py::array>(), std::forward<F>(f));
}

}  // namespace

void bind_optim_dropout_linear(py::module_& m) {
  namespace cuda = ranvier::cuda;
  using ranvier::Activation;

  // ---- single-tensor optimizer steps
  m.def("sgd_step", [](py::array param, py::array grad, py::object momentum_buf, int64_t n, double lr,
                       double momentum, double dampening, double weight_decay, bool nesterov, bool maximize,
                       bool first_step) {
    dispatch_float(param, [&](auto t) {
      using T = decltype(t);
      cuda::sgd_step<T>(data<T>(param, "param"), data<T>(grad, "grad"), optional_data<T>(momentum_buf, "momentum_buf"),
                        n, lr, momentum, dampening, weight_decay, nesterov, maximize, first_step, kStream);
    });
  });
  m.def("adam_step", [](py::array param, py::array grad, py::array exp_avg, py::array exp_avg_sq,
                        py::object max_exp_avg_sq, int64_t n, double lr, double beta1, double beta2, double eps,
                        double weight_decay, int64_t step, bool decoupled_weight_decay, bool amsgrad,
                        bool maximize) {
    dispatch_float(param, [&](auto t) {
      using T = decltype(t);
      cuda::adam_step<T>(data<T>(param, "param"), data<T>(grad, "grad"), data<T>(exp_avg, "exp_avg"),
                         data<T>(exp_avg_sq, "exp_avg_sq"), optional_data<T>(max_exp_avg_sq, "max_exp_avg_sq"), n,
                         lr, beta1, beta2, eps, weight_decay, step, decoupled_weight_decay, amsgrad, maximize,
                         kStream);
    });
  });
  m.def("rmsprop_step", [](py::array param, py::array grad, py::array square_avg, py::object momentum_buf,
                           py::object grad_avg, int64_t n, double lr, double alpha, double eps, double weight_decay,
                           double momentum, bool centered, bool maximize) {
    dispatch_float(param, [&](auto t) {
      using T = decltype(t);
      cuda::rmsprop_step<T>(data<T>(param, "param"), data<T>(grad, "grad"), data<T>(square_avg, "square_avg"),
                            optional_data<T>(momentum_buf, "momentum_buf"), optional_data<T>(grad_avg, "grad_avg"),
                            n, lr, alpha, eps, weight_decay, momentum, centered, maximize, kStream);
    });
  });

  // ---- multi-tensor optimizer steps: lists of arrays, one entry per parameter
  m.def("sgd_step_multi", [](py::sequence params, py::sequence grads, py::object momentum_bufs,
                             py::sequence first_steps, double lr, double momentum, double dampening,
                             double weight_decay, bool nesterov, bool maximize) {
    dispatch_list(params, [&](auto t) {
      using T = decltype(t);
      std::vector<ranvier::SgdTensor<T>> tensors;
      for (size_t k = 0; k < py::len(params); ++k) {
        const py::array param = params[k].cast<py::array>();
        tensors.push_back({data<T>(param, "param"), data<T>(grads[k].cast<py::array>(), "grad"),
                           list_entry<T>(momentum_bufs, k, "momentum_buf"), static_cast<int64_t>(param.size()),
                           first_steps[k].cast<bool>()});
      }
      cuda::sgd_step_multi<T>(tensors.data(), static_cast<int64_t>(tensors.size()), lr, momentum, dampening,
                              weight_decay, nesterov, maximize, kStream);
    });
  });
  m.def("adam_step_multi", [](py::sequence params, py::sequence grads, py::sequence exp_avgs,
                              py::sequence exp_avg_sqs, py::object max_exp_avg_sqs, py::sequence steps,
                              double lr, double beta1, double beta2, double eps, double weight_decay,
                              bool decoupled_weight_decay, bool amsgrad, bool maximize) {
    dispatch_list(params, [&](auto t) {
      using T = decltype(t);
      std::vector<ranvier::AdamTensor<T>> tensors;
      for (size_t k = 0; k < py::len(params); ++k) {
        const py::array param = params[k].cast<py::array>();
        tensors.push_back({data<T>(param, "param"), data<T>(grads[k].cast<py::array>(), "grad"),
                           data<T>(exp_avgs[k].cast<py::array>(), "exp_avg"),
                           data<T>(exp_avg_sqs[k].cast<py::array>(), "exp_avg_sq"),
                           list_entry<T>(max_exp_avg_sqs, k, "max_exp_avg_sq"), static_cast<int64_t>(param.size()),
                           steps[k].cast<int64_t>()});
      }
      cuda::adam_step_multi<T>(tensors.data(), static_cast<int64_t>(tensors.size()), lr, beta1, beta2, eps,
                               weight_decay, decoupled_weight_decay, amsgrad, maximize, kStream);
    });
  });
  m.def("rmsprop_step_multi", [](py::sequence params, py::sequence grads, py::sequence square_avgs,
                                 py::object momentum_bufs, py::object grad_avgs, double lr, double alpha, double eps,
                                 double weight_decay, double momentum, bool centered, bool maximize) {
    dispatch_list(params, [&](auto t) {
      using T = decltype(t);
      std::vector<ranvier::RmspropTensor<T>> tensors;
      for (size_t k = 0; k < py::len(params); ++k) {
        const py::array param = params[k].cast<py::array>();
        tensors.push_back({data<T>(param, "param"), data<T>(grads[k].cast<py::array>(), "grad"),
                           data<T>(square_avgs[k].cast<py::array>(), "square_avg"),
                           list_entry<T>(momentum_bufs, k, "momentum_buf"), list_entry<T>(grad_avgs, k, "grad_avg"),
                           static_cast<int64_t>(param.size())});
      }
      cuda::rmsprop_step_multi<T>(tensors.data(), static_cast<int64_t>(tensors.size()), lr, alpha, eps,
                                  weight_decay, momentum, centered, maximize, kStream);
    });
  });

  // ---- dropout and uniform numbers
  m.def("dropout_forward", [](py::array x, py::array y, py::array mask, int64_t n, double p, uint64_t seed,
                              uint64_t offset) {
    dispatch_float(y, [&](auto t) {
      using T = decltype(t);
      cuda::dropout_forward<T>(data<T>(x, "x"), data<T>(y, "y"), data<uint8_t>(mask, "mask"), n, T(p), seed, offset,
                               kStream);
    });
  });
  m.def("dropout_backward", [](py::array dy, py::array mask, py::array dx, int64_t n, double p) {
    dispatch_float(dx, [&](auto t) {
      using T = decltype(t);
      cuda::dropout_backward<T>(data<T>(dy, "dy"), data<uint8_t>(mask, "mask"), data<T>(dx, "dx"), n, T(p), kStream);
    });
  });
  m.def("uniform_fill", [](py::array out, int64_t n, uint64_t seed, uint64_t offset) {
    dispatch_float(out, [&](auto t) {
      using T = decltype(t);
      cuda::uniform_fill<T>(data<T>(out, "out"), n, seed, offset, kStream);
    });
  });

  // ---- fused linear + activation; `act` is the Activation enum's value
  m.def("linear_activation_forward", [](int act, double alpha, py::array x, py::array w, py::object bias,
                                        py::object pre, py::array y, int64_t rows, int64_t in, int64_t out) {
    dispatch_float(y, [&](auto t) {
      using T = decltype(t);
      cuda::linear_activation_forward<T>(static_cast<Activation>(act), T(alpha), data<T>(x, "x"), data<T>(w, "w"),
                                         optional_data<T>(bias, "bias"), optional_data<T>(pre, "pre"),
                                         data<T>(y, "y"), rows, in, out, kStream);
    });
  });
  m.def("linear_activation_backward", [](int act, double alpha, py::array saved, py::array dy, py::array x,
                                         py::array w, py::array dz, py::object dx, py::object dw, py::object dbias,
                                         int64_t rows, int64_t in, int64_t out) {
    dispatch_float(dy, [&](auto t) {
      using T = decltype(t);
      cuda::linear_activation_backward<T>(static_cast<Activation>(act), T(alpha), data<T>(saved, "saved"),
                                          data<T>(dy, "dy"), data<T>(x, "x"), data<T>(w, "w"), data<T>(dz, "dz"),
                                          optional_data<T>(dx, "dx"), optional_data<T>(dw, "dw"),
                                          optional_data<T>(dbias, "dbias"), rows, in, out, kStream);
    });
  });
}

}  // namespace emulated
