// Batch normalisation on the CPU, forward (training and evaluation) and backward.
//
// x is (N, C, L). The work is split over blocks of channels; a thread walks its block row by
// row (n, then c, then l), so that memory is read in order both for (N, C) inputs (L = 1,
// the channels of one sample are adjacent) and for images (L large). Per-channel sums are
// kept in double. The variance is computed in a second pass around the mean (no
// cancellation of E[x^2] - E[x]^2).
#include "ranvier/batch_norm.h"

#include <cmath>
#include <vector>

#include "block_reduce.h"
#include "parallel.h"

namespace ranvier::cpu {

namespace {

using Accum = double;

// Calls visit(c, row, block_index) for every (n, c) row of x in the channel block [c0, c1):
// row points at the L values x[n, c, :].
template <typename T, typename Visit>
void for_each_row(const T* x, int64_t N, int64_t C, int64_t L, int64_t c0, int64_t c1, Visit&& visit) {
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = c0; c < c1; ++c) visit(c, x + (n * C + c) * L, c - c0);
  }
}

// y[n, c, :] = (x[n, c, :] - mean[c]) * invstd[c] * weight[c] + bias[c] for the block.
template <typename T>
void normalise_block(const T* x, const T* weight, const T* bias, const T* mean, const T* invstd,
                     T* y, int64_t N, int64_t C, int64_t L, int64_t c0, int64_t c1) {
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = c0; c < c1; ++c) {
      const Accum scale = static_cast<Accum>(invstd[c]) * (weight ? static_cast<Accum>(weight[c]) : 1.0);
      const Accum shift = (bias ? static_cast<Accum>(bias[c]) : 0.0) - static_cast<Accum>(mean[c]) * scale;
      const T* row = x + (n * C + c) * L;
      T* out = y + (n * C + c) * L;
      for (int64_t l = 0; l < L; ++l) out[l] = static_cast<T>(static_cast<Accum>(row[l]) * scale + shift);
    }
  }
}

}  // namespace

// x (N, C, L) -> y (N, C, L), save_mean, save_invstd (C); running stats (C) updated in place
template <typename T>
void batch_norm_forward_training(const T* x, const T* weight, const T* bias, T* y, T* save_mean,
                                 T* save_invstd, T* running_mean, T* running_var, int64_t N,
                                 int64_t C, int64_t L, double momentum, double eps) {
  const int64_t count = N * L;
  parallel_for(C, 4 * count, [&](int64_t c0, int64_t c1) {
    std::vector<Accum> sum(static_cast<size_t>(c1 - c0), 0.0);
    for_each_row(x, N, C, L, c0, c1, [&](int64_t, const T* row, int64_t k) {
      sum[static_cast<size_t>(k)] += sum_in_double(row, L);
    });
    std::vector<Accum> mean(sum.size());
    for (size_t k = 0; k < sum.size(); ++k) mean[k] = sum[k] / static_cast<Accum>(count);
    std::vector<Accum> squares(sum.size(), 0.0);
    for_each_row(x, N, C, L, c0, c1, [&](int64_t, const T* row, int64_t k) {
      const Accum m = mean[static_cast<size_t>(k)];
      squares[static_cast<size_t>(k)] += sum_in_double_of(L, [&](int64_t l) {
        const Accum d = static_cast<Accum>(row[l]) - m;
        return d * d;
      });
    });
    for (int64_t c = c0; c < c1; ++c) {
      const size_t k = static_cast<size_t>(c - c0);
      const Accum biased_var = squares[k] / static_cast<Accum>(count);
      save_mean[c] = static_cast<T>(mean[k]);
      save_invstd[c] = static_cast<T>(1.0 / std::sqrt(biased_var + eps));
      if (running_mean != nullptr) {
        running_mean[c] = static_cast<T>((1.0 - momentum) * static_cast<Accum>(running_mean[c]) +
                                         momentum * mean[k]);
      }
      if (running_var != nullptr) {
        const Accum unbiased_var = squares[k] / static_cast<Accum>(count - 1);
        running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<Accum>(running_var[c]) +
                                        momentum * unbiased_var);
      }
    }
    normalise_block(x, weight, bias, save_mean, save_invstd, y, N, C, L, c0, c1);
  });
}

// x (N, C, L), running stats (C) -> y (N, C, L), save_mean, save_invstd (C)
template <typename T>
void batch_norm_forward_eval(const T* x, const T* weight, const T* bias, const T* running_mean,
                             const T* running_var, T* y, T* save_mean, T* save_invstd, int64_t N,
                             int64_t C, int64_t L, double eps) {
  parallel_for(C, N * L, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      save_mean[c] = running_mean[c];
      save_invstd[c] = static_cast<T>(1.0 / std::sqrt(static_cast<Accum>(running_var[c]) + eps));
    }
    normalise_block(x, weight, bias, save_mean, save_invstd, y, N, C, L, c0, c1);
  });
}

// dy, x (N, C, L), save_mean, save_invstd, weight (C) -> dx (N, C, L), dweight, dbias (C)
template <typename T>
void batch_norm_backward(const T* dy, const T* x, const T* save_mean, const T* save_invstd,
                         const T* weight, T* dx, T* dweight, T* dbias, int64_t N, int64_t C,
                         int64_t L, bool training) {
  const int64_t count = N * L;
  parallel_for(C, 4 * count, [&](int64_t c0, int64_t c1) {
    const size_t width = static_cast<size_t>(c1 - c0);
    std::vector<Accum> sum_dy(width, 0.0), sum_dy_xmu(width, 0.0);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t c = c0; c < c1; ++c) {
        const size_t k = static_cast<size_t>(c - c0);
        const Accum m = static_cast<Accum>(save_mean[c]);
        const T* xr = x + (n * C + c) * L;
        const T* dyr = dy + (n * C + c) * L;
        sum_dy[k] += sum_in_double(dyr, L);
        sum_dy_xmu[k] += sum_in_double_of(L, [&](int64_t l) {
          return static_cast<Accum>(dyr[l]) * (static_cast<Accum>(xr[l]) - m);
        });
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      const size_t k = static_cast<size_t>(c - c0);
      dbias[c] = static_cast<T>(sum_dy[k]);
      dweight[c] = static_cast<T>(sum_dy_xmu[k] * static_cast<Accum>(save_invstd[c]));
    }
    if (dx == nullptr) return;
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t c = c0; c < c1; ++c) {
        const size_t k = static_cast<size_t>(c - c0);
        const Accum invstd = static_cast<Accum>(save_invstd[c]);
        const Accum scale = invstd * (weight ? static_cast<Accum>(weight[c]) : 1.0);
        const T* dyr = dy + (n * C + c) * L;
        T* dxr = dx + (n * C + c) * L;
        if (!training) {
          for (int64_t l = 0; l < L; ++l) dxr[l] = static_cast<T>(static_cast<Accum>(dyr[l]) * scale);
          continue;
        }
        // dx = scale * (dy - mean(dy) - (x - mean) * invstd^2 * mean(dy * (x - mean)))
        const Accum m = static_cast<Accum>(save_mean[c]);
        const Accum mean_dy = sum_dy[k] / static_cast<Accum>(count);
        const Accum projection = sum_dy_xmu[k] / static_cast<Accum>(count) * invstd * invstd;
        const T* xr = x + (n * C + c) * L;
        for (int64_t l = 0; l < L; ++l) {
          const Accum xmu = static_cast<Accum>(xr[l]) - m;
          dxr[l] = static_cast<T>(scale * (static_cast<Accum>(dyr[l]) - mean_dy - xmu * projection));
        }
      }
    }
  });
}

#define RANVIER_INSTANTIATE_BATCH_NORM(T)                                                            \
  template void batch_norm_forward_training<T>(const T*, const T*, const T*, T*, T*, T*, T*, T*,  \
                                               int64_t, int64_t, int64_t, double, double);        \
  template void batch_norm_forward_eval<T>(const T*, const T*, const T*, const T*, const T*, T*,  \
                                           T*, T*, int64_t, int64_t, int64_t, double);            \
  template void batch_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*,  \
                                       T*, int64_t, int64_t, int64_t, bool);

RANVIER_INSTANTIATE_BATCH_NORM(float)
RANVIER_INSTANTIATE_BATCH_NORM(double)

#undef RANVIER_INSTANTIATE_BATCH_NORM

}  // namespace ranvier::cpu
