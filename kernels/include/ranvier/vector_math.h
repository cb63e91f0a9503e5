// Transcendental functions over contiguous arrays on the CPU, vectorised: y[i] = f(x[i]) for
// i < n. x and y may be the same array (not partially overlapping ones). One thread: the
// callers (activations, softmax, losses) split the work with parallel_for.
//
// Each runs on the SIMD path of simd_path() (ranvier/simd_path.h): AVX-512F, AVX2+FMA, or
// the portable path, which calls the scalar libm functions of ranvier/math.h (the formulas
// the references and the CUDA kernels use). The SIMD versions are our own polynomials
// (vector_math_simd.inc). Their error bounds, in ulps of the exact result in the output's
// precision (subnormal results: in subnormal steps), asserted on every path this CPU runs by
// tests/test_vector_math.py over wide grids (largest error measured on AVX2 in brackets):
//
//   function   float32             float64                 special values (every path)
//   exp        2 ulp   [0.88]      2 ulp   [0.85]          exp(-inf) = 0, exp(+inf) = +inf,
//                                                          overflow -> +inf, underflow -> 0
//                                                          through the subnormals
//   sigmoid    3 ulp   [1.85]      3 ulp   [2.04]          sigmoid(-inf) = 0, (+inf) = 1
//   tanh       3 ulp   [0.97]      3 ulp   [1.29]          tanh(+-inf) = +-1, tanh(+-0) = +-0
//   erf        3 ulp   [2.30]      scalar erf, all paths   erf(+-inf) = +-1, erf(+-0) = +-0
//   log        2 ulp   [0.82]      2 ulp   [1.07]          log(+-0) = -inf, log(x < 0) = NaN,
//                                                          log(+inf) = +inf
//   log1p      2 ulp   [1.43]      2 ulp   [1.38]          log1p(-1) = -inf, (x < -1) = NaN,
//                                                          log1p(+-0) = +-0, (+inf) = +inf
//
// NaN inputs give NaN outputs.
#pragma once
#include "ranvier/common.h"

namespace ranvier::cpu {

template <typename T>
void vector_exp(const T* x, T* y, int64_t n);
// 1 / (1 + exp(-x)), computed without overflow.
template <typename T>
void vector_sigmoid(const T* x, T* y, int64_t n);
template <typename T>
void vector_tanh(const T* x, T* y, int64_t n);
template <typename T>
void vector_erf(const T* x, T* y, int64_t n);
template <typename T>
void vector_log(const T* x, T* y, int64_t n);
// log(1 + x), accurate for small x.
template <typename T>
void vector_log1p(const T* x, T* y, int64_t n);

// The largest of x[0..n) for n >= 1, NaN if any is NaN (softmax_math.h's
// max_propagating_nan over the array; which NaN is unspecified).
template <typename T>
T vector_max(const T* x, int64_t n);

}  // namespace ranvier::cpu
