// The strided-batched GEMM behind every CUDA matmul user (gemm.cu): for the CUDA kernels
// that lower onto it (conv.cu), not part of the public kernel API.
#pragma once
#include "ranvier/common.h"

namespace ranvier::cuda {

// For z < batch: C[z] (m, n) = alpha * op(A[z]) @ op(B[z]) + bias (n, per column) + beta * C[z],
// with A[z] = a + z * stride_a (stored (m, k) with row stride lda, or (k, m) when trans_a),
// B[z] = b + z * stride_b ((k, n) / (n, k) with ldb), C[z] = c + z * stride_c (ldc). A stride
// of 0 shares one matrix over the batch. beta == 0 never reads C; alpha == 0 never reads A, B.
// bias may be null. Runs on `stream`.
template <typename T>
void gemm_batched(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
                  T alpha, const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb,
                  int64_t stride_b, T beta, T* c, int64_t ldc, int64_t stride_c, const T* bias,
                  StreamHandle stream);

// sums (cols) = column sums of x (rows, cols), on `stream` (the bias gradient of linear).
template <typename T>
void column_sums(const T* x, T* sums, int64_t rows, int64_t cols, StreamHandle stream);

}  // namespace ranvier::cuda
