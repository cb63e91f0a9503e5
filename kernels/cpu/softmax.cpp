// softmax and log_softmax along one axis on the CPU, forward and backward.
//
// Arrays are contiguous and viewed as (outer, dim, inner). A "line" is the dim values that
// one softmax normalises: line (o, i) holds x[o, :, i], elements `inner` apart. The work is
// split over the outer * inner lines. With inner == 1 each line is a contiguous row; with
// inner > 1 the lines of one outer slice are processed together, walking along inner in
// the innermost loop so that memory is read contiguously rather than with stride `inner`.
//
// exp runs a block at a time on the vector math (ranvier/vector_math.h). Sums are
// accumulated in double for float and double alike. Every pass reads what it needs
// before writing the same position, so y may be x itself (and dx may be y or dy).
#include "ranvier/softmax.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "block_reduce.h"
#include "parallel.h"
#include "ranvier/math.h"
#include "ranvier/softmax_math.h"
#include "ranvier/vector_math.h"

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

// out[k] = exp(x[k] - shift[k or 0]) for k < n with the vector math (out may be x); the
// shift is one value (shift_stride 0) or one per element (shift_stride 1).
template <typename T>
void exp_shifted(const T* x, const T* shift, int64_t shift_stride, T* out, int64_t n) {
  if (shift_stride == 0) {
    const T shift_value = shift[0];  // one value: a plain loop the compiler vectorises
    for (int64_t k = 0; k < n; ++k) out[k] = x[k] - shift_value;
  } else {
    for (int64_t k = 0; k < n; ++k) out[k] = x[k] - shift[k];
  }
  vector_exp(out, out, n);
}

// One contiguous row of length dim (the inner == 1 fast path).
template <typename T>
void softmax_row(const T* x, T* y, int64_t dim, bool log) {
  const T row_max = vector_max(x, dim);
  Accum sum = 0;
  if (log) {
    // y may be x: the exps go to scratch, x is still needed.
    T scratch[kVectorBlock];
    for (int64_t start = 0; start < dim; start += kVectorBlock) {
      const int64_t length = std::min(kVectorBlock, dim - start);
      exp_shifted(x + start, &row_max, 0, scratch, length);
      sum += sum_in_double(scratch, length);
    }
    const Accum log_sum = std::log(sum);
    for (int64_t d = 0; d < dim; ++d) y[d] = log_softmax_value(x[d], row_max, log_sum);
  } else {
    for (int64_t start = 0; start < dim; start += kVectorBlock) {
      const int64_t length = std::min(kVectorBlock, dim - start);
      exp_shifted(x + start, &row_max, 0, y + start, length);
      sum += sum_in_double(y + start, length);
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
    T scratch[kVectorBlock];
    for (int64_t d = 0; d < dim; ++d) {
      const T* xd = x + d * inner + i0;
      for (int64_t start = 0; start < width; start += kVectorBlock) {
        const int64_t length = std::min(kVectorBlock, width - start);
        exp_shifted(xd + start, row_max + start, 1, scratch, length);
        for (int64_t k = 0; k < length; ++k) sum[start + k] += static_cast<Accum>(scratch[k]);
      }
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
      exp_shifted(xd, row_max, 1, yd, width);
      for (int64_t k = 0; k < width; ++k) sum[k] += static_cast<Accum>(yd[k]);
    }
    for (int64_t k = 0; k < width; ++k) sum[k] = Accum(1) / sum[k];  // now 1 / sum exp(x - max)
    for (int64_t d = 0; d < dim; ++d) {
      T* yd = y + d * inner + i0;
      for (int64_t k = 0; k < width; ++k) yd[k] = softmax_normalise(yd[k], sum[k]);
    }
  }
}

// dx[k] = softmax_grad(y[k], dy[k], dot[k * dot_stride]) for k < n; log_softmax's exp(y)
// runs on the vector math a block at a time (dx may be y or dy).
template <typename T>
void softmax_grad_range(const T* y, const T* dy, T* dx, const Accum* dot, int64_t dot_stride,
                        int64_t n, bool log) {
  if (!log) {
    for (int64_t k = 0; k < n; ++k) dx[k] = softmax_grad(y[k], dy[k], dot[k * dot_stride], log);
    return;
  }
  T exp_y[kVectorBlock];
  for (int64_t start = 0; start < n; start += kVectorBlock) {
    const int64_t length = std::min(kVectorBlock, n - start);
    vector_exp(y + start, exp_y, length);
    // softmax_grad's log form: dy - exp(y) * sum(dy)
    for (int64_t k = 0; k < length; ++k) {
      dx[start + k] = dy[start + k] - exp_y[k] * static_cast<T>(dot[(start + k) * dot_stride]);
    }
  }
}

// Backward of one contiguous row (inner == 1).
template <typename T>
void softmax_backward_row(const T* y, const T* dy, T* dx, int64_t dim, bool log) {
  Accum dot = 0;
  for (int64_t d = 0; d < dim; ++d) dot += softmax_backward_term(y[d], dy[d], log);
  softmax_grad_range(y, dy, dx, &dot, 0, dim, log);
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
    const int64_t offset = d * inner + i0;
    softmax_grad_range(y + offset, dy + offset, dx + offset, dot, 1, width, log);
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
