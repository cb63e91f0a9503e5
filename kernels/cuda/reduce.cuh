// Deterministic block reductions for the CUDA kernels: a fixed shared-memory tree, so that
// a sum over the same values in the same layout gives the same bits every run (no atomics
// on floating-point numbers anywhere).
//
// A full reduction over n items is two passes:
//   1. partial_sums_kernel: a grid of reduce_grid_for(n) blocks (a number that depends on n
//      only); block b sums items b, b + grid*threads, ... in a grid-stride loop per thread and
//      then over its threads with the tree; partial[b] = that sum (K quantities per item);
//   2. one block of finish_sums_kernel adds the partial sums with the same tree and hands the
//      K totals to a Finish functor (which writes the result).
// The scratch for the partial sums is a DeviceScratch (ranvier/device_allocator.h: CuPy's
// memory pool under Python), given back on the same stream after the second pass.
#pragma once
#include <climits>

#include "check.cuh"
#include "ranvier/device_allocator.h"

namespace ranvier::cuda {

using ReduceAccum = double;

constexpr int kReduceThreads = 256;
constexpr int kMaxReduceBlocks = 1024;

inline int reduce_grid_for(int64_t n) {
  const int64_t blocks = (n + kReduceThreads - 1) / kReduceThreads;
  return static_cast<int>(blocks < 1 ? 1 : (blocks > kMaxReduceBlocks ? kMaxReduceBlocks : blocks));
}

// Sums value[k] (k < K) over the threads of the block with a fixed tree; the totals end up in
// shared[0][k] and are returned to every thread. blockDim.x must be kReduceThreads.
template <int K>
__device__ void block_sum(ReduceAccum (&value)[K], ReduceAccum (*shared)[K]) {
  const int t = threadIdx.x;
#pragma unroll
  for (int k = 0; k < K; ++k) shared[t][k] = value[k];
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride /= 2) {
    if (t < stride) {
#pragma unroll
      for (int k = 0; k < K; ++k) shared[t][k] += shared[t + stride][k];
    }
    __syncthreads();
  }
#pragma unroll
  for (int k = 0; k < K; ++k) value[k] = shared[0][k];
  __syncthreads();  // shared may be reused by the caller
}

// Pass 1. Term: `__device__ void operator()(int64_t i, ReduceAccum* acc) const` adds item
// i's K contributions into acc.
template <int K, typename Term>
__global__ void partial_sums_kernel(int64_t n, Term term, ReduceAccum* partial) {
  __shared__ ReduceAccum shared[kReduceThreads][K];
  ReduceAccum acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    term(i, acc);
  }
  block_sum<K>(acc, shared);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) partial[blockIdx.x * K + k] = acc[k];
  }
}

// Pass 2, one block. Finish: `__device__ void operator()(const ReduceAccum* totals) const`,
// called by thread 0.
template <int K, typename Finish>
__global__ void finish_sums_kernel(const ReduceAccum* partial, int blocks, Finish finish) {
  __shared__ ReduceAccum shared[kReduceThreads][K];
  ReduceAccum acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = 0;
  // Thread t adds partials t, t + 256, ... in order: a fixed assignment for a fixed `blocks`.
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) {
#pragma unroll
    for (int k = 0; k < K; ++k) acc[k] += partial[b * K + k];
  }
  block_sum<K>(acc, shared);
  if (threadIdx.x == 0) finish(acc);
}

// For the bindings' input checks on device arrays (class targets, probabilities, pooling
// indices): runs launch_check(first) with *first = ULLONG_MAX on the device, waits, and returns
// the index it found (-1 for none) with the element's value read back from `values`.
template <typename V, typename Launch>
int64_t first_flagged(const V* values, V* bad_value, cudaStream_t stream, const char* kernel, Launch&& launch_check) {
  DeviceScratch first(sizeof(unsigned long long), stream, kernel);
  check_cuda(cudaMemsetAsync(first.as<void>(), 0xFF, sizeof(unsigned long long), stream), kernel);
  launch_check(first.as<unsigned long long>());
  unsigned long long found = ULLONG_MAX;
  check_cuda(cudaMemcpyAsync(&found, first.as<void>(), sizeof(found), cudaMemcpyDeviceToHost, stream), kernel);
  check_cuda(cudaStreamSynchronize(stream), kernel);
  if (found != ULLONG_MAX) {
    check_cuda(cudaMemcpyAsync(bad_value, values + found, sizeof(V), cudaMemcpyDeviceToHost, stream), kernel);
    check_cuda(cudaStreamSynchronize(stream), kernel);
  }
  return found == ULLONG_MAX ? -1 : static_cast<int64_t>(found);
}

// The two passes over items [0, n) (n may be 0: the totals are then 0).
template <int K, typename Term, typename Finish>
void reduce_two_pass(int64_t n, const Term& term, const Finish& finish, cudaStream_t stream,
                     const char* partial_name, const char* finish_name) {
  const int blocks = reduce_grid_for(n);
  DeviceScratch partial(sizeof(ReduceAccum) * K * static_cast<size_t>(blocks), stream, partial_name);
  launch_kernel(partial_name, partial_sums_kernel<K, Term>, blocks, kReduceThreads, 0, stream, n, term,
                partial.as<ReduceAccum>());
  launch_kernel(finish_name, finish_sums_kernel<K, Finish>, 1, kReduceThreads, 0, stream,
                partial.as<ReduceAccum>(), blocks, finish);
}

}  // namespace ranvier::cuda
