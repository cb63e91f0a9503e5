// AVX-512F (16 floats, 8 doubles a register) behind one small interface, Simd<T>, for the kernels
// written once as templates over it (gemm_simd_micro_kernel.inc, conv_depthwise_simd.inc).
// Every function carries RANVIER_AVX512_TARGET: the files including this header are compiled
// for the baseline x86-64, and call these functions only after the CPU said it has the
// instructions (ranvier/simd_path.h).
#pragma once
#include "ranvier/simd_path.h"

#if RANVIER_SIMD_X86
#include <immintrin.h>

#define RANVIER_AVX512_TARGET __attribute__((target("avx512f")))
#define RANVIER_AVX512_INLINE RANVIER_AVX512_TARGET inline __attribute__((always_inline))

namespace ranvier::cpu::simd_avx512 {

// Reg: the vector type; kWidth: its lanes. zero(), set1(x) (x in every lane), load(p) and
// store(p, v) (unaligned), broadcast(p) (*p in every lane), fmadd(a, b, c) (a*b + c, one
// rounding), mul(a, b).
template <typename T>
struct Simd;

template <>
struct Simd<float> {
  using Reg = __m512;
  static constexpr int kWidth = 16;
  RANVIER_AVX512_INLINE static Reg zero() { return _mm512_setzero_ps(); }
  RANVIER_AVX512_INLINE static Reg set1(float x) { return _mm512_set1_ps(x); }
  RANVIER_AVX512_INLINE static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  RANVIER_AVX512_INLINE static void store(float* p, Reg v) { _mm512_storeu_ps(p, v); }
  RANVIER_AVX512_INLINE static Reg broadcast(const float* p) { return _mm512_set1_ps(*p); }
  RANVIER_AVX512_INLINE static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  RANVIER_AVX512_INLINE static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
};

template <>
struct Simd<double> {
  using Reg = __m512d;
  static constexpr int kWidth = 8;
  RANVIER_AVX512_INLINE static Reg zero() { return _mm512_setzero_pd(); }
  RANVIER_AVX512_INLINE static Reg set1(double x) { return _mm512_set1_pd(x); }
  RANVIER_AVX512_INLINE static Reg load(const double* p) { return _mm512_loadu_pd(p); }
  RANVIER_AVX512_INLINE static void store(double* p, Reg v) { _mm512_storeu_pd(p, v); }
  RANVIER_AVX512_INLINE static Reg broadcast(const double* p) { return _mm512_set1_pd(*p); }
  RANVIER_AVX512_INLINE static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_pd(a, b, c); }
  RANVIER_AVX512_INLINE static Reg mul(Reg a, Reg b) { return _mm512_mul_pd(a, b); }
};

}  // namespace ranvier::cpu::simd_avx512
#endif  // RANVIER_SIMD_X86
