// Convolution on the GPU as implicit GEMM: the tiled GEMM kernel of gemm.cuh with operands
// that compute the im2col matrix's elements from the images as its tiles are loaded, so that
// no column buffer is ever written. Same Conv2dShape and formulas as kernels/cpu/conv.cpp.
//
// For image b and group g (C/g input channels, K/g filters), col[b, g] is the (C/g*R*S, P*Q)
// matrix whose row (c, r, s) holds, for every output pixel (p, q), the input value that filter
// tap (c, r, s) meets there (zero in the padding):
//
//   forward          y[b, g] (K/g, P*Q) = w[g] (K/g, C/g*R*S) @ col[b, g] + bias[g] (per row);
//   backward input   dx[b, g] (C/g, H*W) = wt[g] (C/g, K/g*R*S) @ dyt[b, g] (K/g*R*S, H*W), with
//                    wt[g](c, (k, r, s)) = w[k, c, r, s] and dyt[b, g]((k, r, s), (h, w)) the dy
//                    value of the output pixel that tap (r, s) of filter k takes from input pixel
//                    (h, w), zero where there is none: a gather, so no atomics and no col2im;
//   backward weight  dw[g] (K/g, C/g*R*S) = sum over b of dy[b, g] (K/g, P*Q) @ col[b, g]^T,
//                    one GEMM whose depth runs over all N*P*Q (image, pixel) pairs, split into
//                    slices of whole images so that small weights still fill the GPU
//                    (split-K); the slices' partial gradients are summed in slice order by
//                    sum_slices_kernel, so dw does not depend on scheduling.
//
// Each pass is one launch for all images (or slices) and all groups: grid z runs over
// z = image * groups + group (slice * groups + group), so a depthwise convolution with
// hundreds of groups is still one launch, not one per group.
//
// A 1x1 kernel with stride 1 and no padding ("direct") reads x and dy as stored matrices in
// the forward and backward-input passes (DenseOperand: 16-byte vector loads).
// With stride > 1 the backward-input gather meets many taps that reach no output pixel; they
// are multiplied as zeros (wasted work, not wrong results).
//
// Groups of at most conv_direct_max_group_size() channels and filters (depthwise convolutions
// above all) skip the GEMM, whose tiles would have at most 4 useful rows of 128. The direct
// kernels give each output element its own thread (forward, backward input: C/g*R*S or
// K/g*R*S terms) or block (backward weight: N*P*Q terms, summed in double with a fixed tree).
// Element indices within one image, one filter bank or one slice are 32-bit (conv_dims checks
// that they fit) so that the per-element index arithmetic uses 32-bit division.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "check.cuh"
#include "gemm.cuh"
#include "reduce.cuh"
#include "ranvier/conv.h"
#include "ranvier/device_allocator.h"

namespace ranvier::cuda {

namespace {

// Sizes derived from a Conv2dShape, named once, passed to the kernels by value.
struct ConvDims {
  int64_t batch, in_channels, in_height, in_width, out_channels;  // N, C, H, W, K
  int kernel_height, kernel_width;                                // R, S
  int stride_height, stride_width, pad_top, pad_left, dilation_height, dilation_width;
  int64_t groups;
  int group_in, group_out;  // C/g, K/g
  int out_h, out_w;         // P, Q
  int out_pixels;           // P*Q
  int in_pixels;            // H*W
  int taps;                 // R*S
  int col_rows;             // C/g*R*S: the forward GEMM's depth, rows of col[b, g]
  int input_grad_depth;     // K/g*R*S: the backward-input GEMM's depth
  int64_t group_weight;     // K/g*C/g*R*S
  int64_t weight_size;      // K*C/g*R*S
  bool direct;              // 1x1, stride 1, no padding: x is its own column matrix
};

// `value` as an int, or invalid_argument naming the convolution's size that does not fit.
int checked_int(int64_t value, const char* what) {
  if (value > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument("conv2d (CUDA): " + std::string(what) + " = " +
                                std::to_string(value) + " is too large (at most 2^31 - 1)");
  }
  return static_cast<int>(value);
}

ConvDims conv_dims(const Conv2dShape& s) {
  ConvDims d;
  d.batch = s.batch;
  d.in_channels = s.in_channels;
  d.in_height = s.in_height;
  d.in_width = s.in_width;
  d.out_channels = s.out_channels;
  d.kernel_height = checked_int(s.kernel_height, "kernel height");
  d.kernel_width = checked_int(s.kernel_width, "kernel width");
  d.stride_height = checked_int(s.stride_height, "stride");
  d.stride_width = checked_int(s.stride_width, "stride");
  d.pad_top = checked_int(s.pad_top, "padding");
  d.pad_left = checked_int(s.pad_left, "padding");
  d.dilation_height = checked_int(s.dilation_height, "dilation");
  d.dilation_width = checked_int(s.dilation_width, "dilation");
  d.groups = s.groups;
  d.group_in = checked_int(s.in_channels / s.groups, "channels per group");
  d.group_out = checked_int(s.out_channels / s.groups, "filters per group");
  d.out_h = checked_int(s.out_height(), "output height");
  d.out_w = checked_int(s.out_width(), "output width");
  d.out_pixels = checked_int(s.out_height() * s.out_width(), "output pixels per image");
  d.in_pixels = checked_int(s.in_height * s.in_width, "input pixels per image");
  d.taps = checked_int(s.kernel_height * s.kernel_width, "kernel taps");
  d.col_rows = checked_int(int64_t{d.group_in} * d.taps, "channels per group x kernel taps");
  d.input_grad_depth = checked_int(int64_t{d.group_out} * d.taps, "filters per group x kernel taps");
  d.group_weight = int64_t{d.group_out} * d.col_rows;
  d.weight_size = s.out_channels * int64_t{d.col_rows};
  d.direct = s.kernel_height == 1 && s.kernel_width == 1 && s.stride_height == 1 &&
             s.stride_width == 1 && s.pad_top == 0 && s.pad_bottom == 0 && s.pad_left == 0 &&
             s.pad_right == 0;
  return d;
}

// x[b, channel, h, w] for output pixel `pixel` (p*Q + q) and kernel tap `tap` (r*S + s), with
// h = p*stride_h - pad_top + r*dil_h, w = q*stride_w - pad_left + s*dil_w; zero outside the image.
template <typename T>
__device__ __forceinline__ T input_at(const ConvDims& d, const T* __restrict__ x, int64_t b,
                                      int64_t channel, int pixel, int tap) {
  const int p = pixel / d.out_w, q = pixel - p * d.out_w;
  const int r = tap / d.kernel_width, s = tap - r * d.kernel_width;
  const int h = p * d.stride_height - d.pad_top + r * d.dilation_height;
  const int w = q * d.stride_width - d.pad_left + s * d.dilation_width;
  if (h < 0 || h >= d.in_height || w < 0 || w >= d.in_width) return T(0);
  return x[((b * d.in_channels + channel) * d.in_height + h) * d.in_width + w];
}

// --- the operands' sources (GatherOperand in gemm.cuh) ---------------------------------------
// Every launch runs all groups: batch index z = outer * groups + group, where outer is the
// image (forward, backward input) or the slice of images (backward weight). A source returns
// element (i, p) of matrix z.

struct ImageGroup {
  int64_t outer;  // the image, or the backward-weight pass's slice
  int64_t group;
};

// What every source shares: the sizes, and the decoding of z (once per tile, by GatherOperand).
struct ConvSource {
  ConvDims d;
  __device__ ImageGroup batch(int64_t z) const { return {z / d.groups, z % d.groups}; }
};

// Forward B, col[b, g] read as (P*Q, C/g*R*S): i an output pixel, p = c*R*S + tap.
template <typename T>
struct ImageColumns : ConvSource {
  const T* x;
  __device__ T operator()(const ImageGroup& z, int64_t i, int64_t p) const {
    const int c = static_cast<int>(p) / d.taps, tap = static_cast<int>(p) - c * d.taps;
    return input_at(d, x, z.outer, z.group * d.group_in + c, static_cast<int>(i), tap);
  }
};

// Backward-input A, wt[g] (C/g, K/g*R*S): i = c, p = k*R*S + tap -> w[g*K/g + k, c, tap].
template <typename T>
struct TransposedFilters : ConvSource {
  const T* w;
  __device__ T operator()(const ImageGroup& z, int64_t i, int64_t p) const {
    const int k = static_cast<int>(p) / d.taps, tap = static_cast<int>(p) - k * d.taps;
    return w[((z.group * d.group_out + k) * d.group_in + i) * d.taps + tap];
  }
};

// Backward-input B, dyt[b, g] read as (H*W, K/g*R*S): i an input pixel (h, w), p = k*R*S + tap
// (r, s) -> dy[b, g*K/g + k, p_out, q_out] for the output pixel with
// p_out*stride_h = h + pad_top - r*dil_h and q_out*stride_w = w + pad_left - s*dil_w, if any.
template <typename T>
struct ScatteredOutputGrad : ConvSource {
  const T* dy;
  __device__ T operator()(const ImageGroup& z, int64_t i, int64_t p) const {
    const int pixel = static_cast<int>(i);
    const int h = pixel / static_cast<int>(d.in_width), w = pixel - h * static_cast<int>(d.in_width);
    const int k = static_cast<int>(p) / d.taps, tap = static_cast<int>(p) - k * d.taps;
    const int r = tap / d.kernel_width, s = tap - r * d.kernel_width;
    const int h_scaled = h + d.pad_top - r * d.dilation_height;  // p_out * stride_h
    const int w_scaled = w + d.pad_left - s * d.dilation_width;  // q_out * stride_w
    if (h_scaled < 0 || w_scaled < 0) return T(0);
    const int p_out = h_scaled / d.stride_height, q_out = w_scaled / d.stride_width;
    if (p_out * d.stride_height != h_scaled || q_out * d.stride_width != w_scaled ||
        p_out >= d.out_h || q_out >= d.out_w) {
      return T(0);
    }
    const int64_t channel = z.group * d.group_out + k;
    return dy[(z.outer * d.out_channels + channel) * d.out_pixels + p_out * d.out_w + q_out];
  }
};

// Backward-weight A and B over slice z.outer of the (image, pixel) pairs: depth index p is
// (image - first image of the slice) * P*Q + pixel; images past the batch read as zero.
struct WeightGradSlices {
  int64_t first_image;       // of slice 0 of this launch
  int64_t images_per_slice;

  // The image of depth index p in `slice`, and (in *pixel) its pixel of the P*Q.
  __device__ int64_t image(int64_t slice, int64_t p, int out_pixels, int* pixel) const {
    const int image_in_slice = static_cast<int>(p) / out_pixels;
    *pixel = static_cast<int>(p) - image_in_slice * out_pixels;
    return first_image + slice * images_per_slice + image_in_slice;
  }
};

// Backward-weight A, dy[., g] read as (K/g, depth): i = k.
template <typename T>
struct OutputGradRows : ConvSource {
  const T* dy;
  WeightGradSlices slices;
  __device__ T operator()(const ImageGroup& z, int64_t i, int64_t p) const {
    int pixel;
    const int64_t b = slices.image(z.outer, p, d.out_pixels, &pixel);
    if (b >= d.batch) return T(0);
    return dy[(b * d.out_channels + z.group * d.group_out + i) * d.out_pixels + pixel];
  }
};

// Backward-weight B, col[., g]^T read as (C/g*R*S, depth): i = c*R*S + tap.
template <typename T>
struct ImageColumnsByDepth : ConvSource {
  const T* x;
  WeightGradSlices slices;
  __device__ T operator()(const ImageGroup& z, int64_t i, int64_t p) const {
    int pixel;
    const int64_t b = slices.image(z.outer, p, d.out_pixels, &pixel);
    if (b >= d.batch) return T(0);
    const int c = static_cast<int>(i) / d.taps, tap = static_cast<int>(i) - c * d.taps;
    return input_at(d, x, b, z.group * d.group_in + c, pixel, tap);
  }
};

#define RANVIER_GRID_STRIDE(i, n)                                                     \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// The (image, output pixel) pairs of one thread's share of a block's sum over N*P*Q terms:
// items first, first + step, ... of the flat index image * P*Q + pixel, walked without a
// division per term. out_pixels > 0.
struct ImagePixelWalk {
  int out_pixels, step_pixels;
  int64_t step_images;
  int64_t image;
  int pixel;
  __device__ ImagePixelWalk(int first, int step, int out_pixels)
      : out_pixels(out_pixels), step_pixels(step % out_pixels), step_images(step / out_pixels),
        image(first / out_pixels), pixel(first % out_pixels) {}
  __device__ void advance() {
    image += step_images;
    pixel += step_pixels;
    if (pixel >= out_pixels) {
      pixel -= out_pixels;
      ++image;
    }
  }
};

// dbias (K) = sum of dy (N, K, P*Q) over n and the pixels, summed in double (as the CPU) by
// one block per channel: each thread a strided share, then reduce.cuh's fixed tree.
template <typename T>
__global__ void conv_bias_grad_kernel(const ConvDims d, const T* __restrict__ dy, T* dbias) {
  __shared__ ReduceAccum shared[kReduceThreads][1];
  const int64_t k = blockIdx.x;
  ReduceAccum sum[1] = {0.0};
  if (d.out_pixels > 0) {
    for (ImagePixelWalk at(threadIdx.x, kReduceThreads, d.out_pixels); at.image < d.batch;
         at.advance()) {
      sum[0] += static_cast<ReduceAccum>(dy[(at.image * d.out_channels + k) * d.out_pixels + at.pixel]);
    }
  }
  block_sum<1>(sum, shared);
  if (threadIdx.x == 0) dbias[k] = static_cast<T>(sum[0]);
}

// --- direct convolution, for groups of few channels and filters ----------------------------
// The GEMMs of a group have K/g (forward, backward weight) or C/g (backward input) rows; a
// depthwise convolution has 1, which would fill 1 of the tile's 128 rows. These kernels
// compute each output element's short sum (C/g*R*S or K/g*R*S terms) in one thread instead.

// conv_direct_max_group_size(): 4 channels and 4 filters per group cover depthwise
// convolutions (1 channel, a multiplier of 1 to 4) and fill at most 4 of a GEMM tile's 128
// (double: 64) rows.
std::atomic<int> direct_max_group_size{4};

// y[b, k, p, q] = sum over c < C/g and taps (r, s) of w[k, c, r, s] * x[b, g*C/g + c, h, w]
// (+ bias[k]), with g = k / (K/g) and h, w as in input_at. One thread per element of y.
template <typename T>
__global__ void conv_direct_forward_kernel(const ConvDims d, const T* __restrict__ x,
                                           const T* __restrict__ w, const T* __restrict__ bias,
                                           T* y, int64_t total) {
  RANVIER_GRID_STRIDE(index, total) {
    const int pixel = static_cast<int>(index % d.out_pixels);
    const int64_t image_filter = index / d.out_pixels;  // b * K + k
    const int64_t k = image_filter % d.out_channels, b = image_filter / d.out_channels;
    const int p = pixel / d.out_w, q = pixel - p * d.out_w;
    const int h0 = p * d.stride_height - d.pad_top, w0 = q * d.stride_width - d.pad_left;
    const int64_t first_channel = k / d.group_out * d.group_in;
    const T* filter = w + k * d.col_rows;  // (C/g, R, S)
    T sum = T(0);
    for (int c = 0; c < d.group_in; ++c) {
      const T* plane = x + ((b * d.in_channels + first_channel + c) * d.in_height) * d.in_width;
      for (int r = 0; r < d.kernel_height; ++r) {
        const int h = h0 + r * d.dilation_height;
        if (h < 0 || h >= d.in_height) continue;
        for (int s = 0; s < d.kernel_width; ++s) {
          const int col = w0 + s * d.dilation_width;
          if (col < 0 || col >= d.in_width) continue;
          sum += filter[(c * d.kernel_height + r) * d.kernel_width + s] * plane[h * d.in_width + col];
        }
      }
    }
    y[index] = bias != nullptr ? sum + bias[k] : sum;
  }
}

// dx[b, c, h, w] = sum over the group's filters k and taps (r, s) of w[k, c', r, s] *
// dy[b, k, p, q] for the output pixel (p, q) that tap (r, s) takes from (h, w), if any
// (c' = c - g*C/g). One thread per element of dx.
template <typename T>
__global__ void conv_direct_backward_input_kernel(const ConvDims d, const T* __restrict__ dy,
                                                  const T* __restrict__ w, T* dx, int64_t total) {
  RANVIER_GRID_STRIDE(index, total) {
    const int pixel = static_cast<int>(index % d.in_pixels);
    const int64_t image_channel = index / d.in_pixels;  // b * C + c
    const int64_t c = image_channel % d.in_channels, b = image_channel / d.in_channels;
    const int h = pixel / static_cast<int>(d.in_width), col = pixel - h * static_cast<int>(d.in_width);
    const int64_t group = c / d.group_in, c_in_group = c - group * d.group_in;
    T sum = T(0);
    for (int k_in_group = 0; k_in_group < d.group_out; ++k_in_group) {
      const int64_t k = group * d.group_out + k_in_group;
      const T* filter = w + (k * d.group_in + c_in_group) * d.taps;  // (R, S)
      const T* grad = dy + (b * d.out_channels + k) * d.out_pixels;  // (P, Q)
      for (int r = 0; r < d.kernel_height; ++r) {
        const int h_scaled = h + d.pad_top - r * d.dilation_height;  // p * stride_h
        if (h_scaled < 0 || h_scaled % d.stride_height != 0) continue;
        const int p = h_scaled / d.stride_height;
        if (p >= d.out_h) continue;
        for (int s = 0; s < d.kernel_width; ++s) {
          const int w_scaled = col + d.pad_left - s * d.dilation_width;  // q * stride_w
          if (w_scaled < 0 || w_scaled % d.stride_width != 0) continue;
          const int q = w_scaled / d.stride_width;
          if (q >= d.out_w) continue;
          sum += filter[r * d.kernel_width + s] * grad[p * d.out_w + q];
        }
      }
    }
    dx[index] = sum;
  }
}

// dw[k, c, r, s] = sum over images and output pixels of dy[b, k, p, q] * x[b, g*C/g + c, h, w],
// summed in double. One block per element of dw: each thread a strided share of the N*P*Q
// terms, then reduce.cuh's fixed tree (no atomics: the same bits every run).
template <typename T>
__global__ void conv_direct_backward_weight_kernel(const ConvDims d, const T* __restrict__ dy,
                                                   const T* __restrict__ x, T* dw) {
  __shared__ ReduceAccum shared[kReduceThreads][1];
  const int64_t index = blockIdx.x;  // (k * C/g + c) * R*S + tap
  const int tap = static_cast<int>(index % d.taps);
  const int64_t filter_channel = index / d.taps;
  const int64_t k = filter_channel / d.group_in, c_in_group = filter_channel % d.group_in;
  const int64_t channel = k / d.group_out * d.group_in + c_in_group;
  const int r = tap / d.kernel_width, s = tap - r * d.kernel_width;
  ReduceAccum sum[1] = {0.0};
  if (d.out_pixels > 0) {
    for (ImagePixelWalk at(threadIdx.x, kReduceThreads, d.out_pixels); at.image < d.batch;
         at.advance()) {
      const int p = at.pixel / d.out_w, q = at.pixel - p * d.out_w;
      const int h = p * d.stride_height - d.pad_top + r * d.dilation_height;
      const int col = q * d.stride_width - d.pad_left + s * d.dilation_width;
      if (h < 0 || h >= d.in_height || col < 0 || col >= d.in_width) continue;
      const T grad = dy[(at.image * d.out_channels + k) * d.out_pixels + at.pixel];
      const T input = x[((at.image * d.in_channels + channel) * d.in_height + h) * d.in_width + col];
      sum[0] += static_cast<ReduceAccum>(grad) * static_cast<ReduceAccum>(input);
    }
  }
  block_sum<1>(sum, shared);
  if (threadIdx.x == 0) dw[index] = static_cast<T>(sum[0]);
}

// dw (size) = (accumulate ? dw : 0) + sum over z < slices of partial[z * size + i], in order
// of z.
template <typename T>
__global__ void sum_slices_kernel(const T* __restrict__ partial, T* dw, int64_t size,
                                  int64_t slices, bool accumulate) {
  RANVIER_GRID_STRIDE(index, size) {
    T sum = accumulate ? dw[index] : T(0);
    for (int64_t z = 0; z < slices; ++z) sum += partial[z * size + index];
    dw[index] = sum;
  }
}

template <typename T>
__global__ void fill_zero_kernel(T* x, int64_t n) {
  RANVIER_GRID_STRIDE(index, n) { x[index] = T(0); }
}

#undef RANVIER_GRID_STRIDE

// At most this much workspace (the backward-weight slices' partial gradients of one pass). The
// CPU emulator's build (tests/cuda_emulation/build.py) sets a few KiB, so that its tests reach
// the loop over passes at sizes it can run.
#ifndef RANVIER_CONV_WORKSPACE_BYTES
#define RANVIER_CONV_WORKSPACE_BYTES (int64_t{256} << 20)
#endif
constexpr int64_t kWorkspaceBytes = RANVIER_CONV_WORKSPACE_BYTES;
// The backward-weight GEMM is split until it has about this many blocks (two waves of two
// blocks per SM on a 132-SM H100)...
constexpr int64_t kWeightGradTargetBlocks = 512;
// ... but no slice is shallower than this many (image, pixel) terms: a block must do enough
// multiply-adds to pay for writing its partial tile and the sum over slices.
constexpr int64_t kWeightGradMinSliceDepth = 128;

// The GEMM launches' names in errors: the op and how it is computed.
constexpr const char* kForwardName = "conv2d_forward (implicit GEMM)";
constexpr const char* kBackwardInputName = "conv2d_backward_input (implicit GEMM)";
constexpr const char* kBackwardWeightName = "conv2d_backward_weight (implicit GEMM)";

}  // namespace

WeightGradSplit conv2d_weight_grad_split(const Conv2dShape& shape, int64_t itemsize) {
  const ConvDims d = conv_dims(shape);
  WeightGradSplit split{1, std::max<int64_t>(d.batch, 1), 1};
  if (d.batch == 0 || d.weight_size == 0) return split;
  // GemmTile<double> is the smaller tile: count blocks as float does, good enough for both.
  constexpr int64_t BM = GemmTile<float>::BM, BN = GemmTile<float>::BN;
  const int64_t blocks = d.groups * ((d.group_out + BM - 1) / BM) * ((d.col_rows + BN - 1) / BN);
  int64_t slices = (kWeightGradTargetBlocks + blocks - 1) / blocks;
  slices = std::min(slices, d.batch * d.out_pixels / kWeightGradMinSliceDepth);
  slices = std::clamp<int64_t>(slices, 1, d.batch);
  split.images_per_slice = (d.batch + slices - 1) / slices;
  // A slice's depth index (image in slice, pixel) is 32-bit.
  const int64_t max_images = std::numeric_limits<int32_t>::max() / d.out_pixels;
  if (split.images_per_slice > max_images) split.images_per_slice = max_images;
  split.slices = (d.batch + split.images_per_slice - 1) / split.images_per_slice;
  const int64_t fit = kWorkspaceBytes / (d.weight_size * itemsize);
  split.slices_per_pass = std::clamp<int64_t>(fit, 1, split.slices);
  return split;
}

int conv_direct_max_group_size() { return direct_max_group_size.load(); }

void set_conv_direct_max_group_size(int size) {
  if (size < 0) throw std::invalid_argument("set_conv_direct_max_group_size: size must be >= 0");
  direct_max_group_size.store(size);
}

bool conv2d_uses_direct_kernels(const Conv2dShape& shape) {
  const int64_t largest = conv_direct_max_group_size();
  return shape.in_channels / shape.groups <= largest && shape.out_channels / shape.groups <= largest;
}

// y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C/g, R, S)) + bias (K); bias may be null.
template <typename T>
void conv2d_forward(const Conv2dShape& shape, const T* x, const T* w, const T* bias, T* y,
                    StreamHandle stream) {
  const ConvDims d = conv_dims(shape);
  if (conv2d_uses_direct_kernels(shape)) {
    const int64_t total = d.batch * d.out_channels * d.out_pixels;
    if (total > 0) {
      launch_kernel("conv_direct_forward_kernel", conv_direct_forward_kernel<T>, grid_for(total),
                    kBlockSize, 0, as_stream(stream), d, x, w, bias, y, total);
    }
    return;
  }
  // y[b, g] (K/g, P*Q), rows of filters, at y + b * K*P*Q + g * K/g*P*Q = y + z * K/g*P*Q.
  GemmOutput<T> out;
  out.c = y;
  out.ldc = d.out_pixels;
  out.stride_c = int64_t{d.group_out} * d.out_pixels;
  out.row_bias = bias;
  out.row_bias_groups = d.groups;
  out.vectorised = can_vectorise<T>(out.c, out.ldc, out.stride_c);
  // w[g] (K/g, C/g*R*S), rows contiguous along the depth.
  const DenseOperand<T, true> a{w, d.col_rows, d.group_weight,
                                can_vectorise<T>(w, d.col_rows, d.group_weight), d.groups};
  const int64_t batch = d.batch * d.groups;
  const cudaStream_t s = as_stream(stream);
  if (d.direct) {
    // col[b, g] = x[b, g] (C/g, H*W), stored contiguous along the pixels at x + z * C/g*H*W.
    const int64_t stride = int64_t{d.group_in} * d.in_pixels;
    const DenseOperand<T, false> b{x, d.in_pixels, stride, can_vectorise<T>(x, d.in_pixels, stride)};
    launch_gemm<T>(kForwardName, batch, d.group_out, d.out_pixels, d.col_rows, a, b, out, s);
  } else {
    const GatherOperand<T, ImageColumns<T>, false> b{{{d}, x}};
    launch_gemm<T>(kForwardName, batch, d.group_out, d.out_pixels, d.col_rows, a, b, out, s);
  }
}

// dx (N, C, H, W) from dy (N, K, P, Q) and w (K, C/g, R, S).
template <typename T>
void conv2d_backward_input(const Conv2dShape& shape, const T* dy, const T* w, T* dx,
                           StreamHandle stream) {
  const ConvDims d = conv_dims(shape);
  if (conv2d_uses_direct_kernels(shape)) {
    const int64_t total = d.batch * d.in_channels * d.in_pixels;
    if (total > 0) {
      launch_kernel("conv_direct_backward_input_kernel", conv_direct_backward_input_kernel<T>,
                    grid_for(total), kBlockSize, 0, as_stream(stream), d, dy, w, dx, total);
    }
    return;
  }
  // dx[b, g] (C/g, H*W) at dx + b * C*H*W + g * C/g*H*W = dx + z * C/g*H*W.
  GemmOutput<T> out;
  out.c = dx;
  out.ldc = d.in_pixels;
  out.stride_c = int64_t{d.group_in} * d.in_pixels;
  out.vectorised = can_vectorise<T>(out.c, out.ldc, out.stride_c);
  const int64_t batch = d.batch * d.groups;
  const cudaStream_t s = as_stream(stream);
  if (d.direct) {
    // dx[b, g] (C/g, H*W) = w[g]^T (C/g, K/g) @ dy[b, g] (K/g, H*W), both stored: w[g] is
    // (K/g, C/g), contiguous along C/g; dy[b, g] is at dy + z * K/g*P*Q.
    const DenseOperand<T, false> a{w, d.group_in, d.group_weight,
                                   can_vectorise<T>(w, d.group_in, d.group_weight), d.groups};
    const int64_t stride = int64_t{d.group_out} * d.out_pixels;
    const DenseOperand<T, false> b{dy, d.out_pixels, stride,
                                   can_vectorise<T>(dy, d.out_pixels, stride)};
    launch_gemm<T>(kBackwardInputName, batch, d.group_in, d.in_pixels, d.group_out, a, b, out, s);
  } else {
    const GatherOperand<T, TransposedFilters<T>, true> a{{{d}, w}};
    const GatherOperand<T, ScatteredOutputGrad<T>, false> b{{{d}, dy}};
    launch_gemm<T>(kBackwardInputName, batch, d.group_in, d.in_pixels, d.input_grad_depth, a, b,
                   out, s);
  }
}

// dw (K, C/g, R, S) = sum over images of dy[b, g] @ col[b, g]^T per group; dbias (K) = sum of dy.
template <typename T>
void conv2d_backward_weight(const Conv2dShape& shape, const T* dy, const T* x, T* dw, T* dbias,
                            StreamHandle stream) {
  const ConvDims d = conv_dims(shape);
  const cudaStream_t s = as_stream(stream);
  if (dbias != nullptr && d.out_channels > 0) {
    launch_kernel("conv_bias_grad_kernel", conv_bias_grad_kernel<T>,
                  static_cast<unsigned int>(d.out_channels), kReduceThreads, 0, s, d, dy, dbias);
  }
  if (d.weight_size == 0) return;
  if (conv2d_uses_direct_kernels(shape)) {  // also right for an empty batch: zeros
    const int blocks = checked_int(d.weight_size, "weight elements");  // one block each
    launch_kernel("conv_direct_backward_weight_kernel", conv_direct_backward_weight_kernel<T>,
                  static_cast<unsigned int>(blocks), kReduceThreads, 0, s, d, dy, x, dw);
    return;
  }
  if (d.batch == 0) {
    launch_kernel("fill_zero_kernel", fill_zero_kernel<T>, grid_for(d.weight_size), kBlockSize, 0,
                  s, dw, d.weight_size);
    return;
  }
  const WeightGradSplit split = conv2d_weight_grad_split(shape, sizeof(T));
  const int64_t depth = split.images_per_slice * d.out_pixels;  // of one slice
  // One slice writes dw itself; several write their partial gradients to the workspace.
  DeviceScratch partial(
      static_cast<size_t>(split.slices > 1 ? split.slices_per_pass * d.weight_size : 0) * sizeof(T),
      s, "conv2d_backward_weight (partial weight gradients)");
  // dw[g] (K/g, C/g*R*S), or slice z's partial of it: slice * K*C/g*R*S + g * K/g*C/g*R*S is
  // z * K/g*C/g*R*S for z = slice * groups + g.
  GemmOutput<T> out;
  out.c = split.slices > 1 ? partial.as<T>() : dw;
  out.ldc = d.col_rows;
  out.stride_c = d.group_weight;
  out.vectorised = can_vectorise<T>(out.c, out.ldc, out.stride_c);
  for (int64_t first = 0; first < split.slices; first += split.slices_per_pass) {
    const int64_t slices = std::min(split.slices_per_pass, split.slices - first);
    const WeightGradSlices range{first * split.images_per_slice, split.images_per_slice};
    const GatherOperand<T, OutputGradRows<T>, true> a{{{d}, dy, range}};
    const GatherOperand<T, ImageColumnsByDepth<T>, true> b{{{d}, x, range}};
    launch_gemm<T>(kBackwardWeightName, slices * d.groups, d.group_out, d.col_rows, depth, a, b,
                   out, s);
    if (split.slices > 1) {
      launch_kernel("sum_slices_kernel", sum_slices_kernel<T>, grid_for(d.weight_size), kBlockSize,
                    0, s, partial.as<T>(), dw, d.weight_size, slices, first > 0);
    }
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
