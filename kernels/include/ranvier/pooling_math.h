// Pooling window arithmetic shared by the CPU (pooling.cpp) and CUDA (pooling.cu) kernels, so
// that both visit the same input positions, pick the same maximum and add and divide in the
// same order: the GPU gives the CPU's bits.
//
// Along one axis, output position o of max/avg pooling covers the input positions
// o * stride - pad + i * dilation, i < kernel; those outside [0, size) are padding. The
// backward "gather" helpers answer the inverse question the CUDA kernels ask: which output
// positions may cover input position `pos` (each thread then sums over those outputs in
// ascending order, the order in which the CPU's scatter adds them).
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "ranvier/common.h"
#include "ranvier/sum_math.h"

namespace ranvier {

// The input positions of one max-pooling window along one axis: first, first + step, ...
// below end; all inside the input.
struct PoolWindowAxis {
  int64_t first;  // first position inside the input
  int64_t end;    // one past the last position to visit (positions first, first + step, ...)
  int64_t step;
};

RANVIER_HD PoolWindowAxis pool_window_axis(int64_t out_pos, int64_t stride, int64_t pad, int64_t kernel,
                                           int64_t dilation, int64_t size) {
  const int64_t start = out_pos * stride - pad;
  int64_t first = start;
  if (first < 0) first += ((-first + dilation - 1) / dilation) * dilation;  // skip padding
  const int64_t last_plus_one = start + (kernel - 1) * dilation + 1;
  return {first, last_plus_one < size ? last_plus_one : size, dilation};
}

// One element of a max-pooling window, as PyTorch: a window's maximum starts from -inf at
// the window's first real element; a strictly larger value or a NaN takes over, so the first
// maximum wins ties and NaN propagates. The rule of the CPU and CUDA kernels alike.
// Selects rather than branches, as masks on the bits: on real data which element wins is
// unpredictable, a mispredicted branch costs more than the window on the CPU, and GCC 12
// turned `? :` selects on these conditions into branches (with `||` and with `|` alike).
template <typename T>
RANVIER_HD void take_if_larger(T value, int64_t index, T& best, int64_t& best_index) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const bool takes_over = (value > best) | (value != value);
  const Bits mask = Bits{0} - static_cast<Bits>(takes_over);
  Bits value_bits, best_bits;
  memcpy(&value_bits, &value, sizeof(T));
  memcpy(&best_bits, &best, sizeof(T));
  best_bits = (value_bits & mask) | (best_bits & ~mask);
  memcpy(&best, &best_bits, sizeof(T));
  const uint64_t index_mask = uint64_t{0} - static_cast<uint64_t>(takes_over);
  best_index = static_cast<int64_t>((static_cast<uint64_t>(index) & index_mask) |
                                    (static_cast<uint64_t>(best_index) & ~index_mask));
}

// Average pooling's window along one axis (dilation 1), as PyTorch computes it: `padded` is
// the window's length clipped to the padded input (what count_include_pad divides by);
// [begin, end) is the part inside the input.
struct AvgPoolWindowAxis {
  int64_t begin, end, padded;
};

RANVIER_HD AvgPoolWindowAxis avg_pool_window_axis(int64_t out_pos, int64_t stride, int64_t pad,
                                                  int64_t kernel, int64_t size) {
  const int64_t start = out_pos * stride - pad;
  const int64_t padded_end = start + kernel < size + pad ? start + kernel : size + pad;
  return {start > 0 ? start : 0, padded_end < size ? padded_end : size, padded_end - start};
}

// The divisor of one average-pooling window (in double, the kernels' accumulator type).
RANVIER_HD double avg_pool_divisor(const AvgPoolWindowAxis& rows, const AvgPoolWindowAxis& cols,
                                   bool count_include_pad, int64_t divisor_override) {
  if (divisor_override > 0) return static_cast<double>(divisor_override);
  if (count_include_pad) return static_cast<double>(rows.padded * cols.padded);
  return static_cast<double>((rows.end - rows.begin) * (cols.end - cols.begin));
}

// Adaptive bins: PyTorch's start = floor(i * in / out), end = ceil((i + 1) * in / out).
RANVIER_HD int64_t adaptive_bin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
RANVIER_HD int64_t adaptive_bin_end(int64_t i, int64_t in, int64_t out) {
  return ((i + 1) * in + out - 1) / out;
}

// The mean of one adaptive bin, rows [h0, h1) x columns [w0, w1) of a plane in_w wide, in
// double. Bins can be whole planes (global average pooling), so runs of consecutive elements
// are summed with sum_math.h's partial sums: the whole bin where it spans whole rows, else
// each row's part, the rows added in order.
template <typename T>
RANVIER_HD double adaptive_bin_mean(const T* plane, int64_t in_w, int64_t h0, int64_t h1, int64_t w0, int64_t w1) {
  double sum = 0.0;
  if (w1 - w0 == in_w) {
    sum = sum_in_double(plane + h0 * in_w, (h1 - h0) * in_w);
  } else {
    for (int64_t h = h0; h < h1; ++h) sum += sum_in_double(plane + h * in_w + w0, w1 - w0);
  }
  return sum / static_cast<double>((h1 - h0) * (w1 - w0));
}

// Floor division for a possibly negative numerator (denominator > 0).
RANVIER_HD int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The output positions [first, end) along one axis whose window (kernel positions spaced by
// `dilation`, dilation 1 for average pooling) spans input position `pos`:
// o * stride - pad <= pos <= o * stride - pad + (kernel - 1) * dilation, clipped to [0, out).
// (With dilation > 1 a window spanning pos may still skip it; max pooling's indices decide.)
struct OutputRange {
  int64_t first, end;
};

RANVIER_HD OutputRange outputs_spanning(int64_t pos, int64_t stride, int64_t pad, int64_t kernel,
                                        int64_t dilation, int64_t out) {
  const int64_t reach = (kernel - 1) * dilation;
  // o >= (pos + pad - reach) / stride, rounded up; o <= (pos + pad) / stride, rounded down.
  int64_t first = -floor_div(-(pos + pad - reach), stride);
  int64_t last = floor_div(pos + pad, stride);
  if (first < 0) first = 0;
  if (last > out - 1) last = out - 1;
  return {first, last + 1 > first ? last + 1 : first};
}

// The adaptive bins [first, end) along one axis that contain input position `pos`: the
// first bin whose end passes pos is floor(pos * out / in); bins then continue while their
// start is <= pos.
RANVIER_HD OutputRange adaptive_bins_containing(int64_t pos, int64_t in, int64_t out) {
  const int64_t first = (pos * out) / in;
  int64_t end = first;
  while (end < out && adaptive_bin_start(end, in, out) <= pos) ++end;
  return {first, end};
}

}  // namespace ranvier
