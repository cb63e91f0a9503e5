// softmax and log_softmax along one axis on the GPU, forward and backward.
//
// Arrays are contiguous and viewed as (outer, dim, inner); a "line" is x[o, :, i].
//  - inner == 1 (rows, the usual case): one block per row (a grid-stride loop over rows);
//    its threads stride over the row, and the row's maximum and sums are reduced over the
//    block with warp shuffles and a fixed tree (deterministic). The block has 32 to 256
//    threads, the smallest power of two >= dim, so short rows do not idle 256 threads.
//  - inner > 1: one thread per line walking dim with stride `inner`; neighbouring threads
//    take neighbouring i, so each step along dim reads memory contiguously across a warp.
// Sums accumulate in double for float and double alike (as the CPU does); the formulas are
// softmax_math.h's. Every element is read and written by one thread only, so y may be x
// (and dx may be y or dy).
#include "check.cuh"
#include "ranvier/softmax.h"
#include "ranvier/softmax_math.h"

namespace ranvier::cuda {

namespace {

using Accum = SoftmaxAccum;

constexpr int kWarp = 32;
constexpr int kMaxRowThreads = 256;
// Blocks for the row kernels: far more than any GPU runs at once; larger row counts loop.
constexpr int64_t kMaxRowBlocks = int64_t{1} << 20;

int row_threads_for(int64_t dim) {
  int threads = kWarp;
  while (threads < kMaxRowThreads && threads < dim) threads *= 2;
  return threads;
}

unsigned int row_blocks_for(int64_t rows) {
  return static_cast<unsigned int>(rows < kMaxRowBlocks ? rows : kMaxRowBlocks);
}

template <typename T>
__device__ T warp_max(T v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v = max_propagating_nan(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

__device__ Accum warp_sum(Accum v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The maximum of v over the block, returned to every thread; `shared` holds >= 32 values.
// (The max is idempotent, so lanes beyond the number of warps may repeat warp 0's value.)
template <typename T>
__device__ T block_max(T v, T* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  v = warp_max(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = warp_max(shared[lane < warps ? lane : 0]);
  __syncthreads();  // shared is reused by the next reduction
  return v;
}

// The sum of v over the block in a fixed order, returned to every thread.
__device__ Accum block_sum(Accum v, Accum* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = warp_sum(lane < warps ? shared[lane] : Accum(0));
  __syncthreads();
  return v;
}

// x, y (rows, dim); one block per row.
template <typename T>
__global__ void softmax_rows_kernel(const T* x, T* y, int64_t rows, int64_t dim, bool log) {
  __shared__ T shared_max[kWarp];
  __shared__ Accum shared_sum[kWarp];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * dim;
    T* yr = y + row * dim;
    T local_max = xr[0];
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) local_max = max_propagating_nan(local_max, xr[d]);
    const T row_max = block_max(local_max, shared_max);
    Accum local_sum = 0;
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
      const T e = math_exp(xr[d] - row_max);
      if (!log) yr[d] = e;
      local_sum += static_cast<Accum>(e);
    }
    const Accum sum = block_sum(local_sum, shared_sum);
    if (log) {
      const Accum log_sum = math_log(sum);
      for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) yr[d] = log_softmax_value(xr[d], row_max, log_sum);
    } else {
      const Accum inv_sum = Accum(1) / sum;
      for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) yr[d] = softmax_normalise(yr[d], inv_sum);
    }
  }
}

// y, dy, dx (rows, dim); one block per row.
template <typename T>
__global__ void softmax_backward_rows_kernel(const T* y, const T* dy, T* dx, int64_t rows, int64_t dim,
                                             bool log) {
  __shared__ Accum shared_sum[kWarp];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* yr = y + row * dim;
    const T* dyr = dy + row * dim;
    T* dxr = dx + row * dim;
    Accum local_dot = 0;
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) local_dot += softmax_backward_term(yr[d], dyr[d], log);
    const Accum dot = block_sum(local_dot, shared_sum);
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) dxr[d] = softmax_grad(yr[d], dyr[d], dot, log);
  }
}

// x, y (outer, dim, inner); one thread per line (o, i).
template <typename T>
__global__ void softmax_lines_kernel(const T* x, T* y, int64_t outer, int64_t dim, int64_t inner, bool log) {
  const int64_t lines = outer * inner;
  for (int64_t line = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; line < lines;
       line += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = line / inner;
    const int64_t base = o * dim * inner + (line - o * inner);
    const T* xl = x + base;
    T* yl = y + base;
    T row_max = xl[0];
    for (int64_t d = 1; d < dim; ++d) row_max = max_propagating_nan(row_max, xl[d * inner]);
    Accum sum = 0;
    for (int64_t d = 0; d < dim; ++d) {
      const T e = math_exp(xl[d * inner] - row_max);
      if (!log) yl[d * inner] = e;
      sum += static_cast<Accum>(e);
    }
    if (log) {
      const Accum log_sum = math_log(sum);
      for (int64_t d = 0; d < dim; ++d) yl[d * inner] = log_softmax_value(xl[d * inner], row_max, log_sum);
    } else {
      const Accum inv_sum = Accum(1) / sum;
      for (int64_t d = 0; d < dim; ++d) yl[d * inner] = softmax_normalise(yl[d * inner], inv_sum);
    }
  }
}

// y, dy, dx (outer, dim, inner); one thread per line (o, i).
template <typename T>
__global__ void softmax_backward_lines_kernel(const T* y, const T* dy, T* dx, int64_t outer, int64_t dim,
                                              int64_t inner, bool log) {
  const int64_t lines = outer * inner;
  for (int64_t line = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; line < lines;
       line += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = line / inner;
    const int64_t base = o * dim * inner + (line - o * inner);
    Accum dot = 0;
    for (int64_t d = 0; d < dim; ++d) dot += softmax_backward_term(y[base + d * inner], dy[base + d * inner], log);
    for (int64_t d = 0; d < dim; ++d) {
      const int64_t k = base + d * inner;
      dx[k] = softmax_grad(y[k], dy[k], dot, log);
    }
  }
}

}  // namespace

// x, y (outer, dim, inner)
template <typename T>
void softmax_forward(const T* x, T* y, int64_t outer, int64_t dim, int64_t inner, bool log, StreamHandle stream) {
  if (outer <= 0 || dim <= 0 || inner <= 0) return;
  if (inner == 1) {
    launch_kernel("softmax_rows_kernel", softmax_rows_kernel<T>, row_blocks_for(outer), row_threads_for(dim),
                  0, as_stream(stream), x, y, outer, dim, log);
  } else {
    launch_kernel("softmax_lines_kernel", softmax_lines_kernel<T>, grid_for(outer * inner), kBlockSize, 0,
                  as_stream(stream), x, y, outer, dim, inner, log);
  }
}

// y, dy, dx (outer, dim, inner)
template <typename T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t outer, int64_t dim, int64_t inner, bool log,
                      StreamHandle stream) {
  if (outer <= 0 || dim <= 0 || inner <= 0) return;
  if (inner == 1) {
    launch_kernel("softmax_backward_rows_kernel", softmax_backward_rows_kernel<T>, row_blocks_for(outer),
                  row_threads_for(dim), 0, as_stream(stream), y, dy, dx, outer, dim, log);
  } else {
    launch_kernel("softmax_backward_lines_kernel", softmax_backward_lines_kernel<T>, grid_for(outer * inner),
                  kBlockSize, 0, as_stream(stream), y, dy, dx, outer, dim, inner, log);
  }
}

template void softmax_forward<float>(const float*, float*, int64_t, int64_t, int64_t, bool, StreamHandle);
template void softmax_forward<double>(const double*, double*, int64_t, int64_t, int64_t, bool, StreamHandle);
template void softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t, int64_t, bool,
                                      StreamHandle);
template void softmax_backward<double>(const double*, const double*, double*, int64_t, int64_t, int64_t, bool,
                                       StreamHandle);

}  // namespace ranvier::cuda
