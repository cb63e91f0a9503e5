// Fused in-place optimizer updates on the CPU: one pass over param, grad and state, with
// PyTorch's single-tensor update rules (torch.optim.SGD, Adam, AdamW, RMSprop).
//
// Each element reads all of its inputs into locals before writing anything, so grad may be
// the very same buffer as param (the bindings forbid any other aliasing).
#include "ranvier/optim.h"

#include <cmath>

#include "parallel.h"

namespace ranvier::cpu {

namespace {

// torch.lerp's formula: start + weight * (end - start), written from the nearer end so
// that weight near 1 loses no precision. Adam's exp_avg and RMSprop's grad_avg use it.
template <typename T>
inline T lerp(T start, T end, T weight) {
  return std::abs(weight) < T(0.5) ? start + weight * (end - start)
                                   : end - (end - start) * (T(1) - weight);
}

// max that propagates NaN, as torch.maximum does.
template <typename T>
inline T nan_max(T a, T b) {
  return (a != a || a > b) ? a : b;
}

// An optimizer update is ~10-20 flops per element over 3-5 arrays.
constexpr int64_t kUpdateCost = 8;

}  // namespace

// param, grad, momentum_buf (n)
template <typename T>
void sgd_step(T* param, const T* grad, T* momentum_buf, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool maximize, bool first_step) {
  const bool use_momentum = momentum != 0.0;
  const bool apply_decay = weight_decay != 0.0;
  const T momentum_t = static_cast<T>(momentum);
  const T one_minus_dampening = static_cast<T>(1.0 - dampening);
  const T weight_decay_t = static_cast<T>(weight_decay);
  const T neg_lr = static_cast<T>(-lr);
  parallel_for(n, kUpdateCost, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T p = param[i];
      T g = maximize ? -grad[i] : grad[i];
      if (apply_decay) g = g + weight_decay_t * p;
      if (use_momentum) {
        // First step: the buffer starts as a copy of the gradient (no dampening).
        const T buf = first_step ? g : momentum_buf[i] * momentum_t + one_minus_dampening * g;
        momentum_buf[i] = buf;
        g = nesterov ? g + momentum_t * buf : buf;
      }
      param[i] = p + neg_lr * g;
    }
  });
}

// param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (n)
template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
               double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step,
               bool decoupled_weight_decay, bool amsgrad, bool maximize) {
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const T neg_step_size = static_cast<T>(-(lr / bias_correction1));
  const T bias_correction2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
  const T beta2_t = static_cast<T>(beta2);
  const T one_minus_beta1 = static_cast<T>(1.0 - beta1);
  const T one_minus_beta2 = static_cast<T>(1.0 - beta2);
  const T eps_t = static_cast<T>(eps);
  const bool apply_decay = weight_decay != 0.0;
  const T weight_decay_t = static_cast<T>(weight_decay);
  const T decay_factor = static_cast<T>(1.0 - lr * weight_decay);
  parallel_for(n, kUpdateCost, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T p = param[i];
      T g = maximize ? -grad[i] : grad[i];
      if (apply_decay) {
        if (decoupled_weight_decay) {
          p = p * decay_factor;  // AdamW: shrink the parameter itself
        } else {
          g = g + weight_decay_t * p;  // Adam: L2 penalty through the gradient
        }
      }
      const T m = lerp(exp_avg[i], g, one_minus_beta1);
      const T v = exp_avg_sq[i] * beta2_t + one_minus_beta2 * g * g;
      exp_avg[i] = m;
      exp_avg_sq[i] = v;
      T second_moment = v;
      if (amsgrad) {
        second_moment = nan_max(max_exp_avg_sq[i], v);
        max_exp_avg_sq[i] = second_moment;
      }
      const T denom = std::sqrt(second_moment) / bias_correction2_sqrt + eps_t;
      param[i] = p + neg_step_size * m / denom;
    }
  });
}

// param, grad, square_avg, momentum_buf, grad_avg (n)
template <typename T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* momentum_buf, T* grad_avg, int64_t n,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize) {
  const T alpha_t = static_cast<T>(alpha);
  const T one_minus_alpha = static_cast<T>(1.0 - alpha);
  const T eps_t = static_cast<T>(eps);
  const bool apply_decay = weight_decay != 0.0;
  const T weight_decay_t = static_cast<T>(weight_decay);
  const bool use_momentum = momentum > 0.0;
  const T momentum_t = static_cast<T>(momentum);
  const T neg_lr = static_cast<T>(-lr);
  parallel_for(n, kUpdateCost, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T p = param[i];
      T g = maximize ? -grad[i] : grad[i];
      if (apply_decay) g = g + weight_decay_t * p;
      const T sq = square_avg[i] * alpha_t + one_minus_alpha * g * g;
      square_avg[i] = sq;
      T avg;
      if (centered) {
        // Variance estimate E[g^2] - E[g]^2, with E[g] updated first.
        const T gavg = lerp(grad_avg[i], g, one_minus_alpha);
        grad_avg[i] = gavg;
        avg = std::sqrt(sq - gavg * gavg) + eps_t;
      } else {
        avg = std::sqrt(sq) + eps_t;
      }
      if (use_momentum) {
        const T buf = momentum_buf[i] * momentum_t + g / avg;
        momentum_buf[i] = buf;
        param[i] = p + neg_lr * buf;
      } else {
        param[i] = p + neg_lr * g / avg;  // as addcdiv: (value * g) / avg
      }
    }
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

}  // namespace ranvier::cpu
