"""Independent reference for ranvier's random stream and dropout (never calls ranvier).

Philox4x32-10 as defined in Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy
as 1, 2, 3" (SC'11): a 128-bit counter (four 32-bit words) goes through ten rounds; each
round multiplies words 0 and 2 by the constants M0 and M1, takes the high and low halves of
the 64-bit products, and permutes/xors them with the other words and the round key; the
two-word key is bumped by the Weyl constants between rounds. Checked against the paper's
published known-answer vectors (Random123's kat_vectors) in the tests.

ranvier's stream: number g of stream `seed` is lane g % 4 of Philox4x32-10 applied to the
counter (block, block >> 32, 0, 0) with block = g // 4 and key (seed, seed >> 32) (low
32 bits first); the 32-bit word r becomes the uniform number (r >> 8) / 2^24 in [0, 1).
"""

from __future__ import annotations

import numpy as np

MASK32 = 0xFFFFFFFF
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9  # golden ratio
PHILOX_W1 = 0xBB67AE85  # sqrt(3) - 1


def philox4x32_10(counter, key):
    """Ten Philox rounds on one counter, in plain Python integers. counter: 4 words, key: 2."""
    x0, x1, x2, x3 = (int(c) & MASK32 for c in counter)
    k0, k1 = (int(k) & MASK32 for k in key)
    for round_index in range(10):
        if round_index > 0:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        product0 = PHILOX_M0 * x0
        product1 = PHILOX_M1 * x2
        hi0, lo0 = product0 >> 32, product0 & MASK32
        hi1, lo1 = product1 >> 32, product1 & MASK32
        x0, x1, x2, x3 = hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0
    return x0, x1, x2, x3


def philox4x32_10_many(blocks, seed):
    """The same rounds vectorised over an array of block numbers (uint64 NumPy arithmetic).

    Returns an array of shape (len(blocks), 4) of uint32 words.
    """
    blocks = np.asarray(blocks, dtype=np.uint64)
    mask = np.uint64(MASK32)
    x0 = blocks & mask
    x1 = blocks >> np.uint64(32)
    x2 = np.zeros_like(x0)
    x3 = np.zeros_like(x0)
    k0 = np.uint64(seed & MASK32)
    k1 = np.uint64((seed >> 32) & MASK32)
    for round_index in range(10):
        if round_index > 0:
            k0 = (k0 + np.uint64(PHILOX_W0)) & mask
            k1 = (k1 + np.uint64(PHILOX_W1)) & mask
        product0 = np.uint64(PHILOX_M0) * x0  # < 2^64: both factors are 32-bit
        product1 = np.uint64(PHILOX_M1) * x2
        hi0, lo0 = product0 >> np.uint64(32), product0 & mask
        hi1, lo1 = product1 >> np.uint64(32), product1 & mask
        x0, x1, x2, x3 = hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0
    return np.stack([x0, x1, x2, x3], axis=1).astype(np.uint32)


def uniform_scalar(seed, index):
    """Number `index` of stream `seed`, one at a time in plain Python (float)."""
    block, lane = divmod(index, 4)
    word = philox4x32_10((block & MASK32, block >> 32, 0, 0), (seed & MASK32, seed >> 32))[lane]
    return (word >> 8) / 2.0**24


def uniform(seed, offset, n):
    """Numbers offset .. offset + n - 1 of stream `seed` as float64 (exact: 24 bits each)."""
    if n == 0:
        return np.zeros(0)
    first_block, last_block = offset // 4, (offset + n - 1) // 4
    words = philox4x32_10_many(np.arange(first_block, last_block + 1, dtype=np.uint64), seed).reshape(-1)
    start = offset - first_block * 4
    words = words[start:start + n]
    return (words >> np.uint32(8)).astype(np.float64) / 2.0**24


def dropout(x, p, seed, offset, dtype):
    """(y, mask) in float64 of dropout on x with the comparison u >= p done in `dtype`.

    The kernel compares the (exactly representable) uniform number with p rounded to the
    array's dtype, so the reference rounds p the same way.
    """
    x = np.asarray(x, dtype=np.float64)
    u = uniform(seed, offset, x.size).reshape(x.shape)
    keep = u >= float(np.asarray(p, dtype=dtype))
    y = np.where(keep, x / (1.0 - p), 0.0)
    return y, keep.astype(np.uint8)
