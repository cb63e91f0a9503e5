// Matrix multiplication on the CPU: one blocked GEMM (Goto/BLIS structure in portable C++17)
// and the ops built on it (batched matmul, linear forward and backward).
//
// How gemm computes C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C:
//
//   1. C = beta * C once (zeros when beta == 0, never reading C), so every later step only
//      accumulates C += alpha * (block products).
//   2. loop jc over columns of C in blocks of kNC                     (B panel ~ L3)
//        loop pc over the shared dimension in blocks of kKC
//          pack_b_panel: op(B)[pc:pc+kc, jc:jc+nc] -> kNR-wide column strips, each stored
//                        (kc, kNR) contiguous, zero-padded to a multiple of kNR columns
//          parallel over kMR-row strips of C (parallel_for), each thread in blocks of kMC rows:
//            pack_a_block: op(A)[ic:ic+mc, pc:pc+kc] -> kMR-tall row strips, each stored
//                          (kc, kMR) contiguous, zero-padded to a multiple of kMR rows
//            macro_kernel: for every (kMR row strip, kNR column strip) pair,
//              micro_kernel: acc (kMR, kNR) = sum over p of a_strip[p] (kMR) x b_strip[p] (kNR)
//              then C tile += alpha * acc (only the valid rows/columns at the edges)
//
// Packing turns all four transpose combinations into the same inner kernel over contiguous
// memory, and the zero padding lets the micro-kernel always run a full kMR x kNR tile
// without edge branches. The micro-kernel's loops have compile-time bounds, so the compiler
// unrolls them, keeps the accumulator tile in registers and vectorises the kNR loop with
// whatever SIMD the baseline target has (SSE2 on x86-64; no -march flags). A BLIS-style
// SIMD micro-kernel can later replace micro_kernel behind this same gemm().
#include "ranvier/matmul.h"

#include <algorithm>
#include <vector>

#include "parallel.h"

namespace ranvier::cpu {

namespace {

// Register tile: kMR rows x kNR<T> columns of C live in registers through the k loop.
// 4 x (16 bytes * 2 / sizeof(T)) = 8 vector accumulators of 16 bytes (4 x 8 floats or 4 x 4
// doubles), leaving room for the B row and the broadcast A values in the 16 SSE registers.
constexpr int64_t kMR = 4;
template <typename T>
constexpr int64_t kNR = 32 / static_cast<int64_t>(sizeof(T));

// Cache blocks. A packed A block (kMC x kKC) is 128 KiB in float, 256 KiB in double: it
// stays in L2 while the B panel streams past it. A packed B panel (kKC x kNC) is 2 MiB in
// float, 4 MiB in double: L3-sized, shared by all threads. kKC also bounds how long each
// accumulator tile sums before being added to C.
constexpr int64_t kMC = 128;
constexpr int64_t kKC = 256;
constexpr int64_t kNC = 2048;

int64_t round_up(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }

// C (m, n) = beta * C; beta == 0 writes zeros without reading C (which may hold NaN).
template <typename T>
void scale_c(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  if (beta == T(1)) return;
  parallel_for(m, n, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T* row = c + i * ldc;
      if (beta == T(0)) {
        std::fill(row, row + n, T(0));
      } else {
        for (int64_t j = 0; j < n; ++j) row[j] *= beta;
      }
    }
  });
}

// op(B)[p0:p0+kc, j0:j0+nc] -> packed (ceil(nc/kNR) strips, each (kc, kNR) row-major).
// op(B)(p, j) is b[p*ldb + j], or b[j*ldb + p] when trans_b. Columns past nc are zero.
template <typename T>
void pack_b_panel(bool trans_b, const T* b, int64_t ldb, int64_t p0, int64_t j0, int64_t kc,
                  int64_t nc, T* packed) {
  constexpr int64_t NR = kNR<T>;
  const int64_t strips = (nc + NR - 1) / NR;
  parallel_for(strips, kc * NR, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      T* dst = packed + s * kc * NR;
      const int64_t j_begin = j0 + s * NR;
      const int64_t width = std::min(NR, j0 + nc - j_begin);
      for (int64_t p = 0; p < kc; ++p) {
        T* dst_row = dst + p * NR;
        if (trans_b) {
          const T* src = b + j_begin * ldb + (p0 + p);  // walks down a row of B per column
          for (int64_t c = 0; c < width; ++c) dst_row[c] = src[c * ldb];
        } else {
          const T* src = b + (p0 + p) * ldb + j_begin;  // contiguous piece of row p of B
          for (int64_t c = 0; c < width; ++c) dst_row[c] = src[c];
        }
        for (int64_t c = width; c < NR; ++c) dst_row[c] = T(0);
      }
    }
  });
}

// op(A)[i0:i0+mc, p0:p0+kc] -> packed (ceil(mc/kMR) strips, each (kc, kMR) row-major).
// op(A)(i, p) is a[i*lda + p], or a[p*lda + i] when trans_a. Rows past mc are zero.
template <typename T>
void pack_a_block(bool trans_a, const T* a, int64_t lda, int64_t i0, int64_t p0, int64_t mc,
                  int64_t kc, T* packed) {
  const int64_t strips = (mc + kMR - 1) / kMR;
  for (int64_t s = 0; s < strips; ++s) {
    T* dst = packed + s * kc * kMR;
    const int64_t i_begin = i0 + s * kMR;
    const int64_t height = std::min(kMR, i0 + mc - i_begin);
    for (int64_t p = 0; p < kc; ++p) {
      T* dst_col = dst + p * kMR;
      for (int64_t r = 0; r < height; ++r) {
        dst_col[r] = trans_a ? a[(p0 + p) * lda + i_begin + r] : a[(i_begin + r) * lda + p0 + p];
      }
      for (int64_t r = height; r < kMR; ++r) dst_col[r] = T(0);
    }
  }
}

// acc (kMR, kNR) = sum over p < kc of a_strip[p, :] (kMR) outer b_strip[p, :] (kNR).
// The only loop that does arithmetic; everything around it moves memory.
template <typename T>
inline void micro_kernel(int64_t kc, const T* a_strip, const T* b_strip, T* acc) {
  constexpr int64_t NR = kNR<T>;
  T tile[kMR * NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const T* a_col = a_strip + p * kMR;
    const T* b_row = b_strip + p * NR;
    for (int64_t r = 0; r < kMR; ++r) {
      const T a_value = a_col[r];
      for (int64_t c = 0; c < NR; ++c) tile[r * NR + c] += a_value * b_row[c];
    }
  }
  for (int64_t e = 0; e < kMR * NR; ++e) acc[e] = tile[e];
}

// C[i0:i0+mc, j0:j0+nc] += alpha * packed_a (mc, kc) @ packed_b (kc, nc).
template <typename T>
void macro_kernel(int64_t mc, int64_t nc, int64_t kc, T alpha, const T* packed_a,
                  const T* packed_b, T* c, int64_t ldc) {
  constexpr int64_t NR = kNR<T>;
  T acc[kMR * NR];
  for (int64_t j = 0; j < nc; j += NR) {
    const T* b_strip = packed_b + (j / NR) * kc * NR;
    const int64_t width = std::min(NR, nc - j);
    for (int64_t i = 0; i < mc; i += kMR) {
      micro_kernel<T>(kc, packed_a + (i / kMR) * kc * kMR, b_strip, acc);
      const int64_t height = std::min(kMR, mc - i);
      for (int64_t r = 0; r < height; ++r) {
        T* c_row = c + (i + r) * ldc + j;
        for (int64_t col = 0; col < width; ++col) c_row[col] += alpha * acc[r * NR + col];
      }
    }
  }
}

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace

// C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C, all row-major.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  scale_c(m, n, beta, c, ldc);
  if (k <= 0 || alpha == T(0)) return;

  constexpr int64_t NR = kNR<T>;
  const int64_t kc_max = std::min(k, kKC);
  const int64_t nc_max = std::min(n, kNC);
  std::vector<T> packed_b(static_cast<size_t>(kc_max * round_up(nc_max, NR)));
  const int64_t row_strips = (m + kMR - 1) / kMR;

  for (int64_t jc = 0; jc < n; jc += kNC) {
    const int64_t nc = std::min(kNC, n - jc);
    for (int64_t pc = 0; pc < k; pc += kKC) {
      const int64_t kc = std::min(kKC, k - pc);
      pack_b_panel(trans_b, b, ldb, pc, jc, kc, nc, packed_b.data());
      // Each thread takes a contiguous range of kMR-row strips of C (disjoint rows, so no
      // two threads write the same C element) and walks it in kMC-row blocks.
      parallel_for(row_strips, kMR * nc * kc, [&](int64_t strip_begin, int64_t strip_end) {
        std::vector<T> packed_a(static_cast<size_t>(std::min(kMC, m) * kc + kMR * kc));
        const int64_t row_end = std::min(m, strip_end * kMR);
        for (int64_t ic = strip_begin * kMR; ic < row_end; ic += kMC) {
          const int64_t mc = std::min(kMC, row_end - ic);
          pack_a_block(trans_a, a, lda, ic, pc, mc, kc, packed_a.data());
          macro_kernel(mc, nc, kc, alpha, packed_a.data(), packed_b.data(), c + ic * ldc + jc, ldc);
        }
      });
    }
  }
}

// C[i] (m, n) = op(A[i]) @ op(B[i]) for i < batch; A[i] at a + i*stride_a, B[i] at b + i*stride_b.
template <typename T>
void matmul(const T* a, const T* b, T* c, int64_t batch, int64_t m, int64_t n, int64_t k,
            bool trans_a, bool trans_b, int64_t stride_a, int64_t stride_b) {
  const int64_t lda = trans_a ? m : k;
  const int64_t ldb = trans_b ? k : n;
  auto one_matrix = [&](int64_t i) {
    gemm<T>(trans_a, trans_b, m, n, k, T(1), a + i * stride_a, lda, b + i * stride_b, ldb, T(0),
            c + i * m * n, n);
  };
  // Small matrices give gemm too few row strips to share among the threads, so the batch
  // is split instead (gemm's own parallel_for then runs serially: it refuses to nest). Big
  // matrices with a short batch go one after another, each split over rows inside gemm.
  const int64_t row_strips = (m + kMR - 1) / kMR;
  const bool split_batch = batch >= max_threads() || row_strips < 4 * max_threads();
  if (batch > 1 && split_batch) {
    parallel_for(batch, std::max<int64_t>(1, m * n * std::max<int64_t>(k, 1)),
                 [&](int64_t begin, int64_t end) {
                   for (int64_t i = begin; i < end; ++i) one_matrix(i);
                 });
  } else {
    for (int64_t i = 0; i < batch; ++i) one_matrix(i);
  }
}

// y (rows, out) = x (rows, in) @ w (out, in)^T + bias (out); bias may be null.
template <typename T>
void linear_forward(const T* x, const T* w, const T* bias, T* y, int64_t rows, int64_t in,
                    int64_t out) {
  if (bias != nullptr) {
    // Start every row of y at the bias, then accumulate the product onto it (beta = 1).
    parallel_for(rows, out, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) std::copy(bias, bias + out, y + r * out);
    });
  }
  gemm<T>(false, true, rows, out, in, T(1), x, in, w, in, bias != nullptr ? T(1) : T(0), y, out);
}

// dx (rows, in) = dy (rows, out) @ w (out, in)
template <typename T>
void linear_backward_input(const T* dy, const T* w, T* dx, int64_t rows, int64_t in, int64_t out) {
  gemm<T>(false, false, rows, in, out, T(1), dy, out, w, in, T(0), dx, in);
}

// dw (out, in) = dy (rows, out)^T @ x (rows, in); dbias (out) = column sums of dy (may be null).
template <typename T>
void linear_backward_weight(const T* dy, const T* x, T* dw, T* dbias, int64_t rows, int64_t in,
                            int64_t out) {
  gemm<T>(true, false, out, in, rows, T(1), dy, out, x, in, T(0), dw, in);
  if (dbias == nullptr) return;
  // Each thread owns a range of columns and sums them down the rows of dy, reading each
  // row's piece contiguously.
  parallel_for(out, rows, [&](int64_t begin, int64_t end) {
    std::fill(dbias + begin, dbias + end, T(0));
    for (int64_t r = 0; r < rows; ++r) {
      const T* dy_row = dy + r * out;
      for (int64_t j = begin; j < end; ++j) dbias[j] += dy_row[j];
    }
  });
}

#define RANVIER_INSTANTIATE_MATMUL(T)                                                              \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*,     \
                        int64_t, T, T*, int64_t);                                                  \
  template void matmul<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t, bool, bool,  \
                          int64_t, int64_t);                                                       \
  template void linear_forward<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t);    \
  template void linear_backward_input<T>(const T*, const T*, T*, int64_t, int64_t, int64_t);       \
  template void linear_backward_weight<T>(const T*, const T*, T*, T*, int64_t, int64_t, int64_t);

RANVIER_INSTANTIATE_MATMUL(float)
RANVIER_INSTANTIATE_MATMUL(double)
#undef RANVIER_INSTANTIATE_MATMUL

}  // namespace ranvier::cpu
