// The fused linear layer on the GPU, twin of kernels/cpu/linear.cpp: the tiled GEMM adds the
// bias in its epilogue, one elementwise pass applies the activation (activation_math.h's
// formulas); the backward's one elementwise pass gives dz = f'(.) * dy, then the column-sum
// kernel and two GEMMs give dbias, dx and dw.
#include "check.cuh"
#include "gemm.cuh"
#include "ranvier/activation_math.h"
#include "ranvier/matmul.h"

namespace ranvier::cuda {

namespace {

// y (n) = f(z (n)); z and y may be the same buffer.
template <Activation Act, typename T>
__global__ void apply_activation_kernel(const T* z, T* y, int64_t n, T alpha) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = activation_value(Act, z[i], alpha);
  }
}

// dz (n) = f'(saved) * dy, saved as linear_activation_backward_uses_output says.
template <Activation Act, typename T>
__global__ void activation_grad_kernel(const T* __restrict__ saved, const T* __restrict__ dy,
                                       T* __restrict__ dz, int64_t n, T alpha) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dz[i] = activation_grad(Act, saved[i], dy[i], alpha);
  }
}

}  // namespace

template <typename T>
void linear_activation_forward(Activation act, T alpha, const T* x, const T* w, const T* bias,
                               T* pre, T* y, int64_t rows, int64_t in, int64_t out,
                               StreamHandle stream) {
  T* z = pre != nullptr ? pre : y;
  // z (rows, out) = x @ w^T + bias, the bias added in the GEMM's epilogue.
  gemm_batched<T>(false, true, 1, rows, out, in, T(1), x, in, 0, w, in, 0, T(0), z, out, 0, bias,
                  stream);
  const int64_t n = rows * out;
  if (n == 0) return;
  dispatch_activation(act, [&](auto a) {
    launch_kernel("apply_activation_kernel", apply_activation_kernel<decltype(a)::value, T>, grid_for(n),
                  kBlockSize, 0, as_stream(stream), z, y, n, alpha);
  });
}

template <typename T>
void linear_activation_backward(Activation act, T alpha, const T* saved, const T* dy,
                                const T* x, const T* w, T* dz, T* dx, T* dw, T* dbias,
                                int64_t rows, int64_t in, int64_t out, StreamHandle stream) {
  const int64_t n = rows * out;
  if (n > 0) {
    dispatch_activation(act, [&](auto a) {
      launch_kernel("activation_grad_kernel", activation_grad_kernel<decltype(a)::value, T>, grid_for(n),
                    kBlockSize, 0, as_stream(stream), saved, dy, dz, n, alpha);
    });
  }
  // dbias (out) = column sums of dz (zeros when rows == 0: the kernel's sums start at 0).
  if (dbias != nullptr) column_sums<T>(dz, dbias, rows, out, stream);
  // dx (rows, in) = dz (rows, out) @ w (out, in); dw (out, in) = dz^T @ x (rows, in).
  if (dx != nullptr) {
    gemm_batched<T>(false, false, 1, rows, in, out, T(1), dz, out, 0, w, in, 0, T(0), dx, in, 0,
                    nullptr, stream);
  }
  if (dw != nullptr) {
    gemm_batched<T>(true, false, 1, out, in, rows, T(1), dz, out, 0, x, in, 0, T(0), dw, in, 0,
                    nullptr, stream);
  }
}

#define RANVIER_INSTANTIATE_LINEAR_ACTIVATION(T)                                                \
  template void linear_activation_forward<T>(Activation, T, const T*, const T*, const T*, T*,  \
                                             T*, int64_t, int64_t, int64_t, StreamHandle);     \
  template void linear_activation_backward<T>(Activation, T, const T*, const T*, const T*,     \
                                              const T*, T*, T*, T*, T*, int64_t, int64_t,      \
                                              int64_t, StreamHandle);

RANVIER_INSTANTIATE_LINEAR_ACTIVATION(float)
RANVIER_INSTANTIATE_LINEAR_ACTIVATION(double)

}  // namespace ranvier::cuda
