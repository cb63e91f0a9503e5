// The vector math's per-path array functions behind one set of signatures; vector_math.cpp
// picks one by simd_path(). y[i] = f(x[i]) for i < n, x and y the same or disjoint arrays.
// The SIMD bodies: vector_math_simd.inc, compiled in vector_math_avx2.cpp and
// vector_math_avx512.cpp with their target attributes (never -march): they are only called
// after the CPU said it has the instructions.
#pragma once
#include <cstdint>

#include "ranvier/simd_path.h"

#if RANVIER_SIMD_X86
#define RANVIER_DECLARE_VECTOR_MATH_KERNELS                                 \
  void exp_array(const float* x, float* y, int64_t n);                      \
  void exp_array(const double* x, double* y, int64_t n);                    \
  void sigmoid_array(const float* x, float* y, int64_t n);                  \
  void sigmoid_array(const double* x, double* y, int64_t n);                \
  void tanh_array(const float* x, float* y, int64_t n);                     \
  void tanh_array(const double* x, double* y, int64_t n);                   \
  /* float only: float64 erf stays on the scalar libm erf on every path */ \
  void erf_array(const float* x, float* y, int64_t n);                      \
  void log_array(const float* x, float* y, int64_t n);                      \
  void log_array(const double* x, double* y, int64_t n);                    \
  void log1p_array(const float* x, float* y, int64_t n);                    \
  void log1p_array(const double* x, double* y, int64_t n);                  \
  float max_array(const float* x, int64_t n);                               \
  double max_array(const double* x, int64_t n);

namespace ranvier::cpu::vector_math_kernels {
namespace avx2 {
RANVIER_DECLARE_VECTOR_MATH_KERNELS
}  // namespace avx2
namespace avx512 {
RANVIER_DECLARE_VECTOR_MATH_KERNELS
}  // namespace avx512
}  // namespace ranvier::cpu::vector_math_kernels

#undef RANVIER_DECLARE_VECTOR_MATH_KERNELS
#endif
