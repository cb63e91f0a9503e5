// Matrix multiplication on the CPU: one blocked GEMM in the Goto/BLIS structure with SIMD
// micro-kernels chosen at run time, and the ops built on it (batched matmul, linear forward
// and backward).
//
// How gemm computes C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C, with the
// chosen path's micro-tile MR x NR and the cache blocks MC, KC, NC (gemm_blocking):
//
//   loop jc over columns of C in blocks of NC                         (B panel ~ L3)
//     loop pc over the shared dimension in blocks of KC
//       pack_b_panel: op(B)[pc:pc+kc, jc:jc+nc] -> NR-wide column strips, each stored
//                     (kc, NR) contiguous, zero-padded to a multiple of NR columns; the
//                     threads pack disjoint strips, then wait for each other
//       each thread, over its share of MR-row strips of C (or, when C has too few rows to
//       share, over its share of the NR-column strips), in blocks of MC rows:
//         pack_a_block: op(A)[ic:ic+mc, pc:pc+kc] -> MR-tall row strips, each stored
//                       (kc, MR) contiguous, zero-padded to a multiple of MR rows (~ L2)
//         macro_kernel: for every NR column strip (its (kc, NR) piece of B stays in L1),
//                       for every MR row strip: micro_kernel updates that C tile in registers
//                       C tile = alpha * (A strip @ B strip) + beta' * C tile, where beta' is
//                       beta for the first block of k and 1 after it (so beta == 0 never
//                       reads C, which may hold NaN)
//
// B is read only by the packing step, through a B operand object (gemm_blocked's BOperand):
// StoredB packs a stored matrix (pack_b_strips), PackerB calls a BPanelPacker
// (gemm_b_packer.h) that another kernel supplies, such as conv.cpp's, which packs the im2col
// matrix from the image. gemm() and gemm_packed_b() run the same driver.
//
// Packing turns all four transpose combinations into the same kernel over contiguous memory,
// and the zero padding lets the micro-kernel always compute a full MR x NR tile; only its
// store is cut at the edges.
//
// Small products (one block in every direction, one thread, at most 128^3 multiply-adds:
// gemm_small) skip most of this: the micro-kernel reads op(A) and op(B) in place through its
// strided entry point, and only the edge strips (and op(B) when B is transposed, or when its
// row stride would make its strips fight over a few L1 sets) are packed.
//
// The micro-kernels (gemm_micro_kernels.h) are AVX-512, AVX2+FMA (gemm_avx512.cpp,
// gemm_avx2.cpp: target attributes, never -march) and the portable C++ one below;
// gemm_path() tells which one runs.
#include "ranvier/matmul.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <new>

#include "gemm_b_packer.h"
#include "gemm_micro_kernels.h"
#include "pack_transposed.h"
#include "parallel.h"

namespace ranvier::cpu {

namespace gk = gemm_kernels;

// --- the portable micro-kernel (any CPU) ----------------------------------------------------

namespace gemm_kernels::portable {

// The loops have compile-time bounds, so the compiler unrolls them, keeps the accumulator
// tile in registers through the k loop and vectorises the NR loop with the baseline SIMD
// (SSE2 on x86-64). A(r, p) is a_strip[r * rs_a + p * cs_a], row p of B starts at
// b_strip + p * ldb (gemm_micro_kernels.h); the packed entry point passes (1, kMR, NR).
template <typename T>
inline void micro_kernel_impl(int64_t kc, const T* a_strip, int64_t rs_a, int64_t cs_a,
                              const T* b_strip, int64_t ldb, T* c, int64_t ldc, T alpha, T beta,
                              int64_t rows, int64_t cols) {
  constexpr int64_t NR = kNR<T>;
  T tile[kMR * NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const T* a_col = a_strip + p * cs_a;
    const T* b_row = b_strip + p * ldb;
    for (int64_t r = 0; r < kMR; ++r) {
      const T a_value = a_col[r * rs_a];
      for (int64_t j = 0; j < NR; ++j) tile[r * NR + j] += a_value * b_row[j];
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    T* c_row = c + r * ldc;
    const T* tile_row = tile + r * NR;
    if (beta == T(0)) {
      for (int64_t j = 0; j < cols; ++j) c_row[j] = alpha * tile_row[j];
    } else {
      for (int64_t j = 0; j < cols; ++j) c_row[j] = alpha * tile_row[j] + beta * c_row[j];
    }
  }
}

void micro_kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                  float beta, int64_t rows, int64_t cols) {
  micro_kernel_impl(kc, a, 1, kMR, b, kNR<float>, c, ldc, alpha, beta, rows, cols);
}
void micro_kernel(int64_t kc, const double* a, const double* b, double* c, int64_t ldc,
                  double alpha, double beta, int64_t rows, int64_t cols) {
  micro_kernel_impl(kc, a, 1, kMR, b, kNR<double>, c, ldc, alpha, beta, rows, cols);
}
void micro_kernel_strided(int64_t kc, const float* a, int64_t rs_a, int64_t cs_a, const float* b,
                          int64_t ldb, float* c, int64_t ldc, float alpha, float beta,
                          int64_t rows, int64_t cols) {
  micro_kernel_impl(kc, a, rs_a, cs_a, b, ldb, c, ldc, alpha, beta, rows, cols);
}
void micro_kernel_strided(int64_t kc, const double* a, int64_t rs_a, int64_t cs_a,
                          const double* b, int64_t ldb, double* c, int64_t ldc, double alpha,
                          double beta, int64_t rows, int64_t cols) {
  micro_kernel_impl(kc, a, rs_a, cs_a, b, ldb, c, ldc, alpha, beta, rows, cols);
}

}  // namespace gemm_kernels::portable

// --- the path (ranvier/simd_path.h, shared with the vector math) -------------------------------

const char* gemm_path() { return simd_path_name(simd_path()); }
const char* gemm_path_requested() { return simd_path_requested(); }

// --- the micro-kernels of the CPU's path, for the drivers below ------------------------------

namespace {

// One path's micro-tile (MR x NR, compile-time, as the drivers' templates need) and its two
// micro-kernel entry points: over packed strips (the blocked driver) and over strided
// operands (the small path).
template <typename T, int64_t MR_, int64_t NR_>
struct GemmPath {
  static constexpr int64_t MR = MR_, NR = NR_;
  gk::MicroKernel<T> packed;
  gk::StridedMicroKernel<T> strided;
};

// run(path) with the GemmPath of simd_path(): the one switch over the paths.
template <typename T, typename Run>
decltype(auto) on_gemm_path(Run&& run) {
  switch (simd_path()) {
#if RANVIER_GEMM_X86
    case SimdPath::avx512:
      return run(GemmPath<T, gk::avx512::kMR, gk::avx512::kNR<T>>{gk::avx512::micro_kernel,
                                                                   gk::avx512::micro_kernel_strided});
    case SimdPath::avx2:
      return run(GemmPath<T, gk::avx2::kMR, gk::avx2::kNR<T>>{gk::avx2::micro_kernel,
                                                               gk::avx2::micro_kernel_strided});
#endif
    default:
      return run(GemmPath<T, gk::portable::kMR, gk::portable::kNR<T>>{
          gk::portable::micro_kernel, gk::portable::micro_kernel_strided});
  }
}

}  // namespace

// --- block sizes from the caches --------------------------------------------------------------

CacheSizes cache_sizes() {
  static const CacheSizes sizes = [] {
    CacheSizes s;
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE) && defined(_SC_LEVEL3_CACHE_SIZE)
    s.l1d = std::max<long>(0, sysconf(_SC_LEVEL1_DCACHE_SIZE));
    s.l2 = std::max<long>(0, sysconf(_SC_LEVEL2_CACHE_SIZE));
    s.l3 = std::max<long>(0, sysconf(_SC_LEVEL3_CACHE_SIZE));
#endif
    return s;
  }();
  return sizes;
}

namespace {

int64_t round_up(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }
int64_t round_down(int64_t x, int64_t multiple) { return x / multiple * multiple; }

// Goto/BLIS reasoning, for element size `bytes` and micro-tile mr x nr:
//  - KC: one packed B strip (KC x NR) is reused by every A strip of the block, so it should
//    stay in L1 while A strips stream through: it gets half of L1 (the other half holds the
//    A strip and C tile in flight). KC is also the length of each register accumulation.
//  - MC: the packed A block (MC x KC) is reused by every B strip of the panel: about half of
//    L2 (the rest holds B strips and C lines); a multiple of MR.
//  - NC: the packed B panel (KC x NC) is reused by every A block and shared by all threads:
//    half of L3; a multiple of NR. Capped at 4096 columns: virtual machines often report the
//    whole host socket's L3 (256 MiB here), and the panel's buffer is held per thread.
// Defaults where the OS reports nothing: 32 KiB L1d, 512 KiB L2, 8 MiB L3.
GemmBlocking compute_blocking(int64_t bytes, int64_t mr, int64_t nr) {
  const CacheSizes caches = cache_sizes();
  const int64_t l1 = caches.l1d > 0 ? caches.l1d : 32 * 1024;
  const int64_t l2 = caches.l2 > 0 ? caches.l2 : 512 * 1024;
  const int64_t l3 = caches.l3 > 0 ? caches.l3 : 8 * 1024 * 1024;
  GemmBlocking blocking;
  blocking.mr = mr;
  blocking.nr = nr;
  blocking.kc = std::clamp<int64_t>(round_down(l1 / 2 / (nr * bytes), 8), 64, 1024);
  blocking.mc = std::clamp<int64_t>(round_down(l2 / 2 / (blocking.kc * bytes), mr), mr, 60 * mr);
  blocking.nc = std::clamp<int64_t>(round_down(l3 / 2 / (blocking.kc * bytes), nr), nr,
                                    round_down(4096, nr));
  return blocking;
}

}  // namespace

template <typename T>
GemmBlocking gemm_blocking() {
  static const GemmBlocking blocking = [] {
    const int64_t bytes = static_cast<int64_t>(sizeof(T));
    return on_gemm_path<T>([&](auto path) {
      return compute_blocking(bytes, decltype(path)::MR, decltype(path)::NR);
    });
  }();
  return blocking;
}

// --- the blocked driver -----------------------------------------------------------------------

namespace {

// C (m, n) = beta * C; beta == 0 writes zeros without reading C (which may hold NaN).
// Only for k == 0 or alpha == 0: otherwise the micro-kernels apply beta as they store.
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

// Packing reads operands that are often far bigger than L2 (a 5000-feature layer's x and W:
// 5 MB each) on their first touch, so it is bound by memory latency as much as by the
// copying: perf put 18% of the 5000-256-256-2 MLP's step in the two packers when they read
// one 64-byte piece of a row, jumped to the next row, and stored element by element. So
// rows that run across the strip are packed in register transposes (pack_transposed.h),
// reading a few rows side by side, and rows that run along it are copied in one run per
// row of the panel, asking for the next row's cache lines as each line is copied (a
// prefetch never faults, so the row after the last needs no test).
template <typename T>
constexpr int64_t kLineElements = 64 / static_cast<int64_t>(sizeof(T));  // a cache line

// op(B)[p0:p0+kc, j0+strip_begin*NR : ...] for strips [strip_begin, strip_end) of the panel
// starting at column j0 (nc wide) -> packed + s * kc * NR, each strip (kc, NR) row-major.
// op(B)(p, j) is b[p*ldb + j], or b[j*ldb + p] when trans_b. Columns past nc are zero.
template <typename T, int64_t NR>
void pack_b_strips(bool trans_b, const T* b, int64_t ldb, int64_t p0, int64_t j0, int64_t kc,
                   int64_t nc, int64_t strip_begin, int64_t strip_end, T* packed) {
  if (strip_begin >= strip_end) return;
  if (trans_b) {
    // Column j of op(B) is row j of b: the strip's NR columns are NR rows of b, transposed.
    for (int64_t s = strip_begin; s < strip_end; ++s) {
      T* dst = packed + s * kc * NR;
      const int64_t j_begin = j0 + s * NR;
      const int64_t width = std::min(NR, j0 + nc - j_begin);
      pack_transposed(b + j_begin * ldb + p0, ldb, width, NR, kc, dst);
    }
    return;
  }
  // Row p of op(B) is row p0 + p of b: one contiguous run over all the strips' columns per
  // row, dealt out NR values to each strip.
  const int64_t col_begin = j0 + strip_begin * NR;
  const int64_t col_end = std::min(j0 + nc, j0 + strip_end * NR);
  const int64_t full_strips = (col_end - col_begin) / NR;
  // Columns of a last, partial strip (the panel's last, when nc is not a multiple of NR).
  const int64_t tail = (col_end - col_begin) - full_strips * NR;
  for (int64_t p = 0; p < kc; ++p) {
    const T* src = b + (p0 + p) * ldb + col_begin;
    T* dst = packed + strip_begin * kc * NR + p * NR;
    for (int64_t s = 0; s < full_strips; ++s, src += NR, dst += kc * NR) {
      for (int64_t line = 0; line < NR; line += kLineElements<T>) {
        __builtin_prefetch(src + ldb + line);
      }
      std::memcpy(dst, src, NR * sizeof(T));
    }
    if (full_strips < strip_end - strip_begin) {  // the panel's last strip, zero-padded
      for (int64_t col = 0; col < tail; ++col) dst[col] = src[col];
      for (int64_t col = tail; col < NR; ++col) dst[col] = T(0);
    }
  }
}

// op(A)[i0:i0+mc, p0:p0+kc] -> packed (ceil(mc/MR) strips, each (kc, MR) row-major).
// op(A)(i, p) is a[i*lda + p], or a[p*lda + i] when trans_a. Rows past mc are zero.
template <typename T, int64_t MR>
void pack_a_block(bool trans_a, const T* a, int64_t lda, int64_t i0, int64_t p0, int64_t mc,
                  int64_t kc, T* packed) {
  const int64_t strips = (mc + MR - 1) / MR;
  for (int64_t s = 0; s < strips; ++s) {
    T* dst = packed + s * kc * MR;
    const int64_t i_begin = i0 + s * MR;
    const int64_t height = std::min(MR, i0 + mc - i_begin);
    if (trans_a) {
      // Column i of op(A)'s strip is a piece of row p of a: MR contiguous values per p.
      for (int64_t p = 0; p < kc; ++p) {
        const T* src = a + (p0 + p) * lda + i_begin;
        T* dst_col = dst + p * MR;
        if (height == MR) {
          for (int64_t r = 0; r < MR; ++r) dst_col[r] = src[r];
        } else {
          for (int64_t r = 0; r < height; ++r) dst_col[r] = src[r];
          for (int64_t r = height; r < MR; ++r) dst_col[r] = T(0);
        }
      }
    } else {
      // Row r of the strip is a contiguous piece of row i of a: MR rows of a, transposed.
      pack_transposed(a + i_begin * lda + p0, lda, height, MR, kc, dst);
    }
  }
}

// C[0:mc, j_begin:j_end] (C points at the block's top-left corner) = alpha * packed_a (mc,
// kc) @ packed_b[:, j_begin:j_end] + beta * C, tile by tile; nc is the panel's width (for
// the edge strip), j_begin a multiple of NR.
template <typename T, int64_t MR, int64_t NR>
void macro_kernel(gk::MicroKernel<T> micro_kernel, int64_t mc, int64_t nc, int64_t kc,
                  int64_t j_begin, int64_t j_end, T alpha, T beta, const T* packed_a,
                  const T* packed_b, T* c, int64_t ldc) {
  for (int64_t j = j_begin; j < j_end; j += NR) {
    const T* b_strip = packed_b + (j / NR) * kc * NR;
    const int64_t cols = std::min(NR, nc - j);
    for (int64_t i = 0; i < mc; i += MR) {
      micro_kernel(kc, packed_a + (i / MR) * kc * MR, b_strip, c + i * ldc + j, ldc, alpha, beta,
                   std::min(MR, mc - i), cols);
    }
  }
}

// Below this many multiply-adds per thread, another thread costs more to wake and
// synchronise (a few microseconds, twice per block of k) than it saves: 2^20 multiply-adds
// are ~20 us on one AVX2 core. So 64^3 (2^18) runs on one thread, 128^3 (2^21) on two.
constexpr double kGemmWorkPerThread = 1 << 20;

int gemm_threads(int64_t m, int64_t n, int64_t k, int64_t max_split) {
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;  // called from a parallel region (batched matmul, conv)
  const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const double wanted = std::max(1.0, work / kGemmWorkPerThread);
  return static_cast<int>(std::min<double>({static_cast<double>(max_threads()), wanted,
                                            static_cast<double>(max_split)}));
#else
  (void)m, (void)n, (void)k, (void)max_split;
  return 1;
#endif
}

// Per-thread scratch memory for the packed panels, kept between calls (packing buffers are
// needed on every call; allocating them each time costs page faults at medium sizes). It
// grows to the largest request and is freed when the thread exits. 64-byte aligned.
template <typename T>
T* thread_scratch(size_t count) {
  struct Buffer {
    void* data = nullptr;
    size_t bytes = 0;
    ~Buffer() { std::free(data); }
  };
  static thread_local Buffer buffer;
  const size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
  if (bytes > buffer.bytes) {
    std::free(buffer.data);
    buffer.data = nullptr;
    buffer.bytes = 0;
    void* data = std::aligned_alloc(64, bytes);
    if (data == nullptr) throw std::bad_alloc();
    buffer.data = data;
    buffer.bytes = bytes;
  }
  return static_cast<T*>(buffer.data);
}

// The B operands gemm_blocked packs from: each has
//   template <int64_t NR> void pack(p0, j0, kc, nc, strip_begin, strip_end, T* packed) const
// with pack_b_strips's contract.

// A stored matrix: op(B)(p, j) is b[p*ldb + j], or b[j*ldb + p] when trans.
template <typename T>
struct StoredB {
  bool trans;
  const T* b;
  int64_t ldb;
  template <int64_t NR>
  void pack(int64_t p0, int64_t j0, int64_t kc, int64_t nc, int64_t strip_begin,
            int64_t strip_end, T* packed) const {
    pack_b_strips<T, NR>(trans, b, ldb, p0, j0, kc, nc, strip_begin, strip_end, packed);
  }
};

// A matrix that some other kernel packs (gemm_b_packer.h): one indirect call per strip range.
template <typename T>
struct PackerB {
  const BPanelPacker<T>& packer;
  template <int64_t NR>
  void pack(int64_t p0, int64_t j0, int64_t kc, int64_t nc, int64_t strip_begin,
            int64_t strip_end, T* packed) const {
    packer.pack(packer.self, NR, p0, j0, kc, nc, strip_begin, strip_end, packed);
  }
};

// gemm with the micro-kernel of one path (tile MR x NR) and its cache blocks, B read through
// its packer (StoredB or PackerB).
template <typename T, int64_t MR, int64_t NR, typename BOperand>
void gemm_blocked(gk::MicroKernel<T> micro_kernel, const GemmBlocking& blocking, bool trans_a,
                  int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                  const BOperand& b, T beta, T* c, int64_t ldc) {
  const int64_t MC = blocking.mc;
  const int64_t KC = blocking.kc;
  const int64_t NC = blocking.nc;
  const int64_t kc_max = std::min(k, KC);
  const int64_t b_panel_size = kc_max * round_up(std::min(n, NC), NR);
  const int64_t a_block_size = kc_max * round_up(std::min(m, MC), MR);
  const int64_t row_strips = (m + MR - 1) / MR;
  const int64_t col_strips_max = (std::min(n, NC) + NR - 1) / NR;
  const int threads = gemm_threads(m, n, k, std::max(row_strips, col_strips_max));
  // One allocation, before any parallel region: the shared B panel, then one A block per
  // thread.
  T* scratch = thread_scratch<T>(static_cast<size_t>(b_panel_size + threads * a_block_size));
  T* packed_b = scratch;

  auto run = [&](int thread, int thread_count) {
    T* packed_a = scratch + b_panel_size + thread * a_block_size;
    auto wait_for_all = [&] {
#ifdef _OPENMP
      if (thread_count > 1) {
#pragma omp barrier
      }
#endif
    };
    for (int64_t jc = 0; jc < n; jc += NC) {
      const int64_t nc = std::min(NC, n - jc);
      const int64_t col_strips = (nc + NR - 1) / NR;
      // Rows are shared out unless they are too few to balance (e.g. m = 6 rows on 2
      // threads): then each thread takes a range of column strips (and packs all of A).
      const int64_t per_thread_rows = (row_strips + thread_count - 1) / thread_count;
      const int64_t per_thread_cols = (col_strips + thread_count - 1) / thread_count;
      const bool split_rows = thread_count == 1 ||
                              per_thread_rows * thread_count * col_strips <=
                                  per_thread_cols * thread_count * row_strips ||
                              row_strips >= 4 * thread_count;
      for (int64_t pc = 0; pc < k; pc += KC) {
        const int64_t kc = std::min(KC, k - pc);
        const T beta_block = pc == 0 ? beta : T(1);
        b.template pack<NR>(pc, jc, kc, nc, col_strips * thread / thread_count,
                            col_strips * (thread + 1) / thread_count, packed_b);
        wait_for_all();  // the whole B panel is packed
        int64_t row_begin = 0, row_end = m, col_begin = 0, col_end = nc;
        if (split_rows) {
          row_begin = std::min(m, row_strips * thread / thread_count * MR);
          row_end = std::min(m, row_strips * (thread + 1) / thread_count * MR);
        } else {
          col_begin = col_strips * thread / thread_count * NR;
          col_end = std::min(nc, col_strips * (thread + 1) / thread_count * NR);
        }
        if (col_begin < col_end) {
          for (int64_t ic = row_begin; ic < row_end; ic += MC) {
            const int64_t mc = std::min(MC, row_end - ic);
            pack_a_block<T, MR>(trans_a, a, lda, ic, pc, mc, kc, packed_a);
            macro_kernel<T, MR, NR>(micro_kernel, mc, nc, kc, col_begin, col_end, alpha,
                                    beta_block, packed_a, packed_b, c + ic * ldc + jc, ldc);
          }
        }
        wait_for_all();  // nobody still reads the B panel the next block overwrites
      }
    }
  };

#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    run(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  run(0, 1);
}

// gemm_blocked over a stored B, as gemm() calls it.
template <typename T, int64_t MR, int64_t NR>
void gemm_blocked(gk::MicroKernel<T> micro_kernel, const GemmBlocking& blocking, bool trans_a,
                  bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                  int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  gemm_blocked<T, MR, NR>(micro_kernel, blocking, trans_a, m, n, k, alpha, a, lda,
                          StoredB<T>{trans_b, b, ldb}, beta, c, ldc);
}

// Whether a B strip read in place, k rows of one cache line each, ld_bytes apart, would be
// evicted from L1 between the MR-row tiles that reuse it. An L1 set is picked by address
// bits 6-11 (64 sets of 64-byte lines: 32 KiB 8-way and 48 KiB 12-way alike), so rows a
// multiple of 256 bytes apart share few sets: 128 floats apart, all k rows fall in 8 sets,
// whose 8 ways hold 64 of them. The strip is then packed. Counted as thrashing once the
// rows need more than half of the lines their sets hold (the other half is left to A and
// C). 128^3 float on AVX2, best of 40 interleaved batches: in place 51 us (64 us with a
// transposed A), packed 47 us (48 us); with k = 64 or rows 192 floats apart the two
// measured the same.
bool b_strip_thrashes_l1(int64_t ld_bytes, int64_t k) {
  constexpr int64_t kLine = 64, kSets = 64, kWays = 8;
  if (ld_bytes % kLine != 0) return false;  // the rows' lines walk through every set
  const int64_t sets_touched = kSets / std::gcd(ld_bytes / kLine, kSets);
  return k > sets_touched * kWays / 2;
}

// The small path, for a product that is one cache block in every direction (m <= MC,
// n <= NC, k <= KC) and gets one thread: 64x64 @ 64x64, a tiny layer's (32, 30) @ (30, 64).
// Both operands then sit in L1/L2 anyway, so packing them buys little and costs much: at
// 64x64 float on AVX2, perf put ~16% of the time in packing against ~50% in the
// micro-kernel (with this path 64x64x64 went from 8.6 to 6.4 us, best of 75 runs of _C.gemm).
// Here the micro-kernel reads op(A) and op(B) where they lie (the strided entry point) and
// only what it cannot read in place is packed, zero-padded, into thread_scratch: the last
// MR-row strip of op(A) when MR does not divide m, the last NR-column strip of op(B) when NR
// does not divide n, and all of op(B) when trans_b (its rows are b's columns) or when its
// strips would not stay in L1 in place (b_strip_thrashes_l1). One block of k means beta is
// applied in the one pass over C.
template <typename T, int64_t MR, int64_t NR>
void gemm_small(gk::StridedMicroKernel<T> micro_kernel, bool trans_a, bool trans_b, int64_t m,
                int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b, int64_t ldb,
                T beta, T* c, int64_t ldc) {
  const int64_t m_full = round_down(m, MR);                   // rows [0, m_full) in place
  const bool b_in_place_ok = !trans_b && !b_strip_thrashes_l1(ldb * int64_t{sizeof(T)}, k);
  const int64_t n_full = b_in_place_ok ? round_down(n, NR) : 0;  // columns [0, n_full) in place
  const int64_t b_packed_cols = round_up(n - n_full, NR);
  const int64_t a_packed_rows = m_full < m ? MR : 0;
  T* packed_b = thread_scratch<T>(static_cast<size_t>(k * (b_packed_cols + a_packed_rows)));
  T* packed_a = packed_b + k * b_packed_cols;
  if (n_full < n) {
    pack_b_strips<T, NR>(trans_b, b, ldb, 0, n_full, k, n - n_full, 0, b_packed_cols / NR,
                         packed_b);
  }
  if (m_full < m) pack_a_block<T, MR>(trans_a, a, lda, m_full, 0, m - m_full, k, packed_a);
  // op(A)(i, p) = a[i * rs_a + p * cs_a].
  const int64_t rs_a = trans_a ? 1 : lda;
  const int64_t cs_a = trans_a ? lda : 1;
  for (int64_t j = 0; j < n; j += NR) {
    const bool b_in_place = j < n_full;
    const T* b_strip = b_in_place ? b + j : packed_b + (j - n_full) * k;
    const int64_t b_stride = b_in_place ? ldb : NR;
    const int64_t cols = std::min(NR, n - j);
    for (int64_t i = 0; i < m_full; i += MR) {
      micro_kernel(k, a + i * rs_a, rs_a, cs_a, b_strip, b_stride, c + i * ldc + j, ldc, alpha,
                   beta, MR, cols);
    }
    if (m_full < m) {
      micro_kernel(k, packed_a, 1, MR, b_strip, b_stride, c + m_full * ldc + j, ldc, alpha, beta,
                   m - m_full, cols);
    }
  }
}

// Up to this many multiply-adds (128^3) gemm_small was at least as fast as the blocked path
// in every transpose case; past it, reading op(A) in place for every column strip starts to
// lose to the packed block (192^3 with a transposed A: roughly 15-30% slower on two noisy
// shared cores; each strip then uses only MR of the 16 values of every cache line it reads).
constexpr double kGemmSmallWork = 1 << 21;

// Whether gemm takes gemm_small: one block in every direction, at most kGemmSmallWork, and
// one thread (see there).
bool gemm_is_small(const GemmBlocking& blocking, int64_t m, int64_t n, int64_t k) {
  if (m > blocking.mc || n > blocking.nc || k > blocking.kc) return false;
  if (static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) > kGemmSmallWork) {
    return false;
  }
  const int64_t strips = std::max((m + blocking.mr - 1) / blocking.mr,
                                  (n + blocking.nr - 1) / blocking.nr);
  return gemm_threads(m, n, k, strips) == 1;
}

}  // namespace

// C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C, all row-major.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == T(0)) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  const GemmBlocking& blocking = gemm_blocking<T>();
  const bool small_path = gemm_is_small(blocking, m, n, k);
  on_gemm_path<T>([&](auto path) {
    using Path = decltype(path);
    if (small_path) {
      gemm_small<T, Path::MR, Path::NR>(path.strided, trans_a, trans_b, m, n, k, alpha, a, lda, b,
                                        ldb, beta, c, ldc);
    } else {
      gemm_blocked<T, Path::MR, Path::NR>(path.packed, blocking, trans_a, trans_b, m, n, k, alpha,
                                          a, lda, b, ldb, beta, c, ldc);
    }
  });
}

// C (m, n) = alpha * op(A) (m, k) @ B (k, n) + beta * C, B packed by `b` (gemm_b_packer.h).
template <typename T>
void gemm_packed_b(bool trans_a, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                   int64_t lda, const BPanelPacker<T>& b, T beta, T* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == T(0)) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  const GemmBlocking& blocking = gemm_blocking<T>();
  const PackerB<T> packer{b};
  on_gemm_path<T>([&](auto path) {
    using Path = decltype(path);
    gemm_blocked<T, Path::MR, Path::NR>(path.packed, blocking, trans_a, m, n, k, alpha, a, lda,
                                        packer, beta, c, ldc);
  });
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
  const int64_t mr = gemm_blocking<T>().mr;
  const int64_t row_strips = (m + mr - 1) / mr;
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
  template void gemm_packed_b<T>(bool, int64_t, int64_t, int64_t, T, const T*, int64_t,           \
                                 const BPanelPacker<T>&, T, T*, int64_t);                          \
  template void matmul<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t, bool, bool,  \
                          int64_t, int64_t);                                                       \
  template void linear_forward<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t);    \
  template void linear_backward_input<T>(const T*, const T*, T*, int64_t, int64_t, int64_t);       \
  template void linear_backward_weight<T>(const T*, const T*, T*, T*, int64_t, int64_t, int64_t);

RANVIER_INSTANTIATE_MATMUL(float)
RANVIER_INSTANTIATE_MATMUL(double)
#undef RANVIER_INSTANTIATE_MATMUL

template GemmBlocking gemm_blocking<float>();
template GemmBlocking gemm_blocking<double>();

}  // namespace ranvier::cpu
