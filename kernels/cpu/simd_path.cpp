// Choosing the SIMD path once per process (see ranvier/simd_path.h).
#include "ranvier/simd_path.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace ranvier::cpu {

CpuFeatures cpu_features() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
#if RANVIER_SIMD_X86
    __builtin_cpu_init();
    // GCC's and Clang's checks include the OS's support for the wider register state (XCR0).
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.avx512f = __builtin_cpu_supports("avx512f");
#endif
    return f;
  }();
  return features;
}

const char* simd_path_name(SimdPath path) {
  switch (path) {
    case SimdPath::avx512: return "avx512";
    case SimdPath::avx2: return "avx2";
    default: return "portable";
  }
}

namespace {

bool path_supported(SimdPath path) {
  const CpuFeatures f = cpu_features();
#if RANVIER_SIMD_X86
  if (path == SimdPath::avx512) return f.avx512f;
  if (path == SimdPath::avx2) return f.avx2 && f.fma;
#else
  (void)f;
  if (path != SimdPath::portable) return false;
#endif
  return true;
}

SimdPath best_supported_path() {
  if (path_supported(SimdPath::avx512)) return SimdPath::avx512;
  if (path_supported(SimdPath::avx2)) return SimdPath::avx2;
  return SimdPath::portable;
}

const std::string& requested_path() {
  static const std::string requested = [] {
    const char* value = std::getenv("RANVIER_CPU_PATH");
    return std::string(value != nullptr ? value : "");
  }();
  return requested;
}

}  // namespace

// Once per process: RANVIER_CPU_PATH if it names a path this CPU runs, else the best one.
SimdPath simd_path() {
  static const SimdPath path = [] {
    const std::string& requested = requested_path();
    const SimdPath best = best_supported_path();
    if (requested.empty()) return best;
    for (SimdPath candidate : {SimdPath::avx512, SimdPath::avx2, SimdPath::portable}) {
      if (requested != simd_path_name(candidate)) continue;
      if (path_supported(candidate)) return candidate;
      std::fprintf(stderr,
                   "ranvier: RANVIER_CPU_PATH=%s, but this CPU (or build) cannot run that SIMD "
                   "path; using %s\n",
                   requested.c_str(), simd_path_name(best));
      return best;
    }
    std::fprintf(stderr,
                 "ranvier: RANVIER_CPU_PATH=%s is not one of avx512, avx2, portable; using %s\n",
                 requested.c_str(), simd_path_name(best));
    return best;
  }();
  return path;
}

const char* simd_path_requested() { return requested_path().c_str(); }

bool use_avx2_kernels() {
  static const bool avx2 = [] {
    const CpuFeatures f = cpu_features();
    return simd_path() != SimdPath::portable && f.avx2 && f.fma;
  }();
  return avx2;
}

}  // namespace ranvier::cpu
