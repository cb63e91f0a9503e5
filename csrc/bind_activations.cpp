// _C.activation_forward / _C.activation_backward: every elementwise activation, CPU or CUDA.
#include "array_view.h"
#include "bindings.h"
#include "ranvier/activations.h"

namespace ranvier::binding {

namespace {

// y = f(x), written into y (same shape and dtype; may be x itself).
void activation_forward(int code, py::handle x_obj, py::handle y_obj, double alpha) {
  const char* op = "activation_forward";
  const Activation act = parse_activation(code, op);
  const ArrayView x = view_array(x_obj, op, "x");
  const ArrayView y = view_output(y_obj, op, "out");
  check_float_args(op, {x, "x"}, {{y, "out"}});
  check_same_shape(x, y, op, "x", "out");
  check_no_partial_overlap(y, x, op, "out", "x");
  RANVIER_RUN_FLOAT_KERNEL(x, op, activation_forward, act, x.ptr<T>(), y.ptr<T>(), x.numel(),
                           static_cast<T>(alpha));
}

// dx = dy * f'(saved), where saved is x or y (see activation_backward_uses_output).
void activation_backward(int code, py::handle saved_obj, py::handle dy_obj, py::handle dx_obj, double alpha) {
  const char* op = "activation_backward";
  const Activation act = parse_activation(code, op);
  const ArrayView saved = view_array(saved_obj, op, activation_backward_uses_output(act) ? "y" : "x");
  const ArrayView dy = view_array(dy_obj, op, "grad_output");
  const ArrayView dx = view_output(dx_obj, op, "out");
  check_float_args(op, {saved, "saved"}, {{dy, "grad_output"}, {dx, "out"}});
  check_same_shape(saved, dy, op, "saved", "grad_output");
  check_same_shape(saved, dx, op, "saved", "out");
  check_no_partial_overlap(dx, saved, op, "out", "saved");
  check_no_partial_overlap(dx, dy, op, "out", "grad_output");
  RANVIER_RUN_FLOAT_KERNEL(saved, op, activation_backward, act, saved.ptr<T>(), dy.ptr<T>(),
                           dx.ptr<T>(), saved.numel(), static_cast<T>(alpha));
}

}  // namespace

void bind_activations(py::module_& m) {
  py::enum_<Activation>(m, "Activation")
      .value("ReLU", Activation::ReLU)
      .value("LeakyReLU", Activation::LeakyReLU)
      .value("Sigmoid", Activation::Sigmoid)
      .value("Tanh", Activation::Tanh)
      .value("GELU", Activation::GELU)
      .value("GELUTanh", Activation::GELUTanh);
  m.def("activation_forward", &activation_forward, py::arg("activation"), py::arg("x"), py::arg("out"),
        py::arg("alpha") = 0.0, "out = f(x) for the activation with this code.");
  m.def("activation_backward", &activation_backward, py::arg("activation"), py::arg("saved"),
        py::arg("grad_output"), py::arg("out"), py::arg("alpha") = 0.0,
        "out = grad_output * f'(.), from x (ReLU, LeakyReLU, GELU) or y (Sigmoid, Tanh).");
}

}  // namespace ranvier::binding
