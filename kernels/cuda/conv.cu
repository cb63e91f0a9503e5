// Convolution on the GPU, lowered to the tiled GEMM (gemm.cu) through im2col / col2im, as
// kernels/cpu/conv.cpp does on the CPU (same Conv2dShape, same formulas).
//
// A chunk of B images is processed at once, so that the GEMMs are batched over the images
// (gridDim.z) and large enough to fill the GPU. For image b of the chunk and group g
// (C/g input channels, K/g filters), with the column buffer col[b] (C*R*S, P*Q) whose row
// (c, r, s) holds, for every output pixel (p, q), the input value that filter tap (c, r, s)
// meets there (zero in the padding), and col[b, g] its rows of group g (C/g*R*S, P*Q):
//
//   forward          y[b, g] (K/g, P*Q)        = w[g] (K/g, C/g*R*S) @ col[b, g]   (+ bias)
//   backward input   dcol[b, g] (C/g*R*S, P*Q) = w[g]^T @ dy[b, g] (K/g, P*Q);  dx[b] = col2im(dcol[b])
//   backward weight  dw_b[g] (K/g, C/g*R*S)    = dy[b, g] @ col[b, g]^T, then dw = sum over b of dw_b
//
// col2im gathers (one thread per input pixel, no atomics: deterministic). The per-image
// weight gradients are summed in a fixed order by a reduction kernel, so dw does not depend
// on scheduling. A 1x1 kernel with stride 1 and no padding needs no column buffer.
// Workspace (column buffer, per-image weight gradients) is a DeviceScratch on the kernels'
// stream (ranvier/device_allocator.h: CuPy's memory pool under Python), at most
// kWorkspaceBytes per chunk.
#include <algorithm>
#include <cstdint>

#include "check.cuh"
#include "gemm.cuh"
#include "ranvier/conv.h"
#include "ranvier/device_allocator.h"

namespace ranvier::cuda {

namespace {

// Sizes derived from a Conv2dShape, named once, passed to the kernels by value.
struct ConvDims {
  int64_t batch, in_channels, in_height, in_width, out_channels;  // N, C, H, W, K
  int64_t kernel_height, kernel_width;                            // R, S
  int64_t stride_height, stride_width, pad_top, pad_left, dilation_height, dilation_width;
  int64_t groups;
  int64_t group_in, group_out;  // C/g, K/g
  int64_t out_h, out_w;         // P, Q
  int64_t out_pixels;           // P*Q
  int64_t in_pixels;            // H*W
  int64_t col_rows;             // C/g*R*S: rows of one group's column block
  int64_t image_col_size;       // C*R*S*P*Q: one image's column buffer
  int64_t group_weight;         // K/g*C/g*R*S
  int64_t weight_size;          // K*C/g*R*S
  bool direct;                  // 1x1, stride 1, no padding: the input is its own column buffer
};

ConvDims conv_dims(const Conv2dShape& s) {
  ConvDims d;
  d.batch = s.batch;
  d.in_channels = s.in_channels;
  d.in_height = s.in_height;
  d.in_width = s.in_width;
  d.out_channels = s.out_channels;
  d.kernel_height = s.kernel_height;
  d.kernel_width = s.kernel_width;
  d.stride_height = s.stride_height;
  d.stride_width = s.stride_width;
  d.pad_top = s.pad_top;
  d.pad_left = s.pad_left;
  d.dilation_height = s.dilation_height;
  d.dilation_width = s.dilation_width;
  d.groups = s.groups;
  d.group_in = s.in_channels / s.groups;
  d.group_out = s.out_channels / s.groups;
  d.out_h = s.out_height();
  d.out_w = s.out_width();
  d.out_pixels = d.out_h * d.out_w;
  d.in_pixels = s.in_height * s.in_width;
  d.col_rows = d.group_in * s.kernel_height * s.kernel_width;
  d.image_col_size = s.in_channels * s.kernel_height * s.kernel_width * d.out_pixels;
  d.group_weight = d.group_out * d.col_rows;
  d.weight_size = s.out_channels * d.col_rows;
  d.direct = s.kernel_height == 1 && s.kernel_width == 1 && s.stride_height == 1 &&
             s.stride_width == 1 && s.pad_top == 0 && s.pad_bottom == 0 && s.pad_left == 0 &&
             s.pad_right == 0;
  return d;
}

#define RANVIER_GRID_STRIDE(i, n)                                                     \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// col (images, C*R*S, P*Q) from x (images, C, H, W):
//   col[b, (c*R + r)*S + s, p*Q + q] = x[b, c, p*stride_h - pad_top + r*dil_h,
//                                            q*stride_w - pad_left + s*dil_w]  (0 outside).
template <typename T>
__global__ void im2col_kernel(const ConvDims d, const T* __restrict__ x, T* col, int64_t images) {
  const int64_t total = images * d.image_col_size;
  RANVIER_GRID_STRIDE(index, total) {
    const int64_t q = index % d.out_w;
    int64_t rest = index / d.out_w;
    const int64_t p = rest % d.out_h;
    rest /= d.out_h;
    const int64_t s = rest % d.kernel_width;
    rest /= d.kernel_width;
    const int64_t r = rest % d.kernel_height;
    rest /= d.kernel_height;
    const int64_t c = rest % d.in_channels;
    const int64_t b = rest / d.in_channels;
    const int64_t h = p * d.stride_height - d.pad_top + r * d.dilation_height;
    const int64_t w = q * d.stride_width - d.pad_left + s * d.dilation_width;
    const bool inside = h >= 0 && h < d.in_height && w >= 0 && w < d.in_width;
    col[index] = inside ? x[((b * d.in_channels + c) * d.in_height + h) * d.in_width + w] : T(0);
  }
}

// dx (images, C, H, W) = the column gradient dcol (images, C*R*S, P*Q) added back onto the
// input pixels it came from: dx[b, c, h, w] = sum over the taps (r, s) and output pixels
// (p, q) with h = p*stride_h - pad_top + r*dil_h, w = q*stride_w - pad_left + s*dil_w of
// dcol[b, (c*R + r)*S + s, p*Q + q]. One thread per input pixel: overwrites dx.
template <typename T>
__global__ void col2im_kernel(const ConvDims d, const T* __restrict__ dcol, T* dx, int64_t images) {
  const int64_t total = images * d.in_channels * d.in_pixels;
  RANVIER_GRID_STRIDE(index, total) {
    const int64_t w = index % d.in_width;
    int64_t rest = index / d.in_width;
    const int64_t h = rest % d.in_height;
    const int64_t bc = rest / d.in_height;  // b * C + c
    const T* dcol_channel = dcol + bc * d.kernel_height * d.kernel_width * d.out_pixels;
    T sum = T(0);
    for (int64_t r = 0; r < d.kernel_height; ++r) {
      const int64_t h_scaled = h + d.pad_top - r * d.dilation_height;  // p * stride_h
      if (h_scaled < 0 || h_scaled % d.stride_height != 0) continue;
      const int64_t p = h_scaled / d.stride_height;
      if (p >= d.out_h) continue;
      for (int64_t s = 0; s < d.kernel_width; ++s) {
        const int64_t w_scaled = w + d.pad_left - s * d.dilation_width;  // q * stride_w
        if (w_scaled < 0 || w_scaled % d.stride_width != 0) continue;
        const int64_t q = w_scaled / d.stride_width;
        if (q >= d.out_w) continue;
        sum += dcol_channel[(r * d.kernel_width + s) * d.out_pixels + p * d.out_w + q];
      }
    }
    dx[index] = sum;
  }
}

// y (images, K, P*Q): every output channel k starts at bias[k] (the GEMM then adds onto it).
template <typename T>
__global__ void fill_bias_kernel(const ConvDims d, const T* __restrict__ bias, T* y, int64_t images) {
  const int64_t total = images * d.out_channels * d.out_pixels;
  RANVIER_GRID_STRIDE(index, total) { y[index] = bias[(index / d.out_pixels) % d.out_channels]; }
}

// dbias (K) = sum of dy (N, K, P*Q) over n and the pixels, summed in double (as the CPU) by
// one block per channel: each thread a strided share, then a shared-memory tree.
constexpr int kBiasThreads = 256;
template <typename T>
__global__ void conv_bias_grad_kernel(const ConvDims d, const T* __restrict__ dy, T* dbias) {
  __shared__ double partial[kBiasThreads];
  const int64_t k = blockIdx.x;
  const int64_t terms = d.batch * d.out_pixels;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < terms; i += kBiasThreads) {
    const int64_t n = i / d.out_pixels, pixel = i % d.out_pixels;
    sum += static_cast<double>(dy[(n * d.out_channels + k) * d.out_pixels + pixel]);
  }
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kBiasThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) dbias[k] = static_cast<T>(partial[0]);
}

// dw (size) = (accumulate ? dw : 0) + sum over b < images of per_image[b * size + i], in
// order of b.
template <typename T>
__global__ void sum_images_kernel(const T* __restrict__ per_image, T* dw, int64_t size,
                                  int64_t images, bool accumulate) {
  RANVIER_GRID_STRIDE(index, size) {
    T sum = accumulate ? dw[index] : T(0);
    for (int64_t b = 0; b < images; ++b) sum += per_image[b * size + index];
    dw[index] = sum;
  }
}

template <typename T>
__global__ void fill_zero_kernel(T* x, int64_t n) {
  RANVIER_GRID_STRIDE(index, n) { x[index] = T(0); }
}

#undef RANVIER_GRID_STRIDE

// At most this much workspace per chunk (but always at least one image). The CPU emulator's
// build (tests/cuda_emulation/build.py) sets a few KiB, so that its tests reach the chunked
// loops at sizes it can run.
#ifndef RANVIER_CONV_WORKSPACE_BYTES
#define RANVIER_CONV_WORKSPACE_BYTES (int64_t{256} << 20)
#endif
constexpr int64_t kWorkspaceBytes = RANVIER_CONV_WORKSPACE_BYTES;

// Images per chunk when each image needs `per_image` elements of T of workspace.
template <typename T>
int64_t images_per_chunk(int64_t batch, int64_t per_image) {
  if (per_image <= 0) return std::max<int64_t>(batch, 1);
  const int64_t fit = kWorkspaceBytes / (per_image * static_cast<int64_t>(sizeof(T)));
  return std::clamp<int64_t>(fit, 1, std::max<int64_t>(batch, 1));
}

}  // namespace

// y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C/g, R, S)) + bias (K); bias may be null.
template <typename T>
void conv2d_forward(const Conv2dShape& shape, const T* x, const T* w, const T* bias, T* y,
                    StreamHandle stream) {
  const ConvDims d = conv_dims(shape);
  if (d.batch == 0) return;
  const cudaStream_t s = as_stream(stream);
  const int64_t chunk = images_per_chunk<T>(d.batch, d.direct ? 0 : d.image_col_size);
  DeviceScratch col(static_cast<size_t>(d.direct ? 0 : chunk * d.image_col_size) * sizeof(T), s, "conv2d_forward (column buffer)");
  for (int64_t n0 = 0; n0 < d.batch; n0 += chunk) {
    const int64_t images = std::min(chunk, d.batch - n0);
    const T* x_chunk = x + n0 * d.in_channels * d.in_pixels;
    T* y_chunk = y + n0 * d.out_channels * d.out_pixels;
    const T* columns = x_chunk;  // (images, C*R*S, P*Q); in the direct case x itself
    if (!d.direct) {
      launch_kernel("im2col_kernel", im2col_kernel<T>, grid_for(images * d.image_col_size), kBlockSize, 0, s,
                    d, x_chunk, col.as<T>(), images);
      columns = col.as<T>();
    }
    T beta = T(0);
    if (bias != nullptr) {
      launch_kernel("fill_bias_kernel", fill_bias_kernel<T>, grid_for(images * d.out_channels * d.out_pixels),
                    kBlockSize, 0, s, d, bias, y_chunk, images);
      beta = T(1);
    }
    for (int64_t g = 0; g < d.groups; ++g) {
      // y[b, g] (K/g, P*Q) = w[g] (K/g, C/g*R*S) @ col[b, g] (C/g*R*S, P*Q), batched over b.
      gemm_batched<T>(false, false, images, d.group_out, d.out_pixels, d.col_rows, T(1),
                      w + g * d.group_weight, d.col_rows, 0,
                      columns + g * d.col_rows * d.out_pixels, d.out_pixels, d.image_col_size,
                      beta, y_chunk + g * d.group_out * d.out_pixels, d.out_pixels,
                      d.out_channels * d.out_pixels, nullptr, stream);
    }
  }
}

// dx (N, C, H, W) from dy (N, K, P, Q) and w (K, C/g, R, S): dcol = w[g]^T @ dy[b, g], col2im.
template <typename T>
void conv2d_backward_input(const Conv2dShape& shape, const T* dy, const T* w, T* dx,
                           StreamHandle stream) {
  const ConvDims d = conv_dims(shape);
  if (d.batch == 0) return;
  const cudaStream_t s = as_stream(stream);
  const int64_t chunk = images_per_chunk<T>(d.batch, d.direct ? 0 : d.image_col_size);
  DeviceScratch col(static_cast<size_t>(d.direct ? 0 : chunk * d.image_col_size) * sizeof(T), s, "conv2d_backward_input (column buffer)");
  for (int64_t n0 = 0; n0 < d.batch; n0 += chunk) {
    const int64_t images = std::min(chunk, d.batch - n0);
    const T* dy_chunk = dy + n0 * d.out_channels * d.out_pixels;
    T* dx_chunk = dx + n0 * d.in_channels * d.in_pixels;
    // In the direct case the column gradient is the input gradient itself.
    T* dcol = d.direct ? dx_chunk : col.as<T>();
    for (int64_t g = 0; g < d.groups; ++g) {
      // dcol[b, g] (C/g*R*S, P*Q) = w[g]^T (C/g*R*S, K/g) @ dy[b, g] (K/g, P*Q).
      gemm_batched<T>(true, false, images, d.col_rows, d.out_pixels, d.group_out, T(1),
                      w + g * d.group_weight, d.col_rows, 0,
                      dy_chunk + g * d.group_out * d.out_pixels, d.out_pixels,
                      d.out_channels * d.out_pixels, T(0),
                      dcol + g * d.col_rows * d.out_pixels, d.out_pixels, d.image_col_size,
                      nullptr, stream);
    }
    if (!d.direct) {
      launch_kernel("col2im_kernel", col2im_kernel<T>, grid_for(images * d.in_channels * d.in_pixels),
                    kBlockSize, 0, s, d, dcol, dx_chunk, images);
    }
  }
}

// dw (K, C/g, R, S) = sum over n of dy[n, g] @ col(x[n, g])^T per group; dbias (K) = sum of dy.
template <typename T>
void conv2d_backward_weight(const Conv2dShape& shape, const T* dy, const T* x, T* dw, T* dbias,
                            StreamHandle stream) {
  const ConvDims d = conv_dims(shape);
  const cudaStream_t s = as_stream(stream);
  if (dbias != nullptr && d.out_channels > 0) {
    launch_kernel("conv_bias_grad_kernel", conv_bias_grad_kernel<T>,
                  static_cast<unsigned int>(d.out_channels), kBiasThreads, 0, s, d, dy, dbias);
  }
  if (d.weight_size == 0) return;
  if (d.batch == 0) {
    launch_kernel("fill_zero_kernel", fill_zero_kernel<T>, grid_for(d.weight_size), kBlockSize, 0, s, dw,
                  d.weight_size);
    return;
  }
  // Per image: its column buffer (unless direct) and its own weight gradient.
  const int64_t col_per_image = d.direct ? 0 : d.image_col_size;
  const int64_t chunk = images_per_chunk<T>(d.batch, col_per_image + d.weight_size);
  DeviceScratch col(static_cast<size_t>(chunk * col_per_image) * sizeof(T), s, "conv2d_backward_weight (column buffer)");
  DeviceScratch per_image(static_cast<size_t>(chunk * d.weight_size) * sizeof(T), s, "conv2d_backward_weight (per-image weight gradients)");
  for (int64_t n0 = 0; n0 < d.batch; n0 += chunk) {
    const int64_t images = std::min(chunk, d.batch - n0);
    const T* x_chunk = x + n0 * d.in_channels * d.in_pixels;
    const T* dy_chunk = dy + n0 * d.out_channels * d.out_pixels;
    const T* columns = x_chunk;
    if (!d.direct) {
      launch_kernel("im2col_kernel", im2col_kernel<T>, grid_for(images * d.image_col_size), kBlockSize, 0, s,
                    d, x_chunk, col.as<T>(), images);
      columns = col.as<T>();
    }
    for (int64_t g = 0; g < d.groups; ++g) {
      // dw_b[g] (K/g, C/g*R*S) = dy[b, g] (K/g, P*Q) @ col[b, g]^T (P*Q, C/g*R*S).
      gemm_batched<T>(false, true, images, d.group_out, d.col_rows, d.out_pixels, T(1),
                      dy_chunk + g * d.group_out * d.out_pixels, d.out_pixels,
                      d.out_channels * d.out_pixels, columns + g * d.col_rows * d.out_pixels,
                      d.out_pixels, d.image_col_size, T(0),
                      per_image.as<T>() + g * d.group_weight, d.col_rows, d.weight_size,
                      nullptr, stream);
    }
    launch_kernel("sum_images_kernel", sum_images_kernel<T>, grid_for(d.weight_size), kBlockSize, 0, s,
                  per_image.as<T>(), dw, d.weight_size, images, n0 > 0);
  }
}

// conv1d: the conv2d kernels on (N, C, 1, L) images with (K, C/g, 1, S) filters.
template <typename T>
void conv1d_forward(const Conv1dShape& shape, const T* x, const T* w, const T* bias, T* y,
                    StreamHandle stream) {
  conv2d_forward<T>(shape.as_conv2d(), x, w, bias, y, stream);
}

template <typename T>
void conv1d_backward_input(const Conv1dShape& shape, const T* dy, const T* w, T* dx,
                           StreamHandle stream) {
  conv2d_backward_input<T>(shape.as_conv2d(), dy, w, dx, stream);
}

template <typename T>
void conv1d_backward_weight(const Conv1dShape& shape, const T* dy, const T* x, T* dw, T* dbias,
                            StreamHandle stream) {
  conv2d_backward_weight<T>(shape.as_conv2d(), dy, x, dw, dbias, stream);
}

#define RANVIER_INSTANTIATE_CUDA_CONV(T)                                                            \
  template void conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*, StreamHandle); \
  template void conv2d_backward_input<T>(const Conv2dShape&, const T*, const T*, T*, StreamHandle);    \
  template void conv2d_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*, T*, StreamHandle); \
  template void conv1d_forward<T>(const Conv1dShape&, const T*, const T*, const T*, T*, StreamHandle); \
  template void conv1d_backward_input<T>(const Conv1dShape&, const T*, const T*, T*, StreamHandle);    \
  template void conv1d_backward_weight<T>(const Conv1dShape&, const T*, const T*, T*, T*, StreamHandle);

RANVIER_INSTANTIATE_CUDA_CONV(float)
RANVIER_INSTANTIATE_CUDA_CONV(double)
#undef RANVIER_INSTANTIATE_CUDA_CONV

}  // namespace ranvier::cuda
