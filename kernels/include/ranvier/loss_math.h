// The loss formulas, one place for the CPU and CUDA kernels: each function is the loss term
// or gradient of ONE element (or one row, for cross-entropy), in double (Accum) as the
// reductions accumulate. The kernels map them over arrays and reduce.
#pragma once
#include "ranvier/activation_math.h"
#include "ranvier/common.h"
#include "ranvier/math.h"

namespace ranvier {

using LossAccum = double;

// PyTorch clamps log(p) and log(1 - p) at -100 in binary_cross_entropy, so that p = 0 or 1
// gives a large finite loss instead of inf.
constexpr LossAccum kBceLogFloor = -100.0;
// ... and bounds the denominator p * (1 - p) of its gradient from below by this.
constexpr LossAccum kBceGradEpsilon = 1e-12;

// std::max's rule ((a < b) ? b : a), usable on the device: a NaN `a` is returned as is.
RANVIER_HD LossAccum loss_max(LossAccum a, LossAccum b) { return (a < b) ? b : a; }

// The weight of element i: weight[i], or 1 without a weight array.
template <typename T>
RANVIER_HD LossAccum element_weight(const T* weight, int64_t i) {
  return weight ? static_cast<LossAccum>(weight[i]) : LossAccum(1);
}

// loss * weight[i] (the loss itself without a weight array, so unweighted losses round as
// before).
template <typename T>
RANVIER_HD LossAccum weighted_loss(const T* weight, int64_t i, LossAccum loss) {
  return weight ? static_cast<LossAccum>(weight[i]) * loss : loss;
}

// The factor every element's gradient is multiplied by for a reduced loss: dout[0] / n
// (Mean) or dout[0] (Sum). (For None, element i uses dout[i] itself.)
template <typename T>
RANVIER_HD T reduced_grad_scale(T dout0, int64_t n, Reduction reduction) {
  return reduction == Reduction::Mean ? static_cast<T>(static_cast<LossAccum>(dout0) / static_cast<LossAccum>(n))
                                      : dout0;
}

// ---- mse: (pred - target)^2; d/dpred = 2 (pred - target) * scale
template <typename T>
RANVIER_HD LossAccum mse_term(T pred, T target) {
  const LossAccum d = static_cast<LossAccum>(pred) - static_cast<LossAccum>(target);
  return d * d;
}
template <typename T>
RANVIER_HD T mse_grad(T pred, T target, T scale) {
  return T(2) * (pred - target) * scale;
}

// ---- binary cross-entropy on probabilities p in [0, 1] with targets t (unweighted)
// The same from log(p) and log1p(-p) (the CPU kernel computes the logs a block at a time).
RANVIER_HD LossAccum bce_term_from_logs(LossAccum log_p, LossAccum log1p_minus_p, LossAccum t) {
  const LossAccum log_p_floored = loss_max(log_p, kBceLogFloor);
  const LossAccum log_1mp_floored = loss_max(log1p_minus_p, kBceLogFloor);
  return -(t * log_p_floored + (LossAccum(1) - t) * log_1mp_floored);
}
RANVIER_HD LossAccum bce_term(LossAccum p, LossAccum t) {
  return bce_term_from_logs(math_log(p), math_log1p(-p), t);
}
// d/dp = (p - t) / (p (1 - p)), the denominator bounded below as PyTorch does.
RANVIER_HD LossAccum bce_grad(LossAccum p, LossAccum t) {
  return (p - t) / loss_max(p * (LossAccum(1) - p), kBceGradEpsilon);
}

// ---- binary cross-entropy on logits z with targets t and positive weight pw (1 without)
// softplus(-z) = log(1 + exp(-z)) = log1p(exp(-|z|)) + max(-z, 0), without overflow.
// ... from l = log1p(exp(-|z|)) (the CPU kernel computes it a block at a time).
RANVIER_HD LossAccum softplus_neg_from_log1p(LossAccum z, LossAccum l) {
  return l + loss_max(-z, LossAccum(0));
}
RANVIER_HD LossAccum softplus_neg(LossAccum z) {
  return softplus_neg_from_log1p(z, math_log1p(math_exp(-math_abs(z))));
}
// loss = (1 - t) z + (1 + (pw - 1) t) softplus(-z); with pw = 1 this is the familiar
// max(z, 0) - z t + log1p(exp(-|z|)). `pos_weight` may be null.
// (`softplus` is softplus_neg(z).)
template <typename T>
RANVIER_HD LossAccum bce_with_logits_term_from_softplus(LossAccum z, LossAccum t, LossAccum softplus,
                                                        const T* pos_weight, int64_t i, int64_t classes) {
  const LossAccum log_weight =
      pos_weight ? LossAccum(1) + (static_cast<LossAccum>(pos_weight[i % classes]) - LossAccum(1)) * t
                 : LossAccum(1);
  return (LossAccum(1) - t) * z + log_weight * softplus;
}
template <typename T>
RANVIER_HD LossAccum bce_with_logits_term(LossAccum z, LossAccum t, const T* pos_weight, int64_t i,
                                          int64_t classes) {
  return bce_with_logits_term_from_softplus(z, t, softplus_neg(z), pos_weight, i, classes);
}
// d/dz = (1 + (pw - 1) t) sigmoid(z) - pw t; with pw = 1: sigmoid(z) - t.
// The same from s = sigmoid(z) (the CPU kernel computes the sigmoids a block at a time).
template <typename T>
RANVIER_HD LossAccum bce_with_logits_grad_from_sigmoid(LossAccum s, LossAccum t, const T* pos_weight,
                                                       int64_t i, int64_t classes) {
  const LossAccum pw = pos_weight ? static_cast<LossAccum>(pos_weight[i % classes]) : LossAccum(1);
  return (LossAccum(1) + (pw - LossAccum(1)) * t) * s - pw * t;
}
template <typename T>
RANVIER_HD LossAccum bce_with_logits_grad(LossAccum z, LossAccum t, const T* pos_weight, int64_t i,
                                          int64_t classes) {
  return bce_with_logits_grad_from_sigmoid(stable_sigmoid(z), t, pos_weight, i, classes);
}

// ---- cross-entropy of one row z (classes) against class t
// max and log(sum exp(z - max)) of one row of logits; a NaN anywhere makes the row NaN.
template <typename T>
struct RowLogSumExp {
  T max;
  LossAccum log_sum;  // log(sum exp(z - max))
};

template <typename T>
RANVIER_HD RowLogSumExp<T> row_log_sum_exp(const T* z, int64_t classes) {
  T row_max = z[0];
  for (int64_t c = 1; c < classes; ++c) {
    if (z[c] > row_max || z[c] != z[c]) row_max = z[c];
  }
  LossAccum sum = 0;
  for (int64_t c = 0; c < classes; ++c) sum += static_cast<LossAccum>(math_exp(z[c] - row_max));
  return {row_max, math_log(sum)};
}

template <typename T>
RANVIER_HD LossAccum class_weight_of(const T* class_weight, int64_t t) {
  return class_weight ? static_cast<LossAccum>(class_weight[t]) : LossAccum(1);
}

// Weighted loss of one non-ignored row: w * (log(sum exp z) - z[t]).
template <typename T>
RANVIER_HD LossAccum cross_entropy_row_from(const T* z, const RowLogSumExp<T>& lse, int64_t t,
                                            LossAccum w) {
  return w * ((static_cast<LossAccum>(lse.max) - static_cast<LossAccum>(z[t])) + lse.log_sum);
}
template <typename T>
RANVIER_HD LossAccum cross_entropy_row(const T* z, int64_t classes, int64_t t, LossAccum w) {
  return cross_entropy_row_from(z, row_log_sum_exp(z, classes), t, w);
}

// d loss_r / d z_c = g * (softmax(z)_c - [c == t]), g = w[t] * the incoming gradient.
// softmax(z)_c = exp(cross_entropy_log_softmax(z_c, lse)).
template <typename T>
RANVIER_HD LossAccum cross_entropy_log_softmax(T zc, const RowLogSumExp<T>& lse) {
  return static_cast<LossAccum>(zc - lse.max) - lse.log_sum;
}
template <typename T>
RANVIER_HD T cross_entropy_grad_from_softmax(LossAccum p, bool is_target, LossAccum g) {
  return static_cast<T>(g * (is_target ? p - LossAccum(1) : p));
}
template <typename T>
RANVIER_HD T cross_entropy_grad(T zc, const RowLogSumExp<T>& lse, bool is_target, LossAccum g) {
  return cross_entropy_grad_from_softmax<T>(math_exp(cross_entropy_log_softmax(zc, lse)), is_target, g);
}

}  // namespace ranvier
