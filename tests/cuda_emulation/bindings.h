// Thin pybind11 bindings of the emulated CUDA kernels for the tests: each function takes the
// kernel's own arguments (NumPy arrays in place of device pointers, sizes as given) and
// calls ranvier::cuda::<name> on the emulator. The tests size every array themselves; these
// helpers only check what would otherwise be a wrong read (dtype, contiguity).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

namespace emulated {

namespace py = pybind11;

// a's data as T*: a must have T's dtype and be C-contiguous (the kernels take dense buffers).
template <typename T>
T* data(const py::array& a, const char* name) {
  if (a.dtype().num() != py::dtype::of<T>().num()) {
    throw py::type_error(std::string(name) + ": dtype " + py::str(a.dtype()).cast<std::string>() + ", expected " +
                         py::str(py::dtype::of<T>()).cast<std::string>());
  }
  if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + ": not C-contiguous");
  return static_cast<T*>(const_cast<void*>(a.data()));
}

// As data(), with None for a null pointer.
template <typename T>
T* optional_data(const py::object& a, const char* name) {
  return a.is_none() ? nullptr : data<T>(a.cast<py::array>(), name);
}

// f(T{}) with T float or double, as `a`'s dtype says.
template <typename F>
auto dispatch_float(const py::array& a, F&& f) {
  if (a.dtype().num() == py::dtype::of<float>().num()) return f(float{});
  if (a.dtype().num() == py::dtype::of<double>().num()) return f(double{});
  throw py::type_error("expected float32 or float64, got " + py::str(a.dtype()).cast<std::string>());
}

// The kernels' stream argument: the emulator runs every launch at once.
constexpr void* kStream = nullptr;

void bind_matmul(py::module_& m);
void bind_activations(py::module_& m);
// Kernels that test the emulator itself (selftest_kernels.cu).
void bind_selftest(py::module_& m);
void bind_optim_dropout_linear(py::module_& m);
void bind_losses_softmax(py::module_& m);
void bind_conv_pool_bn(py::module_& m);

}  // namespace emulated
