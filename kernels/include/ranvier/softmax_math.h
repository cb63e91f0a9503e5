// softmax's per-element formulas, one place for the CPU and CUDA kernels. The kernels find
// a line's maximum and its sums (accumulated in double) and then apply these.
#pragma once
#include "ranvier/common.h"
#include "ranvier/math.h"

namespace ranvier {

using SoftmaxAccum = double;

// NaN-propagating maximum: a NaN anywhere in the line makes the whole line NaN, as PyTorch
// (in any order of combination).
template <typename T>
RANVIER_HD T max_propagating_nan(T a, T b) {
  return (b > a || b != b) ? b : a;
}

// softmax: y = exp(x - max) * (1 / sum); `e` is exp(x - max) as stored in the first pass.
template <typename T>
RANVIER_HD T softmax_normalise(T e, SoftmaxAccum inv_sum) {
  return static_cast<T>(static_cast<SoftmaxAccum>(e) * inv_sum);
}
// log_softmax: y = x - max - log(sum exp(x - max)); for an all -inf row max is -inf and
// x - max NaN.
template <typename T>
RANVIER_HD T log_softmax_value(T x, T row_max, SoftmaxAccum log_sum) {
  return (x - row_max) - static_cast<T>(log_sum);
}

// Backward: dot = sum(dy * y) (softmax) or sum(dy) (log_softmax) over the line.
template <typename T>
RANVIER_HD SoftmaxAccum softmax_backward_term(T y, T dy, bool log) {
  return log ? static_cast<SoftmaxAccum>(dy) : static_cast<SoftmaxAccum>(dy) * static_cast<SoftmaxAccum>(y);
}
// softmax: dx = y * (dy - dot);  log_softmax: dx = dy - exp(y) * sum_dy.
template <typename T>
RANVIER_HD T softmax_grad(T y, T dy, SoftmaxAccum dot, bool log) {
  return log ? dy - math_exp(y) * static_cast<T>(dot) : y * (dy - static_cast<T>(dot));
}

}  // namespace ranvier
