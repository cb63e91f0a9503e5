// softmax and log_softmax along one axis, numerically stable (the row maximum is subtracted).
#pragma once
#include "ranvier/common.h"

namespace ranvier::cpu {

// x and y are contiguous and viewed as (outer, dim, inner); the softmax runs along `dim`.
// log_softmax when `log` is true.
template <typename T>
void softmax_forward(const T* x, T* y, int64_t outer, int64_t dim, int64_t inner, bool log);

// Given the forward output y and dy, all (outer, dim, inner):
//   softmax:      dx = y * (dy - sum_dim(dy * y))
//   log_softmax:  dx = dy - exp(y) * sum_dim(dy)
template <typename T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t outer, int64_t dim, int64_t inner,
                      bool log);

}  // namespace ranvier::cpu

namespace ranvier::cuda {

// The CUDA twins of the above, on `stream`: one block per row for inner == 1 (block-wide max
// and sum reductions), one thread per line walking dim with stride `inner` otherwise.
template <typename T>
void softmax_forward(const T* x, T* y, int64_t outer, int64_t dim, int64_t inner, bool log,
                     StreamHandle stream);
template <typename T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t outer, int64_t dim, int64_t inner,
                      bool log, StreamHandle stream);

}  // namespace ranvier::cuda
