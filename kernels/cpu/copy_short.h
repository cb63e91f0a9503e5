// Copies of a few elements, for the convolution kernels' packing and padded copies (conv.cpp,
// conv_depthwise.cpp), where runs and image rows are often 4-40 elements long.
#pragma once
#include <algorithm>
#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

// A row of N elements made of two runs, for a packed strip whose columns span two output
// rows (conv.cpp's ImageColumns: 14-pixel rows on 16-wide strips give runs of 14 and 2, 12
// and 4, ...):
//   out[q] = first[q]            for q < split
//            second[q - split]   for split <= q < N
// Copied as whole 16-byte vectors, blended under a mask made once per split, instead of two
// copies of run-time lengths: it reads first[0:N] and second[-split:N-split], so both ranges
// must lie inside one allocation (the caller's padded images keep a tail for this).
template <typename T, int64_t N>
class TwoRunSplice {
 public:
  explicit TwoRunSplice(int64_t split) : split_(split) {
#if defined(__SSE2__)
    const __m128i split_v = _mm_set1_epi32(static_cast<int>(split));
    for (int v = 0; v < kVectors; ++v) {
      // The element each 4-byte lane of bytes [16v, 16v + 16) belongs to; all ones where
      // that element comes from `first`.
      const auto element = [&](int lane) { return (16 * v + 4 * lane) / int{sizeof(T)}; };
      mask_[v] = _mm_cmplt_epi32(_mm_setr_epi32(element(0), element(1), element(2), element(3)),
                                 split_v);
    }
#endif
  }

  void operator()(const T* first, const T* second, T* out) const {
#if defined(__SSE2__)
    const char* a = reinterpret_cast<const char*>(first);
    const char* b = reinterpret_cast<const char*>(second - split_);
    char* o = reinterpret_cast<char*>(out);
    for (int v = 0; v < kVectors; ++v) {
      const __m128i from_first = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + 16 * v));
      const __m128i from_second = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 * v));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 16 * v),
                       _mm_or_si128(_mm_and_si128(mask_[v], from_first),
                                    _mm_andnot_si128(mask_[v], from_second)));
    }
#else
    for (int64_t q = 0; q < split_; ++q) out[q] = first[q];
    for (int64_t q = split_; q < N; ++q) out[q] = second[q - split_];
#endif
  }

 private:
  static_assert(N * sizeof(T) % 16 == 0, "a row of whole 16-byte vectors");
  static constexpr int kVectors = static_cast<int>(N * sizeof(T) / 16);
  int64_t split_;
#if defined(__SSE2__)
  __m128i mask_[kVectors];
#endif
};

}  // namespace ranvier::cpu
