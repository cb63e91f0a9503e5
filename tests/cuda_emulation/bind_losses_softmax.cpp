// The losses (ranvier/losses.h) and softmax (ranvier/softmax.h), cuda namespace. `reduction`
// is "none", "mean" or "sum" (the Reduction enum); optional weights are None for a null
// pointer. The two input checks return (index, value) as the bindings of ranvier._C use them.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "bindings.h"
#include "ranvier/losses.h"
#include "ranvier/softmax.h"

namespace emulated {

namespace {

ranvier::Reduction parse_reduction(const std::string& name) {
  if (name == "none") return ranvier::Reduction::None;
  if (name == "mean") return ranvier::Reduction::Mean;
  if (name == "sum") return ranvier::Reduction::Sum;
  throw std::invalid_argument("reduction must be none, mean or sum, got " + name);
}

}  // namespace

void bind_losses_softmax(py::module_& m) {
  namespace cuda = ranvier::cuda;

  // ---- mse: pred, target, dpred (n); out, dout (n) or (1)
  m.def("mse_loss_forward", [](py::array pred, py::array target, py::array out, int64_t n, const std::string& r) {
    dispatch_float(out, [&](auto t) {
      using T = decltype(t);
      cuda::mse_loss_forward<T>(data<T>(pred, "pred"), data<T>(target, "target"), data<T>(out, "out"), n,
                                parse_reduction(r), kStream);
    });
  });
  m.def("mse_loss_backward", [](py::array pred, py::array target, py::array dout, py::array dpred, int64_t n,
                                const std::string& r) {
    dispatch_float(dpred, [&](auto t) {
      using T = decltype(t);
      cuda::mse_loss_backward<T>(data<T>(pred, "pred"), data<T>(target, "target"), data<T>(dout, "dout"),
                                 data<T>(dpred, "dpred"), n, parse_reduction(r), kStream);
    });
  });

  // ---- bce on probabilities: prob, target, weight (or None), dprob (n)
  m.def("bce_loss_forward", [](py::array prob, py::array target, py::object weight, py::array out, int64_t n,
                               const std::string& r) {
    dispatch_float(out, [&](auto t) {
      using T = decltype(t);
      cuda::bce_loss_forward<T>(data<T>(prob, "prob"), data<T>(target, "target"), optional_data<T>(weight, "weight"),
                                data<T>(out, "out"), n, parse_reduction(r), kStream);
    });
  });
  m.def("bce_loss_backward", [](py::array prob, py::array target, py::object weight, py::array dout,
                                py::array dprob, int64_t n, const std::string& r) {
    dispatch_float(dprob, [&](auto t) {
      using T = decltype(t);
      cuda::bce_loss_backward<T>(data<T>(prob, "prob"), data<T>(target, "target"),
                                 optional_data<T>(weight, "weight"), data<T>(dout, "dout"), data<T>(dprob, "dprob"),
                                 n, parse_reduction(r), kStream);
    });
  });

  // ---- bce on logits: logits, target, weight (or None), dlogits (n); pos_weight (classes) or None
  m.def("bce_with_logits_forward", [](py::array logits, py::array target, py::object weight, py::object pos_weight,
                                      py::array out, int64_t n, int64_t classes, const std::string& r) {
    dispatch_float(out, [&](auto t) {
      using T = decltype(t);
      cuda::bce_with_logits_forward<T>(data<T>(logits, "logits"), data<T>(target, "target"),
                                       optional_data<T>(weight, "weight"), optional_data<T>(pos_weight, "pos_weight"),
                                       data<T>(out, "out"), n, classes, parse_reduction(r), kStream);
    });
  });
  m.def("bce_with_logits_backward", [](py::array logits, py::array target, py::object weight,
                                       py::object pos_weight, py::array dout, py::array dlogits, int64_t n,
                                       int64_t classes, const std::string& r) {
    dispatch_float(dlogits, [&](auto t) {
      using T = decltype(t);
      cuda::bce_with_logits_backward<T>(data<T>(logits, "logits"), data<T>(target, "target"),
                                        optional_data<T>(weight, "weight"),
                                        optional_data<T>(pos_weight, "pos_weight"), data<T>(dout, "dout"),
                                        data<T>(dlogits, "dlogits"), n, classes, parse_reduction(r), kStream);
    });
  });

  // ---- cross-entropy: logits, dlogits (rows, classes); target (rows) int64; class_weight
  // (classes) or None; out, dout (rows) or (1)
  m.def("cross_entropy_forward", [](py::array logits, py::array target, py::object class_weight, py::array out,
                                    int64_t rows, int64_t classes, int64_t ignore_index, const std::string& r) {
    dispatch_float(out, [&](auto t) {
      using T = decltype(t);
      cuda::cross_entropy_forward<T>(data<T>(logits, "logits"), data<int64_t>(target, "target"),
                                     optional_data<T>(class_weight, "class_weight"), data<T>(out, "out"), rows,
                                     classes, ignore_index, parse_reduction(r), kStream);
    });
  });
  m.def("cross_entropy_backward", [](py::array logits, py::array target, py::object class_weight, py::array dout,
                                     py::array dlogits, int64_t rows, int64_t classes, int64_t ignore_index,
                                     const std::string& r) {
    dispatch_float(dlogits, [&](auto t) {
      using T = decltype(t);
      cuda::cross_entropy_backward<T>(data<T>(logits, "logits"), data<int64_t>(target, "target"),
                                      optional_data<T>(class_weight, "class_weight"), data<T>(dout, "dout"),
                                      data<T>(dlogits, "dlogits"), rows, classes, ignore_index, parse_reduction(r),
                                      kStream);
    });
  });

  // ---- input checks: (first offending index or -1, its value; the value is 0 when none)
  m.def("first_invalid_class_target", [](py::array target, int64_t rows, int64_t classes, int64_t ignore_index) {
    int64_t bad_value = 0;
    const int64_t index =
        cuda::first_invalid_class_target(data<int64_t>(target, "target"), rows, classes, ignore_index, &bad_value,
                                         kStream);
    return std::make_pair(index, bad_value);
  });
  m.def("first_invalid_probability", [](py::array prob, int64_t n) {
    double bad_value = 0;
    const int64_t index = dispatch_float(prob, [&](auto t) {
      using T = decltype(t);
      return cuda::first_invalid_probability<T>(data<T>(prob, "prob"), n, &bad_value, kStream);
    });
    return std::make_pair(index, bad_value);
  });

  // ---- softmax / log_softmax: x, y, dy, dx (outer, dim, inner)
  m.def("softmax_forward", [](py::array x, py::array y, int64_t outer, int64_t dim, int64_t inner, bool log) {
    dispatch_float(y, [&](auto t) {
      using T = decltype(t);
      cuda::softmax_forward<T>(data<T>(x, "x"), data<T>(y, "y"), outer, dim, inner, log, kStream);
    });
  });
  m.def("softmax_backward", [](py::array y, py::array dy, py::array dx, int64_t outer, int64_t dim, int64_t inner,
                               bool log) {
    dispatch_float(dx, [&](auto t) {
      using T = decltype(t);
      cuda::softmax_backward<T>(data<T>(y, "y"), data<T>(dy, "dy"), data<T>(dx, "dx"), outer, dim, inner, log,
                                kStream);
    });
  });
}

}  // namespace emulated
