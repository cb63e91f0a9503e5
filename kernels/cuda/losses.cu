// Loss functions on the GPU, forward and backward, with PyTorch's reductions. The per-element
// terms and gradients are loss_math.h's, the code the CPU runs.
//
// 'none' writes each element's loss in a grid-stride loop. 'mean' and 'sum' use the
// deterministic two-pass reduction of reduce.cuh (partial sums in double per block, then one
// block adds them in a fixed tree): the same bits every run, no floating-point atomics.
// Cross-entropy runs one thread per row (the row's max and log-sum-exp loop over classes).
#include <climits>

#include "check.cuh"
#include "reduce.cuh"
#include "ranvier/loss_math.h"
#include "ranvier/losses.h"

namespace ranvier::cuda {

namespace {

using Accum = LossAccum;

// ---- functors: one element's loss (Accum) ------------------------------------------------

template <typename T>
struct MseTerm {
  const T* pred;
  const T* target;
  __device__ Accum operator()(int64_t i) const { return mse_term(pred[i], target[i]); }
};

template <typename T>
struct BceTerm {
  const T* prob;
  const T* target;
  const T* weight;
  __device__ Accum operator()(int64_t i) const { return weighted_loss(weight, i, bce_term(prob[i], target[i])); }
};

template <typename T>
struct BceWithLogitsTerm {
  const T* logits;
  const T* target;
  const T* weight;
  const T* pos_weight;
  int64_t classes;
  __device__ Accum operator()(int64_t i) const {
    return weighted_loss(weight, i, bce_with_logits_term(logits[i], target[i], pos_weight, i, classes));
  }
};

// Adapts an element loss to the reduction's item contract (K = 1).
template <typename Loss>
struct SumOf {
  Loss loss;
  __device__ void operator()(int64_t i, ReduceAccum* acc) const { acc[0] += loss(i); }
};

// out[0] = the sum (Sum) or the sum / n (Mean; 0 / 0 = NaN for n = 0, as PyTorch).
template <typename T>
struct WriteReduced {
  T* out;
  int64_t n;
  Reduction reduction;
  __device__ void operator()(const ReduceAccum* totals) const {
    out[0] = static_cast<T>(reduction == Reduction::Mean ? totals[0] / static_cast<Accum>(n) : totals[0]);
  }
};

template <typename T, typename Loss>
__global__ void loss_none_kernel(Loss loss, T* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = static_cast<T>(loss(i));
  }
}

template <typename T, typename Loss>
void elementwise_loss_forward(const Loss& loss, T* out, int64_t n, Reduction reduction, cudaStream_t stream,
                              const char* none_kernel, const char* partial_kernel, const char* finish_kernel) {
  if (reduction == Reduction::None) {
    if (n <= 0) return;
    launch_kernel(none_kernel, loss_none_kernel<T, Loss>, grid_for(n), kBlockSize, 0, stream, loss, out, n);
    return;
  }
  reduce_two_pass<1>(n, SumOf<Loss>{loss}, WriteReduced<T>{out, n, reduction}, stream, partial_kernel,
                     finish_kernel);
}

// ---- functors: one element's gradient, given its scale (dout[i], dout[0] / n or dout[0]) ----

template <typename T>
struct MseGrad {
  const T* pred;
  const T* target;
  __device__ T operator()(int64_t i, T scale) const { return mse_grad(pred[i], target[i], scale); }
};

template <typename T>
struct BceGrad {
  const T* prob;
  const T* target;
  const T* weight;
  __device__ T operator()(int64_t i, T scale) const {
    const Accum grad = bce_grad(prob[i], target[i]);
    return static_cast<T>(grad * element_weight(weight, i) * static_cast<Accum>(scale));
  }
};

template <typename T>
struct BceWithLogitsGrad {
  const T* logits;
  const T* target;
  const T* weight;
  const T* pos_weight;
  int64_t classes;
  __device__ T operator()(int64_t i, T scale) const {
    const Accum grad = bce_with_logits_grad(logits[i], target[i], pos_weight, i, classes);
    return static_cast<T>(grad * element_weight(weight, i) * static_cast<Accum>(scale));
  }
};

// dinput (n); dout (n) for None, else (1) on the device.
template <typename T, typename Grad>
__global__ void loss_backward_kernel(Grad grad, const T* dout, T* dinput, int64_t n, Reduction reduction) {
  const T reduced_scale = reduction == Reduction::None ? T(0) : reduced_grad_scale(dout[0], n, reduction);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dinput[i] = grad(i, reduction == Reduction::None ? dout[i] : reduced_scale);
  }
}

template <typename T, typename Grad>
void elementwise_loss_backward(const Grad& grad, const T* dout, T* dinput, int64_t n, Reduction reduction,
                               cudaStream_t stream, const char* kernel) {
  if (n <= 0) return;
  launch_kernel(kernel, loss_backward_kernel<T, Grad>, grid_for(n), kBlockSize, 0, stream, grad, dout, dinput,
                n, reduction);
}

// ---- cross-entropy ---------------------------------------------------------------------

// logits (rows, classes), target (rows), out (rows): the weighted loss of each row, 0 if ignored.
template <typename T>
__global__ void cross_entropy_none_kernel(const T* logits, const int64_t* target, const T* class_weight, T* out,
                                          int64_t rows, int64_t classes, int64_t ignore_index) {
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = target[r];
    out[r] = t == ignore_index
                 ? T(0)
                 : static_cast<T>(cross_entropy_row(logits + r * classes, classes, t, class_weight_of(class_weight, t)));
  }
}

// Row r adds (weighted loss, weight) to (acc[0], acc[1]), nothing if ignored.
template <typename T>
struct CrossEntropyTerm {
  const T* logits;
  const int64_t* target;
  const T* class_weight;
  int64_t classes, ignore_index;
  __device__ void operator()(int64_t r, ReduceAccum* acc) const {
    const int64_t t = target[r];
    if (t == ignore_index) return;
    const Accum w = class_weight_of(class_weight, t);
    acc[0] += cross_entropy_row(logits + r * classes, classes, t, w);
    acc[1] += w;
  }
};

// out[0] = summed loss (Sum) or summed loss / summed weight (Mean; NaN if all ignored).
template <typename T>
struct WriteCrossEntropy {
  T* out;
  Reduction reduction;
  __device__ void operator()(const ReduceAccum* totals) const {
    out[0] = static_cast<T>(reduction == Reduction::Mean ? totals[0] / totals[1] : totals[0]);
  }
};

// Row r adds its class weight (the divisor of the mean), nothing if ignored.
template <typename T>
struct CrossEntropyWeight {
  const int64_t* target;
  const T* class_weight;
  int64_t ignore_index;
  __device__ void operator()(int64_t r, ReduceAccum* acc) const {
    if (target[r] != ignore_index) acc[0] += class_weight_of(class_weight, target[r]);
  }
};

struct WriteTotal {
  ReduceAccum* total;
  __device__ void operator()(const ReduceAccum* totals) const { total[0] = totals[0]; }
};

// dlogits (rows, classes); dout (rows) for None, else (1); mean_divisor (1) for Mean.
template <typename T>
__global__ void cross_entropy_backward_kernel(const T* logits, const int64_t* target, const T* class_weight,
                                              const T* dout, const ReduceAccum* mean_divisor, T* dlogits,
                                              int64_t rows, int64_t classes, int64_t ignore_index,
                                              Reduction reduction) {
  const Accum reduced_scale = reduction == Reduction::Mean  ? static_cast<Accum>(dout[0]) / mean_divisor[0]
                              : reduction == Reduction::Sum ? static_cast<Accum>(dout[0])
                                                            : Accum(0);
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const T* z = logits + r * classes;
    T* dz = dlogits + r * classes;
    const int64_t t = target[r];
    if (t == ignore_index) {
      for (int64_t c = 0; c < classes; ++c) dz[c] = T(0);
      continue;
    }
    const Accum g = class_weight_of(class_weight, t) *
                    (reduction == Reduction::None ? static_cast<Accum>(dout[r]) : reduced_scale);
    const RowLogSumExp<T> lse = row_log_sum_exp(z, classes);
    for (int64_t c = 0; c < classes; ++c) dz[c] = cross_entropy_grad(z[c], lse, c == t, g);
  }
}

// ---- input checks ----------------------------------------------------------------------

// *first = min(*first, i) over the offending i (an integer atomic: the result is exact).
__global__ void invalid_class_target_kernel(const int64_t* target, int64_t rows, int64_t classes,
                                            int64_t ignore_index, unsigned long long* first) {
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = target[r];
    if (t != ignore_index && (t < 0 || t >= classes)) atomicMin(first, static_cast<unsigned long long>(r));
  }
}

template <typename T>
__global__ void invalid_probability_kernel(const T* prob, int64_t n, unsigned long long* first) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (!(prob[i] >= T(0) && prob[i] <= T(1))) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// mse: pred, target, (dout, dpred) (n); out (n) or (1)

template <typename T>
void mse_loss_forward(const T* pred, const T* target, T* out, int64_t n, Reduction reduction, StreamHandle stream) {
  elementwise_loss_forward(MseTerm<T>{pred, target}, out, n, reduction, as_stream(stream), "mse_loss_none_kernel",
                           "mse_loss_partial_sums_kernel", "mse_loss_finish_kernel");
}

template <typename T>
void mse_loss_backward(const T* pred, const T* target, const T* dout, T* dpred, int64_t n, Reduction reduction,
                       StreamHandle stream) {
  elementwise_loss_backward(MseGrad<T>{pred, target}, dout, dpred, n, reduction, as_stream(stream),
                            "mse_loss_backward_kernel");
}

// ---------------------------------------------------------------------------------------
// bce on probabilities: prob, target, weight (may be null), (dout, dprob) (n); out (n) or (1)

template <typename T>
void bce_loss_forward(const T* prob, const T* target, const T* weight, T* out, int64_t n, Reduction reduction,
                      StreamHandle stream) {
  elementwise_loss_forward(BceTerm<T>{prob, target, weight}, out, n, reduction, as_stream(stream),
                           "bce_loss_none_kernel", "bce_loss_partial_sums_kernel", "bce_loss_finish_kernel");
}

template <typename T>
void bce_loss_backward(const T* prob, const T* target, const T* weight, const T* dout, T* dprob, int64_t n,
                       Reduction reduction, StreamHandle stream) {
  elementwise_loss_backward(BceGrad<T>{prob, target, weight}, dout, dprob, n, reduction, as_stream(stream),
                            "bce_loss_backward_kernel");
}

// ---------------------------------------------------------------------------------------
// bce on logits: logits, target, weight (may be null), (dout, dlogits) (n);
// pos_weight (classes) (may be null); out (n) or (1)

template <typename T>
void bce_with_logits_forward(const T* logits, const T* target, const T* weight, const T* pos_weight, T* out,
                             int64_t n, int64_t classes, Reduction reduction, StreamHandle stream) {
  elementwise_loss_forward(BceWithLogitsTerm<T>{logits, target, weight, pos_weight, classes}, out, n, reduction,
                           as_stream(stream), "bce_with_logits_none_kernel", "bce_with_logits_partial_sums_kernel",
                           "bce_with_logits_finish_kernel");
}

template <typename T>
void bce_with_logits_backward(const T* logits, const T* target, const T* weight, const T* pos_weight,
                              const T* dout, T* dlogits, int64_t n, int64_t classes, Reduction reduction,
                              StreamHandle stream) {
  elementwise_loss_backward(BceWithLogitsGrad<T>{logits, target, weight, pos_weight, classes}, dout, dlogits, n,
                            reduction, as_stream(stream), "bce_with_logits_backward_kernel");
}

// ---------------------------------------------------------------------------------------
// cross-entropy: logits, dlogits (rows, classes); target (rows) int64; class_weight (classes)
// (may be null); out (rows) or (1); dout (rows) or (1)

template <typename T>
void cross_entropy_forward(const T* logits, const int64_t* target, const T* class_weight, T* out, int64_t rows,
                           int64_t classes, int64_t ignore_index, Reduction reduction, StreamHandle stream) {
  const cudaStream_t s = as_stream(stream);
  if (reduction == Reduction::None) {
    if (rows <= 0) return;
    launch_kernel("cross_entropy_none_kernel", cross_entropy_none_kernel<T>, grid_for(rows), kBlockSize, 0, s,
                  logits, target, class_weight, out, rows, classes, ignore_index);
    return;
  }
  reduce_two_pass<2>(rows, CrossEntropyTerm<T>{logits, target, class_weight, classes, ignore_index},
                     WriteCrossEntropy<T>{out, reduction}, s, "cross_entropy_partial_sums_kernel",
                     "cross_entropy_finish_kernel");
}

template <typename T>
void cross_entropy_backward(const T* logits, const int64_t* target, const T* class_weight, const T* dout,
                            T* dlogits, int64_t rows, int64_t classes, int64_t ignore_index, Reduction reduction,
                            StreamHandle stream) {
  if (rows <= 0) return;
  const cudaStream_t s = as_stream(stream);
  DeviceScratch mean_divisor(sizeof(ReduceAccum), s, "cross_entropy_backward (scratch)");
  if (reduction == Reduction::Mean) {
    reduce_two_pass<1>(rows, CrossEntropyWeight<T>{target, class_weight, ignore_index},
                       WriteTotal{mean_divisor.as<ReduceAccum>()}, s, "cross_entropy_weight_partial_sums_kernel",
                       "cross_entropy_weight_finish_kernel");
  }
  launch_kernel("cross_entropy_backward_kernel", cross_entropy_backward_kernel<T>, grid_for(rows), kBlockSize,
                0, s, logits, target, class_weight, dout, mean_divisor.as<ReduceAccum>(), dlogits, rows,
                classes, ignore_index, reduction);
}

// ---------------------------------------------------------------------------------------
// input checks for the bindings

int64_t first_invalid_class_target(const int64_t* target, int64_t rows, int64_t classes, int64_t ignore_index,
                                   int64_t* bad_value, StreamHandle stream) {
  if (rows <= 0) return -1;
  const cudaStream_t s = as_stream(stream);
  return first_flagged(target, bad_value, s, "invalid_class_target_kernel", [&](unsigned long long* first) {
    launch_kernel("invalid_class_target_kernel", invalid_class_target_kernel, grid_for(rows), kBlockSize, 0,
                  s, target, rows, classes, ignore_index, first);
  });
}

template <typename T>
int64_t first_invalid_probability(const T* prob, int64_t n, double* bad_value, StreamHandle stream) {
  if (n <= 0) return -1;
  const cudaStream_t s = as_stream(stream);
  T value = T(0);
  const int64_t found = first_flagged(prob, &value, s, "invalid_probability_kernel", [&](unsigned long long* first) {
    launch_kernel("invalid_probability_kernel", invalid_probability_kernel<T>, grid_for(n), kBlockSize, 0, s,
                  prob, n, first);
  });
  *bad_value = static_cast<double>(value);
  return found;
}

// ---------------------------------------------------------------------------------------

#define RANVIER_INSTANTIATE_LOSSES(T)                                                                        \
  template void mse_loss_forward<T>(const T*, const T*, T*, int64_t, Reduction, StreamHandle);              \
  template void mse_loss_backward<T>(const T*, const T*, const T*, T*, int64_t, Reduction, StreamHandle);   \
  template void bce_loss_forward<T>(const T*, const T*, const T*, T*, int64_t, Reduction, StreamHandle);    \
  template void bce_loss_backward<T>(const T*, const T*, const T*, const T*, T*, int64_t, Reduction,        \
                                     StreamHandle);                                                         \
  template void bce_with_logits_forward<T>(const T*, const T*, const T*, const T*, T*, int64_t, int64_t,     \
                                           Reduction, StreamHandle);                                        \
  template void bce_with_logits_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, int64_t,   \
                                            int64_t, Reduction, StreamHandle);                              \
  template void cross_entropy_forward<T>(const T*, const int64_t*, const T*, T*, int64_t, int64_t, int64_t, \
                                         Reduction, StreamHandle);                                          \
  template void cross_entropy_backward<T>(const T*, const int64_t*, const T*, const T*, T*, int64_t, int64_t, \
                                          int64_t, Reduction, StreamHandle);                                \
  template int64_t first_invalid_probability<T>(const T*, int64_t, double*, StreamHandle);

RANVIER_INSTANTIATE_LOSSES(float)
RANVIER_INSTANTIATE_LOSSES(double)

#undef RANVIER_INSTANTIATE_LOSSES

}  // namespace ranvier::cuda
