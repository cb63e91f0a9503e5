// Max pooling's inner loop with SIMD bodies, for the shape nearly every CNN pools with:
// 2x2 windows at stride 2, all inside the plane (nn.MaxPool2d(2) on any input). pooling.cpp
// calls it for float planes when use_avx2_kernels(); every other case, and the portable
// path, runs its scalar loops.
#pragma once
#include <cstdint>

#include "ranvier/simd_path.h"

namespace ranvier::cpu::pooling_kernels {

#if RANVIER_SIMD_X86
namespace avx2 {

// One plane: y[oh, ow] = max of x[2oh + i, 2ow + j] for i, j in {0, 1}, and indices[oh, ow]
// = the flat index (2oh + i) * in_w + 2ow + j of that element within the plane, by
// take_if_larger's rule (pooling_math.h): the first maximum in the order (0,0), (0,1),
// (1,0), (1,1) wins ties, a NaN wins over numbers, the last NaN over earlier ones.
// x (in_h, in_w) with in_h >= 2 * out_h and in_w >= 2 * out_w; y and indices (out_h, out_w).
// It reads and writes only within these planes.
void max_pool_2x2_stride_2_plane(const float* x, int64_t in_h, int64_t in_w, int64_t out_h,
                                 int64_t out_w, float* y, int64_t* indices);

}  // namespace avx2
#endif

}  // namespace ranvier::cpu::pooling_kernels
