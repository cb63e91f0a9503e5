// The replaceable scratch allocator (ranvier/device_allocator.h) and its default: the CUDA
// runtime's stream-ordered pool (cudaMallocAsync/cudaFreeAsync on the kernels' stream).
#include <atomic>
#include <string>

#include "check.cuh"
#include "ranvier/device_allocator.h"

namespace ranvier::cuda {

namespace {

void* stream_ordered_allocate(size_t bytes, StreamHandle stream, const char* what) {
  void* pointer = nullptr;
  const cudaError_t status = cudaMallocAsync(&pointer, bytes, as_stream(stream));
  if (status != cudaSuccess) {
    // A failed runtime call is also left as the thread's "last error", which the next
    // check_launch (cudaGetLastError) would then report against an innocent kernel.
    cudaGetLastError();
    const std::string message = std::string(what) + ": cannot allocate " + std::to_string(bytes) +
                                " bytes of GPU scratch memory with cudaMallocAsync: " +
                                cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")";
    if (status == cudaErrorMemoryAllocation) throw DeviceOutOfMemory(message);
    throw std::runtime_error(message);
  }
  return pointer;
}

void stream_ordered_free(void* pointer, StreamHandle stream) noexcept {
  // Stream-ordered: the memory returns to the pool once the work enqueued before it on
  // `stream` is done. An error here (only after an earlier fault) shows at the next check.
  if (cudaFreeAsync(pointer, as_stream(stream)) != cudaSuccess) cudaGetLastError();
}

constexpr DeviceAllocator kStreamOrdered{"cudaMallocAsync", &stream_ordered_allocate, &stream_ordered_free};

// Read by every kernel call (any thread), written at import and at interpreter exit.
std::atomic<const DeviceAllocator*> current_allocator{&kStreamOrdered};

}  // namespace

const DeviceAllocator& default_device_allocator() { return kStreamOrdered; }

const DeviceAllocator& device_allocator() { return *current_allocator.load(std::memory_order_acquire); }

void set_device_allocator(const DeviceAllocator* allocator) {
  current_allocator.store(allocator != nullptr ? allocator : &kStreamOrdered, std::memory_order_release);
}

}  // namespace ranvier::cuda
