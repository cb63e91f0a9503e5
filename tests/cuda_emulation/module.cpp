// _cuda_emulated: ranvier's CUDA kernels run by the CPU emulator (see cuda_runtime.h), for
// tests/test_cuda_emulated_*.py. Built by build.py, never installed.
#include "bindings.h"
#include "cuda_runtime.h"

PYBIND11_MODULE(_cuda_emulated, m) {
  m.doc() = "ranvier's CUDA kernels on the CPU emulator (tests only)";
  m.def("set_schedule", &cuda_emulation::set_schedule, pybind11::arg("seed"),
        "Order of threads and blocks: 0 in index order, 1 reversed, other values seed a shuffle.");
  emulated::bind_matmul(m);
  emulated::bind_activations(m);
  emulated::bind_selftest(m);
  emulated::bind_optim_dropout_linear(m);
  emulated::bind_losses_softmax(m);
  emulated::bind_conv_pool_bn(m);
}
