// The AVX-512F GEMM micro-kernels (12 x 32 floats, 12 x 16 doubles; see gemm_micro_kernels.h).
// This file is compiled for the baseline x86-64: only the functions marked
// RANVIER_GEMM_TARGET use AVX-512F, and gemm() calls them only on a CPU (and OS) that has it.
#include "gemm_micro_kernels.h"

#if RANVIER_GEMM_X86
#include <immintrin.h>

namespace ranvier::cpu::gemm_kernels::avx512 {

namespace {

#define RANVIER_GEMM_TARGET __attribute__((target("avx512f")))
#define RANVIER_GEMM_INLINE RANVIER_GEMM_TARGET inline __attribute__((always_inline))

template <typename T>
struct Simd;

template <>
struct Simd<float> {
  using Reg = __m512;
  static constexpr int kWidth = 16;
  RANVIER_GEMM_INLINE static Reg zero() { return _mm512_setzero_ps(); }
  RANVIER_GEMM_INLINE static Reg set1(float x) { return _mm512_set1_ps(x); }
  RANVIER_GEMM_INLINE static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  RANVIER_GEMM_INLINE static void store(float* p, Reg v) { _mm512_storeu_ps(p, v); }
  RANVIER_GEMM_INLINE static Reg broadcast(const float* p) { return _mm512_set1_ps(*p); }
  RANVIER_GEMM_INLINE static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  RANVIER_GEMM_INLINE static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
};

template <>
struct Simd<double> {
  using Reg = __m512d;
  static constexpr int kWidth = 8;
  RANVIER_GEMM_INLINE static Reg zero() { return _mm512_setzero_pd(); }
  RANVIER_GEMM_INLINE static Reg set1(double x) { return _mm512_set1_pd(x); }
  RANVIER_GEMM_INLINE static Reg load(const double* p) { return _mm512_loadu_pd(p); }
  RANVIER_GEMM_INLINE static void store(double* p, Reg v) { _mm512_storeu_pd(p, v); }
  RANVIER_GEMM_INLINE static Reg broadcast(const double* p) { return _mm512_set1_pd(*p); }
  RANVIER_GEMM_INLINE static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_pd(a, b, c); }
  RANVIER_GEMM_INLINE static Reg mul(Reg a, Reg b) { return _mm512_mul_pd(a, b); }
};

}  // namespace

#include "gemm_simd_micro_kernel.inc"

#undef RANVIER_GEMM_INLINE
#undef RANVIER_GEMM_TARGET

}  // namespace ranvier::cpu::gemm_kernels::avx512
#endif  // RANVIER_GEMM_X86
