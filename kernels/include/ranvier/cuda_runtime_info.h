// Questions about the CUDA runtime and devices, answerable without a GPU (they then report none).
#pragma once
#include <string>
#include "ranvier/common.h"

namespace ranvier::cuda {

// Number of usable CUDA devices; 0 when there is no driver or no device (never throws).
int device_count();
// A description of why device_count() is 0 ("" when a device is present).
std::string unavailable_reason();

struct DeviceProperties {
  std::string name;
  int major = 0, minor = 0;        // compute capability
  int multiprocessors = 0;
  uint64_t total_memory_bytes = 0;
};
// Throws std::runtime_error naming the CUDA error for a bad index or a failed query.
DeviceProperties device_properties(int device);

// The device holding `pointer`: its ordinal, or -1 when the pointer is not device (or
// managed) memory or cannot be queried (no driver, no device). Never throws; a failed query
// leaves no sticky error behind for the next launch check.
int pointer_device(const void* pointer);
// The calling thread's current device (cudaGetDevice), or -1 when it cannot be queried.
int current_device();

// The CUDA runtime version this extension was built with, as major * 1000 + minor * 10.
int runtime_version();

}  // namespace ranvier::cuda
