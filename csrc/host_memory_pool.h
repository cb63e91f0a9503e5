// The host memory cache behind the NumPy arrays ranvier's ops return (host_memory_pool.cpp
// says why and how): for C++ code that makes an op's output itself.
#pragma once
#include <pybind11/numpy.h>

#include <vector>

namespace ranvier::binding {

// An uninitialised C-contiguous array of `shape` and `dtype`, from the cache when it is
// 64 KiB or more (what _C.host_empty and ranvier._arrays.empty return).
pybind11::array host_empty(const std::vector<pybind11::ssize_t>& shape,
                           const pybind11::dtype& dtype);

}  // namespace ranvier::binding
