// Dropout and uniform random numbers on the GPU, from the counter-based Philox stream.
//
// One thread per Philox block (four numbers): it draws uniform4(seed, block) and gives lane
// `lane` to element block * 4 + lane - offset when that element belongs to this call
// (dropout_math.h), exactly as the CPU kernel does, so masks and numbers are the CPU's.
#include "check.cuh"
#include "ranvier/dropout.h"
#include "ranvier/dropout_math.h"

namespace ranvier::cuda {

namespace {

// visit(i, u) for the elements of Philox blocks range.first_block + b, b over the grid.
template <typename Visit>
__device__ void for_each_uniform_on_device(int64_t n, uint64_t seed, uint64_t offset, PhiloxBlockRange range,
                                           const Visit& visit) {
  for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < range.blocks;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t block = range.first_block + static_cast<uint64_t>(b);
    float u[4];
    uniform4(seed, block, u);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const uint64_t i = philox_lane_element(block, lane, offset);
      if (i < static_cast<uint64_t>(n)) visit(static_cast<int64_t>(i), u[lane]);
    }
  }
}

template <typename T>
struct DropoutVisit {
  const T* x;
  T* y;
  uint8_t* mask;
  T p, scale;
  __device__ void operator()(int64_t i, float u) const {
    const bool keep = dropout_keep(u, p);
    mask[i] = keep ? uint8_t{1} : uint8_t{0};
    y[i] = dropout_apply(x[i], keep, scale);
  }
};

template <typename T>
struct UniformVisit {
  T* out;
  __device__ void operator()(int64_t i, float u) const { out[i] = static_cast<T>(u); }
};

template <typename Visit>
__global__ void philox_visit_kernel(int64_t n, uint64_t seed, uint64_t offset, PhiloxBlockRange range,
                                    Visit visit) {
  for_each_uniform_on_device(n, seed, offset, range, visit);
}

template <typename T>
__global__ void dropout_backward_kernel(const T* dy, const uint8_t* mask, T* dx, int64_t n, T scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dx[i] = dropout_apply(dy[i], mask[i] != 0, scale);
  }
}

}  // namespace

// x, y, mask (n); y may be x itself (each element is read before it is written, by one thread).
template <typename T>
void dropout_forward(const T* x, T* y, uint8_t* mask, int64_t n, T p, uint64_t seed, uint64_t offset,
                     StreamHandle stream) {
  if (n <= 0) return;
  const PhiloxBlockRange range = philox_blocks_for(n, offset);
  const DropoutVisit<T> visit{x, y, mask, p, dropout_scale(p)};  // scale rounded on the host, as the CPU
  launch_kernel("dropout_forward_kernel", philox_visit_kernel<DropoutVisit<T>>, grid_for(range.blocks),
                kBlockSize, 0, as_stream(stream), n, seed, offset, range, visit);
}

// dy, mask, dx (n); dx may be dy itself.
template <typename T>
void dropout_backward(const T* dy, const uint8_t* mask, T* dx, int64_t n, T p, StreamHandle stream) {
  if (n <= 0) return;
  launch_kernel("dropout_backward_kernel", dropout_backward_kernel<T>, grid_for(n), kBlockSize, 0,
                as_stream(stream), dy, mask, dx, n, dropout_scale(p));
}

// out (n)
template <typename T>
void uniform_fill(T* out, int64_t n, uint64_t seed, uint64_t offset, StreamHandle stream) {
  if (n <= 0) return;
  const PhiloxBlockRange range = philox_blocks_for(n, offset);
  launch_kernel("uniform_fill_kernel", philox_visit_kernel<UniformVisit<T>>, grid_for(range.blocks),
                kBlockSize, 0, as_stream(stream), n, seed, offset, range, UniformVisit<T>{out});
}

template void dropout_forward<float>(const float*, float*, uint8_t*, int64_t, float, uint64_t, uint64_t, StreamHandle);
template void dropout_forward<double>(const double*, double*, uint8_t*, int64_t, double, uint64_t, uint64_t,
                                      StreamHandle);
template void dropout_backward<float>(const float*, const uint8_t*, float*, int64_t, float, StreamHandle);
template void dropout_backward<double>(const double*, const uint8_t*, double*, int64_t, double, StreamHandle);
template void uniform_fill<float>(float*, int64_t, uint64_t, uint64_t, StreamHandle);
template void uniform_fill<double>(double*, int64_t, uint64_t, uint64_t, StreamHandle);

}  // namespace ranvier::cuda
