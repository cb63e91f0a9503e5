// The machine's float32 FMA peak, measured: independent chains of vector FMAs with no memory
// traffic, on the instruction set of the GEMM path in use (gemm_path()). The benchmark
// divides GEMM GFLOP/s by it. Like the micro-kernels, only the target-attributed functions
// use AVX2/AVX-512, and only on a CPU that has them.
#include <algorithm>
#include <chrono>
#include <string>

#include "gemm_micro_kernels.h"
#include "parallel.h"
#include "ranvier/matmul.h"

#if RANVIER_GEMM_X86
#include <immintrin.h>
#endif

namespace ranvier::cpu {

namespace {

// Each function returns a value that depends on every chain, so the compiler keeps them all.
// Chains: enough to cover FMA latency x throughput (4 x 2 on current cores) with room to spare.

#if RANVIER_GEMM_X86
__attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t iterations, float seed) {
  constexpr int kChains = 12;
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(seed + static_cast<float>(i));
  const __m256 scale = _mm256_set1_ps(0.999999f);
  const __m256 shift = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], scale, shift);
  }
  __m256 total = acc[0];
  for (int i = 1; i < kChains; ++i) total = _mm256_add_ps(total, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, total);
  return lanes[0];
}

__attribute__((target("avx512f"))) float fma_chains_avx512(int64_t iterations, float seed) {
  constexpr int kChains = 24;
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(seed + static_cast<float>(i));
  const __m512 scale = _mm512_set1_ps(0.999999f);
  const __m512 shift = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], scale, shift);
  }
  __m512 total = acc[0];
  for (int i = 1; i < kChains; ++i) total = _mm512_add_ps(total, acc[i]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, total);
  return lanes[0];
}
#endif

// Scalar-code chains for the portable path (what the baseline compiler makes of them).
float fma_chains_portable(int64_t iterations, float seed) {
  constexpr int kChains = 32;
  float acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = seed + static_cast<float>(i);
  for (int64_t it = 0; it < iterations; ++it) {
    for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * 0.999999f + 1e-7f;
  }
  float total = 0;
  for (int i = 0; i < kChains; ++i) total += acc[i];
  return total;
}

}  // namespace

// GFLOP/s (2 per FMA lane) of `threads` threads each running `iterations` rounds of chains.
double fma_peak_gflops(int threads, int64_t iterations) {
  threads = std::max(1, std::min(threads, max_threads()));
  iterations = std::max<int64_t>(1, iterations);
  const std::string path = gemm_path();
  double flops_per_iteration = 32.0 * 2.0;  // portable: 32 chains of one float
  float (*chains)(int64_t, float) = fma_chains_portable;
#if RANVIER_GEMM_X86
  if (path == "avx512") {
    chains = fma_chains_avx512;
    flops_per_iteration = 24.0 * 16.0 * 2.0;
  } else if (path == "avx2") {
    chains = fma_chains_avx2;
    flops_per_iteration = 12.0 * 8.0 * 2.0;
  }
#endif
  volatile float sink = 0;
  const auto start = std::chrono::steady_clock::now();
#ifdef _OPENMP
  int team_size = 1;
#pragma omp parallel num_threads(threads)
  {
    const float result = chains(iterations, 1.0f + static_cast<float>(omp_get_thread_num()));
#pragma omp critical
    {
      sink = sink + result;
      team_size = omp_get_num_threads();  // the team OpenMP gave us may be smaller
    }
  }
  threads = team_size;
#else
  sink = chains(iterations, 1.0f);
  threads = 1;
#endif
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  (void)sink;
  return flops_per_iteration * static_cast<double>(iterations) * threads / seconds / 1e9;
}

}  // namespace ranvier::cpu
