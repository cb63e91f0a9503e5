// Block-wise reductions for the CPU kernels: the vector math (ranvier/vector_math.h) computes
// a block at a time, and the kernels sum its results, image rows (convolution's bias
// gradient, batch normalisation's statistics) or any term over an index in double with
// ranvier/sum_math.h's partial sums.
#pragma once
#include <cstdint>

#include "ranvier/sum_math.h"  // sum_in_double, sum_in_double_of

namespace ranvier::cpu {

// Elements per block of vector math in the kernels (softmax, losses, activations): the
// block's scratch (1-2 KiB) stays in L1 between its passes.
constexpr int64_t kVectorBlock = 256;

}  // namespace ranvier::cpu
