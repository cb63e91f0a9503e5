// Fused in-place optimizer updates on the GPU: one grid-stride pass per parameter with the
// per-element update of optim_math.h, the same code the CPU runs. CMakeLists.txt compiles
// this file with --fmad=false: without FMA contraction every element rounds exactly as on
// the CPU, so a GPU step equals a CPU step bit for bit.
#include "check.cuh"
#include "ranvier/optim.h"
#include "ranvier/optim_math.h"

namespace ranvier::cuda {

namespace {

template <typename T>
__global__ void sgd_step_kernel(SgdCoefficients<T> c, T* param, const T* grad, T* momentum_buf, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    sgd_update(c, param, grad, momentum_buf, i);
  }
}

template <typename T>
__global__ void adam_step_kernel(AdamCoefficients<T> c, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
                                 T* max_exp_avg_sq, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    adam_update(c, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i);
  }
}

template <typename T>
__global__ void rmsprop_step_kernel(RmspropCoefficients<T> c, T* param, const T* grad, T* square_avg,
                                    T* momentum_buf, T* grad_avg, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    rmsprop_update(c, param, grad, square_avg, momentum_buf, grad_avg, i);
  }
}

}  // namespace

// param, grad, momentum_buf (n)
template <typename T>
void sgd_step(T* param, const T* grad, T* momentum_buf, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool maximize, bool first_step,
              StreamHandle stream) {
  if (n <= 0) return;
  const SgdCoefficients<T> c =
      make_sgd_coefficients<T>(lr, momentum, dampening, weight_decay, nesterov, maximize, first_step);
  sgd_step_kernel<T><<<grid_for(n), kBlockSize, 0, as_stream(stream)>>>(c, param, grad, momentum_buf, n);
  check_launch("sgd_step_kernel");
}

// param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (n)
template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
               double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step,
               bool decoupled_weight_decay, bool amsgrad, bool maximize, StreamHandle stream) {
  if (n <= 0) return;
  const AdamCoefficients<T> c = make_adam_coefficients<T>(lr, beta1, beta2, eps, weight_decay, step,
                                                          decoupled_weight_decay, amsgrad, maximize);
  adam_step_kernel<T><<<grid_for(n), kBlockSize, 0, as_stream(stream)>>>(c, param, grad, exp_avg, exp_avg_sq,
                                                                         max_exp_avg_sq, n);
  check_launch("adam_step_kernel");
}

// param, grad, square_avg, momentum_buf, grad_avg (n)
template <typename T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* momentum_buf, T* grad_avg, int64_t n,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize, StreamHandle stream) {
  if (n <= 0) return;
  const RmspropCoefficients<T> c =
      make_rmsprop_coefficients<T>(lr, alpha, eps, weight_decay, momentum, centered, maximize);
  rmsprop_step_kernel<T><<<grid_for(n), kBlockSize, 0, as_stream(stream)>>>(c, param, grad, square_avg,
                                                                            momentum_buf, grad_avg, n);
  check_launch("rmsprop_step_kernel");
}

#define RANVIER_INSTANTIATE_OPTIM(T)                                                                      \
  template void sgd_step<T>(T*, const T*, T*, int64_t, double, double, double, double, bool, bool, bool,  \
                            StreamHandle);                                                                \
  template void adam_step<T>(T*, const T*, T*, T*, T*, int64_t, double, double, double, double, double,   \
                             int64_t, bool, bool, bool, StreamHandle);                                    \
  template void rmsprop_step<T>(T*, const T*, T*, T*, T*, int64_t, double, double, double, double, double, \
                                bool, bool, StreamHandle);

RANVIER_INSTANTIATE_OPTIM(float)
RANVIER_INSTANTIATE_OPTIM(double)

#undef RANVIER_INSTANTIATE_OPTIM

}  // namespace ranvier::cuda
