// The vector math on AVX-512F (16 floats, 8 doubles a register): vector_math_simd.inc compiled
// for this path (its helpers and entry points). This file is compiled for the baseline
// x86-64: only the functions marked RANVIER_VM_TARGET use the wider instructions, and
// vector_math.cpp calls them only on a CPU that has them.
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

}  // namespace

#include "vector_math_simd.inc"

#undef RANVIER_VM_INLINE
#undef RANVIER_VM_TARGET

}  // namespace ranvier::cpu::vector_math_kernels::avx512
#endif  // RANVIER_SIMD_X86
