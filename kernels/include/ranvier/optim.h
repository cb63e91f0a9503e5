// Fused in-place optimizer updates: one pass over a parameter, its gradient and its state,
// following PyTorch's update rules (torch.optim, single-tensor forms) exactly.
// Hyper-parameters come in as double: scalars derived from them (1 - beta, bias corrections,
// lr / bias_correction) are computed in double, as PyTorch does in Python, and then used in
// T for the per-element arithmetic, so float32 updates round like PyTorch's.
#pragma once
#include "ranvier/common.h"

namespace ranvier {

// ---- Multi-tensor updates: every parameter of one optimizer group in one call.
// One entry per parameter (all of one dtype, on one device); each entry's arrays hold n
// elements. The per-parameter counters (SGD's first_step, Adam's step) may differ between
// entries: a parameter that had no gradient in some step lags behind. Each entry is updated
// exactly as the single-tensor function above would update it (bit for bit).
template <typename T>
struct SgdTensor {
  T* param;
  const T* grad;
  T* momentum_buf;  // null when momentum == 0
  int64_t n;
  bool first_step;
};
template <typename T>
struct AdamTensor {
  T* param;
  const T* grad;
  T* exp_avg;
  T* exp_avg_sq;
  T* max_exp_avg_sq;  // null unless amsgrad
  int64_t n;
  int64_t step;  // this parameter's step number, from 1
};
template <typename T>
struct RmspropTensor {
  T* param;
  const T* grad;
  T* square_avg;
  T* momentum_buf;  // null unless momentum > 0
  T* grad_avg;      // null unless centered
  int64_t n;
};

}  // namespace ranvier

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


// Multi-tensor forms: tensors[0 .. count) updated in one parallel loop over all their
// elements (many small parameters cost one OpenMP region, not one each).
template <typename T>
void sgd_step_multi(const SgdTensor<T>* tensors, int64_t count, double lr, double momentum, double dampening,
                    double weight_decay, bool nesterov, bool maximize);
template <typename T>
void adam_step_multi(const AdamTensor<T>* tensors, int64_t count, double lr, double beta1, double beta2,
                     double eps, double weight_decay, bool decoupled_weight_decay, bool amsgrad, bool maximize);
template <typename T>
void rmsprop_step_multi(const RmspropTensor<T>* tensors, int64_t count, double lr, double alpha, double eps,
                        double weight_decay, double momentum, bool centered, bool maximize);

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


// Multi-tensor forms: a table of (tensor, chunk) pairs passed as a kernel argument, so that
// up to kMaxTensorsPerLaunch parameters (and their chunks) take one launch.
template <typename T>
void sgd_step_multi(const SgdTensor<T>* tensors, int64_t count, double lr, double momentum, double dampening,
                    double weight_decay, bool nesterov, bool maximize, StreamHandle stream);
template <typename T>
void adam_step_multi(const AdamTensor<T>* tensors, int64_t count, double lr, double beta1, double beta2,
                     double eps, double weight_decay, bool decoupled_weight_decay, bool amsgrad, bool maximize,
                     StreamHandle stream);
template <typename T>
void rmsprop_step_multi(const RmspropTensor<T>* tensors, int64_t count, double lr, double alpha, double eps,
                        double weight_decay, double momentum, bool centered, bool maximize, StreamHandle stream);

}  // namespace ranvier::cuda
