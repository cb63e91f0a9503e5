// Loss functions on the CPU, forward and backward, with PyTorch's reductions.
//
// Reductions are deterministic: the elements are cut into blocks of a fixed size (which
// depends on the problem only, never on the number of threads), each block is summed in
// double by whichever thread gets it, and the block sums are added in block order on one
// thread. The result is therefore the same run to run and for any number of threads.
#include "ranvier/losses.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "block_reduce.h"
#include "parallel.h"
#include "ranvier/activation_math.h"
#include "ranvier/loss_math.h"
#include "ranvier/math.h"
#include "ranvier/vector_math.h"

namespace ranvier::cpu {

namespace {

using Accum = LossAccum;

// Elements per reduction block: big enough that the block sums are few, small enough that
// a large loss still splits over all threads.
constexpr int64_t kReduceBlock = 8192;

// Sums K quantities over items [0, n): block_sums(begin, end, acc) adds the contributions of
// items [begin, end) into acc[0..K). Items are grouped in fixed blocks of `block` items.
template <int K, typename BlockSums>
std::array<Accum, K> deterministic_sums(int64_t n, int64_t block, int64_t cost_per_item,
                                        BlockSums&& block_sums) {
  std::array<Accum, K> total{};
  if (n <= 0) return total;
  block = std::max<int64_t>(block, 1);
  const int64_t blocks = (n + block - 1) / block;
  std::vector<std::array<Accum, K>> partial(static_cast<size_t>(blocks));
  parallel_for(blocks, block * cost_per_item, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      std::array<Accum, K> acc{};
      block_sums(b * block, std::min(n, (b + 1) * block), acc.data());
      partial[static_cast<size_t>(b)] = acc;
    }
  });
  for (const auto& p : partial) {
    for (int k = 0; k < K; ++k) total[k] += p[k];
  }
  return total;
}

// Writes loss(i) into out (None) or its reduction into out[0]. `loss(i)` returns Accum.
// Writes the losses into out (None) or their reduction into out[0].
// block_losses(start, length, losses) writes the losses of items [start, start + length),
// length <= kVectorBlock, into losses[0..length) (a block at a time, so that a loss can run
// its transcendental functions on the vector math).
template <typename T, typename BlockLosses>
void reduce_elementwise_loss(T* out, int64_t n, Reduction reduction, int64_t cost,
                             BlockLosses&& block_losses) {
  // Calls use(start, length, losses) for the blocks of [begin, end).
  const auto for_each_block = [&](int64_t begin, int64_t end, auto&& use) {
    Accum losses[kVectorBlock];
    for (int64_t start = begin; start < end; start += kVectorBlock) {
      const int64_t length = std::min(kVectorBlock, end - start);
      block_losses(start, length, losses);
      use(start, length, losses);
    }
  };
  if (reduction == Reduction::None) {
    parallel_for(n, cost, [&](int64_t begin, int64_t end) {
      for_each_block(begin, end, [&](int64_t start, int64_t length, const Accum* losses) {
        for (int64_t k = 0; k < length; ++k) out[start + k] = static_cast<T>(losses[k]);
      });
    });
    return;
  }
  const auto sums = deterministic_sums<1>(n, kReduceBlock, cost, [&](int64_t begin, int64_t end, Accum* acc) {
    Accum s = 0;
    for_each_block(begin, end, [&](int64_t, int64_t length, const Accum* losses) {
      for (int64_t k = 0; k < length; ++k) s += losses[k];
    });
    acc[0] += s;
  });
  // Mean over no elements is 0/0 = NaN, as PyTorch.
  const Accum value = reduction == Reduction::Mean ? sums[0] / static_cast<Accum>(n) : sums[0];
  out[0] = static_cast<T>(value);
}

// reduce_elementwise_loss's block_losses from a per-item loss(i) (returning Accum).
template <typename Loss>
auto each_item(Loss&& loss) {
  return [&loss](int64_t start, int64_t length, Accum* losses) {
    for (int64_t k = 0; k < length; ++k) losses[k] = loss(start + k);
  };
}

// The factor every element's gradient is multiplied by: dout[i] (None), dout[0] / n (Mean)
// or dout[0] (Sum).
template <typename T>
struct GradScale {
  const T* dout;
  Reduction reduction;
  T scalar;
  GradScale(const T* dout_, int64_t n, Reduction reduction_) : dout(dout_), reduction(reduction_) {
    scalar = reduction == Reduction::None ? T(0) : reduced_grad_scale(dout[0], n, reduction);
  }
  T operator[](int64_t i) const { return reduction == Reduction::None ? dout[i] : scalar; }
};

}  // namespace

// ---------------------------------------------------------------------------------------
// mse: pred, target, (dout, dpred) (n); out (n) or (1)

template <typename T>
void mse_loss_forward(const T* pred, const T* target, T* out, int64_t n, Reduction reduction) {
  reduce_elementwise_loss(out, n, reduction, 2, each_item([&](int64_t i) {
    return mse_term(pred[i], target[i]);
  }));
}

template <typename T>
void mse_loss_backward(const T* pred, const T* target, const T* dout, T* dpred, int64_t n,
                       Reduction reduction) {
  const GradScale<T> scale(dout, n, reduction);
  parallel_for(n, 2, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dpred[i] = mse_grad(pred[i], target[i], scale[i]);
  });
}

// ---------------------------------------------------------------------------------------
// bce on probabilities: prob, target, weight (may be null), (dout, dprob) (n); out (n) or (1)

template <typename T>
void bce_loss_forward(const T* prob, const T* target, const T* weight, T* out, int64_t n,
                      Reduction reduction) {
  // bce_term with log(p) and log1p(-p) on the vector math.
  reduce_elementwise_loss(out, n, reduction, 40, [&](int64_t start, int64_t length, Accum* losses) {
    Accum log1p_minus_p[kVectorBlock];
    for (int64_t k = 0; k < length; ++k) {
      losses[k] = static_cast<Accum>(prob[start + k]);
      log1p_minus_p[k] = -static_cast<Accum>(prob[start + k]);
    }
    vector_log(losses, losses, length);
    vector_log1p(log1p_minus_p, log1p_minus_p, length);
    for (int64_t k = 0; k < length; ++k) {
      const int64_t i = start + k;
      losses[k] = weighted_loss(weight, i, bce_term_from_logs(losses[k], log1p_minus_p[k], target[i]));
    }
  });
}

template <typename T>
void bce_loss_backward(const T* prob, const T* target, const T* weight, const T* dout, T* dprob,
                       int64_t n, Reduction reduction) {
  const GradScale<T> scale(dout, n, reduction);
  parallel_for(n, 4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const Accum grad = bce_grad(prob[i], target[i]);
      const Accum w = element_weight(weight, i);
      dprob[i] = static_cast<T>(grad * w * static_cast<Accum>(scale[i]));
    }
  });
}

// ---------------------------------------------------------------------------------------
// bce on logits: logits, target, weight (may be null), (dout, dlogits) (n);
// pos_weight (classes) (may be null), element i uses pos_weight[i % classes]; out (n) or (1)

template <typename T>
void bce_with_logits_forward(const T* logits, const T* target, const T* weight, const T* pos_weight,
                             T* out, int64_t n, int64_t classes, Reduction reduction) {
  // bce_with_logits_term with softplus(-z)'s log1p(exp(-|z|)) on the vector math.
  reduce_elementwise_loss(out, n, reduction, 40, [&](int64_t start, int64_t length, Accum* losses) {
    for (int64_t k = 0; k < length; ++k) losses[k] = -math_abs(static_cast<Accum>(logits[start + k]));
    vector_exp(losses, losses, length);
    vector_log1p(losses, losses, length);
    for (int64_t k = 0; k < length; ++k) {
      const int64_t i = start + k;
      const Accum z = static_cast<Accum>(logits[i]);
      const Accum softplus = softplus_neg_from_log1p(z, losses[k]);
      losses[k] = weighted_loss(weight, i,
                                bce_with_logits_term_from_softplus(z, static_cast<Accum>(target[i]), softplus,
                                                                   pos_weight, i, classes));
    }
  });
}

template <typename T>
void bce_with_logits_backward(const T* logits, const T* target, const T* weight, const T* pos_weight,
                              const T* dout, T* dlogits, int64_t n, int64_t classes,
                              Reduction reduction) {
  const GradScale<T> scale(dout, n, reduction);
  parallel_for(n, 20, [&](int64_t begin, int64_t end) {
    // The sigmoids in double, a block at a time on the vector math.
    Accum sigmoid[kVectorBlock] = {};
    for (int64_t start = begin; start < end; start += kVectorBlock) {
      const int64_t length = std::min(kVectorBlock, end - start);
      for (int64_t k = 0; k < length; ++k) sigmoid[k] = static_cast<Accum>(logits[start + k]);
      vector_sigmoid(sigmoid, sigmoid, length);
      for (int64_t k = 0; k < length; ++k) {
        const int64_t i = start + k;
        const Accum grad = bce_with_logits_grad_from_sigmoid(sigmoid[k], target[i], pos_weight, i, classes);
        const Accum w = element_weight(weight, i);
        dlogits[i] = static_cast<T>(grad * w * static_cast<Accum>(scale[i]));
      }
    }
  });
}

// ---------------------------------------------------------------------------------------
// cross-entropy: logits, dlogits (rows, classes); target (rows) int64; class_weight (classes)
// (may be null); out (rows) or (1); dout (rows) or (1)

namespace {

// row_log_sum_exp (loss_math.h) with the exps on the vector math, a block at a time.
template <typename T>
RowLogSumExp<T> vector_row_log_sum_exp(const T* z, int64_t classes) {
  const T row_max = vector_max(z, classes);
  Accum sum = 0;
  T shifted[kVectorBlock];
  for (int64_t start = 0; start < classes; start += kVectorBlock) {
    const int64_t length = std::min(kVectorBlock, classes - start);
    for (int64_t k = 0; k < length; ++k) shifted[k] = z[start + k] - row_max;
    vector_exp(shifted, shifted, length);
    sum += sum_in_double(shifted, length);
  }
  return {row_max, math_log(sum)};
}

// cross_entropy_row on the vector math.
template <typename T>
Accum vector_cross_entropy_row(const T* z, int64_t classes, int64_t t, Accum w) {
  return cross_entropy_row_from(z, vector_row_log_sum_exp(z, classes), t, w);
}

// Sum of the weights of the rows that are not ignored: the divisor of the mean.
template <typename T>
Accum cross_entropy_mean_divisor(const int64_t* target, const T* class_weight, int64_t rows,
                                 int64_t ignore_index) {
  const auto sums = deterministic_sums<1>(rows, kReduceBlock, 1, [&](int64_t begin, int64_t end, Accum* acc) {
    Accum s = 0;
    for (int64_t r = begin; r < end; ++r) {
      if (target[r] != ignore_index) s += class_weight_of(class_weight, target[r]);
    }
    acc[0] += s;
  });
  return sums[0];
}

}  // namespace

template <typename T>
void cross_entropy_forward(const T* logits, const int64_t* target, const T* class_weight, T* out,
                           int64_t rows, int64_t classes, int64_t ignore_index, Reduction reduction) {
  const int64_t cost = classes * 24;
  if (reduction == Reduction::None) {
    parallel_for(rows, cost, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t t = target[r];
        out[r] = t == ignore_index ? T(0)
                                   : static_cast<T>(vector_cross_entropy_row(logits + r * classes, classes, t,
                                                                      class_weight_of(class_weight, t)));
      }
    });
    return;
  }
  // A block holds about kReduceBlock logits; its size depends on `classes` only.
  const int64_t rows_per_block = std::max<int64_t>(1, kReduceBlock / std::max<int64_t>(classes, 1));
  // sums[0]: the summed weighted losses; sums[1]: the summed weights of non-ignored rows.
  const auto sums = deterministic_sums<2>(rows, rows_per_block, cost, [&](int64_t begin, int64_t end, Accum* acc) {
    Accum loss = 0, weight = 0;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t t = target[r];
      if (t == ignore_index) continue;
      const Accum w = class_weight_of(class_weight, t);
      loss += vector_cross_entropy_row(logits + r * classes, classes, t, w);
      weight += w;
    }
    acc[0] += loss;
    acc[1] += weight;
  });
  // All rows ignored (or no rows): 0 / 0 = NaN, as PyTorch.
  out[0] = static_cast<T>(reduction == Reduction::Mean ? sums[0] / sums[1] : sums[0]);
}

template <typename T>
void cross_entropy_backward(const T* logits, const int64_t* target, const T* class_weight,
                            const T* dout, T* dlogits, int64_t rows, int64_t classes,
                            int64_t ignore_index, Reduction reduction) {
  Accum reduced_scale = 0;
  if (reduction == Reduction::Mean) {
    reduced_scale = static_cast<Accum>(dout[0]) /
                    cross_entropy_mean_divisor(target, class_weight, rows, ignore_index);
  } else if (reduction == Reduction::Sum) {
    reduced_scale = static_cast<Accum>(dout[0]);
  }
  parallel_for(rows, classes * 24, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* z = logits + r * classes;
      T* dz = dlogits + r * classes;
      const int64_t t = target[r];
      if (t == ignore_index) {
        std::fill(dz, dz + classes, T(0));
        continue;
      }
      const Accum g = class_weight_of(class_weight, t) *
                      (reduction == Reduction::None ? static_cast<Accum>(dout[r]) : reduced_scale);
      const RowLogSumExp<T> lse = vector_row_log_sum_exp(z, classes);
      // cross_entropy_grad with softmax(z) in double a block at a time on the vector math.
      Accum softmax[kVectorBlock];
      for (int64_t start = 0; start < classes; start += kVectorBlock) {
        const int64_t length = std::min(kVectorBlock, classes - start);
        for (int64_t k = 0; k < length; ++k) softmax[k] = cross_entropy_log_softmax(z[start + k], lse);
        vector_exp(softmax, softmax, length);
        for (int64_t k = 0; k < length; ++k) {
          dz[start + k] = cross_entropy_grad_from_softmax<T>(softmax[k], start + k == t, g);
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------

#define RANVIER_INSTANTIATE_LOSSES(T)                                                              \
  template void mse_loss_forward<T>(const T*, const T*, T*, int64_t, Reduction);                  \
  template void mse_loss_backward<T>(const T*, const T*, const T*, T*, int64_t, Reduction);       \
  template void bce_loss_forward<T>(const T*, const T*, const T*, T*, int64_t, Reduction);        \
  template void bce_loss_backward<T>(const T*, const T*, const T*, const T*, T*, int64_t,         \
                                     Reduction);                                                  \
  template void bce_with_logits_forward<T>(const T*, const T*, const T*, const T*, T*, int64_t,   \
                                           int64_t, Reduction);                                   \
  template void bce_with_logits_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, \
                                            int64_t, int64_t, Reduction);                         \
  template void cross_entropy_forward<T>(const T*, const int64_t*, const T*, T*, int64_t, int64_t, \
                                         int64_t, Reduction);                                     \
  template void cross_entropy_backward<T>(const T*, const int64_t*, const T*, const T*, T*,       \
                                          int64_t, int64_t, int64_t, Reduction);

RANVIER_INSTANTIATE_LOSSES(float)
RANVIER_INSTANTIATE_LOSSES(double)

#undef RANVIER_INSTANTIATE_LOSSES

}  // namespace ranvier::cpu
