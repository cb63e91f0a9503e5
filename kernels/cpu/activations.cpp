// Elementwise activations on the CPU: the formulas from activation_math.h mapped over arrays.
#include "ranvier/activations.h"

#include "parallel.h"
#include "ranvier/activation_math.h"

namespace ranvier::cpu {

namespace {
// Cheap activations cost ~1 op per element, the transcendental ones ~20.
int64_t activation_cost(Activation act) {
  return (act == Activation::ReLU || act == Activation::LeakyReLU) ? 1 : 20;
}
}  // namespace

template <typename T>
void activation_forward(Activation act, const T* x, T* y, int64_t n, T alpha) {
  parallel_for(n, activation_cost(act), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = activation_value(act, x[i], alpha);
  });
}

template <typename T>
void activation_backward(Activation act, const T* saved, const T* dy, T* dx, int64_t n, T alpha) {
  parallel_for(n, activation_cost(act), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = activation_grad(act, saved[i], dy[i], alpha);
  });
}

template void activation_forward<float>(Activation, const float*, float*, int64_t, float);
template void activation_forward<double>(Activation, const double*, double*, int64_t, double);
template void activation_backward<float>(Activation, const float*, const float*, float*, int64_t, float);
template void activation_backward<double>(Activation, const double*, const double*, double*, int64_t, double);

}  // namespace ranvier::cpu
