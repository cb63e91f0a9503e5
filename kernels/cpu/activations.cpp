// Elementwise activations on the CPU: the formulas from activation_math.h mapped over arrays.
#include "ranvier/activations.h"

#include "parallel.h"
#include "ranvier/activation_math.h"

namespace ranvier::cpu {

namespace {

// Cheap activations cost ~1 op per element, the transcendental ones ~20.
constexpr int64_t activation_cost(Activation act) {
  return (act == Activation::ReLU || act == Activation::LeakyReLU) ? 1 : 20;
}

template <Activation Act, typename T>
void forward_map(const T* x, T* y, int64_t n, T alpha) {
  parallel_for(n, activation_cost(Act), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = activation_value(Act, x[i], alpha);
  });
}

template <Activation Act, typename T>
void backward_map(const T* saved, const T* dy, T* dx, int64_t n, T alpha) {
  parallel_for(n, activation_cost(Act), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = activation_grad(Act, saved[i], dy[i], alpha);
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
