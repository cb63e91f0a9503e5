// The inner loops of the depthwise convolutions (conv_depthwise.cpp), one set per
// instruction-set path behind one signature, as the GEMM's micro-kernels have
// (gemm_micro_kernels.h).
//
// conv_depthwise.cpp copies each plane a kernel reads into a zero-padded layout in which
// every filter tap of an output pixel (p, q) is one element at a fixed offset from the
// pixel's anchor p * in_row_step + q, so that no loop here tests a border. The kernels then
// only do the arithmetic, over all the taps of many pixels at once:
//
//   tap_sums   out[p, q] = init + sum over taps t of weights[t] * in[anchor(p, q) + offsets[t]]
//              for the (rows, cols) output plane out
//   tap_dots   sums[t] += sum over (p, q) of grad[p, q] * in[anchor(p, q) + offsets[t]]
//              for the (rows, row_length) plane grad
//
// Both read whole vectors along the rows: the padded layout must hold row_length (tap_dots)
// or cols rounded up to kRowAlign (tap_sums) readable elements from every anchor of a row,
// at every offset. The SIMD bodies: conv_depthwise_simd.inc.
#pragma once
#include <cstdint>

#include "ranvier/simd_path.h"
#include "ranvier/sum_math.h"  // tap_dots sums its lanes with sum_in_double

namespace ranvier::cpu::depthwise_kernels {

// Rows are read in whole vectors up to the next multiple of kRowAlign elements, which every
// path's vector width times its unroll divides.
constexpr int64_t kRowAlign = 16;

template <typename T>
struct TapSums {
  const T* in;          // the padded plane(s)
  int64_t in_row_step;  // elements from output row p's anchors to row p + 1's
  const T* weights;     // (taps)
  const int64_t* offsets;  // (taps)
  int64_t taps;
  T init;               // every output starts from it (the bias, or 0)
  T* out;               // (rows, cols), contiguous
  int64_t rows, cols;
};

template <typename T>
struct TapDots {
  const T* in;          // the padded plane
  int64_t in_row_step;
  const int64_t* offsets;  // (taps)
  int64_t taps;
  const T* grad;        // (rows, row_length), zero past the plane's own columns
  int64_t rows, row_length;  // row_length: a multiple of kRowAlign
};

// Every path's entry points. tap_dots adds to sums (taps), in double.
#define RANVIER_DECLARE_DEPTHWISE_KERNELS            \
  void tap_sums(const TapSums<float>& args);         \
  void tap_sums(const TapSums<double>& args);        \
  void tap_dots(const TapDots<float>& args, double* sums); \
  void tap_dots(const TapDots<double>& args, double* sums);

// Plain C++ over 16-byte vectors (SSE2 on x86-64, NEON on arm64): conv_depthwise.cpp.
namespace portable {
RANVIER_DECLARE_DEPTHWISE_KERNELS
}  // namespace portable

#if RANVIER_SIMD_X86
// AVX2 + FMA: conv_depthwise_avx2.cpp. The AVX-512 path runs these too (AVX-512 CPUs have
// AVX2 and FMA): a 512-bit build would be one more such file, left out until it can be
// measured on an AVX-512 machine.
namespace avx2 {
RANVIER_DECLARE_DEPTHWISE_KERNELS
}  // namespace avx2
#endif

#undef RANVIER_DECLARE_DEPTHWISE_KERNELS

}  // namespace ranvier::cpu::depthwise_kernels
