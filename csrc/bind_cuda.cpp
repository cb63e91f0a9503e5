// _C.cuda_*: whether CUDA was compiled in, and device queries that work without a GPU.
#include "bindings.h"

#ifdef RANVIER_WITH_CUDA
#include "ranvier/cuda_runtime_info.h"
#endif

// Both are set by CMakeLists.txt; the fallbacks keep other build systems compiling.
#ifndef RANVIER_CUDA_BUILD_OPTION
#define RANVIER_CUDA_BUILD_OPTION "UNKNOWN"
#endif
#if defined(RANVIER_WITH_CUDA) && !defined(RANVIER_CUDA_ARCHITECTURES)
#define RANVIER_CUDA_ARCHITECTURES "UNKNOWN"
#endif

namespace ranvier::binding {

namespace py = pybind11;

void bind_cuda(py::module_& m) {
  // The RANVIER_CUDA setting of the build: "AUTO", "ON" or "OFF".
  m.attr("cuda_build_option") = RANVIER_CUDA_BUILD_OPTION;
#ifdef RANVIER_WITH_CUDA
  m.attr("cuda_built") = true;
  // CMAKE_CUDA_ARCHITECTURES, e.g. "80-real,90-real,90-virtual" (90-virtual = PTX for JIT).
  m.attr("cuda_architectures") = RANVIER_CUDA_ARCHITECTURES;
  m.def("cuda_device_count", [] {
    py::gil_scoped_release nogil;
    return cuda::device_count();
  }, "Number of usable CUDA devices (0 without a driver or GPU).");
  m.def("cuda_unavailable_reason", [] {
    py::gil_scoped_release nogil;
    return cuda::unavailable_reason();
  }, "Why no CUDA device can be used ('' when one can).");
  m.def("cuda_device_properties", [](int device) {
    cuda::DeviceProperties p;
    {
      py::gil_scoped_release nogil;
      p = cuda::device_properties(device);
    }
    py::dict d;
    d["name"] = p.name;
    d["major"] = p.major;
    d["minor"] = p.minor;
    d["multiprocessors"] = p.multiprocessors;
    d["total_memory"] = p.total_memory_bytes;
    return d;
  }, py::arg("device"), "Name, compute capability, SM count and memory of one device.");
  m.attr("cuda_runtime_version") = cuda::runtime_version();
#else
  m.attr("cuda_built") = false;
  m.attr("cuda_architectures") = "";
  m.def("cuda_device_count", [] { return 0; });
  m.def("cuda_unavailable_reason", [] {
    return std::string("ranvier was built without CUDA (no nvcc at build time, or RANVIER_CUDA=OFF)");
  });
  m.attr("cuda_runtime_version") = 0;
#endif
}

}  // namespace ranvier::binding
