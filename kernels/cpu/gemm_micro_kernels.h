// The GEMM micro-kernels, one per instruction-set path, behind one signature. gemm()
// (matmul.cpp) picks a path at run time and packs A and B with that path's tile sizes.
//
// A micro-kernel computes one register tile of C:
//   C[0:rows, 0:cols] = alpha * a_strip (MR, kc) @ b_strip (kc, NR) + beta * C[0:rows, 0:cols]
// a_strip is packed (kc, MR) row-major (column p of the A strip is MR contiguous values),
// b_strip is packed (kc, NR) row-major; both are zero-padded, so the arithmetic always runs
// on the full MR x NR tile, and only the store is cut to rows <= MR, cols <= NR at the edges.
// beta == 0 writes C without reading it (C may hold NaN).
//
// Each path also has micro_kernel_strided, the same tile computed from operands in place
// (gemm's small path, which packs only what it must): A(r, p) = a[r * rs_a + p * cs_a]
// ((rs_a, cs_a) = (lda, 1) for a row-major A, (1, lda) for a transposed one, (1, MR) for a
// packed strip) and row p of the B strip at b + p * ldb (ldb = NR for a packed strip). All
// MR rows and NR columns it reads must exist: edge strips are packed (zero-padded) first.
//
// The SIMD kernels live in their own files (gemm_avx2.cpp, gemm_avx512.cpp), compiled for the
// baseline x86-64 like everything else: only functions carrying a target attribute there use
// the wider instructions, and they are only called after the CPU said it has them.
#pragma once
#include <cstdint>

#include "ranvier/simd_path.h"

// The SIMD micro-kernels exist where the SIMD paths do (x86-64 with GCC/Clang).
#define RANVIER_GEMM_X86 RANVIER_SIMD_X86

namespace ranvier::cpu::gemm_kernels {

template <typename T>
using MicroKernel = void (*)(int64_t kc, const T* a_strip, const T* b_strip, T* c, int64_t ldc,
                             T alpha, T beta, int64_t rows, int64_t cols);
template <typename T>
using StridedMicroKernel = void (*)(int64_t kc, const T* a, int64_t rs_a, int64_t cs_a,
                                    const T* b, int64_t ldb, T* c, int64_t ldc, T alpha, T beta,
                                    int64_t rows, int64_t cols);

// Every path's two entry points (MicroKernel, StridedMicroKernel), for float and double.
#define RANVIER_DECLARE_GEMM_MICRO_KERNELS                                                      \
  void micro_kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,         \
                    float alpha, float beta, int64_t rows, int64_t cols);                      \
  void micro_kernel(int64_t kc, const double* a, const double* b, double* c, int64_t ldc,      \
                    double alpha, double beta, int64_t rows, int64_t cols);                    \
  void micro_kernel_strided(int64_t kc, const float* a, int64_t rs_a, int64_t cs_a,            \
                            const float* b, int64_t ldb, float* c, int64_t ldc, float alpha,   \
                            float beta, int64_t rows, int64_t cols);                           \
  void micro_kernel_strided(int64_t kc, const double* a, int64_t rs_a, int64_t cs_a,           \
                            const double* b, int64_t ldb, double* c, int64_t ldc,              \
                            double alpha, double beta, int64_t rows, int64_t cols);

// Portable C++ (any CPU): 4 rows x 16 bytes * 2 of columns (4 x 8 floats, 4 x 4 doubles):
// 8 SSE accumulators on x86-64, the baseline the compiler may assume.
namespace portable {
constexpr int64_t kMR = 4;
template <typename T>
constexpr int64_t kNR = 32 / static_cast<int64_t>(sizeof(T));
RANVIER_DECLARE_GEMM_MICRO_KERNELS
}  // namespace portable

#if RANVIER_GEMM_X86
// AVX2 + FMA: 6 rows x 2 ymm registers of columns (6 x 16 floats, 6 x 8 doubles): 12 ymm
// accumulators + 2 for the B row + 1 broadcast A value of the 16 ymm registers. 12
// independent FMA chains cover the FMA latency (4-5 cycles) times its throughput (2/cycle).
namespace avx2 {
constexpr int64_t kMR = 6;
template <typename T>
constexpr int64_t kNR = 64 / static_cast<int64_t>(sizeof(T));
RANVIER_DECLARE_GEMM_MICRO_KERNELS
}  // namespace avx2

// AVX-512F: 12 rows x 2 zmm registers of columns (12 x 32 floats, 12 x 16 doubles): 24 zmm
// accumulators + 2 for the B row + 1 broadcast of the 32 zmm registers (as BLIS's SKX
// kernels: 24 chains, 2 loads + 12 broadcasts per 24 FMAs).
namespace avx512 {
constexpr int64_t kMR = 12;
template <typename T>
constexpr int64_t kNR = 128 / static_cast<int64_t>(sizeof(T));
RANVIER_DECLARE_GEMM_MICRO_KERNELS
}  // namespace avx512
#endif

#undef RANVIER_DECLARE_GEMM_MICRO_KERNELS

}  // namespace ranvier::cpu::gemm_kernels
