// Batch normalisation over the channel axis, forward (training and evaluation) and backward.
//
// x is contiguous and viewed as (N, C, L): L = H * W for 2-D inputs, L for (N, C, L) and
// 1 for (N, C). Each channel c is normalised over its N * L values.
#pragma once
#include "ranvier/common.h"

namespace ranvier {
namespace cpu {

// Training: x (N, C, L) -> y (N, C, L), with the batch statistics of each channel:
// save_mean (C) = mean, save_invstd (C) = 1 / sqrt(biased variance + eps). When running_mean
// and running_var (C) are not null they are updated in place as PyTorch does:
// running = (1 - momentum) * running + momentum * batch, with the UNBIASED variance
// (n / (n - 1) times the biased one, n = N * L >= 2). weight, bias (C) may be null
// (scale 1, shift 0). Sums are taken in double, the variance in a second pass around the mean.
template <typename T>
void batch_norm_forward_training(const T* x, const T* weight, const T* bias, T* y, T* save_mean,
                                 T* save_invstd, T* running_mean, T* running_var, int64_t N,
                                 int64_t C, int64_t L, double momentum, double eps);

// Evaluation: x (N, C, L) -> y with the running statistics (C). save_mean and save_invstd
// (C) receive running_mean and 1 / sqrt(running_var + eps), so that one backward kernel
// serves both modes.
template <typename T>
void batch_norm_forward_eval(const T* x, const T* weight, const T* bias, const T* running_mean,
                             const T* running_var, T* y, T* save_mean, T* save_invstd, int64_t N,
                             int64_t C, int64_t L, double eps);

// dy, x (N, C, L), save_mean, save_invstd (C) from the forward, weight (C) or null ->
// dx (N, C, L), dweight (C), dbias (C). With x_hat = (x - mean) * invstd:
//   dbias = sum(dy), dweight = sum(dy * x_hat) over N and L;
//   training: dx = weight * invstd * (dy - dbias / n - x_hat * dweight / n)  (through the
//             batch statistics, n = N * L);
//   eval:     dx = weight * invstd * dy  (the statistics are constants).
// dx may be null when it is not wanted.
template <typename T>
void batch_norm_backward(const T* dy, const T* x, const T* save_mean, const T* save_invstd,
                         const T* weight, T* dx, T* dweight, T* dbias, int64_t N, int64_t C,
                         int64_t L, bool training);

}  // namespace cpu

namespace cuda {

// The CUDA twins of the above, on `stream`, with the same arguments and formulas (sums in
// double, the variance in a second pass around the mean). The per-channel sums are
// deterministic (reduce.cuh's fixed trees, no floating-point atomics): the same bits every
// run, though not the CPU's bits (the order of the additions differs). Scratch memory comes
// from the device allocator (ranvier/device_allocator.h).
template <typename T>
void batch_norm_forward_training(const T* x, const T* weight, const T* bias, T* y, T* save_mean,
                                 T* save_invstd, T* running_mean, T* running_var, int64_t N,
                                 int64_t C, int64_t L, double momentum, double eps, StreamHandle stream);
template <typename T>
void batch_norm_forward_eval(const T* x, const T* weight, const T* bias, const T* running_mean,
                             const T* running_var, T* y, T* save_mean, T* save_invstd, int64_t N,
                             int64_t C, int64_t L, double eps, StreamHandle stream);
template <typename T>
void batch_norm_backward(const T* dy, const T* x, const T* save_mean, const T* save_invstd,
                         const T* weight, T* dx, T* dweight, T* dbias, int64_t N, int64_t C,
                         int64_t L, bool training, StreamHandle stream);

}  // namespace cuda
}  // namespace ranvier
