// Max pooling's 2x2 stride-2 plane kernel on AVX2 (see pooling_kernels.h). This file is
// compiled for the baseline x86-64: only the function marked RANVIER_AVX2_TARGET uses AVX2,
// and pooling.cpp calls it only on a CPU that has it.
//
// Eight windows a step: two rows of 16 input columns, split into their even and odd
// columns, give a window's four candidates as four vectors, one window a lane; the window
// rule is then three compare-and-blend steps, applied to the values and to a 2-bit code of
// the winner's position (bit 0: right column, bit 1: lower row), from which the int64
// indices are made at the end. The scalar loop spent about 20 cycles a window on the
// index bookkeeping of its take_if_larger calls (perf: 62% of max_pool2d forward on the
// MNIST-sized CNN's first pooling, (64, 32, 28, 28)).
#include "pooling_kernels.h"

#include <algorithm>

#include "simd_avx2.h"

#if RANVIER_SIMD_X86
namespace ranvier::cpu::pooling_kernels::avx2 {

namespace {

// Lanes [0, count) of a mask for maskload / maskstore (count may be <= 0 or >= 8).
RANVIER_AVX2_INLINE __m256i first_lanes_32(int64_t count) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::clamp<int64_t>(count, 0, 8))),
                            lane);
}

RANVIER_AVX2_INLINE __m256i first_lanes_64(int64_t count) {
  const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(std::clamp<int64_t>(count, 0, 4)), lane);
}

// The window rule's step for one more candidate: it takes over where it is larger than the
// best so far or NaN.
RANVIER_AVX2_INLINE void take_if_larger(__m256 candidate, int code, __m256& best,
                                        __m256& best_code) {
  const __m256 takes_over = _mm256_or_ps(_mm256_cmp_ps(candidate, best, _CMP_GT_OQ),
                                         _mm256_cmp_ps(candidate, candidate, _CMP_UNORD_Q));
  best = _mm256_blendv_ps(best, candidate, takes_over);
  best_code = _mm256_blendv_ps(best_code, _mm256_castsi256_ps(_mm256_set1_epi32(code)),
                               takes_over);
}

// The int64 indices of four windows: first (their (0,0) elements' indices) plus the offset
// their 2-bit codes name.
RANVIER_AVX2_INLINE __m256i window_indices(__m128i codes, __m256i first, __m256i row_step) {
  const __m256i code = _mm256_cvtepi32_epi64(codes);
  const __m256i column = _mm256_and_si256(code, _mm256_set1_epi64x(1));
  const __m256i lower_row = _mm256_srli_epi64(code, 1);  // 0 or 1
  const __m256i row_offset = _mm256_and_si256(_mm256_sub_epi64(_mm256_setzero_si256(), lower_row),
                                              row_step);
  return _mm256_add_epi64(first, _mm256_add_epi64(column, row_offset));
}

}  // namespace

RANVIER_AVX2_TARGET void max_pool_2x2_stride_2_plane(const float* x, int64_t in_h, int64_t in_w,
                                                     int64_t out_h, int64_t out_w, float* y,
                                                     int64_t* indices) {
  const float* x_end = x + in_h * in_w;
  const float* y_end = y + out_h * out_w;
  const __m256i row_step = _mm256_set1_epi64x(in_w);
  const __m256i first_of_lanes_0_3 = _mm256_setr_epi64x(0, 2, 4, 6);
  const __m256i first_of_lanes_4_7 = _mm256_setr_epi64x(8, 10, 12, 14);
  for (int64_t oh = 0; oh < out_h; ++oh) {
    const int64_t row_first = 2 * oh * in_w;  // index of the windows' upper row
    const float* upper = x + row_first;
    const float* lower = upper + in_w;
    float* y_row = y + oh * out_w;
    int64_t* indices_row = indices + oh * out_w;
    for (int64_t ow = 0; ow < out_w; ow += 8) {
      const int64_t windows = std::min<int64_t>(8, out_w - ow);
      const int64_t column = 2 * ow;
      // Input columns [column, column + 16): two vectors a row. A last step of fewer than
      // eight windows may read on into the next rows, and write on into the next output
      // row (which that row's own step overwrites), but not past the plane: another thread
      // may be writing the next one. At the plane's end it reads only its 2 * windows
      // columns (masked loads never fault) and writes only its windows. Masked stores are
      // slow: the MNIST CNN's second pooling, (64, 64, 14, 14) into 7-window rows, took
      // 0.55 ms (one thread, Zen 3) with masks on every row's last step, 0.43 ms with them at
      // the plane's end only.
      __m256 upper_0, upper_1, lower_0, lower_1;
      if (windows == 8 || lower + column + 16 <= x_end) {
        upper_0 = _mm256_loadu_ps(upper + column);
        upper_1 = _mm256_loadu_ps(upper + column + 8);
        lower_0 = _mm256_loadu_ps(lower + column);
        lower_1 = _mm256_loadu_ps(lower + column + 8);
      } else {
        const __m256i mask_0 = first_lanes_32(2 * windows);
        const __m256i mask_1 = first_lanes_32(2 * windows - 8);
        upper_0 = _mm256_maskload_ps(upper + column, mask_0);
        upper_1 = _mm256_maskload_ps(upper + column + 8, mask_1);
        lower_0 = _mm256_maskload_ps(lower + column, mask_0);
        lower_1 = _mm256_maskload_ps(lower + column + 8, mask_1);
      }
      // Even and odd columns. shuffle_ps works within 128-bit halves, so the lanes hold
      // windows (0 1 4 5 | 2 3 6 7); the results are put in order once, after the rule.
      const __m256 upper_left = _mm256_shuffle_ps(upper_0, upper_1, _MM_SHUFFLE(2, 0, 2, 0));
      const __m256 upper_right = _mm256_shuffle_ps(upper_0, upper_1, _MM_SHUFFLE(3, 1, 3, 1));
      const __m256 lower_left = _mm256_shuffle_ps(lower_0, lower_1, _MM_SHUFFLE(2, 0, 2, 0));
      const __m256 lower_right = _mm256_shuffle_ps(lower_0, lower_1, _MM_SHUFFLE(3, 1, 3, 1));
      // The first candidate against -inf: it wins unless it is -inf, and then the best is
      // -inf at that same first index either way.
      __m256 best = upper_left;
      __m256 best_code = _mm256_setzero_ps();
      take_if_larger(upper_right, 1, best, best_code);
      take_if_larger(lower_left, 2, best, best_code);
      take_if_larger(lower_right, 3, best, best_code);
      // 64-bit pairs (0 1)(4 5)(2 3)(6 7) -> (0 1)(2 3)(4 5)(6 7).
      constexpr int kInOrder = _MM_SHUFFLE(3, 1, 2, 0);
      best = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(best), kInOrder));
      const __m256i code = _mm256_permute4x64_epi64(_mm256_castps_si256(best_code), kInOrder);
      const __m256i first = _mm256_set1_epi64x(row_first + column);
      const __m256i indices_0_3 = window_indices(_mm256_castsi256_si128(code),
                                                 _mm256_add_epi64(first, first_of_lanes_0_3), row_step);
      const __m256i indices_4_7 = window_indices(_mm256_extracti128_si256(code, 1),
                                                 _mm256_add_epi64(first, first_of_lanes_4_7), row_step);
      if (windows == 8 || y_row + ow + 8 <= y_end) {
        _mm256_storeu_ps(y_row + ow, best);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(indices_row + ow), indices_0_3);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(indices_row + ow + 4), indices_4_7);
      } else {
        _mm256_maskstore_ps(y_row + ow, first_lanes_32(windows), best);
        auto* out = reinterpret_cast<long long*>(indices_row + ow);
        _mm256_maskstore_epi64(out, first_lanes_64(windows), indices_0_3);
        _mm256_maskstore_epi64(out + 4, first_lanes_64(windows - 4), indices_4_7);
      }
    }
  }
}

}  // namespace ranvier::cpu::pooling_kernels::avx2
#endif  // RANVIER_SIMD_X86
