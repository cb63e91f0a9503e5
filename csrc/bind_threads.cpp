// _C.get_num_threads / _C.set_num_threads: the CPU kernels' process-wide thread count.
#include "array_view.h"
#include "bindings.h"
#include "ranvier/threads.h"

namespace ranvier::binding {

void bind_threads(py::module_& m) {
  m.def("get_num_threads", &cpu::num_threads,
        "Threads the CPU kernels use (OMP_NUM_THREADS or the available cores until set; 1 "
        "without OpenMP).");
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) fail_value("set_num_threads", "n must be >= 1, got " + std::to_string(n));
        cpu::set_num_threads(n);
      },
      py::arg("n"), "Set the threads the CPU kernels use, for every calling thread (n >= 1).");
  m.def(
      "openmp_built",
      [] {
#ifdef _OPENMP
        return true;
#else
        return false;
#endif
      },
      "Whether the CPU kernels were compiled with OpenMP (else they run on one thread).");
}

}  // namespace ranvier::binding
