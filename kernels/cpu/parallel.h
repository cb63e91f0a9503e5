// A parallel loop for the CPU kernels: OpenMP where it was compiled in and the work is big
// enough to pay for waking the threads, one thread otherwise.
#pragma once
#include <algorithm>
#include <cstdint>

#include "ranvier/threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ranvier::cpu {

// Below this many elementwise operations a kernel runs on one thread: waking an OpenMP team
// costs a few microseconds, more than the whole loop at these sizes.
constexpr int64_t kParallelGrain = 32768;

// How many threads a parallel_for may use: ranvier.set_num_threads's setting (threads.h;
// 1 without OpenMP).
inline int max_threads() { return num_threads(); }

// Calls body(begin, end) over disjoint chunks covering [0, n). `cost_per_item` scales the
// threshold for items that are more than one operation each (rows of a matrix, say).
template <typename Body>
void parallel_for(int64_t n, int64_t cost_per_item, Body&& body) {
  if (n <= 0) return;
#ifdef _OPENMP
  const int64_t work = n * std::max<int64_t>(cost_per_item, 1);
  const int max_threads = num_threads();
  if (work >= kParallelGrain && max_threads > 1 && !omp_in_parallel()) {
    const int64_t threads = std::min<int64_t>(max_threads, std::max<int64_t>(1, work / kParallelGrain));
    const int64_t threads_used = std::min<int64_t>(threads, n);
#pragma omp parallel num_threads(static_cast<int>(threads_used))
    {
      const int64_t t = omp_get_thread_num();
      const int64_t nt = omp_get_num_threads();
      const int64_t begin = n * t / nt;
      const int64_t end = n * (t + 1) / nt;
      if (begin < end) body(begin, end);
    }
    return;
  }
#endif
  body(int64_t{0}, n);
}

}  // namespace ranvier::cpu
