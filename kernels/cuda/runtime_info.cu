// Device queries. Every call tolerates a machine without a driver or GPU: the static CUDA
// runtime only looks for libcuda here, at the first call, never at import.
#include "check.cuh"
#include "ranvier/cuda_runtime_info.h"

namespace ranvier::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  return count;
}

std::string unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    // Without an NVIDIA driver the runtime reports an "insufficient" driver, which reads as
    // if a driver were present but old: say what it usually means.
    if (status == cudaErrorInsufficientDriver || status == cudaErrorNoDevice) {
      return std::string("no usable NVIDIA driver or GPU found (") + cudaGetErrorName(status) +
             ": " + cudaGetErrorString(status) + ")";
    }
    return std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
  }
  return count == 0 ? "no CUDA device found" : "";
}

DeviceProperties device_properties(int device) {
  const int count = device_count();
  if (device < 0 || device >= count) {
    throw std::out_of_range("CUDA device " + std::to_string(device) + " does not exist (" +
                            std::to_string(count) + " device(s) found)");
  }
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  DeviceProperties out;
  out.name = prop.name;
  out.major = prop.major;
  out.minor = prop.minor;
  out.multiprocessors = prop.multiProcessorCount;
  out.total_memory_bytes = prop.totalGlobalMem;
  return out;
}

int pointer_device(const void* pointer) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, pointer) != cudaSuccess) {
    cudaGetLastError();  // clear it: the next check_launch must not report this query
    return -1;
  }
  if (attributes.type != cudaMemoryTypeDevice && attributes.type != cudaMemoryTypeManaged) return -1;
  return attributes.device;
}

int current_device() {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return device;
}

int runtime_version() { return CUDART_VERSION; }

}  // namespace ranvier::cuda
