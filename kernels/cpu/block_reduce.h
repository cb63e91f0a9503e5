// Summing a short array of float or double in double, for the kernels that reduce what the
// vector math (ranvier/vector_math.h) computed a block at a time.
#pragma once
#include <cstdint>

namespace ranvier::cpu {

// Elements per block of vector math in the kernels (softmax, losses, activations): the
// block's scratch (1-2 KiB) stays in L1 between its passes.
constexpr int64_t kVectorBlock = 256;

// sum of p[0..n) in double over 8 independent partial sums: no serial chain of dependent
// adds (one add's latency per element), and the compiler can keep the partials in registers.
template <typename T>
double sum_in_double(const T* p, int64_t n) {
  double partial[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) partial[k] += static_cast<double>(p[i + k]);
  }
  for (; i < n; ++i) partial[i % 8] += static_cast<double>(p[i]);
  return ((partial[0] + partial[4]) + (partial[1] + partial[5])) +
         ((partial[2] + partial[6]) + (partial[3] + partial[7]));
}

}  // namespace ranvier::cpu
