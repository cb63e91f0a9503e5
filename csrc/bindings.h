// One function per op family adds that family's functions to the _C module (module.cpp).
#pragma once
#include <pybind11/pybind11.h>

namespace ranvier::binding {

void bind_activations(pybind11::module_& m);
void bind_matmul(pybind11::module_& m);
void bind_softmax(pybind11::module_& m);
void bind_losses(pybind11::module_& m);
void bind_dropout(pybind11::module_& m);
void bind_optim(pybind11::module_& m);
void bind_cuda(pybind11::module_& m);
// convolution issue: pooling and batch normalisation
void bind_pooling(pybind11::module_& m);
void bind_batch_norm(pybind11::module_& m);
// convolution (issue 3)
void bind_conv(pybind11::module_& m);
// CPU vector math (issue 5)
void bind_vector_math(pybind11::module_& m);
// the CPU kernels' thread count (issue 5)
void bind_threads(pybind11::module_& m);
// the CUDA kernels' scratch memory from CuPy's pool (issue 4): device_allocator_cupy.cpp
void bind_device_allocator(pybind11::module_& m);
// the cache of host memory behind the ops' NumPy outputs: host_memory_pool.cpp
void bind_host_memory_pool(pybind11::module_& m);

}  // namespace ranvier::binding
