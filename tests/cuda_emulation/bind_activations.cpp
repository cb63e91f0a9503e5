// Elementwise activations (ranvier/activations.h, cuda namespace); `act` is the Activation
// enum's value (0 ReLU, 1 LeakyReLU, 2 Sigmoid, 3 Tanh, 4 GELU, 5 GELU tanh).
#include "bindings.h"
#include "ranvier/activations.h"

namespace emulated {

void bind_activations(py::module_& m) {
  namespace cuda = ranvier::cuda;
  using ranvier::Activation;
  m.def("activation_forward", [](int act, py::array x, py::array y, int64_t n, double alpha) {
    dispatch_float(y, [&](auto t) {
      using T = decltype(t);
      cuda::activation_forward<T>(static_cast<Activation>(act), data<T>(x, "x"), data<T>(y, "y"), n, T(alpha),
                                  kStream);
    });
  });
  m.def("activation_backward", [](int act, py::array saved, py::array dy, py::array dx, int64_t n,
                                  double alpha) {
    dispatch_float(dx, [&](auto t) {
      using T = decltype(t);
      cuda::activation_backward<T>(static_cast<Activation>(act), data<T>(saved, "saved"), data<T>(dy, "dy"),
                                   data<T>(dx, "dx"), n, T(alpha), kStream);
    });
  });
}

}  // namespace emulated
