// The host memory cache behind the NumPy arrays ranvier's ops return: _C.host_empty(shape,
// dtype) gives an uninitialised C-contiguous array whose memory, once the array is gone,
// goes back to a cache here instead of to the C library, for the next array of its size.
//
// Why: a training step allocates the same outputs (activations, gradients, im2col-sized
// scratch of the Python layer) every step, and frees them all before the next one. glibc
// hands blocks of this size back to the operating system when they are freed (munmap, or
// trimming the top of the brk heap), so each step's outputs start on fresh pages and the
// kernel faults and zeroes every one of them on first write. perf on the MNIST-sized CNN
// step (bench train, one thread): 22% of its time in page faults and 4% in brk. PyTorch's
// own step paid 6-10% for the same. With the blocks kept, a step's outputs reuse the last
// step's pages, as CuPy's memory pool and PyTorch's CUDA caching allocator do on the GPU.
//
// Design:
//  - Only blocks of kMinPooledBytes and more are cached: smaller ones come from the C
//    library's arenas, which keep them, and the Python layer calls NumPy for those
//    (ranvier._arrays.empty) without crossing into C++.
//  - Sizes are rounded up to classes an eighth of a power of two apart (at most 12.5% of a
//    block unused), so a slightly smaller array, such as the last batch of an epoch, can
//    reuse the block of a larger one. A request takes a free block of its own class or a
//    new one; classes are never split or merged.
//  - Each block starts with a 64-byte header holding its class, so the array's release
//    needs only the data pointer (the capsule that is the array's base holds it).
//  - The cache holds at most limit bytes of free blocks (ranvier.cpu.set_cache_limit,
//    default kDefaultLimit): a block freed when the cache is full goes back to the C
//    library. empty_cache() frees every cached block. Blocks in use are never counted
//    against the limit.
//  - A mutex guards the free lists (arrays may die on any thread that holds the GIL; the
//    lock is held for a list operation only, and never while Python objects are made: that
//    can run the garbage collector, whose freed arrays come back here on the same thread).
//  - The pool is created once and never destroyed, so arrays that outlive the module at
//    interpreter exit release into a live pool.
//  - When an allocation fails, the cache is freed and the allocation tried once more before
//    MemoryError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "array_view.h"
#include "bindings.h"
#include "host_memory_pool.h"

namespace ranvier::binding {

namespace {

constexpr size_t kHeaderBytes = 64;                  // keeps the data 64-byte aligned
constexpr size_t kMinPooledBytes = 64 * 1024;        // smaller arrays: NumPy's own malloc
constexpr size_t kDefaultLimit = size_t(1) << 30;    // 1 GiB of free blocks at most

// bytes rounded up to a multiple of 1/8 of the largest power of two <= bytes (and of a
// page): 65 KiB -> 72 KiB, 1 MB -> 1.0625 MiB.
size_t size_class(size_t bytes) {
  const int exponent = 63 - __builtin_clzll(bytes);
  const size_t granule = size_t(1) << std::max(exponent - 3, 12);
  return (bytes + granule - 1) / granule * granule;
}

struct BlockHeader {
  size_t class_bytes;
};

class HostPool {
 public:
  // The data pointer of a block of class_bytes usable bytes (a cached one when there is).
  void* take(size_t class_bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto found = free_.find(class_bytes);
      if (found != free_.end() && !found->second.empty()) {
        void* raw = found->second.back();
        found->second.pop_back();
        cached_bytes_ -= class_bytes;
        in_use_bytes_ += class_bytes;
        ++hits_;
        return static_cast<char*>(raw) + kHeaderBytes;
      }
      ++misses_;
    }
    void* raw = std::aligned_alloc(kHeaderBytes, class_bytes + kHeaderBytes);
    if (raw == nullptr) {
      release_cached();
      raw = std::aligned_alloc(kHeaderBytes, class_bytes + kHeaderBytes);
      if (raw == nullptr) throw std::bad_alloc();
    }
    static_cast<BlockHeader*>(raw)->class_bytes = class_bytes;
    std::lock_guard<std::mutex> lock(mutex_);
    in_use_bytes_ += class_bytes;
    return static_cast<char*>(raw) + kHeaderBytes;
  }

  // Takes back the block whose data pointer take() returned.
  void give_back(void* data) {
    void* raw = static_cast<char*>(data) - kHeaderBytes;
    const size_t class_bytes = static_cast<BlockHeader*>(raw)->class_bytes;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_use_bytes_ -= class_bytes;
      if (cached_bytes_ + class_bytes <= limit_) {
        free_[class_bytes].push_back(raw);
        cached_bytes_ += class_bytes;
        return;
      }
    }
    std::free(raw);
  }

  // Frees every cached block; blocks in use are untouched.
  void release_cached() {
    std::unordered_map<size_t, std::vector<void*>> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks.swap(free_);
      cached_bytes_ = 0;
    }
    for (auto& [class_bytes, list] : blocks) {
      for (void* raw : list) std::free(raw);
    }
  }

  void set_limit(size_t limit) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      limit_ = limit;
      if (cached_bytes_ <= limit_) return;
    }
    release_cached();
  }

  struct Stats {
    size_t cached_bytes, in_use_bytes, limit_bytes;
    uint64_t hits, misses;
  };
  // A copy of the counters. No Python object may be made while the mutex is held: making
  // one can run the garbage collector, whose freed arrays call give_back on this thread.
  Stats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {cached_bytes_, in_use_bytes_, limit_, hits_, misses_};
  }

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // class bytes -> raw blocks
  size_t cached_bytes_ = 0;
  size_t in_use_bytes_ = 0;
  size_t limit_ = kDefaultLimit;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

HostPool& host_pool() {
  static HostPool* const pool = new HostPool();  // never destroyed: see the file comment
  return *pool;
}

}  // namespace

py::array host_empty(const std::vector<py::ssize_t>& shape, const py::dtype& dtype) {
  const char* op = "empty";
  size_t count = 1;
  for (py::ssize_t extent : shape) {
    if (extent < 0) fail_value(op, "negative dimension " + std::to_string(extent));
    if (extent != 0 && count > SIZE_MAX / static_cast<size_t>(extent)) {
      fail_value(op, "the array's size overflows");
    }
    count *= static_cast<size_t>(extent);
  }
  const size_t itemsize = static_cast<size_t>(dtype.itemsize());
  if (itemsize == 0 || count > (SIZE_MAX - kHeaderBytes) / 2 / itemsize) {
    fail_value(op, "the array's size overflows");
  }
  const size_t bytes = count * itemsize;
  if (bytes < kMinPooledBytes) return py::array(dtype, shape);
  void* data = host_pool().take(size_class(bytes));
  py::capsule owner;
  try {
    owner = py::capsule(data, [](void* block) { host_pool().give_back(block); });
  } catch (...) {
    host_pool().give_back(data);  // no capsule owns it yet
    throw;
  }
  return py::array(dtype, shape, data, owner);  // on failure owner's release returns it
}

void bind_host_memory_pool(py::module_& m) {
  m.def("host_empty", &host_empty, py::arg("shape"), py::arg("dtype"),
        "Uninitialised C-contiguous host array; its memory comes from and returns to "
        "ranvier's host cache when it is min_block_bytes or more.");
  m.def(
      "host_cache_stats",
      [] {
        const HostPool::Stats stats = host_pool().stats();
        py::dict out;
        out["cached_bytes"] = stats.cached_bytes;
        out["in_use_bytes"] = stats.in_use_bytes;
        out["limit_bytes"] = stats.limit_bytes;
        out["hits"] = stats.hits;
        out["misses"] = stats.misses;
        out["min_block_bytes"] = kMinPooledBytes;
        return out;
      },
      "The host cache's counters: cached_bytes (free blocks held), in_use_bytes (blocks held "
      "by live arrays), limit_bytes, hits, misses, min_block_bytes.");
  m.def(
      "host_empty_cache", [] { host_pool().release_cached(); },
      "Free every cached host block (blocks of live arrays stay).");
  m.def(
      "set_host_cache_limit", [](size_t limit) { host_pool().set_limit(limit); },
      py::arg("nbytes"), "Hold at most nbytes of free blocks; frees the cache if it holds more.");
}

}  // namespace ranvier::binding
