// Where the CUDA kernels' temporary device memory (reduction partial sums, the conv column
// buffers, ...) comes from: one replaceable allocator, so that all of it can be taken from
// the same pool as the arrays themselves (the binding layer installs CuPy's memory pool at
// import, csrc/device_allocator_cupy.cpp; two pools side by side can each hold memory the
// other cannot reuse, and a model near the GPU's limit then fails although memory is free).
//
// The default is the CUDA runtime's stream-ordered allocator (cudaMallocAsync/cudaFreeAsync),
// so the kernels also work without Python (a C++ test, another host program).
// No CUDA include here: streams are StreamHandles (common.h). Implemented in
// kernels/cuda/device_allocator.cu; only compiled with CUDA.
#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>

#include "ranvier/common.h"

namespace ranvier::cuda {

// A failed scratch allocation for lack of memory (the binding layer turns it into a Python
// MemoryError); other allocation failures are std::runtime_error (RuntimeError).
class DeviceOutOfMemory : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An allocator for scratch memory used by work enqueued on `stream`.
//   allocate: returns `bytes` (> 0) of device memory on the current device that work on
//     `stream` may use at once; `what` names the kernel for error messages. Throws
//     DeviceOutOfMemory or std::runtime_error; never returns null.
//   free: gives back a pointer from this allocator's allocate, called on the host right
//     after the last work using it was enqueued on `stream` (not after it finished): the
//     allocator must not hand the memory to work that is not ordered after that work.
//     Never throws.
struct DeviceAllocator {
  const char* name;  // "cudaMallocAsync", "cupy", ...: for diagnostics
  void* (*allocate)(size_t bytes, StreamHandle stream, const char* what);
  void (*free)(void* pointer, StreamHandle stream) noexcept;
};

// The allocator the kernels use now (never null), and the built-in default.
const DeviceAllocator& device_allocator();
const DeviceAllocator& default_device_allocator();
// Installs `allocator` (which must outlive its use; nullptr restores the default).
// Buffers allocated before the switch are still freed by the allocator that made them.
void set_device_allocator(const DeviceAllocator* allocator);

// Scratch memory for the duration of one kernel call: allocated from the current allocator,
// given back to that same allocator on the same stream when it goes out of scope (also when
// an exception unwinds). Zero bytes allocate nothing (as<T>() is then null).
class DeviceScratch {
 public:
  DeviceScratch(size_t bytes, StreamHandle stream, const char* what)
      : allocator_(&device_allocator()), stream_(stream) {
    if (bytes > 0) pointer_ = allocator_->allocate(bytes, stream, what);
  }
  ~DeviceScratch() {
    if (pointer_ != nullptr) allocator_->free(pointer_, stream_);
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(pointer_);
  }

 private:
  const DeviceAllocator* allocator_;
  StreamHandle stream_;
  void* pointer_ = nullptr;
};

}  // namespace ranvier::cuda
