// AVX2 + FMA (8 floats, 4 doubles a register) behind one small interface, Simd<T>, for the kernels
// written once as templates over it (gemm_simd_micro_kernel.inc, conv_depthwise_simd.inc).
// Every function carries RANVIER_AVX2_TARGET: the files including this header are compiled
// for the baseline x86-64, and call these functions only after the CPU said it has the
// instructions (ranvier/simd_path.h).
#pragma once
#include "ranvier/simd_path.h"

#if RANVIER_SIMD_X86
#include <immintrin.h>

#define RANVIER_AVX2_TARGET __attribute__((target("avx2,fma")))
#define RANVIER_AVX2_INLINE RANVIER_AVX2_TARGET inline __attribute__((always_inline))

namespace ranvier::cpu::simd_avx2 {

// Reg: the vector type; kWidth: its lanes. zero(), set1(x) (x in every lane), load(p) and
// store(p, v) (unaligned), broadcast(p) (*p in every lane), fmadd(a, b, c) (a*b + c, one
// rounding), mul(a, b).
template <typename T>
struct Simd;

template <>
struct Simd<float> {
  using Reg = __m256;
  static constexpr int kWidth = 8;
  RANVIER_AVX2_INLINE static Reg zero() { return _mm256_setzero_ps(); }
  RANVIER_AVX2_INLINE static Reg set1(float x) { return _mm256_set1_ps(x); }
  RANVIER_AVX2_INLINE static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  RANVIER_AVX2_INLINE static void store(float* p, Reg v) { _mm256_storeu_ps(p, v); }
  RANVIER_AVX2_INLINE static Reg broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  RANVIER_AVX2_INLINE static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  RANVIER_AVX2_INLINE static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
};

template <>
struct Simd<double> {
  using Reg = __m256d;
  static constexpr int kWidth = 4;
  RANVIER_AVX2_INLINE static Reg zero() { return _mm256_setzero_pd(); }
  RANVIER_AVX2_INLINE static Reg set1(double x) { return _mm256_set1_pd(x); }
  RANVIER_AVX2_INLINE static Reg load(const double* p) { return _mm256_loadu_pd(p); }
  RANVIER_AVX2_INLINE static void store(double* p, Reg v) { _mm256_storeu_pd(p, v); }
  RANVIER_AVX2_INLINE static Reg broadcast(const double* p) { return _mm256_broadcast_sd(p); }
  RANVIER_AVX2_INLINE static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_pd(a, b, c); }
  RANVIER_AVX2_INLINE static Reg mul(Reg a, Reg b) { return _mm256_mul_pd(a, b); }
};

}  // namespace ranvier::cpu::simd_avx2
#endif  // RANVIER_SIMD_X86
