// The depthwise kernels on AVX2 + FMA (8 floats, 4 doubles a register): conv_depthwise_simd.inc
// over simd_avx2.h's registers. This file is compiled for the baseline x86-64: only the
// functions marked RANVIER_DEPTHWISE_TARGET use AVX2/FMA, and conv_depthwise.cpp calls them
// only on a CPU that has both.
#include <algorithm>
#include <utility>

#include "conv_depthwise_kernels.h"
#include "simd_avx2.h"

#if RANVIER_SIMD_X86
namespace ranvier::cpu::depthwise_kernels::avx2 {

#define RANVIER_DEPTHWISE_TARGET RANVIER_AVX2_TARGET
#define RANVIER_DEPTHWISE_INLINE RANVIER_AVX2_INLINE
using simd_avx2::Simd;

#include "conv_depthwise_simd.inc"

#undef RANVIER_DEPTHWISE_INLINE
#undef RANVIER_DEPTHWISE_TARGET

}  // namespace ranvier::cpu::depthwise_kernels::avx2
#endif  // RANVIER_SIMD_X86
