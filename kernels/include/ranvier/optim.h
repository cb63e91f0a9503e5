// Fused in-place optimizer updates: one pass over a parameter, its gradient and its state,
// following PyTorch's update rules (torch.optim, single-tensor forms) exactly.
// Hyper-parameters come in as double: scalars derived from them (1 - beta, bias corrections,
// lr / bias_correction) are computed in double, as PyTorch does in Python, and then used in
// T for the per-element arithmetic, so float32 updates round like PyTorch's.
#pragma once
#include "ranvier/common.h"

namespace ranvier::cpu {

// SGD. g = grad + weight_decay * param (or -grad when maximize);
// with momentum: buf = g on the first step, else momentum * buf + (1 - dampening) * g;
// the step direction is g + momentum * buf (nesterov) or buf; param -= lr * direction.
// momentum_buf (n) may be null when momentum == 0.
template <typename T>
void sgd_step(T* param, const T* grad, T* momentum_buf, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool maximize, bool first_step);

// Adam (decoupled_weight_decay false) and AdamW (true). `step` is the step number after
// incrementing (1 on the first call), used for bias correction.
// Adam:  g += weight_decay * param.  AdamW: param *= 1 - lr * weight_decay.
// m = beta1 * m + (1 - beta1) * g (computed as torch.lerp(m, g, 1 - beta1));  v = beta2 * v + (1 - beta2) * g^2
// amsgrad: v_max = max(v_max, v) and v_max replaces v below (max_exp_avg_sq may be null otherwise)
// param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
               double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step,
               bool decoupled_weight_decay, bool amsgrad, bool maximize);

// RMSprop. g = grad + weight_decay * param;  sq = alpha * sq + (1 - alpha) * g^2;
// centered: gavg = alpha * gavg + (1 - alpha) * g, avg = sqrt(sq - gavg^2) + eps, else sqrt(sq) + eps;
// momentum > 0: buf = momentum * buf + g / avg, param -= lr * buf; else param -= lr * g / avg.
// momentum_buf and grad_avg (n) may be null when unused.
template <typename T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* momentum_buf, T* grad_avg, int64_t n,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize);

}  // namespace ranvier::cpu

namespace ranvier::cuda {

// The CUDA twins of the above, on `stream`: the same per-element update (optim_math.h),
// compiled without FMA contraction so that each step equals the CPU's bit for bit.
template <typename T>
void sgd_step(T* param, const T* grad, T* momentum_buf, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool maximize, bool first_step,
              StreamHandle stream);
template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
               double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step,
               bool decoupled_weight_decay, bool amsgrad, bool maximize, StreamHandle stream);
template <typename T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* momentum_buf, T* grad_avg, int64_t n,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize, StreamHandle stream);

}  // namespace ranvier::cuda
