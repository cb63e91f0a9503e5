// The AVX-512F GEMM micro-kernels (12 x 32 floats, 12 x 16 doubles; see gemm_micro_kernels.h).
// This file is compiled for the baseline x86-64: only the functions marked
// RANVIER_GEMM_TARGET use AVX-512F, and gemm() calls them only on a CPU (and OS) that has it.
#include "gemm_micro_kernels.h"
#include "simd_avx512.h"

#if RANVIER_GEMM_X86
namespace ranvier::cpu::gemm_kernels::avx512 {

#define RANVIER_GEMM_TARGET RANVIER_AVX512_TARGET
#define RANVIER_GEMM_INLINE RANVIER_AVX512_INLINE
using simd_avx512::Simd;

#include "gemm_simd_micro_kernel.inc"

#undef RANVIER_GEMM_INLINE
#undef RANVIER_GEMM_TARGET

}  // namespace ranvier::cpu::gemm_kernels::avx512
#endif  // RANVIER_GEMM_X86
