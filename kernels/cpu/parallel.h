// A parallel loop for the CPU kernels: OpenMP where it was compiled in and the work is big
// enough to pay for waking the threads, one thread otherwise.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>

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

// Runs body(chunk, begin, end, buffer) over `chunks` contiguous pieces of [0, count), the
// chunks in parallel, each with its own buffer of buffer_size elements. A single chunk runs
// on the calling thread outside any parallel region, so that what body calls may use the
// threads itself (conv.cpp's gemm calls do). The buffers are allocated here, before any
// parallel region, so that running out of memory raises std::bad_alloc to the caller
// instead of escaping an OpenMP region; they are left uninitialised (every element is
// written before it is read), as zeroing megabytes per call would cost more than the copies
// that fill them.
template <typename T, typename Body>
void for_each_chunk(int64_t count, int64_t chunks, int64_t cost_per_item, int64_t buffer_size,
                    Body&& body) {
  if (count == 0) return;
  const std::unique_ptr<T[]> buffers(new T[static_cast<size_t>(chunks * buffer_size)]);
  if (chunks <= 1) {
    body(int64_t{0}, int64_t{0}, count, buffers.get());
    return;
  }
  parallel_for(chunks, cost_per_item * (count / chunks), [&](int64_t c_begin, int64_t c_end) {
    for (int64_t chunk = c_begin; chunk < c_end; ++chunk) {
      body(chunk, count * chunk / chunks, count * (chunk + 1) / chunks,
           buffers.get() + chunk * buffer_size);
    }
  });
}

// Split `count` independent units among the threads only when each thread gets at least one.
inline int64_t chunk_count(int64_t count) {
  const int64_t threads = max_threads();
  return threads > 1 && count >= threads ? threads : 1;
}

}  // namespace ranvier::cpu
