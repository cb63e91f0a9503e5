// Error checking for CUDA calls and launches: a failure becomes a C++ exception naming the
// call (or kernel) and the CUDA error, which pybind11 turns into a Python RuntimeError.
#pragma once
#include <cuda_runtime.h>

#include "ranvier/common.h"

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

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

// Every kernel of ranvier is launched through here: kernel<<<grid, block, shared_bytes,
// stream>>>(args...), then the launch is checked with the kernel's name in the error.
// Built with RANVIER_CUDA_EMULATION (g++, no nvcc: tests/cuda_emulation), the same kernel
// runs instead on the CPU emulator of a GPU block, one fibre per CUDA thread.
template <typename... Params, typename... Args>
void launch_kernel(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
                   size_t shared_bytes, cudaStream_t stream, Args&&... args) {
#if defined(RANVIER_CUDA_EMULATION)
  cuda_emulation::launch(name, kernel, grid, block, shared_bytes, stream, std::forward<Args>(args)...);
#else
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
#endif
  check_launch(name);
}

inline cudaStream_t as_stream(StreamHandle stream) { return static_cast<cudaStream_t>(stream); }

// Blocks of 256 threads, and enough of them to cover n elements with a grid-stride loop
// (capped: each thread then handles several elements).
constexpr int kBlockSize = 256;
inline unsigned int grid_for(int64_t n) {
  const int64_t blocks = (n + kBlockSize - 1) / kBlockSize;
  return static_cast<unsigned int>(blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8);
}

}  // namespace ranvier::cuda
