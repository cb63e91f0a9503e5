// The GPU matrix multiply over stored matrices: gemm, batched matmul and the linear layer,
// all through the tiled GEMM kernel of gemm.cuh (its comment describes the tiling), plus the
// column-sum kernel for the bias gradient. Same semantics as cpu::gemm (matmul.h): row-major
// storage,
//   C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C,
// beta == 0 overwrites C without reading it, alpha == 0 (or k == 0) never reads A or B.
// Transposes are handled in the tile loads (DenseOperand): an operand is either contiguous
// along k (A not transposed, B transposed) or along m/n (A transposed, B not transposed).
#include <cstdint>

#include "check.cuh"
#include "gemm.cuh"
#include "ranvier/matmul.h"

namespace ranvier::cuda {

namespace {

// sums (cols) = column sums of x (rows, cols). Block 32 x 8: threadIdx.x picks a column (so a
// warp reads 32 consecutive values of a row), threadIdx.y one of 8 interleaved row slices;
// the 8 partial sums meet in shared memory.
constexpr int kColumnSumWidth = 32;
constexpr int kColumnSumSlices = 8;

template <typename T>
__global__ void column_sum_kernel(const T* __restrict__ x, T* sums, int64_t rows, int64_t cols) {
  __shared__ T partial[kColumnSumSlices][kColumnSumWidth + 1];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kColumnSumWidth + threadIdx.x;
  T sum = T(0);
  if (col < cols) {
    for (int64_t r = threadIdx.y; r < rows; r += kColumnSumSlices) sum += x[r * cols + col];
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    T total = T(0);
#pragma unroll
    for (int s = 0; s < kColumnSumSlices; ++s) total += partial[s][threadIdx.x];
    sums[col] = total;
  }
}

}  // namespace

// C[z] (m, n) = alpha * op(A[z]) @ op(B[z]) + bias + beta * C[z] for z < batch, with
// A[z] = a + z * stride_a etc. (stride 0 shares one matrix over the batch).
template <typename T>
void gemm_batched(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
                  T alpha, const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb,
                  int64_t stride_b, T beta, T* c, int64_t ldc, int64_t stride_c, const T* bias,
                  StreamHandle stream) {
  GemmOutput<T> out;
  out.c = c;
  out.ldc = ldc;
  out.stride_c = stride_c;
  out.alpha = alpha;
  out.beta = beta;
  out.col_bias = bias;
  out.vectorised = can_vectorise<T>(c, ldc, stride_c);
  // alpha == 0: C = beta * C (+ bias) without reading A or B, as cpu::gemm.
  const int64_t depth = alpha == T(0) ? 0 : k;
  // A is read as X(i, p) = A(i, p): contiguous along k unless transposed; B as X(j, p) = B(p, j):
  // contiguous along k only when transposed.
  const bool vec_a = can_vectorise<T>(a, lda, stride_a);
  const bool vec_b = can_vectorise<T>(b, ldb, stride_b);
  const cudaStream_t s = as_stream(stream);
  const auto launch = [&](auto operand_a, auto operand_b) {
    launch_gemm<T>("gemm_tiled_kernel", batch, m, n, depth, operand_a, operand_b, out, s);
  };
  using ContiguousAlongK = DenseOperand<T, true>;
  using ContiguousAlongMN = DenseOperand<T, false>;
  if (!trans_a && !trans_b) {
    launch(ContiguousAlongK{a, lda, stride_a, vec_a}, ContiguousAlongMN{b, ldb, stride_b, vec_b});
  } else if (!trans_a && trans_b) {
    launch(ContiguousAlongK{a, lda, stride_a, vec_a}, ContiguousAlongK{b, ldb, stride_b, vec_b});
  } else if (trans_a && !trans_b) {
    launch(ContiguousAlongMN{a, lda, stride_a, vec_a}, ContiguousAlongMN{b, ldb, stride_b, vec_b});
  } else {
    launch(ContiguousAlongMN{a, lda, stride_a, vec_a}, ContiguousAlongK{b, ldb, stride_b, vec_b});
  }
}

// C (m, n) = alpha * op(A) @ op(B) + beta * C, as cpu::gemm.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc, StreamHandle stream) {
  gemm_batched<T>(trans_a, trans_b, 1, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0,
                  nullptr, stream);
}

// C[i] (m, n) = op(A[i]) @ op(B[i]) for i < batch; C contiguous (batch, m, n).
template <typename T>
void matmul(const T* a, const T* b, T* c, int64_t batch, int64_t m, int64_t n, int64_t k,
            bool trans_a, bool trans_b, int64_t stride_a, int64_t stride_b, StreamHandle stream) {
  // Stored row lengths: A is (m, k), or (k, m) when transposed; B is (k, n), or (n, k).
  const int64_t lda = trans_a ? m : k;
  const int64_t ldb = trans_b ? k : n;
  gemm_batched<T>(trans_a, trans_b, batch, m, n, k, T(1), a, lda, stride_a, b, ldb, stride_b,
                  T(0), c, n, m * n, nullptr, stream);
}

// y (rows, out) = x (rows, in) @ w (out, in)^T + bias (out), the bias added in the epilogue.
template <typename T>
void linear_forward(const T* x, const T* w, const T* bias, T* y, int64_t rows, int64_t in,
                    int64_t out, StreamHandle stream) {
  gemm_batched<T>(false, true, 1, rows, out, in, T(1), x, in, 0, w, in, 0, T(0), y, out, 0, bias,
                  stream);
}

// dx (rows, in) = dy (rows, out) @ w (out, in)
template <typename T>
void linear_backward_input(const T* dy, const T* w, T* dx, int64_t rows, int64_t in, int64_t out,
                           StreamHandle stream) {
  gemm_batched<T>(false, false, 1, rows, in, out, T(1), dy, out, 0, w, in, 0, T(0), dx, in, 0,
                  nullptr, stream);
}

// dw (out, in) = dy (rows, out)^T @ x (rows, in); dbias (out) = column sums of dy.
template <typename T>
void linear_backward_weight(const T* dy, const T* x, T* dw, T* dbias, int64_t rows, int64_t in,
                            int64_t out, StreamHandle stream) {
  gemm_batched<T>(true, false, 1, out, in, rows, T(1), dy, out, 0, x, in, 0, T(0), dw, in, 0,
                  nullptr, stream);
  if (dbias != nullptr) column_sums<T>(dy, dbias, rows, out, stream);
}

template <typename T>
void column_sums(const T* x, T* sums, int64_t rows, int64_t cols, StreamHandle stream) {
  if (cols <= 0) return;
  const int64_t blocks = (cols + kColumnSumWidth - 1) / kColumnSumWidth;
  launch_kernel("column_sum_kernel", column_sum_kernel<T>, static_cast<unsigned int>(blocks),
                dim3(kColumnSumWidth, kColumnSumSlices), 0, as_stream(stream), x, sums, rows, cols);
}

template void gemm_batched<float>(bool, bool, int64_t, int64_t, int64_t, int64_t, float,
                                  const float*, int64_t, int64_t, const float*, int64_t, int64_t,
                                  float, float*, int64_t, int64_t, const float*, StreamHandle);
template void gemm_batched<double>(bool, bool, int64_t, int64_t, int64_t, int64_t, double,
                                   const double*, int64_t, int64_t, const double*, int64_t,
                                   int64_t, double, double*, int64_t, int64_t, const double*,
                                   StreamHandle);
template void column_sums<float>(const float*, float*, int64_t, int64_t, StreamHandle);
template void column_sums<double>(const double*, double*, int64_t, int64_t, StreamHandle);
template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t, StreamHandle);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t, StreamHandle);
template void matmul<float>(const float*, const float*, float*, int64_t, int64_t, int64_t,
                            int64_t, bool, bool, int64_t, int64_t, StreamHandle);
template void matmul<double>(const double*, const double*, double*, int64_t, int64_t, int64_t,
                             int64_t, bool, bool, int64_t, int64_t, StreamHandle);
template void linear_forward<float>(const float*, const float*, const float*, float*, int64_t,
                                    int64_t, int64_t, StreamHandle);
template void linear_forward<double>(const double*, const double*, const double*, double*,
                                     int64_t, int64_t, int64_t, StreamHandle);
template void linear_backward_input<float>(const float*, const float*, float*, int64_t, int64_t,
                                           int64_t, StreamHandle);
template void linear_backward_input<double>(const double*, const double*, double*, int64_t,
                                            int64_t, int64_t, StreamHandle);
template void linear_backward_weight<float>(const float*, const float*, float*, float*, int64_t,
                                            int64_t, int64_t, StreamHandle);
template void linear_backward_weight<double>(const double*, const double*, double*, double*,
                                             int64_t, int64_t, int64_t, StreamHandle);

}  // namespace ranvier::cuda
