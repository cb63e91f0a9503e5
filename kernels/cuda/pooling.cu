// Max, average and adaptive average pooling on the GPU, forward and backward.
//
// Arrays are contiguous (planes, H, W) as in pooling.h. The forward kernels give one thread
// to each output element (a grid-stride loop over planes * out_h * out_w) and run the CPU's
// loops over its window, sums in double. The backward kernels give one thread to each INPUT
// element, which sums the gradients of the outputs whose windows cover it, in ascending
// output order: the CPU's scatter adds the same terms in the same order into a zeroed dx,
// so the results are the same bits, with no atomics and no races. The window arithmetic is
// pooling_math.h's, shared with the CPU.
#include <cmath>

#include "check.cuh"
#include "reduce.cuh"
#include "ranvier/pooling.h"
#include "ranvier/pooling_math.h"

namespace ranvier::cuda {

namespace {

using Accum = double;

// The grid-stride loop over the n elements of a kernel (n may exceed 2^31).
#define RANVIER_FOR_EACH_ELEMENT(i, n)                                                   \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// x (planes, in_h, in_w) -> y, indices (planes, out_h, out_w); one thread per output element
template <typename T>
__global__ void max_pool2d_forward_kernel(Pool2dGeometry g, const T* x, T* y, int64_t* indices) {
  const int64_t out_plane = g.out_h * g.out_w, total = g.planes * out_plane;
  RANVIER_FOR_EACH_ELEMENT(o, total) {
    const int64_t p = o / out_plane, oh = (o % out_plane) / g.out_w, ow = o % g.out_w;
    const T* xp = x + p * g.in_h * g.in_w;
    const PoolWindowAxis rows = pool_window_axis(oh, g.stride_h, g.pad_h, g.kernel_h, g.dilation_h, g.in_h);
    const PoolWindowAxis cols = pool_window_axis(ow, g.stride_w, g.pad_w, g.kernel_w, g.dilation_w, g.in_w);
    // The CPU's rule (pooling_math.h's take_if_larger), from -inf at the window's first element.
    T best = -INFINITY;
    int64_t best_index = rows.first * g.in_w + cols.first;
    for (int64_t h = rows.first; h < rows.end; h += rows.step) {
      for (int64_t w = cols.first; w < cols.end; w += cols.step) {
        take_if_larger(xp[h * g.in_w + w], h * g.in_w + w, best, best_index);
      }
    }
    y[o] = best;
    indices[o] = best_index;
  }
}

// dy, indices (planes, out_h, out_w) -> dx (planes, in_h, in_w); one thread per input
// element, gathering from the outputs whose windows span it and chose it as their arg-max.
template <typename T>
__global__ void max_pool2d_backward_kernel(Pool2dGeometry g, const T* dy, const int64_t* indices, T* dx) {
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w, total = g.planes * in_plane;
  RANVIER_FOR_EACH_ELEMENT(i, total) {
    const int64_t p = i / in_plane, index = i % in_plane, h = index / g.in_w, w = index % g.in_w;
    const OutputRange rows = outputs_spanning(h, g.stride_h, g.pad_h, g.kernel_h, g.dilation_h, g.out_h);
    const OutputRange cols = outputs_spanning(w, g.stride_w, g.pad_w, g.kernel_w, g.dilation_w, g.out_w);
    const T* dyp = dy + p * out_plane;
    const int64_t* ip = indices + p * out_plane;
    T sum = T(0);
    for (int64_t oh = rows.first; oh < rows.end; ++oh) {
      for (int64_t ow = cols.first; ow < cols.end; ++ow) {
        if (ip[oh * g.out_w + ow] == index) sum += dyp[oh * g.out_w + ow];
      }
    }
    dx[i] = sum;
  }
}

// The same without the window: one thread per plane zeroes its plane and adds each output's
// gradient at its index, in output order (exactly the CPU's loop).
template <typename T>
__global__ void max_pool2d_backward_by_plane_kernel(Pool2dGeometry g, const T* dy, const int64_t* indices,
                                                    T* dx) {
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  RANVIER_FOR_EACH_ELEMENT(p, g.planes) {
    T* dxp = dx + p * in_plane;
    for (int64_t i = 0; i < in_plane; ++i) dxp[i] = T(0);
    const T* dyp = dy + p * out_plane;
    const int64_t* ip = indices + p * out_plane;
    for (int64_t o = 0; o < out_plane; ++o) dxp[ip[o]] += dyp[o];
  }
}

// *first = min(*first, i) over the indices outside [0, plane) (an integer atomic: exact).
__global__ void out_of_plane_index_kernel(const int64_t* indices, int64_t n, int64_t plane,
                                          unsigned long long* first) {
  RANVIER_FOR_EACH_ELEMENT(i, n) {
    if (indices[i] < 0 || indices[i] >= plane) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

// x (planes, in_h, in_w) -> y (planes, out_h, out_w); one thread per output element
template <typename T>
__global__ void avg_pool2d_forward_kernel(Pool2dGeometry g, bool count_include_pad, int64_t divisor_override,
                                          const T* x, T* y) {
  const int64_t out_plane = g.out_h * g.out_w, total = g.planes * out_plane;
  RANVIER_FOR_EACH_ELEMENT(o, total) {
    const int64_t p = o / out_plane, oh = (o % out_plane) / g.out_w, ow = o % g.out_w;
    const T* xp = x + p * g.in_h * g.in_w;
    const AvgPoolWindowAxis rows = avg_pool_window_axis(oh, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
    const AvgPoolWindowAxis cols = avg_pool_window_axis(ow, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
    Accum sum = 0;
    for (int64_t h = rows.begin; h < rows.end; ++h) {
      for (int64_t w = cols.begin; w < cols.end; ++w) sum += static_cast<Accum>(xp[h * g.in_w + w]);
    }
    y[o] = static_cast<T>(sum / avg_pool_divisor(rows, cols, count_include_pad, divisor_override));
  }
}

// dy (planes, out_h, out_w) -> dx (planes, in_h, in_w); one thread per input element. Each
// output's share dy / divisor is rounded to T before it is added, as on the CPU.
template <typename T>
__global__ void avg_pool2d_backward_kernel(Pool2dGeometry g, bool count_include_pad, int64_t divisor_override,
                                           const T* dy, T* dx) {
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w, total = g.planes * in_plane;
  RANVIER_FOR_EACH_ELEMENT(i, total) {
    const int64_t p = i / in_plane, h = (i % in_plane) / g.in_w, w = i % g.in_w;
    const OutputRange out_rows = outputs_spanning(h, g.stride_h, g.pad_h, g.kernel_h, 1, g.out_h);
    const OutputRange out_cols = outputs_spanning(w, g.stride_w, g.pad_w, g.kernel_w, 1, g.out_w);
    const T* dyp = dy + p * out_plane;
    T sum = T(0);
    for (int64_t oh = out_rows.first; oh < out_rows.end; ++oh) {
      const AvgPoolWindowAxis rows = avg_pool_window_axis(oh, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
      for (int64_t ow = out_cols.first; ow < out_cols.end; ++ow) {
        const AvgPoolWindowAxis cols = avg_pool_window_axis(ow, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
        sum += static_cast<T>(static_cast<Accum>(dyp[oh * g.out_w + ow]) /
                              avg_pool_divisor(rows, cols, count_include_pad, divisor_override));
      }
    }
    dx[i] = sum;
  }
}

// x (planes, in_h, in_w) -> y (planes, out_h, out_w); one thread per output element
template <typename T>
__global__ void adaptive_avg_pool2d_forward_kernel(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h,
                                                   int64_t out_w, const T* x, T* y) {
  const int64_t out_plane = out_h * out_w, total = planes * out_plane;
  RANVIER_FOR_EACH_ELEMENT(o, total) {
    const int64_t p = o / out_plane, oh = (o % out_plane) / out_w, ow = o % out_w;
    const T* xp = x + p * in_h * in_w;
    const int64_t h0 = adaptive_bin_start(oh, in_h, out_h), h1 = adaptive_bin_end(oh, in_h, out_h);
    const int64_t w0 = adaptive_bin_start(ow, in_w, out_w), w1 = adaptive_bin_end(ow, in_w, out_w);
    y[o] = static_cast<T>(adaptive_bin_mean(xp, in_w, h0, h1, w0, w1));  // the CPU's sum order
  }
}

// dy (planes, out_h, out_w) -> dx (planes, in_h, in_w); one thread per input element
template <typename T>
__global__ void adaptive_avg_pool2d_backward_kernel(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h,
                                                    int64_t out_w, const T* dy, T* dx) {
  const int64_t in_plane = in_h * in_w, out_plane = out_h * out_w, total = planes * in_plane;
  RANVIER_FOR_EACH_ELEMENT(i, total) {
    const int64_t p = i / in_plane, h = (i % in_plane) / in_w, w = i % in_w;
    const OutputRange bin_rows = adaptive_bins_containing(h, in_h, out_h);
    const OutputRange bin_cols = adaptive_bins_containing(w, in_w, out_w);
    const T* dyp = dy + p * out_plane;
    T sum = T(0);
    for (int64_t oh = bin_rows.first; oh < bin_rows.end; ++oh) {
      const int64_t rows = adaptive_bin_end(oh, in_h, out_h) - adaptive_bin_start(oh, in_h, out_h);
      for (int64_t ow = bin_cols.first; ow < bin_cols.end; ++ow) {
        const int64_t cols = adaptive_bin_end(ow, in_w, out_w) - adaptive_bin_start(ow, in_w, out_w);
        sum += static_cast<T>(static_cast<Accum>(dyp[oh * out_w + ow]) / static_cast<Accum>(rows * cols));
      }
    }
    dx[i] = sum;
  }
}

#undef RANVIER_FOR_EACH_ELEMENT

}  // namespace

// ---------------------------------------------------------------------------------------
// Launchers. Nothing is launched for an empty output (planes = 0: an empty batch).

template <typename T>
void max_pool2d_forward(const Pool2dGeometry& g, const T* x, T* y, int64_t* indices, StreamHandle stream) {
  const int64_t n = g.planes * g.out_h * g.out_w;
  if (n <= 0) return;
  launch_kernel("max_pool2d_forward_kernel", max_pool2d_forward_kernel<T>, grid_for(n), kBlockSize, 0,
                as_stream(stream), g, x, y, indices);
}

template <typename T>
void max_pool2d_backward(const Pool2dGeometry& g, const T* dy, const int64_t* indices, T* dx,
                         StreamHandle stream) {
  const int64_t n = g.planes * g.in_h * g.in_w;
  if (n <= 0) return;
  launch_kernel("max_pool2d_backward_kernel", max_pool2d_backward_kernel<T>, grid_for(n), kBlockSize, 0,
                as_stream(stream), g, dy, indices, dx);
}

template <typename T>
void max_pool2d_backward_by_plane(const Pool2dGeometry& g, const T* dy, const int64_t* indices, T* dx,
                                  StreamHandle stream) {
  if (g.planes <= 0 || g.in_h * g.in_w <= 0) return;
  launch_kernel("max_pool2d_backward_by_plane_kernel", max_pool2d_backward_by_plane_kernel<T>,
                grid_for(g.planes), kBlockSize, 0, as_stream(stream), g, dy, indices, dx);
}

int64_t first_out_of_plane_index(const int64_t* indices, int64_t n, int64_t plane, int64_t* bad_value,
                                 StreamHandle stream) {
  if (n <= 0) return -1;
  const cudaStream_t s = as_stream(stream);
  return first_flagged(indices, bad_value, s, "out_of_plane_index_kernel", [&](unsigned long long* first) {
    launch_kernel("out_of_plane_index_kernel", out_of_plane_index_kernel, grid_for(n), kBlockSize, 0, s,
                  indices, n, plane, first);
  });
}

template <typename T>
void avg_pool2d_forward(const Pool2dGeometry& g, bool count_include_pad, int64_t divisor_override,
                        const T* x, T* y, StreamHandle stream) {
  const int64_t n = g.planes * g.out_h * g.out_w;
  if (n <= 0) return;
  launch_kernel("avg_pool2d_forward_kernel", avg_pool2d_forward_kernel<T>, grid_for(n), kBlockSize, 0,
                as_stream(stream), g, count_include_pad, divisor_override, x, y);
}

template <typename T>
void avg_pool2d_backward(const Pool2dGeometry& g, bool count_include_pad, int64_t divisor_override,
                         const T* dy, T* dx, StreamHandle stream) {
  const int64_t n = g.planes * g.in_h * g.in_w;
  if (n <= 0) return;
  launch_kernel("avg_pool2d_backward_kernel", avg_pool2d_backward_kernel<T>, grid_for(n), kBlockSize, 0,
                as_stream(stream), g, count_include_pad, divisor_override, dy, dx);
}

template <typename T>
void adaptive_avg_pool2d_forward(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                                 const T* x, T* y, StreamHandle stream) {
  const int64_t n = planes * out_h * out_w;
  if (n <= 0) return;
  launch_kernel("adaptive_avg_pool2d_forward_kernel", adaptive_avg_pool2d_forward_kernel<T>, grid_for(n),
                kBlockSize, 0, as_stream(stream), planes, in_h, in_w, out_h, out_w, x, y);
}

template <typename T>
void adaptive_avg_pool2d_backward(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                                  const T* dy, T* dx, StreamHandle stream) {
  const int64_t n = planes * in_h * in_w;
  if (n <= 0) return;
  launch_kernel("adaptive_avg_pool2d_backward_kernel", adaptive_avg_pool2d_backward_kernel<T>, grid_for(n),
                kBlockSize, 0, as_stream(stream), planes, in_h, in_w, out_h, out_w, dy, dx);
}

#define RANVIER_INSTANTIATE_POOLING(T)                                                                    \
  template void max_pool2d_forward<T>(const Pool2dGeometry&, const T*, T*, int64_t*, StreamHandle);      \
  template void max_pool2d_backward<T>(const Pool2dGeometry&, const T*, const int64_t*, T*, StreamHandle); \
  template void max_pool2d_backward_by_plane<T>(const Pool2dGeometry&, const T*, const int64_t*, T*,     \
                                                StreamHandle);                                           \
  template void avg_pool2d_forward<T>(const Pool2dGeometry&, bool, int64_t, const T*, T*, StreamHandle); \
  template void avg_pool2d_backward<T>(const Pool2dGeometry&, bool, int64_t, const T*, T*, StreamHandle); \
  template void adaptive_avg_pool2d_forward<T>(int64_t, int64_t, int64_t, int64_t, int64_t, const T*, T*, \
                                               StreamHandle);                                             \
  template void adaptive_avg_pool2d_backward<T>(int64_t, int64_t, int64_t, int64_t, int64_t, const T*, T*, \
                                                StreamHandle);

RANVIER_INSTANTIATE_POOLING(float)
RANVIER_INSTANTIATE_POOLING(double)

#undef RANVIER_INSTANTIATE_POOLING

}  // namespace ranvier::cuda
