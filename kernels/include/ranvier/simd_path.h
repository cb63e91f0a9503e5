// Which SIMD instruction set the CPU kernels use: one choice per process, shared by the GEMM
// micro-kernels (matmul.cpp), the vectorised math (vector_math.cpp), the depthwise
// convolution kernels (conv_depthwise.cpp) and max pooling's (pooling.cpp), so that
// RANVIER_CPU_PATH forces them all.
#pragma once

// The SIMD paths need GCC/Clang target attributes and x86-64 intrinsics.
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define RANVIER_SIMD_X86 1
#else
#define RANVIER_SIMD_X86 0
#endif

namespace ranvier::cpu {

// The instruction sets the CPU (and OS) report, from __builtin_cpu_supports (all false on a
// compiler or architecture without it).
struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
};
CpuFeatures cpu_features();

enum class SimdPath { portable, avx2, avx512 };

// The path the CPU kernels use. Chosen once, at the first call: the best path the CPU
// supports (avx512: AVX-512F; avx2: AVX2 + FMA; portable: plain C++), unless the environment
// variable RANVIER_CPU_PATH (read then, once) names one: avx512, avx2 or portable. A named
// path this CPU cannot run, or an unknown name, falls back to the best supported path with a
// one-time warning on stderr.
SimdPath simd_path();
// "avx512", "avx2" or "portable".
const char* simd_path_name(SimdPath path);
// What RANVIER_CPU_PATH asked for ("" when unset or empty): to tell a forced path from a
// fallback.
const char* simd_path_requested();

// Whether the kernels written for AVX2 alone (the depthwise convolution's, max pooling's)
// run: on the avx2 path and on the avx512 path, whose CPUs have AVX2 + FMA too; not on the
// portable one. Always false where RANVIER_SIMD_X86 is 0.
bool use_avx2_kernels();

}  // namespace ranvier::cpu
