// Direct kernels for depthwise convolutions (conv_depthwise.cpp).
// Not part of the public kernel API: conv.cpp sends the shapes for which conv2d_is_depthwise
// holds here, with the arguments its own conv2d functions take.
#pragma once
#include <cstdint>

#include "ranvier/conv.h"

namespace ranvier::cpu {

// C/g == 1 and K/g <= 8: depthwise convolutions with a channel multiplier of at most 8
// (single-channel images with up to 8 filters included).
bool conv2d_is_depthwise(const Conv2dShape& s);

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
