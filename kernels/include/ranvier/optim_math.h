// The optimizer update of ONE element, one place for the CPU and CUDA kernels (optim.h has
// the rules). The scalars derived from the double hyper-parameters are computed once on the
// host (make_*_coefficients, in double as PyTorch does in Python, then rounded to T); the
// per-element arithmetic runs in T. Each update reads all inputs of element i before writing
// anything, so grad may be the very same buffer as param.
#pragma once
#include <cmath>

#include "ranvier/common.h"
#include "ranvier/math.h"

namespace ranvier {

// torch.lerp's formula: start + weight * (end - start), written from the nearer end so
// that weight near 1 loses no precision. Adam's exp_avg and RMSprop's grad_avg use it.
template <typename T>
RANVIER_HD T optim_lerp(T start, T end, T weight) {
  return math_abs(weight) < T(0.5) ? start + weight * (end - start) : end - (end - start) * (T(1) - weight);
}

// max that propagates NaN, as torch.maximum does.
template <typename T>
RANVIER_HD T nan_max(T a, T b) {
  return (a != a || a > b) ? a : b;
}

// ---- SGD
template <typename T>
struct SgdCoefficients {
  T momentum, one_minus_dampening, weight_decay, neg_lr;
  bool use_momentum, apply_decay, nesterov, maximize, first_step;
};

template <typename T>
inline SgdCoefficients<T> make_sgd_coefficients(double lr, double momentum, double dampening,
                                                double weight_decay, bool nesterov, bool maximize,
                                                bool first_step) {
  return {static_cast<T>(momentum), static_cast<T>(1.0 - dampening), static_cast<T>(weight_decay),
          static_cast<T>(-lr), momentum != 0.0, weight_decay != 0.0, nesterov, maximize, first_step};
}

template <typename T>
RANVIER_HD void sgd_update(const SgdCoefficients<T>& c, T* param, const T* grad, T* momentum_buf, int64_t i) {
  const T p = param[i];
  T g = c.maximize ? -grad[i] : grad[i];
  if (c.apply_decay) g = g + c.weight_decay * p;
  if (c.use_momentum) {
    // First step: the buffer starts as a copy of the gradient (no dampening).
    const T buf = c.first_step ? g : momentum_buf[i] * c.momentum + c.one_minus_dampening * g;
    momentum_buf[i] = buf;
    g = c.nesterov ? g + c.momentum * buf : buf;
  }
  param[i] = p + c.neg_lr * g;
}

// ---- Adam / AdamW
template <typename T>
struct AdamCoefficients {
  T neg_step_size, bias_correction2_sqrt, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay,
      decay_factor;
  bool apply_decay, decoupled_weight_decay, amsgrad, maximize;
};

template <typename T>
inline AdamCoefficients<T> make_adam_coefficients(double lr, double beta1, double beta2, double eps,
                                                  double weight_decay, int64_t step,
                                                  bool decoupled_weight_decay, bool amsgrad, bool maximize) {
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  return {static_cast<T>(-(lr / bias_correction1)),
          static_cast<T>(std::sqrt(bias_correction2)),
          static_cast<T>(beta2),
          static_cast<T>(1.0 - beta1),
          static_cast<T>(1.0 - beta2),
          static_cast<T>(eps),
          static_cast<T>(weight_decay),
          static_cast<T>(1.0 - lr * weight_decay),
          weight_decay != 0.0,
          decoupled_weight_decay,
          amsgrad,
          maximize};
}

template <typename T>
RANVIER_HD void adam_update(const AdamCoefficients<T>& c, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
                            T* max_exp_avg_sq, int64_t i) {
  T p = param[i];
  T g = c.maximize ? -grad[i] : grad[i];
  if (c.apply_decay) {
    if (c.decoupled_weight_decay) {
      p = p * c.decay_factor;  // AdamW: shrink the parameter itself
    } else {
      g = g + c.weight_decay * p;  // Adam: L2 penalty through the gradient
    }
  }
  const T m = optim_lerp(exp_avg[i], g, c.one_minus_beta1);
  const T v = exp_avg_sq[i] * c.beta2 + c.one_minus_beta2 * g * g;
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  T second_moment = v;
  if (c.amsgrad) {
    second_moment = nan_max(max_exp_avg_sq[i], v);
    max_exp_avg_sq[i] = second_moment;
  }
  const T denom = math_sqrt(second_moment) / c.bias_correction2_sqrt + c.eps;
  param[i] = p + c.neg_step_size * m / denom;
}

// ---- RMSprop
template <typename T>
struct RmspropCoefficients {
  T alpha, one_minus_alpha, eps, weight_decay, momentum, neg_lr;
  bool apply_decay, use_momentum, centered, maximize;
};

template <typename T>
inline RmspropCoefficients<T> make_rmsprop_coefficients(double lr, double alpha, double eps, double weight_decay,
                                                        double momentum, bool centered, bool maximize) {
  return {static_cast<T>(alpha),        static_cast<T>(1.0 - alpha),    static_cast<T>(eps),
          static_cast<T>(weight_decay), static_cast<T>(momentum),       static_cast<T>(-lr),
          weight_decay != 0.0,          momentum > 0.0,                 centered,
          maximize};
}

template <typename T>
RANVIER_HD void rmsprop_update(const RmspropCoefficients<T>& c, T* param, const T* grad, T* square_avg,
                               T* momentum_buf, T* grad_avg, int64_t i) {
  const T p = param[i];
  T g = c.maximize ? -grad[i] : grad[i];
  if (c.apply_decay) g = g + c.weight_decay * p;
  const T sq = square_avg[i] * c.alpha + c.one_minus_alpha * g * g;
  square_avg[i] = sq;
  T avg;
  if (c.centered) {
    // Variance estimate E[g^2] - E[g]^2, with E[g] updated first.
    const T gavg = optim_lerp(grad_avg[i], g, c.one_minus_alpha);
    grad_avg[i] = gavg;
    avg = math_sqrt(sq - gavg * gavg) + c.eps;
  } else {
    avg = math_sqrt(sq) + c.eps;
  }
  if (c.use_momentum) {
    const T buf = momentum_buf[i] * c.momentum + g / avg;
    momentum_buf[i] = buf;
    param[i] = p + c.neg_lr * buf;
  } else {
    param[i] = p + c.neg_lr * g / avg;  // as addcdiv: (value * g) / avg
  }
}

}  // namespace ranvier
