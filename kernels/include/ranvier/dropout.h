// Dropout with a mask from ranvier's counter-based generator (random.h).
#pragma once
#include "ranvier/common.h"

namespace ranvier::cpu {

// Element i (0 <= i < n) is kept when uniform(seed, offset + i) >= p; kept elements are
// scaled by 1 / (1 - p): y (n) = x * mask / (1 - p); mask (n) gets 1 or 0.
// The caller advances its offset by n (rounded up to a multiple of 4) per call.
// Requires 0 <= p < 1 (p == 1 is handled above the kernel: all zeros).
template <typename T>
void dropout_forward(const T* x, T* y, uint8_t* mask, int64_t n, T p, uint64_t seed,
                     uint64_t offset);
// dx (n) = dy * mask / (1 - p)
template <typename T>
void dropout_backward(const T* dy, const uint8_t* mask, T* dx, int64_t n, T p);

// out (n) = uniform numbers in [0, 1) of stream (seed, offset): the generator on its own,
// for tests and for other random ops.
template <typename T>
void uniform_fill(T* out, int64_t n, uint64_t seed, uint64_t offset);

}  // namespace ranvier::cpu

namespace ranvier::cuda {

// The CUDA twins of the above, on `stream`: the same Philox mapping (dropout_math.h), so
// the masks and numbers equal the CPU's bit for bit for the same (seed, offset).
template <typename T>
void dropout_forward(const T* x, T* y, uint8_t* mask, int64_t n, T p, uint64_t seed,
                     uint64_t offset, StreamHandle stream);
template <typename T>
void dropout_backward(const T* dy, const uint8_t* mask, T* dx, int64_t n, T p, StreamHandle stream);
template <typename T>
void uniform_fill(T* out, int64_t n, uint64_t seed, uint64_t offset, StreamHandle stream);

}  // namespace ranvier::cuda
