// Matrix multiplication and the fully connected (linear) layer.
#pragma once
#include "ranvier/common.h"

namespace ranvier::cpu {

// General matrix multiply on row-major storage, BLAS-style:
//   C (m, n) = alpha * op(A) @ op(B) + beta * C
// op(A) is (m, k): A is stored (m, k) with row stride lda, or (k, m) when trans_a.
// op(B) is (k, n): B is stored (k, n) with row stride ldb, or (n, k) when trans_b.
// beta == 0 overwrites C without reading it (so C may hold NaN on entry).
// This is the one GEMM that every matmul user (linear, conv, recurrent cells) calls.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Batched matmul over contiguous matrices: for each i < batch,
//   C[i] (m, n) = op(A[i]) @ op(B[i])
// A[i] starts at a + i * stride_a, B[i] at b + i * stride_b (a stride of 0 broadcasts one
// matrix over the batch); C is contiguous (batch, m, n).
template <typename T>
void matmul(const T* a, const T* b, T* c, int64_t batch, int64_t m, int64_t n, int64_t k,
            bool trans_a, bool trans_b, int64_t stride_a, int64_t stride_b);

// linear: y (rows, out) = x (rows, in) @ w (out, in)^T + bias (out); bias may be null.
template <typename T>
void linear_forward(const T* x, const T* w, const T* bias, T* y, int64_t rows, int64_t in,
                    int64_t out);
// dx (rows, in) = dy (rows, out) @ w (out, in)
template <typename T>
void linear_backward_input(const T* dy, const T* w, T* dx, int64_t rows, int64_t in, int64_t out);
// dw (out, in) = dy^T @ x; dbias (out) = sum over rows of dy (dbias may be null).
template <typename T>
void linear_backward_weight(const T* dy, const T* x, T* dw, T* dbias, int64_t rows, int64_t in,
                            int64_t out);

}  // namespace ranvier::cpu
