// The GPU matrix multiply: one tiled GEMM kernel (in the style of siboehm's SGEMM worklog) that
// serves gemm, batched matmul and the linear layer, plus the column-sum kernel for the bias
// gradient. Same semantics as cpu::gemm (matmul.h): row-major storage,
//   C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C,
// beta == 0 overwrites C without reading it, alpha == 0 (or k == 0) never reads A or B.
//
// Tiling (float; double uses 64 x 64 x 8 with 4 x 4 per thread, see GemmTile):
//   - a block of 256 threads computes a BM x BN = 128 x 128 tile of C;
//   - per step it copies a BM x BK = 128 x 8 tile of op(A) and a BK x BN = 8 x 128 tile of
//     op(B) into shared memory, both stored k-major (a_tile[BK][BM], b_tile[BK][BN]) so that
//     the inner loop reads TM (TN) consecutive values of one k-slice;
//   - each thread owns a TM x TN = 8 x 8 patch of C in registers (2-D register blocking):
//     thread (thread_row, thread_col) of the 16 x 16 thread grid computes rows
//     thread_row * 8 .. +8 and columns thread_col * 8 .. +8 of the block's tile;
//   - tile loads are 16-byte vectors (float4 / double2) along the operand's contiguous axis
//     when the base pointer, leading dimension and batch stride allow it; at the m/n/k edges
//     and for unaligned operands they fall back to bounds-checked scalar loads (zero fill);
//   - transposes are handled in the tile loads: an operand is either contiguous along k
//     (A not transposed, B transposed) or along m/n (A transposed, B not transposed).
// Grid: x over row tiles of C, y over column tiles, z over the batch (y and z launched in
// chunks of 65535, the hardware limit).
#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "check.cuh"
#include "gemm.cuh"
#include "ranvier/matmul.h"

namespace ranvier::cuda {

namespace {

// Block tile BM x BN, k-step BK, per-thread register tile TM x TN.
template <typename T>
struct GemmTile;
template <>
struct GemmTile<float> {
  static constexpr int BM = 128, BN = 128, BK = 8, TM = 8, TN = 8;
};
// double: registers hold half as many values, and FP64 throughput is lower, so a smaller tile
// keeps more blocks resident.
template <>
struct GemmTile<double> {
  static constexpr int BM = 64, BN = 64, BK = 8, TM = 4, TN = 4;
};

// 16 bytes of T: one float4 / double2 load or store.
template <typename T>
struct alignas(16) Vec16 {
  static constexpr int kSize = 16 / static_cast<int>(sizeof(T));
  T v[kSize];
};

// Everything one launch needs, passed by value.
template <typename T>
struct GemmArgs {
  int64_t m = 0, n = 0, k = 0;
  T alpha = 1, beta = 0;
  const T* a = nullptr;
  int64_t lda = 0, stride_a = 0;
  const T* b = nullptr;
  int64_t ldb = 0, stride_b = 0;
  T* c = nullptr;
  int64_t ldc = 0, stride_c = 0;
  const T* bias = nullptr;  // (n), added to every row of C; null for none
  bool vec_a = false, vec_b = false, vec_c = false;  // 16-byte accesses allowed
  int64_t col_tile_offset = 0;                       // this launch's first column tile
  int64_t batch_offset = 0;                          // this launch's first batch index
};

// Copies the (BMN x BK) tile of an operand starting at (mn0, k0) into shared memory as
// tile[p][i] (p < BK along k, i < BMN along m or n); outside the operand (mn_size x k_size)
// it writes zeros. The operand's element (i, p) sits at
//   src[i * ld + p] when K_CONTIGUOUS (A not transposed, B transposed), or
//   src[p * ld + i] otherwise          (A transposed, B not transposed).
// Each thread copies BMN * BK / THREADS values, one 16-byte vector at a time.
template <typename T, int BMN, int BK, int THREADS, bool K_CONTIGUOUS>
__device__ __forceinline__ void load_tile(const T* __restrict__ src, int64_t ld, int64_t mn0,
                                          int64_t mn_size, int64_t k0, int64_t k_size,
                                          bool vectorised, T (*tile)[BMN], int tid) {
  constexpr int VEC = Vec16<T>::kSize;
  constexpr int VECTORS = BMN * BK / VEC;
  static_assert(VECTORS % THREADS == 0, "the tile must split evenly over the threads");
  static_assert(BK % VEC == 0 && BMN % VEC == 0, "tile sides must be whole vectors");
#pragma unroll
  for (int round = 0; round < VECTORS / THREADS; ++round) {
    const int vector = tid + round * THREADS;
    if constexpr (K_CONTIGUOUS) {
      // BK / VEC vectors per row i; the vector covers p .. p + VEC - 1 of that row.
      const int i = vector / (BK / VEC);
      const int p = (vector % (BK / VEC)) * VEC;
      const int64_t gi = mn0 + i, gp = k0 + p;
      T values[VEC];
      if (vectorised && gi < mn_size && gp + VEC <= k_size) {
        const Vec16<T> loaded = *reinterpret_cast<const Vec16<T>*>(src + gi * ld + gp);
#pragma unroll
        for (int q = 0; q < VEC; ++q) values[q] = loaded.v[q];
      } else {
#pragma unroll
        for (int q = 0; q < VEC; ++q) {
          values[q] = (gi < mn_size && gp + q < k_size) ? src[gi * ld + gp + q] : T(0);
        }
      }
      // Transposed into the k-major tile.
#pragma unroll
      for (int q = 0; q < VEC; ++q) tile[p + q][i] = values[q];
    } else {
      // BMN / VEC vectors per k-slice p; the vector covers i .. i + VEC - 1 of that slice.
      const int p = vector / (BMN / VEC);
      const int i = (vector % (BMN / VEC)) * VEC;
      const int64_t gp = k0 + p, gi = mn0 + i;
      if (vectorised && gp < k_size && gi + VEC <= mn_size) {
        *reinterpret_cast<Vec16<T>*>(&tile[p][i]) =
            *reinterpret_cast<const Vec16<T>*>(src + gp * ld + gi);
      } else {
#pragma unroll
        for (int q = 0; q < VEC; ++q) {
          tile[p][i + q] = (gp < k_size && gi + q < mn_size) ? src[gp * ld + gi + q] : T(0);
        }
      }
    }
  }
}

// One block: the BM x BN tile of C at (blockIdx.x * BM, (col_tile_offset + blockIdx.y) * BN)
// of batch matrix batch_offset + blockIdx.z.
template <typename T, bool TRANS_A, bool TRANS_B>
__global__ void __launch_bounds__((GemmTile<T>::BM / GemmTile<T>::TM) *
                                  (GemmTile<T>::BN / GemmTile<T>::TN))
    gemm_tiled_kernel(const GemmArgs<T> args) {
  constexpr int BM = GemmTile<T>::BM, BN = GemmTile<T>::BN, BK = GemmTile<T>::BK;
  constexpr int TM = GemmTile<T>::TM, TN = GemmTile<T>::TN;
  constexpr int THREADS = (BM / TM) * (BN / TN);
  constexpr int VEC = Vec16<T>::kSize;
  static_assert(TN % VEC == 0, "the epilogue stores whole vectors");

  alignas(16) __shared__ T a_tile[BK][BM];  // op(A)[row0 + i][k0 + p] at a_tile[p][i]
  alignas(16) __shared__ T b_tile[BK][BN];  // op(B)[k0 + p][col0 + j] at b_tile[p][j]

  const int tid = static_cast<int>(threadIdx.x);
  const int64_t batch_index = args.batch_offset + blockIdx.z;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int64_t col0 = (args.col_tile_offset + blockIdx.y) * BN;
  const T* a = args.a + batch_index * args.stride_a;
  const T* b = args.b + batch_index * args.stride_b;
  T* c = args.c + batch_index * args.stride_c;

  // This thread's TM x TN patch: rows thread_row * TM.., columns thread_col * TN.. of the tile.
  const int thread_row = tid / (BN / TN);
  const int thread_col = tid % (BN / TN);

  T acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i) {
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
  }
  T a_frag[TM];
  T b_frag[TN];

  for (int64_t k0 = 0; k0 < args.k; k0 += BK) {
    load_tile<T, BM, BK, THREADS, !TRANS_A>(a, args.lda, row0, args.m, k0, args.k, args.vec_a,
                                            a_tile, tid);
    load_tile<T, BN, BK, THREADS, TRANS_B>(b, args.ldb, col0, args.n, k0, args.k, args.vec_b,
                                           b_tile, tid);
    __syncthreads();
#pragma unroll
    for (int p = 0; p < BK; ++p) {
#pragma unroll
      for (int i = 0; i < TM; ++i) a_frag[i] = a_tile[p][thread_row * TM + i];
#pragma unroll
      for (int j = 0; j < TN; ++j) b_frag[j] = b_tile[p][thread_col * TN + j];
#pragma unroll
      for (int i = 0; i < TM; ++i) {
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fma(a_frag[i], b_frag[j], acc[i][j]);
      }
    }
    __syncthreads();  // the tiles are overwritten by the next step
  }

  // Epilogue: C = alpha * acc (+ bias[col]) (+ beta * C, read only when beta != 0).
  const bool read_c = args.beta != T(0);
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t row = row0 + thread_row * TM + i;
    if (row >= args.m) break;
    T* c_row = c + row * args.ldc;
#pragma unroll
    for (int j = 0; j < TN; j += VEC) {
      const int64_t col = col0 + thread_col * TN + j;
      if (args.vec_c && col + VEC <= args.n) {
        Vec16<T> out;
        if (read_c) out = *reinterpret_cast<const Vec16<T>*>(c_row + col);
#pragma unroll
        for (int q = 0; q < VEC; ++q) {
          T value = args.alpha * acc[i][j + q];
          if (args.bias != nullptr) value += args.bias[col + q];
          if (read_c) value += args.beta * out.v[q];
          out.v[q] = value;
        }
        *reinterpret_cast<Vec16<T>*>(c_row + col) = out;
      } else {
#pragma unroll
        for (int q = 0; q < VEC; ++q) {
          if (col + q >= args.n) break;
          T value = args.alpha * acc[i][j + q];
          if (args.bias != nullptr) value += args.bias[col + q];
          if (read_c) value += args.beta * c_row[col + q];
          c_row[col + q] = value;
        }
      }
    }
  }
}

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

// 16-byte accesses need a 16-byte aligned base, and every row (ld) and batch matrix (stride)
// must start on a 16-byte boundary too.
template <typename T>
bool can_vectorise(const void* base, int64_t ld, int64_t stride) {
  constexpr int64_t VEC = Vec16<T>::kSize;
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && ld % VEC == 0 && stride % VEC == 0;
}

}  // namespace

// C[z] (m, n) = alpha * op(A[z]) @ op(B[z]) + bias + beta * C[z] for z < batch, with
// A[z] = a + z * stride_a etc. (stride 0 shares one matrix over the batch).
template <typename T>
void gemm_batched(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
                  T alpha, const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb,
                  int64_t stride_b, T beta, T* c, int64_t ldc, int64_t stride_c, const T* bias,
                  StreamHandle stream) {
  if (batch <= 0 || m <= 0 || n <= 0) return;
  constexpr int BM = GemmTile<T>::BM, BN = GemmTile<T>::BN;
  constexpr int THREADS = (BM / GemmTile<T>::TM) * (BN / GemmTile<T>::TN);
  constexpr int64_t kMaxGridYZ = 65535;
  const int64_t row_tiles = (m + BM - 1) / BM;
  const int64_t col_tiles = (n + BN - 1) / BN;
  if (row_tiles > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument("gemm: m = " + std::to_string(m) + " is too large for one launch");
  }

  GemmArgs<T> args;
  args.m = m;
  args.n = n;
  // alpha == 0: C = beta * C (+ bias) without reading A or B, as cpu::gemm.
  args.k = alpha == T(0) ? 0 : k;
  args.alpha = alpha;
  args.beta = beta;
  args.a = a;
  args.lda = lda;
  args.stride_a = stride_a;
  args.b = b;
  args.ldb = ldb;
  args.stride_b = stride_b;
  args.c = c;
  args.ldc = ldc;
  args.stride_c = stride_c;
  args.bias = bias;
  args.vec_a = can_vectorise<T>(a, lda, stride_a);
  args.vec_b = can_vectorise<T>(b, ldb, stride_b);
  args.vec_c = can_vectorise<T>(c, ldc, stride_c);

  const cudaStream_t s = as_stream(stream);
  for (int64_t batch0 = 0; batch0 < batch; batch0 += kMaxGridYZ) {
    for (int64_t tile0 = 0; tile0 < col_tiles; tile0 += kMaxGridYZ) {
      args.batch_offset = batch0;
      args.col_tile_offset = tile0;
      const dim3 grid(static_cast<unsigned int>(row_tiles),
                      static_cast<unsigned int>(std::min(kMaxGridYZ, col_tiles - tile0)),
                      static_cast<unsigned int>(std::min(kMaxGridYZ, batch - batch0)));
      if (!trans_a && !trans_b) {
        launch_kernel("gemm_tiled_kernel", gemm_tiled_kernel<T, false, false>, grid, THREADS, 0, s, args);
      } else if (!trans_a && trans_b) {
        launch_kernel("gemm_tiled_kernel", gemm_tiled_kernel<T, false, true>, grid, THREADS, 0, s, args);
      } else if (trans_a && !trans_b) {
        launch_kernel("gemm_tiled_kernel", gemm_tiled_kernel<T, true, false>, grid, THREADS, 0, s, args);
      } else {
        launch_kernel("gemm_tiled_kernel", gemm_tiled_kernel<T, true, true>, grid, THREADS, 0, s, args);
      }
    }
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
