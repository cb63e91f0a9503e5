// Max, average and adaptive average pooling over 2-D planes, forward and backward.
//
// Arrays are contiguous (planes, H, W), where planes = N * C: every plane is pooled on its
// own, so the kernels know nothing of batch or channels. 1-D pooling is the 2-D case with
// H = 1 (kernel 1, stride 1, padding 0 along H): the binding maps (N, C, L) onto it.
#pragma once
#include "ranvier/common.h"

namespace ranvier {

// Where the pooling windows lie. The binding computes out_h/out_w (PyTorch's formula,
// ceil_mode included) and checks every field; the kernels trust them.
// Output row oh covers input rows oh * stride_h - pad_h + i * dilation_h, i < kernel_h
// (likewise for columns); rows outside [0, in_h) are padding.
struct Pool2dGeometry {
  int64_t planes = 0;              // N * C
  int64_t in_h = 0, in_w = 0;
  int64_t out_h = 0, out_w = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;  // max pooling only; average pooling uses 1
};

namespace cpu {

// x (planes, in_h, in_w) -> y (planes, out_h, out_w) and indices (planes, out_h, out_w):
// the arg-max of each window as the flat index h * in_w + w within its input plane. The
// first maximum wins a tie; a NaN in the window wins over every number (as PyTorch).
template <typename T>
void max_pool2d_forward(const Pool2dGeometry& g, const T* x, T* y, int64_t* indices);
// dy (planes, out_h, out_w), indices from the forward -> dx (planes, in_h, in_w): each
// gradient goes to its window's arg-max; overlapping windows accumulate. dx is overwritten.
template <typename T>
void max_pool2d_backward(const Pool2dGeometry& g, const T* dy, const int64_t* indices, T* dx);

// x (planes, in_h, in_w) -> y (planes, out_h, out_w): the mean over each window. The divisor
// is divisor_override when > 0; else the window's size clipped to the padded input when
// count_include_pad (PyTorch's default), or to the input itself when not.
template <typename T>
void avg_pool2d_forward(const Pool2dGeometry& g, bool count_include_pad, int64_t divisor_override,
                        const T* x, T* y);
// dy (planes, out_h, out_w) -> dx (planes, in_h, in_w), overwritten.
template <typename T>
void avg_pool2d_backward(const Pool2dGeometry& g, bool count_include_pad, int64_t divisor_override,
                         const T* dy, T* dx);

// x (planes, in_h, in_w) -> y (planes, out_h, out_w): output (i, j) is the mean over rows
// floor(i * in_h / out_h) .. ceil((i + 1) * in_h / out_h) - 1 and likewise for columns
// (PyTorch's bins; they overlap when the sizes do not divide).
template <typename T>
void adaptive_avg_pool2d_forward(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h,
                                 int64_t out_w, const T* x, T* y);
// dy (planes, out_h, out_w) -> dx (planes, in_h, in_w), overwritten.
template <typename T>
void adaptive_avg_pool2d_backward(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h,
                                  int64_t out_w, const T* dy, T* dx);

}  // namespace cpu

namespace cuda {

// The CUDA twins of the above, on `stream`, with the same semantics and results: one thread
// per output element in the forward passes (the CPU's loops, sums in double), and one thread
// per INPUT element in the backward passes, which gathers the gradients of the outputs
// whose windows cover it in ascending output order (the order in which the CPU's scatter
// adds them): no atomics, the same bits as the CPU, every run.
template <typename T>
void max_pool2d_forward(const Pool2dGeometry& g, const T* x, T* y, int64_t* indices, StreamHandle stream);
// The gather needs the window: g must be the forward's full geometry (the indices must be
// the forward's). An index outside its output's window would be dropped; the binding checks
// that each lies inside its plane (first_out_of_plane_index).
template <typename T>
void max_pool2d_backward(const Pool2dGeometry& g, const T* dy, const int64_t* indices, T* dx,
                         StreamHandle stream);
// max_pool2d_backward when only the sizes in g are known (no window): one thread per plane
// adds that plane's gradients in output order, as the CPU does. Slower (planes-wide
// parallelism only); used when the caller does not pass the forward's window.
template <typename T>
void max_pool2d_backward_by_plane(const Pool2dGeometry& g, const T* dy, const int64_t* indices, T* dx,
                                  StreamHandle stream);
// Scans indices (n values) on `stream`, waits, and returns the first position whose value is
// outside [0, plane) (-1 when all are inside), with that value in *bad_value.
int64_t first_out_of_plane_index(const int64_t* indices, int64_t n, int64_t plane, int64_t* bad_value,
                                 StreamHandle stream);

template <typename T>
void avg_pool2d_forward(const Pool2dGeometry& g, bool count_include_pad, int64_t divisor_override,
                        const T* x, T* y, StreamHandle stream);
template <typename T>
void avg_pool2d_backward(const Pool2dGeometry& g, bool count_include_pad, int64_t divisor_override,
                         const T* dy, T* dx, StreamHandle stream);

template <typename T>
void adaptive_avg_pool2d_forward(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h,
                                 int64_t out_w, const T* x, T* y, StreamHandle stream);
template <typename T>
void adaptive_avg_pool2d_backward(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h,
                                  int64_t out_w, const T* dy, T* dx, StreamHandle stream);

}  // namespace cuda

}  // namespace ranvier
