// Fused in-place optimizer updates on the CPU: one pass over param, grad and state, with
// PyTorch's single-tensor update rules (torch.optim.SGD, Adam, AdamW, RMSprop).
//
// The update of one element lives in optim_math.h (shared with the CUDA kernels); it reads
// all of its inputs before writing anything, so grad may be the very same buffer as param
// (the bindings forbid any other aliasing).
#include "ranvier/optim.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "parallel.h"
#include "ranvier/optim_math.h"

namespace ranvier::cpu {

namespace {

// An optimizer update is ~10-20 flops per element over 3-5 arrays.
constexpr int64_t kUpdateCost = 8;

// Calls f(std::bool_constant<flags>...) with each runtime flag turned into a compile-time
// one, so that the per-element loops below see their options as constants: their branches
// fold away and the loops vectorise (no control flow, no conditional stores).
template <typename F>
void with_constant_flags(const F& f) {
  f();
}
template <typename F, typename... Flags>
void with_constant_flags(const F& f, bool flag, Flags... flags) {
  if (flag) {
    with_constant_flags([&](auto... more) { f(std::true_type{}, more...); }, flags...);
  } else {
    with_constant_flags([&](auto... more) { f(std::false_type{}, more...); }, flags...);
  }
}

// The per-element loops over [begin, end) of one tensor, with the coefficients' flags fixed
// at compile time (the copy `c` gets the constants, which the inlined update then folds).
// Elements are independent and each update reads element i before writing it, so the loop
// has no carried dependence even when grad is param itself (ivdep spares the alias checks).
// -ffp-contract=off and no reassociation: the vector code rounds every operation as the
// scalar code does (SIMD sqrt and division are correctly rounded), bit for bit.
template <typename T>
void sgd_range(const SgdCoefficients<T>& coefficients, T* param, const T* grad, T* momentum_buf, int64_t begin,
               int64_t end) {
  with_constant_flags(
      [&](auto maximize, auto apply_decay, auto use_momentum, auto nesterov, auto first_step) {
        SgdCoefficients<T> c = coefficients;
        c.maximize = maximize;
        c.apply_decay = apply_decay;
        c.use_momentum = use_momentum;
        c.nesterov = nesterov;
        c.first_step = first_step;
#pragma GCC ivdep
        for (int64_t i = begin; i < end; ++i) sgd_update(c, param, grad, momentum_buf, i);
      },
      coefficients.maximize, coefficients.apply_decay, coefficients.use_momentum,
      coefficients.use_momentum && coefficients.nesterov, coefficients.use_momentum && coefficients.first_step);
}

template <typename T>
void adam_range(const AdamCoefficients<T>& coefficients, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
                T* max_exp_avg_sq, int64_t begin, int64_t end) {
  with_constant_flags(
      [&](auto maximize, auto apply_decay, auto decoupled_weight_decay, auto amsgrad) {
        AdamCoefficients<T> c = coefficients;
        c.maximize = maximize;
        c.apply_decay = apply_decay;
        c.decoupled_weight_decay = decoupled_weight_decay;
        c.amsgrad = amsgrad;
#pragma GCC ivdep
        for (int64_t i = begin; i < end; ++i) adam_update(c, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i);
      },
      coefficients.maximize, coefficients.apply_decay,
      coefficients.apply_decay && coefficients.decoupled_weight_decay, coefficients.amsgrad);
}

template <typename T>
void rmsprop_range(const RmspropCoefficients<T>& coefficients, T* param, const T* grad, T* square_avg,
                   T* momentum_buf, T* grad_avg, int64_t begin, int64_t end) {
  with_constant_flags(
      [&](auto maximize, auto apply_decay, auto centered, auto use_momentum) {
        RmspropCoefficients<T> c = coefficients;
        c.maximize = maximize;
        c.apply_decay = apply_decay;
        c.centered = centered;
        c.use_momentum = use_momentum;
#pragma GCC ivdep
        for (int64_t i = begin; i < end; ++i) {
          rmsprop_update(c, param, grad, square_avg, momentum_buf, grad_avg, i);
        }
      },
      coefficients.maximize, coefficients.apply_decay, coefficients.centered, coefficients.use_momentum);
}

}  // namespace

// param, grad, momentum_buf (n)
template <typename T>
void sgd_step(T* param, const T* grad, T* momentum_buf, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool maximize, bool first_step) {
  const SgdCoefficients<T> c =
      make_sgd_coefficients<T>(lr, momentum, dampening, weight_decay, nesterov, maximize, first_step);
  parallel_for(n, kUpdateCost, [&](int64_t begin, int64_t end) { sgd_range(c, param, grad, momentum_buf, begin, end); });
}

// param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (n)
template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
               double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step,
               bool decoupled_weight_decay, bool amsgrad, bool maximize) {
  const AdamCoefficients<T> c = make_adam_coefficients<T>(lr, beta1, beta2, eps, weight_decay, step,
                                                          decoupled_weight_decay, amsgrad, maximize);
  parallel_for(n, kUpdateCost, [&](int64_t begin, int64_t end) {
    adam_range(c, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, begin, end);
  });
}

// param, grad, square_avg, momentum_buf, grad_avg (n)
template <typename T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* momentum_buf, T* grad_avg, int64_t n,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize) {
  const RmspropCoefficients<T> c =
      make_rmsprop_coefficients<T>(lr, alpha, eps, weight_decay, momentum, centered, maximize);
  parallel_for(n, kUpdateCost, [&](int64_t begin, int64_t end) {
    rmsprop_range(c, param, grad, square_avg, momentum_buf, grad_avg, begin, end);
  });
}

template void sgd_step<float>(float*, const float*, float*, int64_t, double, double, double, double,
                              bool, bool, bool);
template void sgd_step<double>(double*, const double*, double*, int64_t, double, double, double,
                               double, bool, bool, bool);
template void adam_step<float>(float*, const float*, float*, float*, float*, int64_t, double, double,
                               double, double, double, int64_t, bool, bool, bool);
template void adam_step<double>(double*, const double*, double*, double*, double*, int64_t, double,
                                double, double, double, double, int64_t, bool, bool, bool);
template void rmsprop_step<float>(float*, const float*, float*, float*, float*, int64_t, double, double,
                                  double, double, double, bool, bool);
template void rmsprop_step<double>(double*, const double*, double*, double*, double*, int64_t, double,
                                   double, double, double, double, bool, bool);

// ---- Multi-tensor updates -------------------------------------------------------------------
namespace {

// Runs update(k, begin, end) over elements [begin, end) of entry k, for all elements of all
// entries, in one parallel loop over the entries' concatenated element ranges: entry k owns
// [offsets[k], offsets[k + 1]).
template <typename Entry, typename UpdateRange>
void for_each_range_of_all(const Entry* entries, int64_t count, const UpdateRange& update) {
  std::vector<int64_t> offsets(static_cast<size_t>(count) + 1, 0);
  for (int64_t k = 0; k < count; ++k) offsets[k + 1] = offsets[k] + entries[k].n;
  parallel_for(offsets[count], kUpdateCost, [&](int64_t begin, int64_t end) {
    // The entry holding `begin`: the last one whose range starts at or before it (empty
    // entries start where the next one does and are skipped).
    int64_t k = std::upper_bound(offsets.begin(), offsets.end(), begin) - offsets.begin() - 1;
    for (int64_t i = begin; i < end; ++k) {
      const int64_t stop = std::min(end, offsets[k + 1]);
      if (i < stop) update(k, i - offsets[k], stop - offsets[k]);
      i = std::max(i, stop);
    }
  });
}

}  // namespace

template <typename T>
void sgd_step_multi(const SgdTensor<T>* tensors, int64_t count, double lr, double momentum, double dampening,
                    double weight_decay, bool nesterov, bool maximize) {
  // Two coefficient sets: first_step is the only per-parameter difference.
  const SgdCoefficients<T> later =
      make_sgd_coefficients<T>(lr, momentum, dampening, weight_decay, nesterov, maximize, false);
  const SgdCoefficients<T> first =
      make_sgd_coefficients<T>(lr, momentum, dampening, weight_decay, nesterov, maximize, true);
  for_each_range_of_all(tensors, count, [&](int64_t k, int64_t begin, int64_t end) {
    const SgdTensor<T>& t = tensors[k];
    sgd_range(t.first_step ? first : later, t.param, t.grad, t.momentum_buf, begin, end);
  });
}

template <typename T>
void adam_step_multi(const AdamTensor<T>* tensors, int64_t count, double lr, double beta1, double beta2,
                     double eps, double weight_decay, bool decoupled_weight_decay, bool amsgrad, bool maximize) {
  // The bias corrections depend on each parameter's own step.
  std::vector<AdamCoefficients<T>> coefficients;
  coefficients.reserve(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) {
    coefficients.push_back(make_adam_coefficients<T>(lr, beta1, beta2, eps, weight_decay, tensors[k].step,
                                                     decoupled_weight_decay, amsgrad, maximize));
  }
  for_each_range_of_all(tensors, count, [&](int64_t k, int64_t begin, int64_t end) {
    const AdamTensor<T>& t = tensors[k];
    adam_range(coefficients[k], t.param, t.grad, t.exp_avg, t.exp_avg_sq, t.max_exp_avg_sq, begin, end);
  });
}

template <typename T>
void rmsprop_step_multi(const RmspropTensor<T>* tensors, int64_t count, double lr, double alpha, double eps,
                        double weight_decay, double momentum, bool centered, bool maximize) {
  const RmspropCoefficients<T> c =
      make_rmsprop_coefficients<T>(lr, alpha, eps, weight_decay, momentum, centered, maximize);
  for_each_range_of_all(tensors, count, [&](int64_t k, int64_t begin, int64_t end) {
    const RmspropTensor<T>& t = tensors[k];
    rmsprop_range(c, t.param, t.grad, t.square_avg, t.momentum_buf, t.grad_avg, begin, end);
  });
}

#define RANVIER_INSTANTIATE_OPTIM_MULTI(T)                                                                    \
  template void sgd_step_multi<T>(const SgdTensor<T>*, int64_t, double, double, double, double, bool, bool); \
  template void adam_step_multi<T>(const AdamTensor<T>*, int64_t, double, double, double, double, double,   \
                                   bool, bool, bool);                                                         \
  template void rmsprop_step_multi<T>(const RmspropTensor<T>*, int64_t, double, double, double, double,     \
                                      double, bool, bool);

RANVIER_INSTANTIATE_OPTIM_MULTI(float)
RANVIER_INSTANTIATE_OPTIM_MULTI(double)

#undef RANVIER_INSTANTIATE_OPTIM_MULTI

}  // namespace ranvier::cpu
