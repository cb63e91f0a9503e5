// The tiled GEMM kernel behind every CUDA matmul user, and the operands it reads. Not part of
// the public kernel API: gemm.cu (matmul, linear) and conv.cu (implicit GEMM) include it.
//
// One launch computes, for each z < batch (grid z):
//   C[z] (m, n) = alpha * A[z] (m, k) @ B[z] (k, n) (+ row_bias (m)) (+ col_bias (n)) + beta * C[z]
// where A and B are *operands*: objects that copy a tile of the matrix into shared memory.
// The matrix need not exist in memory. DenseOperand reads a stored (possibly transposed)
// matrix; conv.cu's operands compute each element of the im2col matrix from the image as the
// tile is loaded (implicit GEMM: no column buffer). A grouped convolution runs all its groups
// in one launch: z = image * groups + group, with the matrices and biases that belong to a
// group alone (its filters) chosen by z % groups (DenseOperand::groups,
// GemmOutput::row_bias_groups). Every operand has
//
//   template <int BMN, int BK, int THREADS>
//   __device__ void load_tile(int64_t z, int64_t i0, int64_t mn_size, int64_t p0,
//                             int64_t k_size, T (*tile)[BMN], int tid) const;
//
// which stores X[z](i0 + i, p0 + p) at tile[p][i] for p < BK, i < BMN, with zeros outside
// the (mn_size x k_size) matrix. X is A (i along m, p along k) or B read as B^T (i along n,
// p along k), so both tiles are k-major and the inner product reads TM (TN) consecutive values
// of one k-slice. The THREADS threads of the block share the copy; `tid` is this thread's.
//
// Tiling (float; double uses 64 x 64 x 8 with 4 x 4 per thread, see GemmTile), in the style
// of siboehm's SGEMM worklog:
//   - a block of 256 threads computes a BM x BN = 128 x 128 tile of C;
//   - per step of BK = 8 along k it loads a BM x BK tile of A and a BN x BK tile of B^T;
//   - each thread owns a TM x TN = 8 x 8 patch of C in registers (2-D register blocking):
//     thread (thread_row, thread_col) of the 16 x 16 thread grid computes rows
//     thread_row * 8 .. +8 and columns thread_col * 8 .. +8 of the block's tile;
//   - the epilogue stores 16-byte vectors when C allows it, scalars at the edges.
// Grid: x over row tiles of C, y over column tiles, z over the batch (y and z launched in
// chunks of 65535, the hardware limit; GemmGrid carries the chunk's offsets).
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "check.cuh"
#include "ranvier/common.h"

namespace ranvier::cuda {

// --- host API over stored matrices (gemm.cu) ------------------------------------------------

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

// --- the kernel and its building blocks -----------------------------------------------------

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
// Threads per block: one per TM x TN patch of the BM x BN tile.
template <typename T>
constexpr int kGemmThreads = (GemmTile<T>::BM / GemmTile<T>::TM) * (GemmTile<T>::BN / GemmTile<T>::TN);

// 16 bytes of T: one float4 / double2 load or store.
template <typename T>
struct alignas(16) Vec16 {
  static constexpr int kSize = 16 / static_cast<int>(sizeof(T));
  T v[kSize];
};

// 16-byte accesses need a 16-byte aligned base, and every row (ld) and batch matrix (stride)
// must start on a 16-byte boundary too.
template <typename T>
bool can_vectorise(const void* base, int64_t ld, int64_t stride) {
  constexpr int64_t VEC = Vec16<T>::kSize;
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && ld % VEC == 0 && stride % VEC == 0;
}

// A stored matrix: X[z](i, p) at data[z * stride + i * ld + p] when K_CONTIGUOUS (A not
// transposed, B transposed), or at data[z * stride + p * ld + i] otherwise (A transposed, B not
// transposed). With groups > 0 the batch runs over (image, group) pairs and the matrix is the
// group's, shared by all images: z * stride becomes (z % groups) * stride. Tiles are copied one
// 16-byte vector at a time along the contiguous axis when `vectorised` (see can_vectorise), and
// with bounds-checked scalar loads at the matrix edges.
template <typename T, bool K_CONTIGUOUS>
struct DenseOperand {
  const T* data;
  int64_t ld, stride;
  bool vectorised;
  int64_t groups = 0;

  template <int BMN, int BK, int THREADS>
  __device__ __forceinline__ void load_tile(int64_t z, int64_t i0, int64_t mn_size, int64_t p0,
                                            int64_t k_size, T (*tile)[BMN], int tid) const {
    constexpr int VEC = Vec16<T>::kSize;
    constexpr int VECTORS = BMN * BK / VEC;
    static_assert(VECTORS % THREADS == 0, "the tile must split evenly over the threads");
    static_assert(BK % VEC == 0 && BMN % VEC == 0, "tile sides must be whole vectors");
    const T* __restrict__ src = data + (groups > 0 ? z % groups : z) * stride;
#pragma unroll
    for (int round = 0; round < VECTORS / THREADS; ++round) {
      const int vector = tid + round * THREADS;
      if constexpr (K_CONTIGUOUS) {
        // BK / VEC vectors per row i; the vector covers p .. p + VEC - 1 of that row.
        const int i = vector / (BK / VEC);
        const int p = (vector % (BK / VEC)) * VEC;
        const int64_t gi = i0 + i, gp = p0 + p;
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
        const int64_t gp = p0 + p, gi = i0 + i;
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
};

// An operand computed element by element: X[z](i, p) = source(source.batch(z), i, p), for a
// Source with
//   __device__ Batch batch(int64_t z) const;   // what batch index z stands for, e.g. the
//                                               // (image, group) pair: decoded once per tile
//   __device__ T operator()(const Batch& batch, int64_t i, int64_t p) const;
// the latter called only inside the matrix (i < mn_size, p < k_size). Consecutive threads
// take consecutive p when ALONG_K, else consecutive i: the axis along which the source's
// memory is contiguous, so that a warp's reads coalesce.
template <typename T, typename Source, bool ALONG_K>
struct GatherOperand {
  Source source;

  template <int BMN, int BK, int THREADS>
  __device__ __forceinline__ void load_tile(int64_t z, int64_t i0, int64_t mn_size, int64_t p0,
                                            int64_t k_size, T (*tile)[BMN], int tid) const {
    static_assert(BMN * BK % THREADS == 0, "the tile must split evenly over the threads");
    const auto batch = source.batch(z);
#pragma unroll
    for (int round = 0; round < BMN * BK / THREADS; ++round) {
      const int element = tid + round * THREADS;
      const int i = ALONG_K ? element / BK : element % BMN;
      const int p = ALONG_K ? element % BK : element / BMN;
      const int64_t gi = i0 + i, gp = p0 + p;
      tile[p][i] = (gi < mn_size && gp < k_size) ? source(batch, gi, gp) : T(0);
    }
  }
};

// The epilogue's destination: C[z] = c + z * stride_c with row stride ldc, and what is added.
template <typename T>
struct GemmOutput {
  T* c = nullptr;
  int64_t ldc = 0, stride_c = 0;
  T alpha = 1, beta = 0;       // beta == 0 never reads C
  const T* row_bias = nullptr;  // (m): added to every column of row i; null for none
  int64_t row_bias_groups = 0;  // > 0: z = image * groups + group, and the group's row bias
                                // is row_bias + (z % groups) * m
  const T* col_bias = nullptr;  // (n): added to every row of column j; null for none
  bool vectorised = false;      // 16-byte stores allowed (can_vectorise of c, ldc, stride_c)
};

// The launch's problem size and its chunk of the grid.
struct GemmGrid {
  int64_t m = 0, n = 0, k = 0;
  int64_t col_tile_offset = 0;  // this launch's first column tile
  int64_t batch_offset = 0;     // this launch's first batch index
};

// One block: the BM x BN tile of C at (blockIdx.x * BM, (col_tile_offset + blockIdx.y) * BN)
// of batch matrix batch_offset + blockIdx.z.
template <typename T, typename OperandA, typename OperandB>
__global__ void __launch_bounds__(kGemmThreads<T>)
    gemm_tiled_kernel(const GemmGrid grid, const OperandA a, const OperandB b,
                      const GemmOutput<T> out) {
  constexpr int BM = GemmTile<T>::BM, BN = GemmTile<T>::BN, BK = GemmTile<T>::BK;
  constexpr int TM = GemmTile<T>::TM, TN = GemmTile<T>::TN;
  constexpr int THREADS = kGemmThreads<T>;
  constexpr int VEC = Vec16<T>::kSize;
  static_assert(TN % VEC == 0, "the epilogue stores whole vectors");

  alignas(16) __shared__ T a_tile[BK][BM];  // A[row0 + i][k0 + p] at a_tile[p][i]
  alignas(16) __shared__ T b_tile[BK][BN];  // B[k0 + p][col0 + j] at b_tile[p][j]

  const int tid = static_cast<int>(threadIdx.x);
  const int64_t z = grid.batch_offset + blockIdx.z;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int64_t col0 = (grid.col_tile_offset + blockIdx.y) * BN;

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

  for (int64_t k0 = 0; k0 < grid.k; k0 += BK) {
    a.template load_tile<BM, BK, THREADS>(z, row0, grid.m, k0, grid.k, a_tile, tid);
    b.template load_tile<BN, BK, THREADS>(z, col0, grid.n, k0, grid.k, b_tile, tid);
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

  // Epilogue: C = alpha * acc (+ row_bias[row]) (+ col_bias[col]) (+ beta * C).
  const bool read_c = out.beta != T(0);
  T* c = out.c + z * out.stride_c;
  const T* row_bias = out.row_bias;
  if (row_bias != nullptr && out.row_bias_groups > 0) row_bias += (z % out.row_bias_groups) * grid.m;
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t row = row0 + thread_row * TM + i;
    if (row >= grid.m) break;
    T* c_row = c + row * out.ldc;
#pragma unroll
    for (int j = 0; j < TN; j += VEC) {
      const int64_t col = col0 + thread_col * TN + j;
      if (out.vectorised && col + VEC <= grid.n) {
        Vec16<T> values;
        if (read_c) values = *reinterpret_cast<const Vec16<T>*>(c_row + col);
#pragma unroll
        for (int q = 0; q < VEC; ++q) {
          T value = out.alpha * acc[i][j + q];
          if (row_bias != nullptr) value += row_bias[row];
          if (out.col_bias != nullptr) value += out.col_bias[col + q];
          if (read_c) value += out.beta * values.v[q];
          values.v[q] = value;
        }
        *reinterpret_cast<Vec16<T>*>(c_row + col) = values;
      } else {
#pragma unroll
        for (int q = 0; q < VEC; ++q) {
          if (col + q >= grid.n) break;
          T value = out.alpha * acc[i][j + q];
          if (row_bias != nullptr) value += row_bias[row];
          if (out.col_bias != nullptr) value += out.col_bias[col + q];
          if (read_c) value += out.beta * c_row[col + q];
          c_row[col + q] = value;
        }
      }
    }
  }
}

// Launches gemm_tiled_kernel for C[z] = A[z] @ B[z] (see above), z < batch, in as many
// launches as the grid's y and z limits need. `name` names the launch in errors.
template <typename T, typename OperandA, typename OperandB>
void launch_gemm(const char* name, int64_t batch, int64_t m, int64_t n, int64_t k,
                 const OperandA& a, const OperandB& b, const GemmOutput<T>& out,
                 cudaStream_t stream) {
  if (batch <= 0 || m <= 0 || n <= 0) return;
  constexpr int BM = GemmTile<T>::BM, BN = GemmTile<T>::BN;
  constexpr int64_t kMaxGridYZ = 65535;
  const int64_t row_tiles = (m + BM - 1) / BM;
  const int64_t col_tiles = (n + BN - 1) / BN;
  if (row_tiles > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument(std::string(name) + ": m = " + std::to_string(m) +
                                " is too large for one launch");
  }
  GemmGrid grid;
  grid.m = m;
  grid.n = n;
  grid.k = k;
  for (int64_t batch0 = 0; batch0 < batch; batch0 += kMaxGridYZ) {
    for (int64_t tile0 = 0; tile0 < col_tiles; tile0 += kMaxGridYZ) {
      grid.batch_offset = batch0;
      grid.col_tile_offset = tile0;
      const dim3 blocks(static_cast<unsigned int>(row_tiles),
                        static_cast<unsigned int>(std::min(kMaxGridYZ, col_tiles - tile0)),
                        static_cast<unsigned int>(std::min(kMaxGridYZ, batch - batch0)));
      launch_kernel(name, gemm_tiled_kernel<T, OperandA, OperandB>, blocks, kGemmThreads<T>, 0,
                    stream, grid, a, b, out);
    }
  }
}

}  // namespace ranvier::cuda
