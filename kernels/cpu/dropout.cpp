// Dropout and uniform random numbers on the CPU, from the counter-based Philox stream.
//
// Element i of a call with (seed, offset) uses global index g = offset + i of the stream:
// Philox block g / 4, lane g % 4 (dropout_math.h, shared with the CUDA kernels). A block's
// four numbers depend on (seed, block) only, so each thread draws its own blocks and the
// result is independent of the thread count.
#include "ranvier/dropout.h"

#include "parallel.h"
#include "ranvier/dropout_math.h"
#include "ranvier/random.h"

namespace ranvier::cpu {

namespace {

// Calls visit(i, u) for every element i in [0, n) with its uniform number u, generating
// each Philox block once. Work is split over blocks: one block costs ~10 rounds of two
// 32x32 multiplies, about as much as ~16 elementwise operations per element.
template <typename Visit>
void for_each_uniform(int64_t n, uint64_t seed, uint64_t offset, Visit&& visit) {
  if (n <= 0) return;
  const PhiloxBlockRange range = philox_blocks_for(n, offset);
  parallel_for(range.blocks, 64, [&](int64_t block_begin, int64_t block_end) {
    float u[4];
    for (int64_t b = block_begin; b < block_end; ++b) {
      const uint64_t block = range.first_block + static_cast<uint64_t>(b);
      uniform4(seed, block, u);
      for (int lane = 0; lane < 4; ++lane) {
        const uint64_t i = philox_lane_element(block, lane, offset);
        if (i < static_cast<uint64_t>(n)) visit(static_cast<int64_t>(i), u[lane]);
      }
    }
  });
}

}  // namespace

// x, y, mask (n); y may be x itself.
template <typename T>
void dropout_forward(const T* x, T* y, uint8_t* mask, int64_t n, T p, uint64_t seed, uint64_t offset) {
  const T scale = dropout_scale(p);
  for_each_uniform(n, seed, offset, [&](int64_t i, float u) {
    const bool keep = dropout_keep(u, p);
    mask[i] = keep ? uint8_t{1} : uint8_t{0};
    y[i] = dropout_apply(x[i], keep, scale);
  });
}

// dy, mask, dx (n); dx may be dy itself.
template <typename T>
void dropout_backward(const T* dy, const uint8_t* mask, T* dx, int64_t n, T p) {
  const T scale = dropout_scale(p);
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = dropout_apply(dy[i], mask[i] != 0, scale);
  });
}

// out (n)
template <typename T>
void uniform_fill(T* out, int64_t n, uint64_t seed, uint64_t offset) {
  for_each_uniform(n, seed, offset, [&](int64_t i, float u) { out[i] = static_cast<T>(u); });
}

template void dropout_forward<float>(const float*, float*, uint8_t*, int64_t, float, uint64_t, uint64_t);
template void dropout_forward<double>(const double*, double*, uint8_t*, int64_t, double, uint64_t, uint64_t);
template void dropout_backward<float>(const float*, const uint8_t*, float*, int64_t, float);
template void dropout_backward<double>(const double*, const uint8_t*, double*, int64_t, double);
template void uniform_fill<float>(float*, int64_t, uint64_t, uint64_t);
template void uniform_fill<double>(double*, int64_t, uint64_t, uint64_t);

}  // namespace ranvier::cpu
