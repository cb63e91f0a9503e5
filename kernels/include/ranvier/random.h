// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11): the value at index i
// of stream (seed, offset) depends only on those numbers, so CPU threads and CUDA blocks
// can draw any slice independently and a run is reproducible from (seed, offset) alone.
#pragma once
#include "ranvier/common.h"

namespace ranvier {

struct Philox4x32 {
  uint32_t v[4];
};

RANVIER_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
}

// Ten rounds of Philox4x32 on counter `ctr` with key `key`.
RANVIER_HD Philox4x32 philox4x32_10(Philox4x32 ctr, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo32(kMul0, ctr.v[0], &hi0);
    const uint32_t lo1 = mulhilo32(kMul1, ctr.v[2], &hi1);
    ctr = Philox4x32{{hi1 ^ ctr.v[1] ^ key0, lo1, hi0 ^ ctr.v[3] ^ key1, lo0}};
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return ctr;
}

// Four uniform numbers in [0, 1) for block `block` (= index / 4) of stream (seed, offset).
// 24 random bits each, so every value is exact in float and double.
RANVIER_HD void uniform4(uint64_t seed, uint64_t block, float out[4]) {
  const Philox4x32 ctr{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u}};
  const Philox4x32 r = philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  for (int j = 0; j < 4; ++j) out[j] = static_cast<float>(r.v[j] >> 8) * (1.0f / 16777216.0f);
}

}  // namespace ranvier
