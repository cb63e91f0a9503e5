// softmax and log_softmax along one axis on the CPU, forward and backward.
//
// Arrays are contiguous and viewed as (outer, dim, inner). A "line" is the dim values that
// one softmax normalises: line (o, i) holds x[o, :, i], elements `inner` apart. The work is
// split over the outer * inner lines. With inner == 1 each line is a contiguous row; with
// inner > 1 the lines of one outer slice are processed together, walking along inner in
// the innermost loop so that memory is read contiguously rather than with stride `inner`.
//
// Sums are accumulated in double for float and double alike. Every pass reads what it needs
// before writing the same position, so y may be x itself (and dx may be y or dy).
#include "ranvier/softmax.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "parallel.h"
#include "ranvier/math.h"
#include "ranvier/softmax_math.h"

namespace ranvier::cpu {

namespace {

using Accum = double;

// exp costs ~20 simple operations; a line is read two or three times.
constexpr int64_t kCostPerElement = 24;

// Calls block(o, i0, i1) for the lines [begin, end) of the (outer, inner) grid, grouped into
// runs of consecutive i within one outer slice o.
template <typename Block>
void for_each_line_run(int64_t begin, int64_t end, int64_t inner, Block&& block) {
  int64_t line = begin;
  while (line < end) {
    const int64_t o = line / inner;
    const int64_t i0 = line - o * inner;
    const int64_t i1 = std::min(inner, i0 + (end - line));
    block(o, i0, i1);
    line += i1 - i0;
  }
}

// One contiguous row of length dim (the inner == 1 fast path).
template <typename T>
void softmax_row(const T* x, T* y, int64_t dim, bool log) {
  T row_max = x[0];
  for (int64_t d = 1; d < dim; ++d) row_max = max_propagating_nan(row_max, x[d]);
  Accum sum = 0;
  if (log) {
    for (int64_t d = 0; d < dim; ++d) sum += static_cast<Accum>(math_exp(x[d] - row_max));
    const Accum log_sum = std::log(sum);
    for (int64_t d = 0; d < dim; ++d) y[d] = log_softmax_value(x[d], row_max, log_sum);
  } else {
    for (int64_t d = 0; d < dim; ++d) {
      const T e = math_exp(x[d] - row_max);
      y[d] = e;
      sum += static_cast<Accum>(e);
    }
    const Accum inv_sum = Accum(1) / sum;
    for (int64_t d = 0; d < dim; ++d) y[d] = softmax_normalise(y[d], inv_sum);
  }
}

// The lines i0..i1 of outer slice `base` (pointer to element (o, 0, 0)); row_max and sum
// are scratch of at least i1 - i0 entries.
template <typename T>
void softmax_lines(const T* x, T* y, int64_t dim, int64_t inner, int64_t i0, int64_t i1, bool log,
                   T* row_max, Accum* sum) {
  const int64_t width = i1 - i0;
  for (int64_t k = 0; k < width; ++k) row_max[k] = x[i0 + k];
  for (int64_t d = 1; d < dim; ++d) {
    const T* xd = x + d * inner + i0;
    for (int64_t k = 0; k < width; ++k) row_max[k] = max_propagating_nan(row_max[k], xd[k]);
  }
  std::fill(sum, sum + width, Accum(0));
  if (log) {
    for (int64_t d = 0; d < dim; ++d) {
      const T* xd = x + d * inner + i0;
      for (int64_t k = 0; k < width; ++k) sum[k] += static_cast<Accum>(math_exp(xd[k] - row_max[k]));
    }
    for (int64_t k = 0; k < width; ++k) sum[k] = std::log(sum[k]);  // now log(sum exp(x - max))
    for (int64_t d = 0; d < dim; ++d) {
      const T* xd = x + d * inner + i0;
      T* yd = y + d * inner + i0;
      for (int64_t k = 0; k < width; ++k) yd[k] = log_softmax_value(xd[k], row_max[k], sum[k]);
    }
  } else {
    for (int64_t d = 0; d < dim; ++d) {
      const T* xd = x + d * inner + i0;
      T* yd = y + d * inner + i0;
      for (int64_t k = 0; k < width; ++k) {
        const T e = math_exp(xd[k] - row_max[k]);
        yd[k] = e;
        sum[k] += static_cast<Accum>(e);
      }
    }
    for (int64_t k = 0; k < width; ++k) sum[k] = Accum(1) / sum[k];  // now 1 / sum exp(x - max)
    for (int64_t d = 0; d < dim; ++d) {
      T* yd = y + d * inner + i0;
      for (int64_t k = 0; k < width; ++k) yd[k] = softmax_normalise(yd[k], sum[k]);
    }
  }
}

// Backward of one contiguous row (inner == 1).
template <typename T>
void softmax_backward_row(const T* y, const T* dy, T* dx, int64_t dim, bool log) {
  Accum dot = 0;
  for (int64_t d = 0; d < dim; ++d) dot += softmax_backward_term(y[d], dy[d], log);
  for (int64_t d = 0; d < dim; ++d) dx[d] = softmax_grad(y[d], dy[d], dot, log);
}

// Backward of lines i0..i1 of one outer slice; `dot` is scratch of at least i1 - i0 entries.
template <typename T>
void softmax_backward_lines(const T* y, const T* dy, T* dx, int64_t dim, int64_t inner, int64_t i0,
                            int64_t i1, bool log, Accum* dot) {
  const int64_t width = i1 - i0;
  std::fill(dot, dot + width, Accum(0));
  for (int64_t d = 0; d < dim; ++d) {
    const T* yd = y + d * inner + i0;
    const T* dyd = dy + d * inner + i0;
    for (int64_t k = 0; k < width; ++k) dot[k] += softmax_backward_term(yd[k], dyd[k], log);
  }
  for (int64_t d = 0; d < dim; ++d) {
    const T* yd = y + d * inner + i0;
    const T* dyd = dy + d * inner + i0;
    T* dxd = dx + d * inner + i0;
    for (int64_t k = 0; k < width; ++k) dxd[k] = softmax_grad(yd[k], dyd[k], dot[k], log);
  }
}

}  // namespace

// x, y (outer, dim, inner)
template <typename T>
void softmax_forward(const T* x, T* y, int64_t outer, int64_t dim, int64_t inner, bool log) {
  if (outer <= 0 || dim <= 0 || inner <= 0) return;
  const int64_t lines = outer * inner;
  parallel_for(lines, dim * kCostPerElement, [&](int64_t begin, int64_t end) {
    if (inner == 1) {
      for (int64_t row = begin; row < end; ++row) softmax_row(x + row * dim, y + row * dim, dim, log);
      return;
    }
    const size_t scratch = static_cast<size_t>(std::min(inner, end - begin));
    std::vector<T> row_max(scratch);
    std::vector<Accum> sum(scratch);
    for_each_line_run(begin, end, inner, [&](int64_t o, int64_t i0, int64_t i1) {
      const int64_t base = o * dim * inner;
      softmax_lines(x + base, y + base, dim, inner, i0, i1, log, row_max.data(), sum.data());
    });
  });
}

// y, dy, dx (outer, dim, inner)
template <typename T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t outer, int64_t dim, int64_t inner,
                      bool log) {
  if (outer <= 0 || dim <= 0 || inner <= 0) return;
  const int64_t lines = outer * inner;
  parallel_for(lines, dim * kCostPerElement, [&](int64_t begin, int64_t end) {
    if (inner == 1) {
      for (int64_t row = begin; row < end; ++row) {
        softmax_backward_row(y + row * dim, dy + row * dim, dx + row * dim, dim, log);
      }
      return;
    }
    std::vector<Accum> dot(static_cast<size_t>(std::min(inner, end - begin)));
    for_each_line_run(begin, end, inner, [&](int64_t o, int64_t i0, int64_t i1) {
      const int64_t base = o * dim * inner;
      softmax_backward_lines(y + base, dy + base, dx + base, dim, inner, i0, i1, log, dot.data());
    });
  });
}

template void softmax_forward<float>(const float*, float*, int64_t, int64_t, int64_t, bool);
template void softmax_forward<double>(const double*, double*, int64_t, int64_t, int64_t, bool);
template void softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t, int64_t, bool);
template void softmax_backward<double>(const double*, const double*, double*, int64_t, int64_t, int64_t,
                                       bool);

}  // namespace ranvier::cpu
