// Depthwise convolution (one input channel and at most kMaxFiltersPerChannel filters per
// group), computed directly rather than as a GEMM: conv.cpp sends these shapes here
// (conv_depthwise.h).
//
// Such a GEMM has K/g (often 1) rows and a depth of only R*S (9 for a 3x3 kernel), so
// packing its operands costs more than the arithmetic. Here every output row is instead a
// sum of R*S shifted input rows, each scaled by one filter tap:
//
//   forward          y[b, k, p, :] = bias[k] + sum over taps (r, s) of
//                                    w[k, 0, r, s] * x[b, c, p*stride_h + r*dil_h - pad_top,
//                                                      (:)*stride_w + s*dil_w - pad_left]
//   backward input   dx[b, c] += w[k, 0, r, s] * dy[b, k] moved back the same way, for the
//                    K/g filters k of channel c's group
//   backward weight  dw[k, 0, r, s] = sum over b, p, q of dy[b, k, p, q] * x[b, c, h, w]
//
// where c = k / (K/g) is filter k's input channel. The loops along an output row run over
// the columns whose input lies inside the image (conv_valid_range.h), so there is no padding
// test inside them, and with stride_w = 1 they are plain multiply-adds over contiguous rows
// that the compiler vectorises.
//
// Threads: forward over (image, filter) output planes, backward input over (image, channel)
// input planes, backward weight over filters; each element is written by one thread, summed
// in a fixed order: the results do not depend on the thread count.
#include "conv_depthwise.h"

#include <algorithm>
#include <vector>

#include "conv_valid_range.h"
#include "parallel.h"

namespace ranvier::cpu {

namespace {

// With more filters per channel the GEMM wins, as it does for single-channel images with
// many filters: one thread (AVX2), a 3x3 conv of (64, 1, 28, 28) images into 32 channels took
// 4.4 ms here against 1.7 ms as a GEMM, while 64 channels of (32, 64, 32, 32) images,
// depthwise, took 4.9 ms against 23 ms (forward; the backward passes alike).
constexpr int64_t kMaxFiltersPerChannel = 4;

// The sizes one filter tap (r, tap_col) needs: where its input starts relative to output pixel
// (0, 0), and the output rows and columns whose input it finds inside the image.
struct Tap {
  int64_t row_offset, col_offset;  // input row of output row p: p*stride_h + row_offset
  ValidRange rows, cols;
};
Tap tap_of(const Conv2dShape& s, int64_t r, int64_t tap_col, int64_t out_h, int64_t out_w) {
  Tap t;
  t.row_offset = r * s.dilation_height - s.pad_top;
  t.col_offset = tap_col * s.dilation_width - s.pad_left;
  t.rows = valid_range(t.row_offset, s.stride_height, s.in_height, out_h);
  t.cols = valid_range(t.col_offset, s.stride_width, s.in_width, out_w);
  return t;
}

}  // namespace

bool conv2d_is_depthwise(const Conv2dShape& s) {
  return s.groups > 0 && s.in_channels == s.groups && s.out_channels <= kMaxFiltersPerChannel * s.groups;
}

template <typename T>
void depthwise_conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  const int64_t P = s.out_height(), Q = s.out_width(), R = s.kernel_height, S = s.kernel_width;
  const int64_t filters_per_channel = s.out_channels / s.groups;
  const int64_t in_pixels = s.in_height * s.in_width, sw = s.stride_width;
  parallel_for(s.batch * s.out_channels, P * Q * R * S, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {  // plane = b * K + k
      const int64_t b = plane / s.out_channels, k = plane % s.out_channels;
      const T* image = x + (b * s.in_channels + k / filters_per_channel) * in_pixels;
      const T* filter = w + k * R * S;
      T* out = y + plane * P * Q;
      std::fill(out, out + P * Q, bias != nullptr ? bias[k] : T(0));
      for (int64_t r = 0; r < R; ++r) {
        for (int64_t tap_col = 0; tap_col < S; ++tap_col) {
          const Tap t = tap_of(s, r, tap_col, P, Q);
          const T weight = filter[r * S + tap_col];
          for (int64_t p = t.rows.lo; p < t.rows.hi; ++p) {
            const T* in_row = image + (p * s.stride_height + t.row_offset) * s.in_width + t.col_offset;
            T* out_row = out + p * Q;
            if (sw == 1) {
              for (int64_t q = t.cols.lo; q < t.cols.hi; ++q) out_row[q] += weight * in_row[q];
            } else {
              for (int64_t q = t.cols.lo; q < t.cols.hi; ++q) out_row[q] += weight * in_row[q * sw];
            }
          }
        }
      }
    }
  });
}

template <typename T>
void depthwise_conv2d_backward_input(const Conv2dShape& s, const T* dy, const T* w, T* dx) {
  const int64_t P = s.out_height(), Q = s.out_width(), R = s.kernel_height, S = s.kernel_width;
  const int64_t filters_per_channel = s.out_channels / s.groups;
  const int64_t in_pixels = s.in_height * s.in_width, sw = s.stride_width;
  parallel_for(s.batch * s.in_channels, in_pixels + filters_per_channel * P * Q * R * S,
               [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {  // plane = b * C + channel
      const int64_t b = plane / s.in_channels, channel = plane % s.in_channels;
      T* grad_image = dx + plane * in_pixels;
      std::fill(grad_image, grad_image + in_pixels, T(0));
      for (int64_t f = 0; f < filters_per_channel; ++f) {
        const int64_t k = channel * filters_per_channel + f;
        const T* grad_out = dy + (b * s.out_channels + k) * P * Q;
        const T* filter = w + k * R * S;
        for (int64_t r = 0; r < R; ++r) {
          for (int64_t tap_col = 0; tap_col < S; ++tap_col) {
            const Tap t = tap_of(s, r, tap_col, P, Q);
            const T weight = filter[r * S + tap_col];
            for (int64_t p = t.rows.lo; p < t.rows.hi; ++p) {
              T* in_row = grad_image + (p * s.stride_height + t.row_offset) * s.in_width + t.col_offset;
              const T* out_row = grad_out + p * Q;
              if (sw == 1) {
                for (int64_t q = t.cols.lo; q < t.cols.hi; ++q) in_row[q] += weight * out_row[q];
              } else {
                for (int64_t q = t.cols.lo; q < t.cols.hi; ++q) in_row[q * sw] += weight * out_row[q];
              }
            }
          }
        }
      }
    }
  });
}

template <typename T>
void depthwise_conv2d_backward_weight(const Conv2dShape& s, const T* dy, const T* x, T* dw) {
  const int64_t P = s.out_height(), Q = s.out_width(), R = s.kernel_height, S = s.kernel_width;
  const int64_t filters_per_channel = s.out_channels / s.groups;
  const int64_t in_pixels = s.in_height * s.in_width, sw = s.stride_width;
  // Per filter, one row of Q column sums: acc[q] collects dy * x over the images and output
  // rows (a vectorisable multiply-add along the row), and is summed in double at the end.
  // Allocated here, outside the parallel region, so that running out of memory raises.
  std::vector<T> column_sums(static_cast<size_t>(s.out_channels * Q));
  parallel_for(s.out_channels, s.batch * P * Q * R * S, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t channel = k / filters_per_channel;
      T* acc = column_sums.data() + k * Q;
      for (int64_t r = 0; r < R; ++r) {
        for (int64_t tap_col = 0; tap_col < S; ++tap_col) {
          const Tap t = tap_of(s, r, tap_col, P, Q);
          std::fill(acc, acc + Q, T(0));
          for (int64_t b = 0; b < s.batch; ++b) {
            const T* image = x + (b * s.in_channels + channel) * in_pixels;
            const T* grad_out = dy + (b * s.out_channels + k) * P * Q;
            for (int64_t p = t.rows.lo; p < t.rows.hi; ++p) {
              const T* in_row = image + (p * s.stride_height + t.row_offset) * s.in_width + t.col_offset;
              const T* out_row = grad_out + p * Q;
              if (sw == 1) {
                for (int64_t q = t.cols.lo; q < t.cols.hi; ++q) acc[q] += out_row[q] * in_row[q];
              } else {
                for (int64_t q = t.cols.lo; q < t.cols.hi; ++q) acc[q] += out_row[q] * in_row[q * sw];
              }
            }
          }
          double sum = 0.0;
          for (int64_t q = t.cols.lo; q < t.cols.hi; ++q) sum += static_cast<double>(acc[q]);
          dw[k * R * S + r * S + tap_col] = static_cast<T>(sum);
        }
      }
    }
  });
}

#define RANVIER_INSTANTIATE_DEPTHWISE(T)                                                          \
  template void depthwise_conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*); \
  template void depthwise_conv2d_backward_input<T>(const Conv2dShape&, const T*, const T*, T*);     \
  template void depthwise_conv2d_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*);

RANVIER_INSTANTIATE_DEPTHWISE(float)
RANVIER_INSTANTIATE_DEPTHWISE(double)
#undef RANVIER_INSTANTIATE_DEPTHWISE

}  // namespace ranvier::cpu
