// Convolution (cross-correlation, as PyTorch's conv1d/conv2d): forward, and the backward
// passes to the input and to the weight and bias.
//
// Layouts (all contiguous, row-major):
//   x  (N, C, H, W)          input images
//   w  (K, C/groups, R, S)   filters; filter k sees input channels of group k / (K/groups)
//   y  (N, K, P, Q)          output, P = (H + pad_top + pad_bottom - dilation_h*(R-1) - 1) / stride_h + 1
//                                    Q = (W + pad_left + pad_right - dilation_w*(S-1) - 1) / stride_w + 1
// y[n, k, p, q] = bias[k] + sum over c < C/groups, r < R, s < S of
//     w[k, c, r, s] * x[n, g*C/groups + c, p*stride_h - pad_top + r*dilation_h,
//                                           q*stride_w - pad_left + s*dilation_w]
// where g = k / (K/groups), and x outside the image reads as zero. Padding may differ on the
// two sides of an axis ('same' padding with an even kernel pads one more at the end).
//
// conv1d is conv2d on images of height 1 with a kernel of height 1: the Conv1dShape
// functions convert their shape and call the conv2d kernels.
#pragma once
#include "ranvier/common.h"

namespace ranvier::cpu {

// The sizes and hyper-parameters of one conv2d call. Preconditions (checked by the binding
// layer): all sizes positive except batch (>= 0), strides and dilations >= 1, paddings >= 0,
// groups divides in_channels and out_channels, and the dilated kernel fits in the padded
// input (so out_height() and out_width() are >= 1).
struct Conv2dShape {
  int64_t batch = 0;                         // N
  int64_t in_channels = 0;                   // C
  int64_t in_height = 0, in_width = 0;       // H, W
  int64_t out_channels = 0;                  // K
  int64_t kernel_height = 1, kernel_width = 1;  // R, S
  int64_t stride_height = 1, stride_width = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  int64_t dilation_height = 1, dilation_width = 1;
  int64_t groups = 1;

  // P
  int64_t out_height() const {
    return (in_height + pad_top + pad_bottom - dilation_height * (kernel_height - 1) - 1) /
               stride_height + 1;
  }
  // Q
  int64_t out_width() const {
    return (in_width + pad_left + pad_right - dilation_width * (kernel_width - 1) - 1) /
               stride_width + 1;
  }
};

// The sizes of one conv1d call: x (N, C, L), w (K, C/groups, S), y (N, K, L_out).
struct Conv1dShape {
  int64_t batch = 0;         // N
  int64_t in_channels = 0;   // C
  int64_t in_length = 0;     // L
  int64_t out_channels = 0;  // K
  int64_t kernel_size = 1;   // S
  int64_t stride = 1;
  int64_t pad_left = 0, pad_right = 0;
  int64_t dilation = 1;
  int64_t groups = 1;

  // The same convolution on (N, C, 1, L) images with (K, C/groups, 1, S) filters.
  Conv2dShape as_conv2d() const {
    Conv2dShape s;
    s.batch = batch;
    s.in_channels = in_channels;
    s.in_height = 1;
    s.in_width = in_length;
    s.out_channels = out_channels;
    s.kernel_height = 1;
    s.kernel_width = kernel_size;
    s.stride_width = stride;
    s.pad_left = pad_left;
    s.pad_right = pad_right;
    s.dilation_width = dilation;
    s.groups = groups;
    return s;
  }
  // L_out
  int64_t out_length() const { return as_conv2d().out_width(); }
};

// y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C/g, R, S)) + bias (K); bias may be null.
template <typename T>
void conv2d_forward(const Conv2dShape& shape, const T* x, const T* w, const T* bias, T* y);

// dx (N, C, H, W) = gradient of the loss wrt x, from dy (N, K, P, Q) and w (K, C/g, R, S).
template <typename T>
void conv2d_backward_input(const Conv2dShape& shape, const T* dy, const T* w, T* dx);

// dw (K, C/g, R, S) = sum over the batch of dy (N, K, P, Q) correlated with x (N, C, H, W);
// dbias (K) = sum of dy over n, p, q (skipped when dbias is null). N == 0 gives zeros.
template <typename T>
void conv2d_backward_weight(const Conv2dShape& shape, const T* dy, const T* x, T* dw, T* dbias);

// y (N, K, L_out) = conv(x (N, C, L), w (K, C/g, S)) + bias (K); bias may be null.
template <typename T>
void conv1d_forward(const Conv1dShape& shape, const T* x, const T* w, const T* bias, T* y);

// dx (N, C, L) from dy (N, K, L_out) and w (K, C/g, S).
template <typename T>
void conv1d_backward_input(const Conv1dShape& shape, const T* dy, const T* w, T* dx);

// dw (K, C/g, S) and dbias (K, or null) from dy (N, K, L_out) and x (N, C, L).
template <typename T>
void conv1d_backward_weight(const Conv1dShape& shape, const T* dy, const T* x, T* dw, T* dbias);

}  // namespace ranvier::cpu

// --- the CUDA twins (kernels/cuda/conv.cu): the same shapes and semantics, device pointers,
// run on `stream`; implicit GEMM: the tiled CUDA GEMM reads the im2col matrix straight from the
// images, so that no column buffer is written.
namespace ranvier::cuda {

using Conv2dShape = cpu::Conv2dShape;
using Conv1dShape = cpu::Conv1dShape;

// y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C/g, R, S)) + bias (K); bias may be null.
template <typename T>
void conv2d_forward(const Conv2dShape& shape, const T* x, const T* w, const T* bias, T* y,
                    StreamHandle stream);
// dx (N, C, H, W) from dy (N, K, P, Q) and w (K, C/g, R, S).
template <typename T>
void conv2d_backward_input(const Conv2dShape& shape, const T* dy, const T* w, T* dx,
                           StreamHandle stream);
// dw (K, C/g, R, S) and dbias (K, or null) from dy (N, K, P, Q) and x (N, C, H, W); N == 0
// gives zeros.
template <typename T>
void conv2d_backward_weight(const Conv2dShape& shape, const T* dy, const T* x, T* dw, T* dbias,
                            StreamHandle stream);
// y (N, K, L_out) = conv(x (N, C, L), w (K, C/g, S)) + bias (K); bias may be null.
template <typename T>
void conv1d_forward(const Conv1dShape& shape, const T* x, const T* w, const T* bias, T* y,
                    StreamHandle stream);
// dx (N, C, L) from dy (N, K, L_out) and w (K, C/g, S).
template <typename T>
void conv1d_backward_input(const Conv1dShape& shape, const T* dy, const T* w, T* dx,
                           StreamHandle stream);
// dw (K, C/g, S) and dbias (K, or null) from dy (N, K, L_out) and x (N, C, L).
template <typename T>
void conv1d_backward_weight(const Conv1dShape& shape, const T* dy, const T* x, T* dw, T* dbias,
                            StreamHandle stream);

// How conv2d_backward_weight splits its sum over the N*P*Q (image, pixel) terms (split-K):
// `slices` slices of `images_per_slice` images (the last one may be shorter), computed in
// passes of at most `slices_per_pass` (what its workspace holds); the slices' partial
// gradients are added in slice order. For elements of `itemsize` bytes. Exposed for tests.
struct WeightGradSplit {
  int64_t slices, images_per_slice, slices_per_pass;
};
WeightGradSplit conv2d_weight_grad_split(const Conv2dShape& shape, int64_t itemsize);

// Whether the conv2d kernels compute this shape directly, one thread (forward, backward input)
// or block (backward weight) per output element, rather than as implicit GEMM: true for
// groups of at most conv_direct_max_group_size() channels and filters (depthwise
// convolutions above all), whose GEMMs would have only a few rows. Exposed for tests.
bool conv2d_uses_direct_kernels(const Conv2dShape& shape);

// The largest group (channels and filters per group) computed directly: 4 unless set. 0
// sends every shape to the implicit GEMM, a large value every shape to the direct kernels:
// the tests run each case both ways.
int conv_direct_max_group_size();
void set_conv_direct_max_group_size(int size);

}  // namespace ranvier::cuda
