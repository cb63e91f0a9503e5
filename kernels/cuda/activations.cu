// Elementwise activations on the GPU: the same formulas as the CPU (activation_math.h),
// one grid-stride loop per direction, instantiated per activation.
#include "check.cuh"
#include "ranvier/activation_math.h"

namespace ranvier::cuda {

namespace {

template <Activation Act, typename T>
__global__ void activation_forward_kernel(const T* __restrict__ x, T* y, int64_t n, T alpha) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = activation_value(Act, x[i], alpha);
  }
}

template <Activation Act, typename T>
__global__ void activation_backward_kernel(const T* __restrict__ saved,
                                           const T* __restrict__ dy, T* dx, int64_t n, T alpha) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dx[i] = activation_grad(Act, saved[i], dy[i], alpha);
  }
}

}  // namespace

template <typename T>
void activation_forward(Activation act, const T* x, T* y, int64_t n, T alpha, StreamHandle stream) {
  if (n == 0) return;
  dispatch_activation(act, [&](auto a) {
    launch_kernel("activation_forward_kernel", activation_forward_kernel<decltype(a)::value, T>, grid_for(n),
                  kBlockSize, 0, as_stream(stream), x, y, n, alpha);
  });
}

template <typename T>
void activation_backward(Activation act, const T* saved, const T* dy, T* dx, int64_t n, T alpha,
                         StreamHandle stream) {
  if (n == 0) return;
  dispatch_activation(act, [&](auto a) {
    launch_kernel("activation_backward_kernel", activation_backward_kernel<decltype(a)::value, T>,
                  grid_for(n), kBlockSize, 0, as_stream(stream), saved, dy, dx, n, alpha);
  });
}

template void activation_forward<float>(Activation, const float*, float*, int64_t, float, StreamHandle);
template void activation_forward<double>(Activation, const double*, double*, int64_t, double, StreamHandle);
template void activation_backward<float>(Activation, const float*, const float*, float*, int64_t, float, StreamHandle);
template void activation_backward<double>(Activation, const double*, const double*, double*, int64_t, double, StreamHandle);

}  // namespace ranvier::cuda
