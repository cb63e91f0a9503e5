// The process-wide thread count of the CPU kernels (see ranvier/threads.h).
#include "ranvier/threads.h"

#include <atomic>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ranvier::cpu {

namespace {
std::atomic<int> requested_threads{0};  // 0: not set, use OpenMP's default
}  // namespace

int num_threads() {
#ifdef _OPENMP
  const int requested = requested_threads.load(std::memory_order_relaxed);
  if (requested > 0) return requested;
  // OpenMP's initial default (OMP_NUM_THREADS, else the cores available), recorded on first
  // use: omp_get_max_threads() is per calling thread, and another library in the process
  // may have changed it for this one.
  static const int default_threads = omp_get_max_threads() > 0 ? omp_get_max_threads() : 1;
  return default_threads;
#else
  return 1;
#endif
}

void set_num_threads(int n) { requested_threads.store(n > 0 ? n : 1, std::memory_order_relaxed); }

}  // namespace ranvier::cpu
