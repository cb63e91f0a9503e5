// gemm with a B operand that need not exist in memory. Not part of the public kernel API:
// matmul.cpp (the driver) and conv.cpp (implicit GEMM over image columns) include it.
//
// The blocked driver (matmul.cpp) only ever reads B through its packing step: for each block
// of k (rows p0 .. p0+kc) and of columns (j0 .. j0+nc) it asks for NR-wide column strips of
// op(B), each stored (kc, NR) row-major. A BPanelPacker is that step as an object, with the
// role DenseOperand / GatherOperand play in kernels/cuda/gemm.cuh: gemm() packs a stored
// (possibly transposed) matrix; conv.cpp packs the im2col matrix straight from the image, so
// that no column buffer is written and read back. One driver serves both.
#pragma once
#include <cstdint>

namespace ranvier::cpu {

template <typename T>
struct BPanelPacker {
  // Writes op(B)[p0:p0+kc, j0 + s*nr : j0 + (s+1)*nr] for the strips s in
  // [strip_begin, strip_end) of the nc-wide panel at column j0 to packed + s*kc*nr, each strip
  // (kc, nr) row-major, with zeros in the columns past j0 + nc. nr is the micro-tile's width.
  // Called by several threads at once on disjoint strips: it must only read `self`.
  using PackFn = void (*)(const void* self, int64_t nr, int64_t p0, int64_t j0, int64_t kc,
                          int64_t nc, int64_t strip_begin, int64_t strip_end, T* packed);
  PackFn pack;
  const void* self;
};

// C (m, n) = alpha * op(A) (m, k) @ B (k, n) + beta * C, row-major, B given by its packer;
// otherwise as gemm() (ranvier/matmul.h): same blocking, micro-kernels and threads.
template <typename T>
void gemm_packed_b(bool trans_a, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                   int64_t lda, const BPanelPacker<T>& b, T beta, T* c, int64_t ldc);

}  // namespace ranvier::cpu
