// Max, average and adaptive average pooling on the CPU, forward and backward.
//
// Every plane (one channel of one sample) is pooled independently, so the work is split
// over the N * C planes and each thread writes only its own planes: the backward passes
// accumulate into dx without atomics. Window sums are accumulated in double. The window
// arithmetic is pooling_math.h's, shared with the CUDA kernels. Max pooling with 2x2
// windows at stride 2 on float32, the pooling of nearly every CNN, has an AVX2 kernel
// (pooling_avx2.cpp); the loops here serve the rest.
#include "ranvier/pooling.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "parallel.h"
#include "pooling_kernels.h"
#include "ranvier/pooling_math.h"
#include "ranvier/simd_path.h"

namespace ranvier::cpu {

namespace {

using Accum = double;

int64_t window_cost(const Pool2dGeometry& g) {
  return std::max<int64_t>(1, g.out_h * g.out_w * g.kernel_h * g.kernel_w);
}

// Every window of the plane lies inside it (no padding, no dilation, none cut by ceil_mode).
bool windows_inside(const Pool2dGeometry& g) {
  return g.pad_h == 0 && g.pad_w == 0 && g.dilation_h == 1 && g.dilation_w == 1 &&
         (g.out_h - 1) * g.stride_h + g.kernel_h <= g.in_h && (g.out_w - 1) * g.stride_w + g.kernel_w <= g.in_w;
}

// One plane's max pooling when every window lies inside it, for a KH x KW kernel known at
// compile time: no window bounds to compute, the window loops unroll, and the compiler can
// vectorise along the output row (GCC 12 does for 2x2), which the general loop below, with
// its bounds and steps computed per window, does not allow. (2x2 windows at stride 2 on
// float32 take pooling_avx2.cpp's kernel instead, where the CPU has AVX2.)
template <typename T, int KH, int KW>
void max_pool_plane_inside(const Pool2dGeometry& g, const T* xp, T* yp, int64_t* ip) {
  // Locals: the stores to yp and ip could alias g as far as the compiler knows.
  const int64_t out_h = g.out_h, out_w = g.out_w, in_w = g.in_w, stride_h = g.stride_h, stride_w = g.stride_w;
  for (int64_t oh = 0; oh < out_h; ++oh) {
    for (int64_t ow = 0; ow < out_w; ++ow) {
      const int64_t first = oh * stride_h * in_w + ow * stride_w;
      T best = -std::numeric_limits<T>::infinity();
      int64_t best_index = first;
      for (int kh = 0; kh < KH; ++kh) {
        for (int kw = 0; kw < KW; ++kw) {
          const int64_t index = first + kh * in_w + kw;
          take_if_larger(xp[index], index, best, best_index);
        }
      }
      yp[oh * out_w + ow] = best;
      ip[oh * out_w + ow] = best_index;
    }
  }
}

#if RANVIER_SIMD_X86
// The AVX2 kernel behind max_pool_plane_inside's signature.
void max_pool_plane_2x2_stride_2_avx2(const Pool2dGeometry& g, const float* xp, float* yp, int64_t* ip) {
  pooling_kernels::avx2::max_pool_2x2_stride_2_plane(xp, g.in_h, g.in_w, g.out_h, g.out_w, yp, ip);
}
#endif

}  // namespace

// x (planes, in_h, in_w) -> y, indices (planes, out_h, out_w)
template <typename T>
void max_pool2d_forward(const Pool2dGeometry& g, const T* x, T* y, int64_t* indices) {
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  using PlaneKernel = void (*)(const Pool2dGeometry&, const T*, T*, int64_t*);
  PlaneKernel inside = nullptr;  // the common kernels' fast path, where it applies
  if (windows_inside(g)) {
    if (g.kernel_h == 2 && g.kernel_w == 2) inside = max_pool_plane_inside<T, 2, 2>;
    if (g.kernel_h == 3 && g.kernel_w == 3) inside = max_pool_plane_inside<T, 3, 3>;
    if (g.kernel_h == 1 && g.kernel_w == 2) inside = max_pool_plane_inside<T, 1, 2>;  // max_pool1d
    if (g.kernel_h == 1 && g.kernel_w == 3) inside = max_pool_plane_inside<T, 1, 3>;
    if (g.kernel_h == 1 && g.kernel_w == 4) inside = max_pool_plane_inside<T, 1, 4>;  // DNA models pool by 4
#if RANVIER_SIMD_X86
    if constexpr (std::is_same_v<T, float>) {
      // nn.MaxPool2d(2): the SIMD kernel (pooling_kernels.h).
      if (g.kernel_h == 2 && g.kernel_w == 2 && g.stride_h == 2 && g.stride_w == 2 && use_avx2_kernels()) {
        inside = max_pool_plane_2x2_stride_2_avx2;
      }
    }
#endif
  }
  parallel_for(g.planes, window_cost(g), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const T* xp = x + p * in_plane;
      if (inside != nullptr) {
        inside(g, xp, y + p * out_plane, indices + p * out_plane);
        continue;
      }
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        const PoolWindowAxis rows = pool_window_axis(oh, g.stride_h, g.pad_h, g.kernel_h, g.dilation_h, g.in_h);
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const PoolWindowAxis cols = pool_window_axis(ow, g.stride_w, g.pad_w, g.kernel_w, g.dilation_w, g.in_w);
          T best = -std::numeric_limits<T>::infinity();
          int64_t best_index = rows.first * g.in_w + cols.first;
          for (int64_t h = rows.first; h < rows.end; h += rows.step) {
            for (int64_t w = cols.first; w < cols.end; w += cols.step) {
              take_if_larger(xp[h * g.in_w + w], h * g.in_w + w, best, best_index);
            }
          }
          y[p * out_plane + oh * g.out_w + ow] = best;
          indices[p * out_plane + oh * g.out_w + ow] = best_index;
        }
      }
    }
  });
}

// dy, indices (planes, out_h, out_w) -> dx (planes, in_h, in_w)
template <typename T>
void max_pool2d_backward(const Pool2dGeometry& g, const T* dy, const int64_t* indices, T* dx) {
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  parallel_for(g.planes, std::max<int64_t>(1, in_plane + out_plane), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      T* dxp = dx + p * in_plane;
      std::fill(dxp, dxp + in_plane, T(0));
      const T* dyp = dy + p * out_plane;
      const int64_t* ip = indices + p * out_plane;
      for (int64_t o = 0; o < out_plane; ++o) dxp[ip[o]] += dyp[o];
    }
  });
}

// x (planes, in_h, in_w) -> y (planes, out_h, out_w)
template <typename T>
void avg_pool2d_forward(const Pool2dGeometry& g, bool count_include_pad, int64_t divisor_override,
                        const T* x, T* y) {
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  parallel_for(g.planes, window_cost(g), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const T* xp = x + p * in_plane;
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        const AvgPoolWindowAxis rows = avg_pool_window_axis(oh, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const AvgPoolWindowAxis cols = avg_pool_window_axis(ow, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
          Accum sum = 0;
          for (int64_t h = rows.begin; h < rows.end; ++h) {
            for (int64_t w = cols.begin; w < cols.end; ++w) sum += static_cast<Accum>(xp[h * g.in_w + w]);
          }
          y[p * out_plane + oh * g.out_w + ow] =
              static_cast<T>(sum / avg_pool_divisor(rows, cols, count_include_pad, divisor_override));
        }
      }
    }
  });
}

// dy (planes, out_h, out_w) -> dx (planes, in_h, in_w)
template <typename T>
void avg_pool2d_backward(const Pool2dGeometry& g, bool count_include_pad, int64_t divisor_override,
                         const T* dy, T* dx) {
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  parallel_for(g.planes, window_cost(g), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      T* dxp = dx + p * in_plane;
      std::fill(dxp, dxp + in_plane, T(0));
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        const AvgPoolWindowAxis rows = avg_pool_window_axis(oh, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const AvgPoolWindowAxis cols = avg_pool_window_axis(ow, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
          const T share = static_cast<T>(static_cast<Accum>(dy[p * out_plane + oh * g.out_w + ow]) /
                                         avg_pool_divisor(rows, cols, count_include_pad, divisor_override));
          for (int64_t h = rows.begin; h < rows.end; ++h) {
            for (int64_t w = cols.begin; w < cols.end; ++w) dxp[h * g.in_w + w] += share;
          }
        }
      }
    }
  });
}

// x (planes, in_h, in_w) -> y (planes, out_h, out_w)
template <typename T>
void adaptive_avg_pool2d_forward(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h,
                                 int64_t out_w, const T* x, T* y) {
  const int64_t in_plane = in_h * in_w, out_plane = out_h * out_w;
  // Every input element is read about once per output bin that covers it.
  const int64_t cost = std::max<int64_t>(1, std::max(in_plane, out_plane) * 2);
  parallel_for(planes, cost, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const T* xp = x + p * in_plane;
      for (int64_t oh = 0; oh < out_h; ++oh) {
        const int64_t h0 = adaptive_bin_start(oh, in_h, out_h), h1 = adaptive_bin_end(oh, in_h, out_h);
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const int64_t w0 = adaptive_bin_start(ow, in_w, out_w), w1 = adaptive_bin_end(ow, in_w, out_w);
          y[p * out_plane + oh * out_w + ow] = static_cast<T>(adaptive_bin_mean(xp, in_w, h0, h1, w0, w1));
        }
      }
    }
  });
}

// dy (planes, out_h, out_w) -> dx (planes, in_h, in_w)
template <typename T>
void adaptive_avg_pool2d_backward(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h,
                                  int64_t out_w, const T* dy, T* dx) {
  const int64_t in_plane = in_h * in_w, out_plane = out_h * out_w;
  const int64_t cost = std::max<int64_t>(1, std::max(in_plane, out_plane) * 2);
  parallel_for(planes, cost, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      T* dxp = dx + p * in_plane;
      std::fill(dxp, dxp + in_plane, T(0));
      for (int64_t oh = 0; oh < out_h; ++oh) {
        const int64_t h0 = adaptive_bin_start(oh, in_h, out_h), h1 = adaptive_bin_end(oh, in_h, out_h);
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const int64_t w0 = adaptive_bin_start(ow, in_w, out_w), w1 = adaptive_bin_end(ow, in_w, out_w);
          const T share = static_cast<T>(static_cast<Accum>(dy[p * out_plane + oh * out_w + ow]) /
                                         static_cast<Accum>((h1 - h0) * (w1 - w0)));
          for (int64_t h = h0; h < h1; ++h) {
            for (int64_t w = w0; w < w1; ++w) dxp[h * in_w + w] += share;
          }
        }
      }
    }
  });
}

#define RANVIER_INSTANTIATE_POOLING(T)                                                              \
  template void max_pool2d_forward<T>(const Pool2dGeometry&, const T*, T*, int64_t*);             \
  template void max_pool2d_backward<T>(const Pool2dGeometry&, const T*, const int64_t*, T*);      \
  template void avg_pool2d_forward<T>(const Pool2dGeometry&, bool, int64_t, const T*, T*);        \
  template void avg_pool2d_backward<T>(const Pool2dGeometry&, bool, int64_t, const T*, T*);       \
  template void adaptive_avg_pool2d_forward<T>(int64_t, int64_t, int64_t, int64_t, int64_t,       \
                                               const T*, T*);                                     \
  template void adaptive_avg_pool2d_backward<T>(int64_t, int64_t, int64_t, int64_t, int64_t,      \
                                                const T*, T*);

RANVIER_INSTANTIATE_POOLING(float)
RANVIER_INSTANTIATE_POOLING(double)

#undef RANVIER_INSTANTIATE_POOLING

}  // namespace ranvier::cpu
