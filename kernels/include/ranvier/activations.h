// Elementwise activations, forward and backward. The formulas themselves live in
// activation_math.h, shared by the CPU and CUDA kernels.
#pragma once
#include "ranvier/common.h"

namespace ranvier {

enum class Activation : int {
  ReLU = 0,
  LeakyReLU = 1,  // alpha is the negative slope
  Sigmoid = 2,
  Tanh = 3,
  GELU = 4,       // exact: x * Phi(x) with the normal CDF through erf
  GELUTanh = 5,   // PyTorch's approximate='tanh'
};

// Which forward value the backward pass needs: the input x for ReLU, LeakyReLU and both
// GELUs, the output y for Sigmoid and Tanh (their derivatives are cheapest from y).
constexpr bool activation_backward_uses_output(Activation act) {
  return act == Activation::Sigmoid || act == Activation::Tanh;
}

namespace cpu {
// y (n) = f(x (n)); x and y may be the same buffer.
template <typename T>
void activation_forward(Activation act, const T* x, T* y, int64_t n, T alpha);
// dx (n) = dy (n) * f'(.), where `saved` is x or y as activation_backward_uses_output says.
template <typename T>
void activation_backward(Activation act, const T* saved, const T* dy, T* dx, int64_t n, T alpha);
}  // namespace cpu

namespace cuda {
template <typename T>
void activation_forward(Activation act, const T* x, T* y, int64_t n, T alpha, StreamHandle stream);
template <typename T>
void activation_backward(Activation act, const T* saved, const T* dy, T* dx, int64_t n, T alpha,
                         StreamHandle stream);
}  // namespace cuda

}  // namespace ranvier
