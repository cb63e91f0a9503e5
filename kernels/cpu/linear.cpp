// The fused linear layer on the CPU: linear + bias + activation forward, and its backward
// (activation derivative, bias gradient, input and weight gradients) in as few passes over
// memory as the GEMM allows. The per-element formulas are activation_math.h's; sigmoid, tanh
// and the GELUs take their transcendental parts from the vector math, as the plain activation
// kernels do (activations.cpp; within vector_math.h's documented ulp bounds).
#include <algorithm>

#include "parallel.h"
#include "ranvier/activation_math.h"
#include "ranvier/activations.h"
#include "ranvier/matmul.h"

namespace ranvier::cpu {

namespace {

// Cheap activations cost ~1 op per element, the transcendental ones ~20 (for parallel_for).
constexpr int64_t epilogue_cost(Activation act) {
  return (act == Activation::ReLU || act == Activation::LeakyReLU) ? 2 : 20;
}

// ReLU and leaky ReLU fuse with the bias in one scalar loop (which vectorises); the others
// call activation_forward / activation_backward on each row, whose vector math is several
// times faster than the scalar libm calls of activation_math.h.
constexpr bool uses_vector_math(Activation act) {
  return act != Activation::ReLU && act != Activation::LeakyReLU;
}

// The output pass after the GEMM (which wrote x @ w^T into `z`, rows x out): z += bias, and
// y = f(z). z and y are the same buffer unless the caller keeps the pre-activation. One pass
// over rows that the GEMM has just written, so small layers find them still in L1/L2.
template <Activation Act, typename T>
void bias_activation_pass(const T* bias, T* z, T* y, int64_t rows, int64_t out, T alpha) {
  parallel_for(rows, out * epilogue_cost(Act), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* z_row = z + r * out;
      T* y_row = y + r * out;
      if constexpr (uses_vector_math(Act)) {
        if (bias != nullptr) {
          for (int64_t j = 0; j < out; ++j) z_row[j] = z_row[j] + bias[j];
        }
        activation_forward(Act, z_row, y_row, out, alpha);  // z_row may be y_row
      } else if (bias != nullptr) {
        for (int64_t j = 0; j < out; ++j) {
          const T pre = z_row[j] + bias[j];
          z_row[j] = pre;
          y_row[j] = activation_value(Act, pre, alpha);
        }
      } else {
        for (int64_t j = 0; j < out; ++j) y_row[j] = activation_value(Act, z_row[j], alpha);
      }
    }
  });
}

// dz (rows, out) = f'(saved) * dy, and dbias (out) = column sums of dz in the same pass.
// Each thread owns a range of columns and walks down the rows, so the sums need no reduction
// across threads and each row's piece is read contiguously.
template <Activation Act, typename T>
void activation_grad_pass(const T* saved, const T* dy, T* dz, T* dbias, int64_t rows,
                          int64_t out, T alpha) {
  parallel_for(out, rows * epilogue_cost(Act), [&](int64_t begin, int64_t end) {
    if (dbias != nullptr) std::fill(dbias + begin, dbias + end, T(0));
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t offset = r * out;
      if constexpr (uses_vector_math(Act)) {
        activation_backward(Act, saved + offset + begin, dy + offset + begin, dz + offset + begin, end - begin,
                            alpha);
        if (dbias != nullptr) {
          for (int64_t j = begin; j < end; ++j) dbias[j] += dz[offset + j];
        }
        continue;
      }
      for (int64_t j = begin; j < end; ++j) {
        const T g = activation_grad(Act, saved[offset + j], dy[offset + j], alpha);
        dz[offset + j] = g;
        if (dbias != nullptr) dbias[j] += g;
      }
    }
  });
}

}  // namespace

template <typename T>
void linear_activation_forward(Activation act, T alpha, const T* x, const T* w, const T* bias,
                               T* pre, T* y, int64_t rows, int64_t in, int64_t out) {
  // The GEMM writes into the pre-activation buffer when the caller keeps one (GELU's
  // backward needs it), else straight into y, which the output pass then overwrites.
  T* z = pre != nullptr ? pre : y;
  gemm<T>(false, true, rows, out, in, T(1), x, in, w, in, T(0), z, out);
  dispatch_activation(act, [&](auto a) {
    bias_activation_pass<decltype(a)::value>(bias, z, y, rows, out, alpha);
  });
}

template <typename T>
void linear_activation_backward(Activation act, T alpha, const T* saved, const T* dy,
                                const T* x, const T* w, T* dz, T* dx, T* dw, T* dbias,
                                int64_t rows, int64_t in, int64_t out) {
  dispatch_activation(act, [&](auto a) {
    activation_grad_pass<decltype(a)::value>(saved, dy, dz, dbias, rows, out, alpha);
  });
  // dx (rows, in) = dz (rows, out) @ w (out, in); dw (out, in) = dz^T @ x (rows, in).
  if (dx != nullptr) gemm<T>(false, false, rows, in, out, T(1), dz, out, w, in, T(0), dx, in);
  if (dw != nullptr) gemm<T>(true, false, out, in, rows, T(1), dz, out, x, in, T(0), dw, in);
}

#define RANVIER_INSTANTIATE_LINEAR_ACTIVATION(T)                                                \
  template void linear_activation_forward<T>(Activation, T, const T*, const T*, const T*, T*,  \
                                             T*, int64_t, int64_t, int64_t);                   \
  template void linear_activation_backward<T>(Activation, T, const T*, const T*, const T*,     \
                                              const T*, T*, T*, T*, T*, int64_t, int64_t,      \
                                              int64_t);

RANVIER_INSTANTIATE_LINEAR_ACTIVATION(float)
RANVIER_INSTANTIATE_LINEAR_ACTIVATION(double)

}  // namespace ranvier::cpu
