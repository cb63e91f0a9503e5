// The AVX2 + FMA GEMM micro-kernels (6 x 16 floats, 6 x 8 doubles; see gemm_micro_kernels.h).
// This file is compiled for the baseline x86-64: only the functions marked
// RANVIER_GEMM_TARGET use AVX2/FMA, and gemm() calls them only on a CPU that has both.
#include "gemm_micro_kernels.h"

#if RANVIER_GEMM_X86
#include <immintrin.h>

namespace ranvier::cpu::gemm_kernels::avx2 {

namespace {

#define RANVIER_GEMM_TARGET __attribute__((target("avx2,fma")))
#define RANVIER_GEMM_INLINE RANVIER_GEMM_TARGET inline __attribute__((always_inline))

template <typename T>
struct Simd;

template <>
struct Simd<float> {
  using Reg = __m256;
  static constexpr int kWidth = 8;
  RANVIER_GEMM_INLINE static Reg zero() { return _mm256_setzero_ps(); }
  RANVIER_GEMM_INLINE static Reg set1(float x) { return _mm256_set1_ps(x); }
  RANVIER_GEMM_INLINE static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  RANVIER_GEMM_INLINE static void store(float* p, Reg v) { _mm256_storeu_ps(p, v); }
  RANVIER_GEMM_INLINE static Reg broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  RANVIER_GEMM_INLINE static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  RANVIER_GEMM_INLINE static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
};

template <>
struct Simd<double> {
  using Reg = __m256d;
  static constexpr int kWidth = 4;
  RANVIER_GEMM_INLINE static Reg zero() { return _mm256_setzero_pd(); }
  RANVIER_GEMM_INLINE static Reg set1(double x) { return _mm256_set1_pd(x); }
  RANVIER_GEMM_INLINE static Reg load(const double* p) { return _mm256_loadu_pd(p); }
  RANVIER_GEMM_INLINE static void store(double* p, Reg v) { _mm256_storeu_pd(p, v); }
  RANVIER_GEMM_INLINE static Reg broadcast(const double* p) { return _mm256_broadcast_sd(p); }
  RANVIER_GEMM_INLINE static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_pd(a, b, c); }
  RANVIER_GEMM_INLINE static Reg mul(Reg a, Reg b) { return _mm256_mul_pd(a, b); }
};

}  // namespace

#include "gemm_simd_micro_kernel.inc"

#undef RANVIER_GEMM_INLINE
#undef RANVIER_GEMM_TARGET

}  // namespace ranvier::cpu::gemm_kernels::avx2
#endif  // RANVIER_GEMM_X86
