// pack_transposed: `rows` rows of a matrix written column by column, the packing step the
// GEMM's packers need whenever the operand's rows run across the packed strip: op(A) when A
// is not transposed, op(B) when B is (matmul.cpp), and the image columns of a convolution's
// weight gradient (conv.cpp, TransposedImageColumns).
//
//   dst[q * rows + r] = src[r * ld + q]   for r < valid_rows
//                       0                 for valid_rows <= r < rows      (q < count)
//
// pack_transposed_rows is the same with each row given by its own pointer (row r at
// row_ptrs[r] instead of src + r * ld). rows is at most kMaxPackedRows (the widest
// micro-tile side: 32 floats on AVX-512).
//
// Written element by element this is one scalar store per value with a stride of `rows`
// (the GCC 12 build did exactly that, and perf put it at most of the packers' time). On
// x86-64 it is done in 4x4 (float) or 2x2 (double) register transposes with SSE2, which
// every x86-64 CPU has, so the baseline build can use it on every SIMD path; elsewhere, and
// for the last count % 4 (or % 2) columns, element by element.
#pragma once
#include <algorithm>
#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

namespace ranvier::cpu {

constexpr int64_t kMaxPackedRows = 32;

namespace pack_transposed_detail {

template <typename T>
inline void scalar_columns(const T* const* row_ptrs, int64_t valid_rows, int64_t rows,
                           int64_t q_begin, int64_t q_end, T* dst) {
  for (int64_t q = q_begin; q < q_end; ++q) {
    T* column = dst + q * rows;
    for (int64_t r = 0; r < valid_rows; ++r) column[r] = row_ptrs[r][q];
    for (int64_t r = valid_rows; r < rows; ++r) column[r] = T(0);
  }
}

#if defined(__SSE2__)
// Stores the first `width` (1..4) lanes of v at dst.
inline void store_lanes(float* dst, __m128 v, int64_t width) {
  switch (width) {
    case 4: _mm_storeu_ps(dst, v); break;
    case 3:
      _mm_storel_pi(reinterpret_cast<__m64*>(dst), v);
      _mm_store_ss(dst + 2, _mm_movehl_ps(v, v));
      break;
    case 2: _mm_storel_pi(reinterpret_cast<__m64*>(dst), v); break;
    default: _mm_store_ss(dst, v); break;
  }
}

// Groups of 4 rows, blocks of 4 columns: load a 4x4 tile (missing rows as zeros),
// transpose it in registers, store each of its 4 columns as `width` contiguous values.
inline int64_t sse_columns(const float* const* row_ptrs, int64_t valid_rows, int64_t rows,
                           int64_t count, float* dst) {
  const int64_t blocked = count / 4 * 4;
  for (int64_t g = 0; g < rows; g += 4) {
    const int64_t width = std::min<int64_t>(4, rows - g);
    const float* row[4];
    bool present[4];
    for (int64_t i = 0; i < 4; ++i) {
      present[i] = g + i < valid_rows;
      row[i] = present[i] ? row_ptrs[g + i] : nullptr;  // never read when absent
    }
    for (int64_t q = 0; q < blocked; q += 4) {
      __m128 r0 = present[0] ? _mm_loadu_ps(row[0] + q) : _mm_setzero_ps();
      __m128 r1 = present[1] ? _mm_loadu_ps(row[1] + q) : _mm_setzero_ps();
      __m128 r2 = present[2] ? _mm_loadu_ps(row[2] + q) : _mm_setzero_ps();
      __m128 r3 = present[3] ? _mm_loadu_ps(row[3] + q) : _mm_setzero_ps();
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // now r_i holds column q + i of the 4 rows
      float* out = dst + q * rows + g;
      store_lanes(out, r0, width);
      store_lanes(out + rows, r1, width);
      store_lanes(out + 2 * rows, r2, width);
      store_lanes(out + 3 * rows, r3, width);
    }
  }
  return blocked;
}

// Groups of 2 rows, blocks of 2 columns: (a0 a1), (b0 b1) -> (a0 b0), (a1 b1).
inline int64_t sse_columns(const double* const* row_ptrs, int64_t valid_rows, int64_t rows,
                           int64_t count, double* dst) {
  const int64_t blocked = count / 2 * 2;
  for (int64_t g = 0; g < rows; g += 2) {
    const bool full = g + 1 < rows;
    const bool present0 = g < valid_rows, present1 = g + 1 < valid_rows;
    const double* row0 = present0 ? row_ptrs[g] : nullptr;  // never read when absent
    const double* row1 = present1 ? row_ptrs[g + 1] : nullptr;
    for (int64_t q = 0; q < blocked; q += 2) {
      const __m128d r0 = present0 ? _mm_loadu_pd(row0 + q) : _mm_setzero_pd();
      const __m128d r1 = present1 ? _mm_loadu_pd(row1 + q) : _mm_setzero_pd();
      const __m128d column0 = _mm_unpacklo_pd(r0, r1);
      const __m128d column1 = _mm_unpackhi_pd(r0, r1);
      double* out = dst + q * rows + g;
      if (full) {
        _mm_storeu_pd(out, column0);
        _mm_storeu_pd(out + rows, column1);
      } else {
        _mm_store_sd(out, column0);
        _mm_store_sd(out + rows, column1);
      }
    }
  }
  return blocked;
}
#endif

}  // namespace pack_transposed_detail

template <typename T>
inline void pack_transposed_rows(const T* const* row_ptrs, int64_t valid_rows, int64_t rows,
                                 int64_t count, T* dst) {
  int64_t done = 0;
#if defined(__SSE2__)
  done = pack_transposed_detail::sse_columns(row_ptrs, valid_rows, rows, count, dst);
#endif
  pack_transposed_detail::scalar_columns(row_ptrs, valid_rows, rows, done, count, dst);
}

template <typename T>
inline void pack_transposed(const T* src, int64_t ld, int64_t valid_rows, int64_t rows,
                            int64_t count, T* dst) {
  const T* row_ptrs[kMaxPackedRows];
  for (int64_t r = 0; r < valid_rows; ++r) row_ptrs[r] = src + r * ld;
  pack_transposed_rows(row_ptrs, valid_rows, rows, count, dst);
}

}  // namespace ranvier::cpu
