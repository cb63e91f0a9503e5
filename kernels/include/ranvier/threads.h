// How many threads the CPU kernels use: one process-wide setting (ranvier.set_num_threads).
#pragma once

namespace ranvier::cpu {

// The number of threads a CPU kernel may use (>= 1). Until set_num_threads is called it is
// OpenMP's default as read at the first call: OMP_NUM_THREADS when set, else the number of
// cores this process may run on. Always 1 in a build without OpenMP.
int num_threads();
// Sets it for every later kernel call, from any calling thread (n >= 1; the caller checks).
// Without OpenMP it is ignored: num_threads() stays 1.
// Kernels pass it to each parallel region explicitly, so unlike omp_set_num_threads it is
// not a per-thread setting.
void set_num_threads(int n);

}  // namespace ranvier::cpu
