// Depthwise convolution (one input channel per group, and a few filters per group: at most
// 16 in the forward pass, 8 in the backward passes), computed directly rather than as a
// GEMM: conv.cpp sends these passes here (depthwise_kernels_take, conv_depthwise.h).
//
// Such a GEMM has K/g (often 1) rows and a depth of only R*S (9 for a 3x3 kernel), so
// packing its operands costs more than the arithmetic. Here each output is instead a short
// sum over the filter taps, for channel c = k / (K/g) of filter k:
//
//   forward          y[b, k, p, q] = bias[k] + sum over taps (r, s) of
//                                    w[k, 0, r, s] * x[b, c, p*stride_h + r*dil_h - pad_top,
//                                                      q*stride_w + s*dil_w - pad_left]
//   backward input   dx[b, c, h, v] = sum over the K/g filters k of channel c and taps (r, s)
//                                     of w[k, 0, r, s] * dy[b, k, (h + pad_top - r*dil_h) / stride_h,
//                                                         (v + pad_left - s*dil_w) / stride_w]
//                                     (the terms whose divisions are exact and inside dy)
//   backward weight  dw[k, 0, r, s] = sum over b, p, q of dy[b, k, p, q] * x[b, c, ...as forward]
//
// Each plane a pass reads is first copied into a zero-padded layout (PlaneLayout) in which
// the input of tap t for output pixel (p, q) lies at anchor(p, q) + offset[t], with
// anchor(p, q) = p * row_step + q. The padding is written out (once per thread: only the
// plane's own entries change from plane to plane), so that no inner loop tests a border,
// and the inner loops are the kernels of conv_depthwise_kernels.h, vectorised along output
// rows with many independent accumulators (conv_depthwise_simd.inc):
//   - forward: x's plane with its padding. Columns are stored split into stride_w phases
//     (column j at phase j % stride_w, position j / stride_w), so that a tap's inputs along
//     an output row are consecutive for any stride.
//   - backward input: a forward pass, with the taps turned around, over dy's planes spread
//     out by the strides (zeros between the rows and columns of dy) and padded by
//     dilation*(kernel - 1) - pad. With stride 1 that is dy padded; with stride 2 three in
//     four of the products are with zeros, the price of one vectorised kernel for every
//     stride.
//   - backward weight: x's plane as in the forward pass, and dy's plane with its rows
//     padded with zeros to whole vectors.
//
// Threads: forward and backward input over (image, channel) planes, backward weight over
// filters (it sums over the images); each output element is computed by one thread in a
// fixed order: the results do not depend on the thread count.
#include "conv_depthwise.h"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "conv_depthwise_kernels.h"
#include "conv_valid_range.h"
#include "copy_short.h"
#include "parallel.h"
#include "ranvier/simd_path.h"

namespace ranvier::cpu {

// --- the portable kernels ----------------------------------------------------------------------

namespace depthwise_kernels::portable {

namespace {

// 16-byte vectors as plain arrays: the loops have constant bounds, so the compiler keeps
// them in registers and turns each operation into one SIMD instruction of the baseline
// (SSE2 on x86-64, NEON on arm64).
template <typename T>
struct Simd {
  static constexpr int kWidth = 16 / static_cast<int>(sizeof(T));
  struct Reg {
    T lane[kWidth];
  };
  static Reg zero() { return set1(T(0)); }
  static Reg set1(T x) {
    Reg r;
    for (int i = 0; i < kWidth; ++i) r.lane[i] = x;
    return r;
  }
  static Reg load(const T* p) {
    Reg r;
    std::memcpy(r.lane, p, sizeof(r.lane));
    return r;
  }
  static void store(T* p, Reg v) { std::memcpy(p, v.lane, sizeof(v.lane)); }
  static Reg fmadd(Reg a, Reg b, Reg c) {
    for (int i = 0; i < kWidth; ++i) c.lane[i] += a.lane[i] * b.lane[i];
    return c;
  }
};

}  // namespace

#define RANVIER_DEPTHWISE_TARGET
#define RANVIER_DEPTHWISE_INLINE inline __attribute__((always_inline))

#include "conv_depthwise_simd.inc"

#undef RANVIER_DEPTHWISE_INLINE
#undef RANVIER_DEPTHWISE_TARGET

}  // namespace depthwise_kernels::portable

namespace {

namespace dk = depthwise_kernels;

// The most filters per group (K/g) for which the direct kernels take each pass. Beyond them
// the GEMM, whose rows are those filters, catches up. Direct kernels' speed over the GEMM's
// (its time / theirs), AVX2 (Zen 3), one thread, 3x3 unless said, min over interleaved runs,
// forward / backward input / backward weight:
//   filters per group   shape (N, C, H = W) -> K
//    8                  (64, 1, 28) -> 8:              1.95 / 1.22 / 1.56
//    8                  (64, 1, 8) -> 8:               1.32 / 1.04 / 0.74
//   16                  (64, 1, 28) -> 16:             1.08 / 0.90 / 1.21
//   16                  (64, 1, 8) -> 16:              1.07 / 0.90 / 0.60
//   16                  (64, 1, 100) -> 16, 5x5:       1.56 / 1.32 / 1.10
//   16                  (64, 4, 28) -> 64, 4 groups:   1.69 / 1.08 / 1.08
//   16                  (32, 8, 28) -> 128, 8 groups:  1.49 / 1.15 / 1.52
//   32                  (64, 1, 28) -> 32:             1.14 / 0.82 / 1.03
//   32                  (64, 1, 14) -> 32:             0.89 / 0.66 / 0.85
//   32                  (64, 1, 8) -> 32:              0.97 / 0.79 / 0.53
//   64                  (64, 1, 28) -> 64:             1.12 / 0.79 / 0.92
// With 2 or 4 filters per group they win 2-5x in every pass ((64, 32, 14) -> 64, 32 groups:
// 3.95 / 5.42 / 3.14). The forward pass wins up to 16; the backward passes, mixed beyond 8,
// keep 8.
constexpr int64_t kMaxForwardFiltersPerGroup = 16;
constexpr int64_t kMaxBackwardFiltersPerGroup = 8;

template <typename T>
void tap_sums(const dk::TapSums<T>& args) {
#if RANVIER_SIMD_X86
  if (use_avx2_kernels()) return dk::avx2::tap_sums(args);
#endif
  dk::portable::tap_sums(args);
}

template <typename T>
void tap_dots(const dk::TapDots<T>& args, double* sums) {
#if RANVIER_SIMD_X86
  if (use_avx2_kernels()) return dk::avx2::tap_dots(args, sums);
#endif
  dk::portable::tap_dots(args, sums);
}

int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// A zero-padded copy of one (height, width) source plane: entry (i, j) of the copy holds
// src[(i - top) / step_h, (j - left) / step_w] where both divisions are exact and land inside
// the plane, zero elsewhere (step > 1 spreads the plane out, as the backward input pass
// needs). Column j is stored at phase j % phases, position j / phases, each phase
// phase_length entries long: row i starts at i * row_length().
//
// Which entries hold the plane's values depends only on the layout, so a buffer is zeroed
// once and copy_into_padded then writes those entries alone, plane after plane.
struct PlaneLayout {
  int64_t height, width;  // the source plane
  int64_t top, left;      // where its (0, 0) lands; negative: its first rows/columns are cut
  int64_t step_h, step_w;  // > 1: the source's rows/columns that far apart
  int64_t rows;           // rows of the copy
  int64_t phases;         // column phases of the copy (> 1 only with step_w == 1)
  int64_t phase_length;   // entries per phase
  int64_t row_length() const { return phases * phase_length; }
  int64_t size() const { return rows * row_length(); }
};

template <typename T>
void copy_into_padded(const PlaneLayout& l, const T* src, T* dst) {
  const int64_t columns = l.row_length();
  // The source rows and columns landing inside the copy: i = top + h * step_h in [0, rows),
  // j = left + v * step_w in [0, columns).
  const ValidRange h_range = valid_range(l.top, l.step_h, l.rows, l.height);
  const ValidRange v_range = valid_range(l.left, l.step_w, columns, l.width);
  for (int64_t h = h_range.lo; h < h_range.hi; ++h) {
    const T* src_row = src + h * l.width;
    T* dst_row = dst + (l.top + h * l.step_h) * columns;
    if (l.phases == 1) {  // the row's run, contiguous or spread out
      if (l.step_w == 1) {
        copy_row(src_row + v_range.lo, v_range.hi - v_range.lo, dst_row + l.left + v_range.lo);
      } else {
        for (int64_t v = v_range.lo; v < v_range.hi; ++v) dst_row[l.left + v * l.step_w] = src_row[v];
      }
      continue;
    }
    // Column j = left + v (step 1) goes to phase j % phases, position j / phases.
    int64_t v = v_range.lo;
    int64_t phase = (l.left + v) % l.phases, position = (l.left + v) / l.phases;
    if (l.phases == 2) {  // stride 2, the common case: pairs of columns, which the compiler
                          // vectorises as loads split into even and odd lanes
      T* even = dst_row;
      T* odd = dst_row + l.phase_length;
      if (phase == 1 && v < v_range.hi) odd[position++] = src_row[v++];
      const int64_t pairs = (v_range.hi - v) / 2;
      for (int64_t i = 0; i < pairs; ++i) {
        even[position + i] = src_row[v + 2 * i];
        odd[position + i] = src_row[v + 2 * i + 1];
      }
      if (v + 2 * pairs < v_range.hi) even[position + pairs] = src_row[v + 2 * pairs];
      continue;
    }
    for (; v < v_range.hi; ++v) {  // walked along the row without a division per element
      dst_row[phase * l.phase_length + position] = src_row[v];
      if (++phase == l.phases) phase = 0, ++position;
    }
  }
}

// The layout of x's planes for the forward and weight-gradient passes, and the offsets of
// the filter taps (r, s), in w's order, from an output pixel's anchor: output row p reads
// the copy's rows from p * stride_h (row_step = stride_h * row_length) and output column q
// phase (s*dil_w) % stride_w from position q + (s*dil_w) / stride_w. Rows are padded to
// whole vectors up to round_up(Q, kRowAlign).
struct InputTaps {
  PlaneLayout layout;
  int64_t row_step;
  std::vector<int64_t> offsets;  // (R*S)
};
InputTaps input_taps(const Conv2dShape& s) {
  const int64_t P = s.out_height(), Q = s.out_width(), sw = s.stride_width;
  InputTaps t;
  t.layout = PlaneLayout{s.in_height, s.in_width, s.pad_top, s.pad_left, 1, 1,
                         (P - 1) * s.stride_height + (s.kernel_height - 1) * s.dilation_height + 1, sw,
                         round_up(Q, dk::kRowAlign) + (s.kernel_width - 1) * s.dilation_width / sw};
  t.row_step = s.stride_height * t.layout.row_length();
  for (int64_t r = 0; r < s.kernel_height; ++r) {
    for (int64_t tap_col = 0; tap_col < s.kernel_width; ++tap_col) {
      const int64_t column = tap_col * s.dilation_width;
      t.offsets.push_back(r * s.dilation_height * t.layout.row_length() +
                          (column % sw) * t.layout.phase_length + column / sw);
    }
  }
  return t;
}

bool output_is_empty(const Conv2dShape& s) {
  return s.batch == 0 || s.out_channels == 0 || s.out_height() <= 0 || s.out_width() <= 0;
}

}  // namespace

bool depthwise_kernels_take(const Conv2dShape& s, ConvPass pass) {
  const int64_t max_filters_per_group =
      pass == ConvPass::Forward ? kMaxForwardFiltersPerGroup : kMaxBackwardFiltersPerGroup;
  return s.groups > 0 && s.in_channels == s.groups &&
         s.out_channels <= max_filters_per_group * s.groups;
}

template <typename T>
void depthwise_conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  if (output_is_empty(s)) return;
  const int64_t P = s.out_height(), Q = s.out_width(), RS = s.kernel_height * s.kernel_width;
  const int64_t filters_per_channel = s.out_channels / s.groups;
  const InputTaps taps = input_taps(s);
  const int64_t planes = s.batch * s.in_channels;  // (image, channel)
  for_each_chunk<T>(planes, chunk_count(planes), filters_per_channel * P * Q * RS, taps.layout.size(),
                    [&](int64_t, int64_t begin, int64_t end, T* padded) {
    std::fill(padded, padded + taps.layout.size(), T(0));
    for (int64_t plane = begin; plane < end; ++plane) {
      copy_into_padded(taps.layout, x + plane * s.in_height * s.in_width, padded);
      const int64_t b = plane / s.in_channels, c = plane % s.in_channels;
      for (int64_t f = 0; f < filters_per_channel; ++f) {
        const int64_t k = c * filters_per_channel + f;
        tap_sums(dk::TapSums<T>{padded, taps.row_step, w + k * RS, taps.offsets.data(), RS,
                                bias != nullptr ? bias[k] : T(0),
                                y + (b * s.out_channels + k) * P * Q, P, Q});
      }
    }
  });
}

template <typename T>
void depthwise_conv2d_backward_input(const Conv2dShape& s, const T* dy, const T* w, T* dx) {
  const int64_t H = s.in_height, W = s.in_width, R = s.kernel_height, S = s.kernel_width;
  if (output_is_empty(s)) {
    std::fill(dx, dx + s.batch * s.in_channels * H * W, T(0));
    return;
  }
  const int64_t P = s.out_height(), Q = s.out_width(), RS = R * S;
  const int64_t filters_per_channel = s.out_channels / s.groups;
  // dy's planes spread out by the strides and padded so that dx is their stride-1
  // correlation with the turned-around taps: copy row h + r'*dil_h, r' = R-1-r, holds dy's
  // row (h + pad_top - r*dil_h) / stride_h (see the top of the file).
  const PlaneLayout layout{P, Q, (R - 1) * s.dilation_height - s.pad_top, (S - 1) * s.dilation_width - s.pad_left,
                           s.stride_height, s.stride_width, H + (R - 1) * s.dilation_height, 1,
                           round_up(W, dk::kRowAlign) + (S - 1) * s.dilation_width};
  // The K/g planes of a channel's filters lie one after another in the buffer; channel c's
  // taps (f, r', s') run over them, with filter k = c*(K/g) + f's weights turned around.
  std::vector<int64_t> offsets;
  for (int64_t f = 0; f < filters_per_channel; ++f) {
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t tap_col = 0; tap_col < S; ++tap_col) {
        offsets.push_back(f * layout.size() + r * s.dilation_height * layout.row_length() +
                          tap_col * s.dilation_width);
      }
    }
  }
  std::vector<T> turned(static_cast<size_t>(s.out_channels * RS));  // (K, R, S), taps reversed
  for (int64_t k = 0; k < s.out_channels; ++k) std::reverse_copy(w + k * RS, w + (k + 1) * RS, turned.data() + k * RS);

  const int64_t planes = s.batch * s.in_channels;  // (image, channel)
  for_each_chunk<T>(planes, chunk_count(planes), filters_per_channel * H * W * RS,
                    filters_per_channel * layout.size(), [&](int64_t, int64_t begin, int64_t end, T* padded) {
    std::fill(padded, padded + filters_per_channel * layout.size(), T(0));
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t b = plane / s.in_channels, c = plane % s.in_channels;
      for (int64_t f = 0; f < filters_per_channel; ++f) {
        const int64_t k = c * filters_per_channel + f;
        copy_into_padded(layout, dy + (b * s.out_channels + k) * P * Q, padded + f * layout.size());
      }
      tap_sums(dk::TapSums<T>{padded, layout.row_length(), turned.data() + c * filters_per_channel * RS,
                              offsets.data(), filters_per_channel * RS, T(0), dx + plane * H * W, H, W});
    }
  });
}

template <typename T>
void depthwise_conv2d_backward_weight(const Conv2dShape& s, const T* dy, const T* x, T* dw) {
  const int64_t RS = s.kernel_height * s.kernel_width;
  if (output_is_empty(s)) {
    std::fill(dw, dw + s.out_channels * RS, T(0));
    return;
  }
  const int64_t P = s.out_height(), Q = s.out_width();
  const int64_t filters_per_channel = s.out_channels / s.groups;
  const InputTaps taps = input_taps(s);
  // dy's plane, each row padded with zeros to whole vectors (zeroed once, like the padding).
  const int64_t grad_row = round_up(Q, dk::kRowAlign);
  const int64_t buffer = taps.layout.size() + P * grad_row;
  std::vector<double> sums(static_cast<size_t>(s.out_channels * RS), 0.0);
  // Over filters, not channels, so that single-channel images use the threads too: a
  // channel's x plane is then copied once per filter.
  for_each_chunk<T>(s.out_channels, chunk_count(s.out_channels), s.batch * P * Q * RS, buffer,
                    [&](int64_t, int64_t begin, int64_t end, T* padded) {
    std::fill(padded, padded + buffer, T(0));
    T* grad = padded + taps.layout.size();
    for (int64_t k = begin; k < end; ++k) {
      const int64_t c = k / filters_per_channel;
      for (int64_t b = 0; b < s.batch; ++b) {
        copy_into_padded(taps.layout, x + (b * s.in_channels + c) * s.in_height * s.in_width, padded);
        const T* plane = dy + (b * s.out_channels + k) * P * Q;
        for (int64_t p = 0; p < P; ++p) copy_row(plane + p * Q, Q, grad + p * grad_row);
        tap_dots(dk::TapDots<T>{padded, taps.row_step, taps.offsets.data(), RS, grad, P, grad_row},
                 sums.data() + k * RS);
      }
    }
  });
  for (int64_t i = 0; i < s.out_channels * RS; ++i) dw[i] = static_cast<T>(sums[i]);
}

#define RANVIER_INSTANTIATE_DEPTHWISE(T)                                                          \
  template void depthwise_conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*); \
  template void depthwise_conv2d_backward_input<T>(const Conv2dShape&, const T*, const T*, T*);     \
  template void depthwise_conv2d_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*);

RANVIER_INSTANTIATE_DEPTHWISE(float)
RANVIER_INSTANTIATE_DEPTHWISE(double)
#undef RANVIER_INSTANTIATE_DEPTHWISE

}  // namespace ranvier::cpu
