// The vector math on AVX-512F (16 floats, 8 doubles a register): vector_math_simd.inc compiled
// for this path. This file is compiled for the baseline x86-64: only the functions marked
// RANVIER_VM_TARGET use the wider instructions, and vector_math.cpp calls them only on a CPU
// that has them.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "vector_math_kernels.h"

#if RANVIER_SIMD_X86
#include <immintrin.h>

namespace ranvier::cpu::vector_math_kernels::avx512 {

#define RANVIER_VM_TARGET __attribute__((target("avx512f")))
#define RANVIER_VM_INLINE RANVIER_VM_TARGET inline __attribute__((always_inline))

namespace {

using FloatVec = __m512;
using DoubleVec = __m512d;
typedef int32_t FloatBits __attribute__((vector_size(64)));
typedef int64_t DoubleBits __attribute__((vector_size(64)));

RANVIER_VM_INLINE FloatVec fmadd(FloatVec a, FloatVec b, FloatVec c) { return _mm512_fmadd_ps(a, b, c); }
RANVIER_VM_INLINE DoubleVec fmadd(DoubleVec a, DoubleVec b, DoubleVec c) { return _mm512_fmadd_pd(a, b, c); }

#include "vector_math_simd.inc"

}  // namespace

RANVIER_VM_TARGET void exp_array(const float* x, float* y, int64_t n) {
  map_lanes<float>(x, y, n, ExpOp<float>{});
}
RANVIER_VM_TARGET void exp_array(const double* x, double* y, int64_t n) {
  map_lanes<double>(x, y, n, ExpOp<double>{});
}
RANVIER_VM_TARGET void sigmoid_array(const float* x, float* y, int64_t n) {
  map_lanes<float>(x, y, n, SigmoidOp<float>{});
}
RANVIER_VM_TARGET void sigmoid_array(const double* x, double* y, int64_t n) {
  map_lanes<double>(x, y, n, SigmoidOp<double>{});
}
RANVIER_VM_TARGET void tanh_array(const float* x, float* y, int64_t n) {
  map_lanes<float>(x, y, n, TanhOp<float>{});
}
RANVIER_VM_TARGET void tanh_array(const double* x, double* y, int64_t n) {
  map_lanes<double>(x, y, n, TanhOp<double>{});
}
RANVIER_VM_TARGET void erf_array(const float* x, float* y, int64_t n) {
  map_lanes<float>(x, y, n, ErfOp{});
}
RANVIER_VM_TARGET void log_array(const float* x, float* y, int64_t n) {
  map_lanes<float>(x, y, n, LogOp<float>{});
}
RANVIER_VM_TARGET void log_array(const double* x, double* y, int64_t n) {
  map_lanes<double>(x, y, n, LogOp<double>{});
}
RANVIER_VM_TARGET void log1p_array(const float* x, float* y, int64_t n) {
  map_lanes<float>(x, y, n, Log1pOp<float>{});
}
RANVIER_VM_TARGET void log1p_array(const double* x, double* y, int64_t n) {
  map_lanes<double>(x, y, n, Log1pOp<double>{});
}
RANVIER_VM_TARGET float max_array(const float* x, int64_t n) { return max_of<float>(x, n); }
RANVIER_VM_TARGET double max_array(const double* x, int64_t n) { return max_of<double>(x, n); }

#undef RANVIER_VM_INLINE
#undef RANVIER_VM_TARGET

}  // namespace ranvier::cpu::vector_math_kernels::avx512
#endif  // RANVIER_SIMD_X86
