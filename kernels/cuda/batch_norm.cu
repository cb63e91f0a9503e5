// Batch normalisation on the GPU, forward (training and evaluation) and backward.
//
// x is (N, C, L); channel c's items are x[n, c, l], item i = n * L + l of count = N * L.
// Per-channel sums run in two kernels, as reduce.cuh's full reductions but per channel:
//   1. channel_partial_sums_kernel, grid (blocks_per_channel, channels): block (b, c) sums
//      items b * 256 + t, + blocks_per_channel * 256, ... of channel c over its threads with
//      reduce.cuh's fixed tree into partial[c, b];
//   2. channel_finish_kernel, one block per channel, adds partial[c, :] with the same tree
//      and hands the totals to a Finish functor.
// blocks_per_channel depends on (C, count) only, so the sums are the same bits every run (no
// floating-point atomics). Sums are in double, the variance in a second pass around the
// double mean, the formulas the CPU's (batch_norm.cpp). This file is compiled with
// --fmad=false (CMakeLists.txt) so that the elementwise steps round as the CPU's do.
#include <cmath>

#include "check.cuh"
#include "reduce.cuh"
#include "ranvier/batch_norm.h"

namespace ranvier::cuda {

namespace {

using Accum = ReduceAccum;  // double

// About this many blocks in pass 1 (enough to fill a large GPU), at most kMaxReduceBlocks
// per channel and no more than the channel's items need.
constexpr int64_t kTargetPartialBlocks = 2048;
constexpr int64_t kMaxGridY = 65535;

int blocks_per_channel_for(int64_t C, int64_t count) {
  const int64_t needed = (count + kReduceThreads - 1) / kReduceThreads;
  int64_t blocks = kTargetPartialBlocks / (C > 0 ? C : 1);
  if (blocks > needed) blocks = needed;
  if (blocks > kMaxReduceBlocks) blocks = kMaxReduceBlocks;
  return static_cast<int>(blocks < 1 ? 1 : blocks);
}

// Pass 1. Term: `__device__ void operator()(int64_t c, int64_t i, Accum* acc) const` adds
// item i of channel c into acc[0..K).
template <int K, typename Term>
__global__ void channel_partial_sums_kernel(int64_t C, int64_t count, Term term, Accum* partial) {
  __shared__ Accum shared[kReduceThreads][K];
  for (int64_t c = blockIdx.y; c < C; c += gridDim.y) {  // the same c for the whole block
    Accum acc[K];
#pragma unroll
    for (int k = 0; k < K; ++k) acc[k] = 0;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      term(c, i, acc);
    }
    block_sum<K>(acc, shared);
    if (threadIdx.x == 0) {
#pragma unroll
      for (int k = 0; k < K; ++k) partial[(c * gridDim.x + blockIdx.x) * K + k] = acc[k];
    }
  }
}

// Pass 2, one block per channel. Finish: `__device__ void operator()(int64_t c, const Accum*
// totals) const`, called by thread 0.
template <int K, typename Finish>
__global__ void channel_finish_kernel(int64_t C, int blocks_per_channel, const Accum* partial, Finish finish) {
  __shared__ Accum shared[kReduceThreads][K];
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    Accum acc[K];
#pragma unroll
    for (int k = 0; k < K; ++k) acc[k] = 0;
    for (int b = threadIdx.x; b < blocks_per_channel; b += blockDim.x) {
#pragma unroll
      for (int k = 0; k < K; ++k) acc[k] += partial[(c * blocks_per_channel + b) * K + k];
    }
    block_sum<K>(acc, shared);
    if (threadIdx.x == 0) finish(c, acc);
  }
}

// Both passes over the C channels of `count` items each; `partial` holds
// C * blocks_per_channel_for(C, count) * K values. C >= 1.
template <int K, typename Term, typename Finish>
void per_channel_sums(int64_t C, int64_t count, const Term& term, const Finish& finish, Accum* partial,
                      cudaStream_t stream, const char* partial_name, const char* finish_name) {
  const int blocks = blocks_per_channel_for(C, count);
  const dim3 grid(static_cast<unsigned int>(blocks), static_cast<unsigned int>(C < kMaxGridY ? C : kMaxGridY));
  launch_kernel(partial_name, channel_partial_sums_kernel<K, Term>, grid, kReduceThreads, 0, stream, C, count,
                term, partial);
  const unsigned int channel_blocks = static_cast<unsigned int>(C < kMaxGridY ? C : kMaxGridY);
  launch_kernel(finish_name, channel_finish_kernel<K, Finish>, channel_blocks, kReduceThreads, 0, stream, C,
                blocks, partial, finish);
}

// Item i of channel c: x[n, c, l] with i = n * L + l.
__device__ __forceinline__ int64_t item_offset(int64_t c, int64_t i, int64_t C, int64_t L) {
  const int64_t n = i / L;
  return (n * C + c) * L + (i - n * L);
}

template <typename T>
struct SumTerm {  // acc[0] += x
  const T* x;
  int64_t C, L;
  __device__ void operator()(int64_t c, int64_t i, Accum* acc) const {
    acc[0] += static_cast<Accum>(x[item_offset(c, i, C, L)]);
  }
};

struct MeanFinish {  // mean[c] = sum / count (double)
  Accum* mean;
  int64_t count;
  __device__ void operator()(int64_t c, const Accum* totals) const {
    mean[c] = totals[0] / static_cast<Accum>(count);
  }
};

template <typename T>
struct SquaresTerm {  // acc[0] += (x - mean)^2
  const T* x;
  const Accum* mean;
  int64_t C, L;
  __device__ void operator()(int64_t c, int64_t i, Accum* acc) const {
    const Accum d = static_cast<Accum>(x[item_offset(c, i, C, L)]) - mean[c];
    acc[0] += d * d;
  }
};

// The batch statistics and the running-stat update, as batch_norm.cpp.
template <typename T>
struct StatsFinish {
  const Accum* mean;
  T* save_mean;
  T* save_invstd;
  T* running_mean;  // or null
  T* running_var;   // or null
  int64_t count;
  double momentum, eps;
  __device__ void operator()(int64_t c, const Accum* totals) const {
    const Accum squares = totals[0];
    const Accum biased_var = squares / static_cast<Accum>(count);
    save_mean[c] = static_cast<T>(mean[c]);
    save_invstd[c] = static_cast<T>(1.0 / sqrt(biased_var + eps));
    if (running_mean != nullptr) {
      running_mean[c] = static_cast<T>((1.0 - momentum) * static_cast<Accum>(running_mean[c]) + momentum * mean[c]);
    }
    if (running_var != nullptr) {
      const Accum unbiased_var = squares / static_cast<Accum>(count - 1);
      running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<Accum>(running_var[c]) +
                                      momentum * unbiased_var);
    }
  }
};

template <typename T>
struct BackwardTerm {  // acc[0] += dy, acc[1] += dy * (x - mean)
  const T* dy;
  const T* x;
  const T* save_mean;
  int64_t C, L;
  __device__ void operator()(int64_t c, int64_t i, Accum* acc) const {
    const int64_t offset = item_offset(c, i, C, L);
    const Accum g = static_cast<Accum>(dy[offset]);
    acc[0] += g;
    acc[1] += g * (static_cast<Accum>(x[offset]) - static_cast<Accum>(save_mean[c]));
  }
};

// dbias, dweight (C); the two sums kept in double (C, 2) for the dx kernel.
template <typename T>
struct BackwardFinish {
  const T* save_invstd;
  T* dweight;
  T* dbias;
  Accum* sums;
  __device__ void operator()(int64_t c, const Accum* totals) const {
    dbias[c] = static_cast<T>(totals[0]);
    dweight[c] = static_cast<T>(totals[1] * static_cast<Accum>(save_invstd[c]));
    sums[2 * c] = totals[0];
    sums[2 * c + 1] = totals[1];
  }
};

// y = (x - mean) * invstd * weight + bias over x (N, C, L), as batch_norm.cpp's normalise_block
template <typename T>
__global__ void normalise_kernel(const T* x, const T* weight, const T* bias, const T* mean, const T* invstd,
                                 T* y, int64_t total, int64_t C, int64_t L) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = (i / L) % C;
    const Accum scale = static_cast<Accum>(invstd[c]) * (weight ? static_cast<Accum>(weight[c]) : 1.0);
    const Accum shift = (bias ? static_cast<Accum>(bias[c]) : 0.0) - static_cast<Accum>(mean[c]) * scale;
    y[i] = static_cast<T>(static_cast<Accum>(x[i]) * scale + shift);
  }
}

// save_mean = running_mean, save_invstd = 1 / sqrt(running_var + eps) (C)
template <typename T>
__global__ void eval_stats_kernel(const T* running_mean, const T* running_var, T* save_mean, T* save_invstd,
                                  int64_t C, double eps) {
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    save_mean[c] = running_mean[c];
    save_invstd[c] = static_cast<T>(1.0 / sqrt(static_cast<Accum>(running_var[c]) + eps));
  }
}

// dx (N, C, L) from dy, x and the per-channel sums (C, 2), as batch_norm.cpp
template <typename T>
__global__ void batch_norm_dx_kernel(const T* dy, const T* x, const T* save_mean, const T* save_invstd,
                                     const T* weight, const Accum* sums, T* dx, int64_t total, int64_t C,
                                     int64_t L, int64_t count, bool training) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = (i / L) % C;
    const Accum invstd = static_cast<Accum>(save_invstd[c]);
    const Accum scale = invstd * (weight ? static_cast<Accum>(weight[c]) : 1.0);
    if (!training) {
      dx[i] = static_cast<T>(static_cast<Accum>(dy[i]) * scale);
      continue;
    }
    // dx = scale * (dy - mean(dy) - (x - mean) * invstd^2 * mean(dy * (x - mean)))
    const Accum mean_dy = sums[2 * c] / static_cast<Accum>(count);
    const Accum projection = sums[2 * c + 1] / static_cast<Accum>(count) * invstd * invstd;
    const Accum xmu = static_cast<Accum>(x[i]) - static_cast<Accum>(save_mean[c]);
    dx[i] = static_cast<T>(scale * (static_cast<Accum>(dy[i]) - mean_dy - xmu * projection));
  }
}

template <typename T>
void launch_normalise(const T* x, const T* weight, const T* bias, const T* mean, const T* invstd, T* y,
                      int64_t N, int64_t C, int64_t L, cudaStream_t stream) {
  const int64_t total = N * C * L;
  if (total <= 0) return;
  launch_kernel("batch_norm_normalise_kernel", normalise_kernel<T>, grid_for(total), kBlockSize, 0, stream, x,
                weight, bias, mean, invstd, y, total, C, L);
}

}  // namespace

// x (N, C, L) -> y (N, C, L), save_mean, save_invstd (C); running stats (C) updated in place.
// The binding guarantees count = N * L >= 2.
template <typename T>
void batch_norm_forward_training(const T* x, const T* weight, const T* bias, T* y, T* save_mean,
                                 T* save_invstd, T* running_mean, T* running_var, int64_t N,
                                 int64_t C, int64_t L, double momentum, double eps, StreamHandle stream) {
  if (C <= 0) return;
  const cudaStream_t s = as_stream(stream);
  const int64_t count = N * L;
  const int64_t partials = C * blocks_per_channel_for(C, count);
  // mean (C) in double, then the partial sums.
  DeviceScratch scratch(sizeof(Accum) * static_cast<size_t>(C + partials), s, "batch_norm scratch");
  Accum* mean = scratch.as<Accum>();
  Accum* partial = mean + C;
  per_channel_sums<1>(C, count, SumTerm<T>{x, C, L}, MeanFinish{mean, count}, partial, s,
                      "batch_norm_sum_kernel", "batch_norm_mean_kernel");
  per_channel_sums<1>(C, count, SquaresTerm<T>{x, mean, C, L},
                      StatsFinish<T>{mean, save_mean, save_invstd, running_mean, running_var, count, momentum, eps},
                      partial, s, "batch_norm_squares_kernel", "batch_norm_stats_kernel");
  launch_normalise(x, weight, bias, save_mean, save_invstd, y, N, C, L, s);
}

// x (N, C, L), running stats (C) -> y (N, C, L), save_mean, save_invstd (C)
template <typename T>
void batch_norm_forward_eval(const T* x, const T* weight, const T* bias, const T* running_mean,
                             const T* running_var, T* y, T* save_mean, T* save_invstd, int64_t N,
                             int64_t C, int64_t L, double eps, StreamHandle stream) {
  if (C <= 0) return;
  const cudaStream_t s = as_stream(stream);
  launch_kernel("batch_norm_eval_stats_kernel", eval_stats_kernel<T>, grid_for(C), kBlockSize, 0, s,
                running_mean, running_var, save_mean, save_invstd, C, eps);
  launch_normalise(x, weight, bias, save_mean, save_invstd, y, N, C, L, s);
}

// dy, x (N, C, L), save_mean, save_invstd, weight (C) -> dx (N, C, L) or null, dweight, dbias (C)
template <typename T>
void batch_norm_backward(const T* dy, const T* x, const T* save_mean, const T* save_invstd,
                         const T* weight, T* dx, T* dweight, T* dbias, int64_t N, int64_t C,
                         int64_t L, bool training, StreamHandle stream) {
  if (C <= 0) return;
  const cudaStream_t s = as_stream(stream);
  const int64_t count = N * L;
  const int64_t partials = C * blocks_per_channel_for(C, count);
  // sums (C, 2) in double, then the partial sums (C, blocks, 2).
  DeviceScratch scratch(sizeof(Accum) * static_cast<size_t>(2 * C + 2 * partials), s, "batch_norm_backward scratch");
  Accum* sums = scratch.as<Accum>();
  Accum* partial = sums + 2 * C;
  per_channel_sums<2>(C, count, BackwardTerm<T>{dy, x, save_mean, C, L},
                      BackwardFinish<T>{save_invstd, dweight, dbias, sums}, partial, s,
                      "batch_norm_backward_sums_kernel", "batch_norm_backward_finish_kernel");
  const int64_t total = N * C * L;
  if (dx == nullptr || total <= 0) return;
  launch_kernel("batch_norm_dx_kernel", batch_norm_dx_kernel<T>, grid_for(total), kBlockSize, 0, s, dy, x,
                save_mean, save_invstd, weight, sums, dx, total, C, L, count, training);
}

#define RANVIER_INSTANTIATE_BATCH_NORM(T)                                                                   \
  template void batch_norm_forward_training<T>(const T*, const T*, const T*, T*, T*, T*, T*, T*, int64_t,  \
                                               int64_t, int64_t, double, double, StreamHandle);            \
  template void batch_norm_forward_eval<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*,   \
                                           int64_t, int64_t, int64_t, double, StreamHandle);               \
  template void batch_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*,       \
                                       int64_t, int64_t, int64_t, bool, StreamHandle);

RANVIER_INSTANTIATE_BATCH_NORM(float)
RANVIER_INSTANTIATE_BATCH_NORM(double)

#undef RANVIER_INSTANTIATE_BATCH_NORM

}  // namespace ranvier::cuda
