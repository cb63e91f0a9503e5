// Copies of a few elements, for the convolution kernels' packing and padded copies (conv.cpp,
// conv_depthwise.cpp), where runs and image rows are often 4-40 elements long.
#pragma once
#include <algorithm>
#include <cstdint>

namespace ranvier::cpu {

// out[0:count] = src[0:count] for a few elements (a run of a packed strip, count <= NR, or
// a short image row): in pieces of 4 that the compiler turns into vector moves, as neither a
// memmove call nor a loop of unknown length (left scalar, or vectorised behind run-time
// checks) pays at these lengths.
template <typename T>
inline void copy_short(const T* src, int64_t count, T* out) {
  int64_t q = 0;
  for (; q + 4 <= count; q += 4) {
    T piece[4];
    for (int64_t k = 0; k < 4; ++k) piece[k] = src[q + k];
    for (int64_t k = 0; k < 4; ++k) out[q + k] = piece[k];
  }
  for (; q < count; ++q) out[q] = src[q];
}

// out[0:count] = src[0:count] for a row of any length: copy_short below 64 elements, memmove
// (std::copy) from there on.
template <typename T>
inline void copy_row(const T* src, int64_t count, T* out) {
  if (count < 64) {
    copy_short(src, count, out);
  } else {
    std::copy(src, src + count, out);
  }
}

}  // namespace ranvier::cpu
