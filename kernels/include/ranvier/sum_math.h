// Sums in double over 8 independent partial sums, for the CPU kernels (kernels/cpu/
// block_reduce.h) and for the CUDA kernels that must give the CPU's bits (adaptive average
// pooling, pooling_math.h): one definition of the order of the additions.
//
// 8 partial sums rather than one running sum: no serial chain of dependent adds (one add's
// latency, 3-4 cycles, per element), and the compiler keeps the partials in registers. The
// order is fixed (term i goes to partial i % 8; the partials are added pairwise at the end):
// the result depends on the values alone.
#pragma once
#include <cstdint>

#include "ranvier/common.h"

namespace ranvier {

// The sum over i in [0, n) of term(i) (a double).
template <typename Term>
RANVIER_HD double sum_in_double_of(int64_t n, const Term& term) {
  double partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) partial[k] += term(i + k);
  }
  for (int k = 0; i + k < n; ++k) partial[k] += term(i + k);  // i is a multiple of 8 here
  return ((partial[0] + partial[4]) + (partial[1] + partial[5])) +
         ((partial[2] + partial[6]) + (partial[3] + partial[7]));
}

template <typename T>
struct ElementAsDouble {
  const T* p;
  RANVIER_HD double operator()(int64_t i) const { return static_cast<double>(p[i]); }
};

// The sum of p[0..n) in double.
template <typename T>
RANVIER_HD double sum_in_double(const T* p, int64_t n) {
  return sum_in_double_of(n, ElementAsDouble<T>{p});
}

}  // namespace ranvier
