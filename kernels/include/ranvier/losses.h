// Loss functions, forward and backward, with PyTorch's reductions.
//
// Forward: `out` holds n values for Reduction::None, else one value.
// Backward: `dout` holds n values for Reduction::None, else one value (the gradient of
// the reduced loss); the result is the gradient with respect to the prediction.
// Mean divides by n (by the summed target weights for weighted cross-entropy, as PyTorch).
#pragma once
#include "ranvier/common.h"

namespace ranvier::cpu {

// Mean squared error: (pred - target)^2 over n elements.
template <typename T>
void mse_loss_forward(const T* pred, const T* target, T* out, int64_t n, Reduction reduction);
template <typename T>
void mse_loss_backward(const T* pred, const T* target, const T* dout, T* dpred, int64_t n,
                       Reduction reduction);

// Binary cross-entropy on probabilities p in [0, 1]:
//   -w * (t * log(p) + (1 - t) * log(1 - p)), each log clamped at -100 as PyTorch does.
// weight (n) may be null.
template <typename T>
void bce_loss_forward(const T* prob, const T* target, const T* weight, T* out, int64_t n,
                      Reduction reduction);
template <typename T>
void bce_loss_backward(const T* prob, const T* target, const T* weight, const T* dout, T* dprob,
                       int64_t n, Reduction reduction);

// Binary cross-entropy on logits z, stable for large |z|:
//   -w * (pw * t * log(sigmoid(z)) + (1 - t) * log(1 - sigmoid(z)))
// weight (n) may be null; pos_weight (classes) may be null and applies to element i as
// pos_weight[i % classes] (it broadcasts over the last axis, as in PyTorch).
template <typename T>
void bce_with_logits_forward(const T* logits, const T* target, const T* weight,
                             const T* pos_weight, T* out, int64_t n, int64_t classes,
                             Reduction reduction);
template <typename T>
void bce_with_logits_backward(const T* logits, const T* target, const T* weight,
                              const T* pos_weight, const T* dout, T* dlogits, int64_t n,
                              int64_t classes, Reduction reduction);

// Cross-entropy from logits (rows, classes) with integer targets (rows):
//   -class_weight[t] * log_softmax(logits)[t]; rows whose target equals ignore_index count
// for nothing (loss 0, excluded from the mean). class_weight (classes) may be null.
// Targets must already be checked to lie in [0, classes) or equal ignore_index.
template <typename T>
void cross_entropy_forward(const T* logits, const int64_t* target, const T* class_weight, T* out,
                           int64_t rows, int64_t classes, int64_t ignore_index,
                           Reduction reduction);
template <typename T>
void cross_entropy_backward(const T* logits, const int64_t* target, const T* class_weight,
                            const T* dout, T* dlogits, int64_t rows, int64_t classes,
                            int64_t ignore_index, Reduction reduction);

}  // namespace ranvier::cpu

namespace ranvier::cuda {

// The CUDA twins of the above, on `stream`, with the same arguments and results. The 'mean'
// and 'sum' reductions are two fixed passes (block partial sums in double, then one block
// adding them in a fixed tree): reproducible bit for bit run to run, but not the CPU's order
// of summation, so CPU and GPU agree to rounding only.
template <typename T>
void mse_loss_forward(const T* pred, const T* target, T* out, int64_t n, Reduction reduction,
                      StreamHandle stream);
template <typename T>
void mse_loss_backward(const T* pred, const T* target, const T* dout, T* dpred, int64_t n,
                       Reduction reduction, StreamHandle stream);
template <typename T>
void bce_loss_forward(const T* prob, const T* target, const T* weight, T* out, int64_t n,
                      Reduction reduction, StreamHandle stream);
template <typename T>
void bce_loss_backward(const T* prob, const T* target, const T* weight, const T* dout, T* dprob,
                       int64_t n, Reduction reduction, StreamHandle stream);
template <typename T>
void bce_with_logits_forward(const T* logits, const T* target, const T* weight,
                             const T* pos_weight, T* out, int64_t n, int64_t classes,
                             Reduction reduction, StreamHandle stream);
template <typename T>
void bce_with_logits_backward(const T* logits, const T* target, const T* weight,
                              const T* pos_weight, const T* dout, T* dlogits, int64_t n,
                              int64_t classes, Reduction reduction, StreamHandle stream);
template <typename T>
void cross_entropy_forward(const T* logits, const int64_t* target, const T* class_weight, T* out,
                           int64_t rows, int64_t classes, int64_t ignore_index,
                           Reduction reduction, StreamHandle stream);
template <typename T>
void cross_entropy_backward(const T* logits, const int64_t* target, const T* class_weight,
                            const T* dout, T* dlogits, int64_t rows, int64_t classes,
                            int64_t ignore_index, Reduction reduction, StreamHandle stream);

// Input checks the bindings run on device arrays before the kernels above (they cannot read
// device memory themselves). Each scans on `stream`, then waits for it and returns the
// smallest offending index (-1 when all are valid), with that element's value in *bad_value.
//   targets: every target[r] must lie in [0, classes) or equal ignore_index;
//   probabilities: every prob[i] must lie in [0, 1] (NaN does not).
int64_t first_invalid_class_target(const int64_t* target, int64_t rows, int64_t classes,
                                   int64_t ignore_index, int64_t* bad_value, StreamHandle stream);
template <typename T>
int64_t first_invalid_probability(const T* prob, int64_t n, double* bad_value, StreamHandle stream);

}  // namespace ranvier::cuda
