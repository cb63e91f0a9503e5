// Shared definitions for every kernel, CPU and CUDA alike. No Python, no pybind11.
#pragma once
#include <cstdint>

// Functions marked RANVIER_HD compile for the host and, under nvcc, for the device too,
// so that the CPU and CUDA kernels share one copy of each formula.
#if defined(__CUDACC__)
#define RANVIER_HD __host__ __device__ __forceinline__
#else
#define RANVIER_HD inline
#endif

namespace ranvier {

// How a loss reduces its per-element values: as PyTorch's `reduction` argument.
enum class Reduction : int { None = 0, Mean = 1, Sum = 2 };

// CUDA kernels take the stream as an opaque handle (a cudaStream_t) so that these headers
// need no CUDA include; 0 is the legacy default stream.
using StreamHandle = void*;

}  // namespace ranvier
