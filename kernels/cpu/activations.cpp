// Elementwise activations on the CPU: the formulas of activation_math.h mapped over arrays,
// with their transcendental parts (sigmoid, tanh, erf, exp) computed a block at a time by the
// vector math (ranvier/vector_math.h). Results then differ from activation_math.h's scalar
// formulas (the CUDA kernels and the references) by the vector math's documented rounding.
#include "ranvier/activations.h"

#include <algorithm>

#include "block_reduce.h"
#include "parallel.h"
#include "ranvier/activation_math.h"
#include "ranvier/vector_math.h"

namespace ranvier::cpu {

namespace {

// Cheap activations cost ~1 op per element, the transcendental ones ~20.
constexpr int64_t activation_cost(Activation act) {
  return (act == Activation::ReLU || act == Activation::LeakyReLU) ? 1 : 20;
}

// Calls block(start, length) over [begin, end) in pieces of at most kVectorBlock.
template <typename Block>
void for_each_block(int64_t begin, int64_t end, Block&& block) {
  for (int64_t start = begin; start < end; start += kVectorBlock) {
    block(start, std::min(kVectorBlock, end - start));
  }
}

// GELU's tanh argument sqrt(2/pi) (x + 0.044715 x^3).
template <typename T>
T gelu_tanh_inner(T x) {
  return T(kSqrt2OverPi) * (x + T(kGeluTanhCoeff) * x * x * x);
}

// y = f(x) over [begin, end) (x and y may be the same array: each y[i] is written after
// its x[i] was read for the last time).
template <Activation Act, typename T>
void forward_range(const T* x, T* y, int64_t begin, int64_t end, T alpha) {
  if constexpr (Act == Activation::Sigmoid) {
    vector_sigmoid(x + begin, y + begin, end - begin);
  } else if constexpr (Act == Activation::Tanh) {
    vector_tanh(x + begin, y + begin, end - begin);
  } else if constexpr (Act == Activation::GELU) {
    // 0.5 x (1 + erf(x / sqrt 2))
    for_each_block(begin, end, [&](int64_t start, int64_t length) {
      T erf_term[kVectorBlock] = {};  // = {}: GCC cannot see the loop below fill [0, length)
      const T* xs = x + start;
      for (int64_t k = 0; k < length; ++k) erf_term[k] = xs[k] * T(kInvSqrt2);
      vector_erf(erf_term, erf_term, length);
      T* ys = y + start;
      for (int64_t k = 0; k < length; ++k) ys[k] = T(0.5) * xs[k] * (T(1) + erf_term[k]);
    });
  } else if constexpr (Act == Activation::GELUTanh) {
    // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    for_each_block(begin, end, [&](int64_t start, int64_t length) {
      T tanh_term[kVectorBlock] = {};
      const T* xs = x + start;
      for (int64_t k = 0; k < length; ++k) tanh_term[k] = gelu_tanh_inner(xs[k]);
      vector_tanh(tanh_term, tanh_term, length);
      T* ys = y + start;
      for (int64_t k = 0; k < length; ++k) ys[k] = T(0.5) * xs[k] * (T(1) + tanh_term[k]);
    });
  } else {
    for (int64_t i = begin; i < end; ++i) y[i] = activation_value(Act, x[i], alpha);
  }
}

// dx = dy * f'(saved) over [begin, end); the same formulas as activation_grad.
template <Activation Act, typename T>
void backward_range(const T* saved, const T* dy, T* dx, int64_t begin, int64_t end, T alpha) {
  if constexpr (Act == Activation::GELU) {
    // dy (Phi(x) + x phi(x)), Phi(x) = 0.5 (1 + erf(x / sqrt 2)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
    for_each_block(begin, end, [&](int64_t start, int64_t length) {
      T erf_term[kVectorBlock] = {};
      T exp_term[kVectorBlock] = {};
      const T* xs = saved + start;
      for (int64_t k = 0; k < length; ++k) {
        erf_term[k] = xs[k] * T(kInvSqrt2);
        exp_term[k] = T(-0.5) * xs[k] * xs[k];
      }
      vector_erf(erf_term, erf_term, length);
      vector_exp(exp_term, exp_term, length);
      const T* dys = dy + start;
      T* dxs = dx + start;
      for (int64_t k = 0; k < length; ++k) {
        const T cdf = T(0.5) * (T(1) + erf_term[k]);
        const T pdf = T(kInvSqrt2Pi) * exp_term[k];
        dxs[k] = dys[k] * (cdf + xs[k] * pdf);
      }
    });
  } else if constexpr (Act == Activation::GELUTanh) {
    for_each_block(begin, end, [&](int64_t start, int64_t length) {
      T tanh_term[kVectorBlock] = {};
      const T* xs = saved + start;
      for (int64_t k = 0; k < length; ++k) tanh_term[k] = gelu_tanh_inner(xs[k]);
      vector_tanh(tanh_term, tanh_term, length);
      const T* dys = dy + start;
      T* dxs = dx + start;
      for (int64_t k = 0; k < length; ++k) {
        const T x = xs[k];
        const T t = tanh_term[k];
        const T d_inner = T(kSqrt2OverPi) * (T(1) + T(3 * kGeluTanhCoeff) * x * x);
        dxs[k] = dys[k] * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * d_inner);
      }
    });
  } else {
    // ReLU, LeakyReLU, and Sigmoid and Tanh from their output: no transcendental left.
    for (int64_t i = begin; i < end; ++i) dx[i] = activation_grad(Act, saved[i], dy[i], alpha);
  }
}

template <Activation Act, typename T>
void forward_map(const T* x, T* y, int64_t n, T alpha) {
  parallel_for(n, activation_cost(Act), [&](int64_t begin, int64_t end) {
    forward_range<Act>(x, y, begin, end, alpha);
  });
}

template <Activation Act, typename T>
void backward_map(const T* saved, const T* dy, T* dx, int64_t n, T alpha) {
  parallel_for(n, activation_cost(Act), [&](int64_t begin, int64_t end) {
    backward_range<Act>(saved, dy, dx, begin, end, alpha);
  });
}

}  // namespace

template <typename T>
void activation_forward(Activation act, const T* x, T* y, int64_t n, T alpha) {
  dispatch_activation(act, [&](auto a) { forward_map<decltype(a)::value>(x, y, n, alpha); });
}

template <typename T>
void activation_backward(Activation act, const T* saved, const T* dy, T* dx, int64_t n, T alpha) {
  dispatch_activation(act, [&](auto a) { backward_map<decltype(a)::value>(saved, dy, dx, n, alpha); });
}

template void activation_forward<float>(Activation, const float*, float*, int64_t, float);
template void activation_forward<double>(Activation, const double*, double*, int64_t, double);
template void activation_backward<float>(Activation, const float*, const float*, float*, int64_t, float);
template void activation_backward<double>(Activation, const double*, const double*, double*, int64_t, double);

}  // namespace ranvier::cpu
