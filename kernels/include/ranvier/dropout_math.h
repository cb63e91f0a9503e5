// Dropout's per-element rules and the mapping of elements onto the Philox stream, one place
// for the CPU and CUDA kernels, so that both draw the same mask for the same (seed, offset).
//
// Element i of a call with (seed, offset) uses global index g = offset + i of the stream:
// Philox block g / 4, lane g % 4 (random.h: uniform4). Kernels walk the blocks
// first_block .. first_block + blocks - 1 and give lane `lane` of block b to element
// b * 4 + lane - offset when that lies in [0, n).
#pragma once
#include "ranvier/common.h"
#include "ranvier/random.h"

namespace ranvier {

struct PhiloxBlockRange {
  uint64_t first_block;
  int64_t blocks;
};

// The Philox blocks that elements offset .. offset + n - 1 use (n > 0).
RANVIER_HD PhiloxBlockRange philox_blocks_for(int64_t n, uint64_t offset) {
  const uint64_t first_block = offset / 4;
  const uint64_t last_block = (offset + static_cast<uint64_t>(n) - 1) / 4;  // inclusive
  return {first_block, static_cast<int64_t>(last_block - first_block) + 1};
}

// The element of this call that lane `lane` of Philox block `block` belongs to; a value
// >= n (the subtraction wraps for global < offset) means none.
RANVIER_HD uint64_t philox_lane_element(uint64_t block, int lane, uint64_t offset) {
  return block * 4 + static_cast<uint64_t>(lane) - offset;
}

// Element kept when its uniform number u is >= p.
template <typename T>
RANVIER_HD bool dropout_keep(float u, T p) {
  return static_cast<T>(u) >= p;
}

// As PyTorch: a kept element is multiplied by 1 / (1 - p), a dropped one by 0 (so that a
// NaN in x stays visible).
template <typename T>
RANVIER_HD T dropout_scale(T p) {
  return T(1) / (T(1) - p);
}
template <typename T>
RANVIER_HD T dropout_apply(T x, bool keep, T scale) {
  return x * (keep ? scale : T(0));
}

}  // namespace ranvier
