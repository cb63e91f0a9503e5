// The AVX2 + FMA GEMM micro-kernels (6 x 16 floats, 6 x 8 doubles; see gemm_micro_kernels.h).
// This file is compiled for the baseline x86-64: only the functions marked
// RANVIER_GEMM_TARGET use AVX2/FMA, and gemm() calls them only on a CPU that has both.
#include "gemm_micro_kernels.h"
#include "simd_avx2.h"

#if RANVIER_GEMM_X86
namespace ranvier::cpu::gemm_kernels::avx2 {

#define RANVIER_GEMM_TARGET RANVIER_AVX2_TARGET
#define RANVIER_GEMM_INLINE RANVIER_AVX2_INLINE
using simd_avx2::Simd;

#include "gemm_simd_micro_kernel.inc"

#undef RANVIER_GEMM_INLINE
#undef RANVIER_GEMM_TARGET

}  // namespace ranvier::cpu::gemm_kernels::avx2
#endif  // RANVIER_GEMM_X86
