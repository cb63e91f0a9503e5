// The activation formulas, one place for the CPU and CUDA kernels. Each returns one value;
// the kernels map them over arrays.
#pragma once
#include <type_traits>

#include "ranvier/activations.h"
#include "ranvier/math.h"

namespace ranvier {

// sqrt(2/pi) and 1/sqrt(2), 1/sqrt(2*pi), as PyTorch's GELU uses them.
constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;
constexpr double kInvSqrt2 = 0.70710678118654752440084436210485;
constexpr double kInvSqrt2Pi = 0.39894228040143267793994605993438;
constexpr double kGeluTanhCoeff = 0.044715;

// Logistic sigmoid without overflow: exp is only ever taken of a non-positive number.
template <typename T>
RANVIER_HD T stable_sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + math_exp(-x));
  const T e = math_exp(x);
  return e / (T(1) + e);
}

template <typename T>
RANVIER_HD T activation_value(Activation act, T x, T alpha) {
  switch (act) {
    case Activation::ReLU: return x < T(0) ? T(0) : x;  // NaN passes through, as in PyTorch
    case Activation::LeakyReLU: return x < T(0) ? alpha * x : x;
    case Activation::Sigmoid: return stable_sigmoid(x);
    case Activation::Tanh: return math_tanh(x);
    case Activation::GELU: return T(0.5) * x * (T(1) + math_erf(x * T(kInvSqrt2)));
    case Activation::GELUTanh: {
      const T inner = T(kSqrt2OverPi) * (x + T(kGeluTanhCoeff) * x * x * x);
      return T(0.5) * x * (T(1) + math_tanh(inner));
    }
  }
  return x;
}

// f'(.) * dy, from x or from y as activation_backward_uses_output(act) says.
template <typename T>
RANVIER_HD T activation_grad(Activation act, T saved, T dy, T alpha) {
  switch (act) {
    case Activation::ReLU: return saved <= T(0) ? T(0) : dy;  // NaN input: dy, as PyTorch
    case Activation::LeakyReLU: return saved > T(0) ? dy : alpha * dy;
    case Activation::Sigmoid: return dy * saved * (T(1) - saved);
    case Activation::Tanh: return dy * (T(1) - saved * saved);
    case Activation::GELU: {
      const T x = saved;
      const T cdf = T(0.5) * (T(1) + math_erf(x * T(kInvSqrt2)));
      const T pdf = T(kInvSqrt2Pi) * math_exp(T(-0.5) * x * x);
      return dy * (cdf + x * pdf);
    }
    case Activation::GELUTanh: {
      const T x = saved;
      const T inner = T(kSqrt2OverPi) * (x + T(kGeluTanhCoeff) * x * x * x);
      const T t = math_tanh(inner);
      const T d_inner = T(kSqrt2OverPi) * (T(1) + T(3 * kGeluTanhCoeff) * x * x);
      return dy * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * d_inner);
    }
  }
  return dy;
}

// Calls f(std::integral_constant<Activation, act>{}): the kernels take the activation as a
// template argument, so the switch in activation_value() folds away at compile time and
// each loop is a plain, vectorisable map.
template <typename F>
void dispatch_activation(Activation act, F&& f) {
  switch (act) {
    case Activation::ReLU: return f(std::integral_constant<Activation, Activation::ReLU>{});
    case Activation::LeakyReLU: return f(std::integral_constant<Activation, Activation::LeakyReLU>{});
    case Activation::Sigmoid: return f(std::integral_constant<Activation, Activation::Sigmoid>{});
    case Activation::Tanh: return f(std::integral_constant<Activation, Activation::Tanh>{});
    case Activation::GELU: return f(std::integral_constant<Activation, Activation::GELU>{});
    case Activation::GELUTanh: return f(std::integral_constant<Activation, Activation::GELUTanh>{});
  }
}

}  // namespace ranvier
