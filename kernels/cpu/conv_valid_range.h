// The one piece of convolution geometry that conv.cpp and conv_depthwise.cpp both need.
#pragma once
#include <algorithm>
#include <cstdint>

namespace ranvier::cpu {

// The output positions o in [lo, hi) of [0, out_size) whose input position
// o * stride + offset lies inside [0, in_size); all others read the zero padding.
struct ValidRange {
  int64_t lo, hi;
};
inline ValidRange valid_range(int64_t offset, int64_t stride, int64_t in_size, int64_t out_size) {
  const int64_t lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  const int64_t hi = in_size - offset <= 0 ? 0 : (in_size - offset - 1) / stride + 1;
  const int64_t hi_clamped = std::min(hi, out_size);
  return {std::min(lo, hi_clamped), hi_clamped};
}

}  // namespace ranvier::cpu
