// Error checking for CUDA calls and launches: a failure becomes a C++ exception naming the
// call (or kernel) and the CUDA error, which pybind11 turns into a Python RuntimeError.
#pragma once
#include <cuda_runtime.h>

#include "ranvier/common.h"

#include <stdexcept>
#include <string>

namespace ranvier::cuda {

inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(status) +
                             " (" + cudaGetErrorString(status) + ")");
  }
}

// After a kernel launch: reports bad launch configurations at once (asynchronous faults
// surface at the next synchronising call).
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

inline cudaStream_t as_stream(StreamHandle stream) { return static_cast<cudaStream_t>(stream); }

// Blocks of 256 threads, and enough of them to cover n elements with a grid-stride loop
// (capped: each thread then handles several elements).
constexpr int kBlockSize = 256;
inline unsigned int grid_for(int64_t n) {
  const int64_t blocks = (n + kBlockSize - 1) / kBlockSize;
  return static_cast<unsigned int>(blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8);
}

}  // namespace ranvier::cuda
