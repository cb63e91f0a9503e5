// Matrix multiplication and the fully connected (linear) layer.
#pragma once
#include "ranvier/activations.h"
#include "ranvier/common.h"
#include "ranvier/simd_path.h"

namespace ranvier::cpu {

// General matrix multiply on row-major storage, BLAS-style:
//   C (m, n) = alpha * op(A) @ op(B) + beta * C
// op(A) is (m, k): A is stored (m, k) with row stride lda, or (k, m) when trans_a.
// op(B) is (k, n): B is stored (k, n) with row stride ldb, or (n, k) when trans_b.
// beta == 0 overwrites C without reading it (so C may hold NaN on entry).
// This is the one GEMM that every matmul user (linear, conv, recurrent cells) calls.
// The micro-kernel is chosen once per process from the CPU's features (see gemm_path below).
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

// --- which GEMM runs on this machine ------------------------------------------------------
// The micro-kernel path gemm uses: "avx512", "avx2" or "portable": simd_path() (see
// ranvier/simd_path.h; cpu_features() is declared there too).
const char* gemm_path();
// What RANVIER_CPU_PATH asked for: simd_path_requested().
const char* gemm_path_requested();

// Cache sizes in bytes as the CPU reports them (sysconf on Linux/glibc), 0 where unknown.
struct CacheSizes {
  int64_t l1d = 0;
  int64_t l2 = 0;
  int64_t l3 = 0;
};
CacheSizes cache_sizes();

// gemm's tile and block sizes for T on the chosen path: the micro-tile mr x nr and the cache
// blocks mc (rows of A per packed block), kc (shared dimension per block), nc (columns of B
// per packed panel). See matmul.cpp for how they follow from the cache sizes.
struct GemmBlocking {
  int64_t mr = 0;
  int64_t nr = 0;
  int64_t mc = 0;
  int64_t kc = 0;
  int64_t nc = 0;
};
template <typename T>
GemmBlocking gemm_blocking();

// Measured float32 FMA throughput of this machine in GFLOP/s: `threads` threads each run
// `iterations` rounds of independent vector FMA chains in the chosen path's instruction set
// (fma_peak.cpp). For benchmarks: GEMM GFLOP/s as a fraction of it.
double fma_peak_gflops(int threads, int64_t iterations);

}  // namespace ranvier::cpu

// --- the CUDA twins (kernels/cuda/gemm.cu): same semantics as above, device pointers, run on
// `stream`. A tiled GEMM (shared-memory tiles, 2-D register blocking, 16-byte loads where the
// layout allows) serves all of them; linear_forward adds the bias in its epilogue.
namespace ranvier::cuda {

// C (m, n) = alpha * op(A) @ op(B) + beta * C; beta == 0 never reads C.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc, StreamHandle stream);
// C[i] (m, n) = op(A[i]) @ op(B[i]), A[i] at a + i * stride_a (0 broadcasts), C contiguous.
template <typename T>
void matmul(const T* a, const T* b, T* c, int64_t batch, int64_t m, int64_t n, int64_t k,
            bool trans_a, bool trans_b, int64_t stride_a, int64_t stride_b, StreamHandle stream);
// y (rows, out) = x (rows, in) @ w (out, in)^T + bias (out); bias may be null.
template <typename T>
void linear_forward(const T* x, const T* w, const T* bias, T* y, int64_t rows, int64_t in,
                    int64_t out, StreamHandle stream);
// dx (rows, in) = dy (rows, out) @ w (out, in)
template <typename T>
void linear_backward_input(const T* dy, const T* w, T* dx, int64_t rows, int64_t in, int64_t out,
                           StreamHandle stream);
// dw (out, in) = dy^T @ x; dbias (out) = sum over rows of dy (dbias may be null).
template <typename T>
void linear_backward_weight(const T* dy, const T* x, T* dw, T* dbias, int64_t rows, int64_t in,
                            int64_t out, StreamHandle stream);

}  // namespace ranvier::cuda

namespace ranvier {

// --- fused linear + bias + activation (linear.cpp) ------------------------------------------
// Which forward array the fused backward takes as `saved`: the output y where the derivative
// follows from it (ReLU: y <= 0 exactly where x <= 0; sigmoid, tanh), else the
// pre-activation z = x @ w^T + bias (LeakyReLU with any slope, both GELUs).
constexpr bool linear_activation_backward_uses_output(Activation act) {
  return act == Activation::ReLU || act == Activation::Sigmoid || act == Activation::Tanh;
}

namespace cpu {
// y (rows, out) = f(x (rows, in) @ w (out, in)^T + bias (out)); bias may be null. The GEMM
// writes z = x @ w^T and one output pass adds the bias and applies f. When `pre` is not null
// it receives z (rows, out) for the backward; else y alone is written.
template <typename T>
void linear_activation_forward(Activation act, T alpha, const T* x, const T* w, const T* bias,
                               T* pre, T* y, int64_t rows, int64_t in, int64_t out);
// From dy (rows, out), the gradient of the activated output, and `saved` (rows, out): y or z
// as linear_activation_backward_uses_output(act) says. One pass writes dz = f'(.) * dy into
// the scratch `dz` (rows, out) and sums dbias (out) = column sums of dz; then two GEMMs give
// dx (rows, in) = dz @ w and dw (out, in) = dz^T @ x. dx, dw and dbias may each be null.
template <typename T>
void linear_activation_backward(Activation act, T alpha, const T* saved, const T* dy,
                                const T* x, const T* w, T* dz, T* dx, T* dw, T* dbias,
                                int64_t rows, int64_t in, int64_t out);
}  // namespace cpu

namespace cuda {
// The CUDA twins of the two above (kernels/cuda/linear.cu), on `stream`.
template <typename T>
void linear_activation_forward(Activation act, T alpha, const T* x, const T* w, const T* bias,
                               T* pre, T* y, int64_t rows, int64_t in, int64_t out,
                               StreamHandle stream);
template <typename T>
void linear_activation_backward(Activation act, T alpha, const T* saved, const T* dy,
                                const T* x, const T* w, T* dz, T* dx, T* dw, T* dbias,
                                int64_t rows, int64_t in, int64_t out, StreamHandle stream);
}  // namespace cuda

}  // namespace ranvier
