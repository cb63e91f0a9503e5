// Sums in double for the CPU kernels: of what the vector math (ranvier/vector_math.h)
// computed a block at a time, of the rows of an image plane (convolution's bias gradient,
// batch normalisation's statistics), of any term over an index.
#pragma once
#include <cstdint>

namespace ranvier::cpu {

// Elements per block of vector math in the kernels (softmax, losses, activations): the
// block's scratch (1-2 KiB) stays in L1 between its passes.
constexpr int64_t kVectorBlock = 256;

// The sum over i in [0, n) of term(i) (a double) over 8 independent partial sums: no serial
// chain of dependent adds (one add's latency, 3-4 cycles, per element), and the compiler
// can keep the partials in registers. The order is fixed: the result depends on the
// values alone.
template <typename Term>
double sum_in_double_of(int64_t n, Term&& term) {
  double partial[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) partial[k] += term(i + k);
  }
  for (; i < n; ++i) partial[i % 8] += term(i);
  return ((partial[0] + partial[4]) + (partial[1] + partial[5])) +
         ((partial[2] + partial[6]) + (partial[3] + partial[7]));
}

// sum of p[0..n) in double.
template <typename T>
double sum_in_double(const T* p, int64_t n) {
  return sum_in_double_of(n, [p](int64_t i) { return static_cast<double>(p[i]); });
}

}  // namespace ranvier::cpu
