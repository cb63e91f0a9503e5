// ranvier._C: the pybind11 module. Each op family registers its functions here; the
// functions themselves live in bind_<family>.cpp.
#include <pybind11/pybind11.h>

#include "bindings.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "ranvier's compiled kernels (CPU, and CUDA where built). Use ranvier.ops, not this.";
  ranvier::binding::bind_cuda(m);
  ranvier::binding::bind_activations(m);
  ranvier::binding::bind_matmul(m);
  ranvier::binding::bind_softmax(m);
  ranvier::binding::bind_losses(m);
  ranvier::binding::bind_dropout(m);
  ranvier::binding::bind_optim(m);
  ranvier::binding::bind_pooling(m);
  ranvier::binding::bind_batch_norm(m);
  ranvier::binding::bind_conv(m);
  ranvier::binding::bind_vector_math(m);
  ranvier::binding::bind_threads(m);
  ranvier::binding::bind_device_allocator(m);
  ranvier::binding::bind_host_memory_pool(m);
}
