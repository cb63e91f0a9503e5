// Direct kernels for depthwise convolutions (conv_depthwise.cpp).
// Not part of the public kernel API: conv.cpp sends the passes for which depthwise_kernels_take
// holds here, with the arguments its own conv2d functions take.
#pragma once
#include <cstdint>

#include "ranvier/conv.h"

namespace ranvier::cpu {

// The three passes of a convolution: the direct kernels pay over different ranges of shapes.
enum class ConvPass { Forward, BackwardInput, BackwardWeight };

// Whether `pass` of convolution s goes to the direct kernels here: C/g == 1 (depthwise
// convolutions, single-channel images included) with at most 16 filters per group for the
// forward pass and 8 for the backward passes (conv_depthwise.cpp has the measurements).
bool depthwise_kernels_take(const Conv2dShape& s, ConvPass pass);

// y (N, K, P, Q) = conv(x (N, C, H, W), w (K, 1, R, S)) + bias (K); bias may be null.
template <typename T>
void depthwise_conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y);

// dx (N, C, H, W) from dy (N, K, P, Q) and w (K, 1, R, S).
template <typename T>
void depthwise_conv2d_backward_input(const Conv2dShape& s, const T* dy, const T* w, T* dx);

// dw (K, 1, R, S) from dy (N, K, P, Q) and x (N, C, H, W); the bias gradient stays in conv.cpp.
template <typename T>
void depthwise_conv2d_backward_weight(const Conv2dShape& s, const T* dy, const T* x, T* dw);

}  // namespace ranvier::cpu
