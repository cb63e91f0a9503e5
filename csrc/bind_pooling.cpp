// _C pooling functions: max, average and adaptive average pooling in 1-D and 2-D, CPU or CUDA.
//
// Inputs are (N, C, L) for 1-D and (N, C, H, W) for 2-D; the rank of x decides which, and
// error messages name the op accordingly (max_pool1d, avg_pool2d_backward, ...). 1-D pooling
// runs on the 2-D kernels with H = 1. pool_output_shape() is the one place where the output
// size is computed and the window geometry checked: ranvier.ops calls it to allocate the
// outputs, and the forward/backward bindings call it again to check what they are given.
// Every array of a call must live on one device; CUDA kernels run on CuPy's current stream.
#include <pybind11/stl.h>

#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "array_view.h"
#include "bindings.h"
#include "ranvier/pooling.h"
#include "ranvier/pooling_math.h"

namespace ranvier::binding {

namespace {

using Sizes = std::vector<int64_t>;

enum class PoolKind { Max, Avg, AdaptiveAvg };

const char* base_name(PoolKind kind) {
  return kind == PoolKind::Max ? "max_pool" : kind == PoolKind::Avg ? "avg_pool" : "adaptive_avg_pool";
}

// "max_pool2d", "avg_pool1d_backward", ...: the op as the user called it.
std::string op_name(PoolKind kind, int64_t spatial_dims, bool backward) {
  const char* base = base_name(kind);
  return std::string(base) + std::to_string(spatial_dims) + "d" + (backward ? "_backward" : "");
}

std::string sizes_str(const Sizes& sizes) {
  std::string s = "(";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + (sizes.size() == 1 ? ",)" : ")");
}

// The op's name for messages, from the rank of the array `obj` (read before it is viewed, so
// that the view's own errors name max_pool2d rather than max_pool).
std::string op_name_for(py::handle obj, PoolKind kind, bool backward) {
  int64_t ndim = -1;
  try {
    ndim = static_cast<int64_t>(py::len(obj.attr("shape")));
  } catch (const py::error_already_set&) {
  }
  if (ndim == 3 || ndim == 4) return op_name(kind, ndim - 2, backward);
  const char* base = base_name(kind);
  return std::string(base) + (backward ? "_backward" : "");
}

// 1 for (N, C, L), 2 for (N, C, H, W); anything else is an error.
int64_t spatial_dims_of(const Sizes& shape, PoolKind kind, const char* what) {
  const int64_t ndim = static_cast<int64_t>(shape.size());
  if (ndim != 3 && ndim != 4) {
    throw py::value_error(std::string(base_name(kind)) + ": " + what + " of shape " + sizes_str(shape) +
                          " must be 3-D (N, C, L) for 1-D pooling or 4-D (N, C, H, W) for 2-D pooling");
  }
  return ndim - 2;
}

// The spatial sizes of an (N, C, *spatial) input: at least 1 each, and C at least 1 (N may
// be 0, an empty batch, as PyTorch allows).
void check_pool_input(const Sizes& shape, const std::string& op, const char* what) {
  for (size_t i = 1; i < shape.size(); ++i) {
    if (shape[i] < 1) {
      fail_value(op.c_str(), std::string(what) + " of shape " + sizes_str(shape) +
                                 " has an empty channel or spatial dimension; only the batch "
                                 "dimension may be 0");
    }
  }
}

// Each window parameter holds one value per spatial dimension, within [minimum, 2^31).
void check_window_argument(const Sizes& values, int64_t spatial_dims, int64_t minimum,
                           const std::string& op, const char* name) {
  if (static_cast<int64_t>(values.size()) != spatial_dims) {
    fail_value(op.c_str(), std::string(name) + " " + sizes_str(values) + " must have " +
                               std::to_string(spatial_dims) + " value(s), one per spatial dimension");
  }
  for (int64_t v : values) {
    if (v < minimum || v > std::numeric_limits<int32_t>::max()) {
      fail_value(op.c_str(), std::string(name) + " " + sizes_str(values) + " must be >= " +
                                 std::to_string(minimum) + " (and below 2^31) in every dimension");
    }
  }
}

// Output length along one axis, PyTorch's pooling_output_shape: floor or ceil of
// (in + 2 pad - dilation (kernel - 1) - 1) / stride, plus one; with ceil_mode the last
// window must still start inside the input or its left padding.
int64_t pooled_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation,
                    bool ceil_mode) {
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1;  // >= 0, checked by the caller
  int64_t out = (span + (ceil_mode ? stride - 1 : 0)) / stride + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// True when every window along the axis holds at least one element of the input (a window
// made only of padding could occur with a large dilation; it has no arg-max).
bool windows_touch_input(int64_t in, int64_t out, int64_t stride, int64_t pad, int64_t kernel,
                         int64_t dilation) {
  for (int64_t o = 0; o < out; ++o) {
    const PoolWindowAxis axis = pool_window_axis(o, stride, pad, kernel, dilation, in);
    if (axis.first >= axis.end) return false;
  }
  return true;
}

struct PoolWindow {
  Sizes kernel, stride, padding, dilation;
  bool ceil_mode = false;
};

// Checks the window against an input of `input_shape` and returns the geometry of the
// 2-D kernels (1-D inputs get H = 1). `op` names the caller in messages.
Pool2dGeometry pool_geometry(const Sizes& input_shape, const PoolWindow& win, PoolKind kind,
                             const std::string& op) {
  const int64_t dims = static_cast<int64_t>(input_shape.size()) - 2;
  check_pool_input(input_shape, op, "input");
  check_window_argument(win.kernel, dims, 1, op, "kernel_size");
  check_window_argument(win.stride, dims, 1, op, "stride");
  check_window_argument(win.padding, dims, 0, op, "padding");
  check_window_argument(win.dilation, dims, 1, op, "dilation");
  if (kind != PoolKind::Max) {
    for (int64_t d : win.dilation) {
      if (d != 1) fail_value(op.c_str(), "average pooling has no dilation; got " + sizes_str(win.dilation));
    }
  }
  Sizes out(static_cast<size_t>(dims));
  for (size_t i = 0; i < static_cast<size_t>(dims); ++i) {
    const int64_t in = input_shape[2 + i], k = win.kernel[i], s = win.stride[i], p = win.padding[i],
                  d = win.dilation[i];
    if (p > k / 2) {
      fail_value(op.c_str(), "padding " + sizes_str(win.padding) +
                                 " must be at most half the kernel size " + sizes_str(win.kernel) +
                                 " in every dimension (as PyTorch requires)");
    }
    const int64_t window = d * (k - 1) + 1;
    if (window > in + 2 * p) {
      Sizes padded;
      for (size_t j = 0; j < static_cast<size_t>(dims); ++j) padded.push_back(input_shape[2 + j] + 2 * win.padding[j]);
      fail_value(op.c_str(), "the pooling window (kernel_size " + sizes_str(win.kernel) + ", dilation " +
                                 sizes_str(win.dilation) + ") is larger than the input of shape " +
                                 sizes_str(input_shape) + " padded by " + sizes_str(win.padding) +
                                 " to spatial size " + sizes_str(padded));
    }
    out[i] = pooled_size(in, k, s, p, d, win.ceil_mode);
    if (out[i] < 1) {
      fail_value(op.c_str(), "the output would be empty (size " + std::to_string(out[i]) +
                                 ") for the input of shape " + sizes_str(input_shape));
    }
    if (!windows_touch_input(in, out[i], s, p, k, d)) {
      fail_value(op.c_str(), "with dilation " + sizes_str(win.dilation) + " and padding " +
                                 sizes_str(win.padding) + " a pooling window over the input of shape " +
                                 sizes_str(input_shape) + " covers only padding");
    }
  }
  Pool2dGeometry g;
  g.planes = input_shape[0] * input_shape[1];
  const bool two_d = dims == 2;
  g.in_h = two_d ? input_shape[2] : 1;
  g.in_w = input_shape[two_d ? 3 : 2];
  g.out_h = two_d ? out[0] : 1;
  g.out_w = out[two_d ? 1 : 0];
  const size_t w = two_d ? 1 : 0;
  if (two_d) {
    g.kernel_h = win.kernel[0], g.stride_h = win.stride[0], g.pad_h = win.padding[0], g.dilation_h = win.dilation[0];
  }
  g.kernel_w = win.kernel[w], g.stride_w = win.stride[w], g.pad_w = win.padding[w], g.dilation_w = win.dilation[w];
  return g;
}

Sizes output_shape(const Sizes& input_shape, const Pool2dGeometry& g) {
  Sizes shape = {input_shape[0], input_shape[1]};
  if (input_shape.size() == 4) shape.push_back(g.out_h);
  shape.push_back(g.out_w);
  return shape;
}

// out_shape(pool_kind, input_shape, ...) for ranvier.ops: the output shape, after every check.
py::tuple pool_output_shape(const std::string& kind_name, const Sizes& input_shape, const Sizes& kernel,
                            const Sizes& stride, const Sizes& padding, const Sizes& dilation,
                            bool ceil_mode) {
  PoolKind kind;
  if (kind_name == "max") kind = PoolKind::Max;
  else if (kind_name == "avg") kind = PoolKind::Avg;
  else throw py::value_error("pool_output_shape: kind must be 'max' or 'avg', got '" + kind_name + "'");
  const int64_t dims = spatial_dims_of(input_shape, kind, "input");
  const std::string op = op_name(kind, dims, false);
  const Pool2dGeometry g = pool_geometry(input_shape, {kernel, stride, padding, dilation, ceil_mode}, kind, op);
  return py::tuple(py::cast(output_shape(input_shape, g)));
}

// y, indices (N, C, *out) = max pooling of x (N, C, *in)
void max_pool_forward(py::handle x_obj, py::handle y_obj, py::handle indices_obj, const Sizes& kernel,
                      const Sizes& stride, const Sizes& padding, const Sizes& dilation, bool ceil_mode) {
  const ArrayView x = view_array(x_obj, op_name_for(x_obj, PoolKind::Max, false).c_str(), "x");
  const int64_t dims = spatial_dims_of(x.shape, PoolKind::Max, "x");
  const std::string op = op_name(PoolKind::Max, dims, false);
  const Pool2dGeometry g = pool_geometry(x.shape, {kernel, stride, padding, dilation, ceil_mode}, PoolKind::Max, op);
  const char* o = op.c_str();
  const ArrayView y = view_output(y_obj, o, "out");
  const ArrayView indices = view_output(indices_obj, o, "indices");
  check_float_args(o, {x, "x"}, {{y, "out"}}, {{indices, "indices"}});
  check_dtype(indices, DType::Int64, o, "indices");
  const Sizes out_shape = output_shape(x.shape, g);
  check_shape(y, out_shape, o, "out");
  check_shape(indices, out_shape, o, "indices");
  check_outputs_disjoint(o, {{indices, "indices"}, {y, "out"}}, {{x, "x"}});
  RANVIER_RUN_FLOAT_KERNEL(x, o, max_pool2d_forward, g, x.ptr<T>(), y.ptr<T>(),
                           indices.ptr<int64_t>());
}

// grad_input (N, C, *in) from grad_output and indices (N, C, *out): each gradient to its
// arg-max. The window (kernel_size, stride, padding, dilation, ceil_mode of the forward) is
// optional; when given it is checked against the shapes, and CUDA arrays then take the fast
// gather kernel (one thread per input element) instead of the one-thread-per-plane one.
void max_pool_backward(py::handle dy_obj, py::handle indices_obj, py::handle dx_obj,
                       const std::optional<Sizes>& kernel, const std::optional<Sizes>& stride,
                       const std::optional<Sizes>& padding, const std::optional<Sizes>& dilation,
                       bool ceil_mode) {
  const ArrayView dx = view_output(dx_obj, op_name_for(dx_obj, PoolKind::Max, true).c_str(), "out");
  const int64_t dims = spatial_dims_of(dx.shape, PoolKind::Max, "out (the gradient of the input)");
  const std::string op = op_name(PoolKind::Max, dims, true);
  const char* o = op.c_str();
  const ArrayView dy = view_array(dy_obj, o, "grad_output");
  const ArrayView indices = view_array(indices_obj, o, "indices");
  check_float_args(o, {dy, "grad_output"}, {{dx, "out"}}, {{indices, "indices"}});
  check_dtype(indices, DType::Int64, o, "indices");
  check_same_shape(dy, indices, o, "grad_output", "indices");
  check_pool_input(dx.shape, op, "out (the gradient of the input)");
  if (dy.ndim() != dx.ndim() || dy.shape[0] != dx.shape[0] || dy.shape[1] != dx.shape[1]) {
    fail_value(o, "grad_output of shape " + dy.shape_str() + " does not match the input of shape " +
                      dx.shape_str() + " (same rank, batch and channels expected)");
  }
  check_outputs_disjoint(o, {{dx, "out"}}, {{dy, "grad_output"}, {indices, "indices"}});
  const bool has_window = kernel.has_value();
  if (has_window != stride.has_value() || has_window != padding.has_value() || has_window != dilation.has_value()) {
    fail_value(o, "kernel_size, stride, padding and dilation must be given all together (the forward's "
                  "window) or not at all");
  }
  Pool2dGeometry g;
  if (has_window) {
    g = pool_geometry(dx.shape, {*kernel, *stride, *padding, *dilation, ceil_mode}, PoolKind::Max, op);
    check_shape(dy, output_shape(dx.shape, g), o, "grad_output");
  } else {
    g.planes = dx.shape[0] * dx.shape[1];
    g.in_h = dims == 2 ? dx.shape[2] : 1;
    g.in_w = dx.shape.back();
    g.out_h = dims == 2 ? dy.shape[2] : 1;
    g.out_w = dy.shape.back();
  }
  // Every index must lie within its input plane: the CPU kernel (and the CUDA one without a
  // window) writes dx[plane, index]. On the GPU the scan waits for the stream once.
  const int64_t plane = g.in_h * g.in_w;
  const int64_t* idx = indices.ptr<int64_t>();
  const StreamHandle stream = stream_for(dy);
  int64_t bad = -1, bad_value = 0;
  if (dy.device == Device::CUDA) {
#ifdef RANVIER_WITH_CUDA
    py::gil_scoped_release nogil;
    bad = cuda::first_out_of_plane_index(idx, indices.numel(), plane, &bad_value, stream);
#endif
  } else {
    for (int64_t i = 0, n = indices.numel(); i < n; ++i) {
      if (idx[i] < 0 || idx[i] >= plane) {
        bad = i;
        bad_value = idx[i];
        break;
      }
    }
  }
  if (bad >= 0) {
    throw py::index_error(op + ": indices[" + std::to_string(bad) + "] = " + std::to_string(bad_value) +
                          " is outside the input plane of " + std::to_string(plane) +
                          " elements (input shape " + dx.shape_str() + ")");
  }
  dispatch_float(dy.dtype, o, [&](auto zero) {
    using T = decltype(zero);
    py::gil_scoped_release nogil;
    if (dy.device == Device::CPU) {
      cpu::max_pool2d_backward<T>(g, dy.ptr<T>(), idx, dx.ptr<T>());
    } else {
#ifdef RANVIER_WITH_CUDA
      if (has_window) {
        cuda::max_pool2d_backward<T>(g, dy.ptr<T>(), idx, dx.ptr<T>(), stream);
      } else {
        cuda::max_pool2d_backward_by_plane<T>(g, dy.ptr<T>(), idx, dx.ptr<T>(), stream);
      }
#endif
    }
  });
  (void)stream;
}

void check_divisor_override(int64_t divisor_override, const std::string& op) {
  if (divisor_override < 0) {
    fail_value(op.c_str(), "divisor_override must be positive (or 0 for none), got " +
                               std::to_string(divisor_override));
  }
}

// y (N, C, *out) = average pooling of x (N, C, *in)
void avg_pool_forward(py::handle x_obj, py::handle y_obj, const Sizes& kernel, const Sizes& stride,
                      const Sizes& padding, bool ceil_mode, bool count_include_pad,
                      int64_t divisor_override) {
  const ArrayView x = view_array(x_obj, op_name_for(x_obj, PoolKind::Avg, false).c_str(), "x");
  const int64_t dims = spatial_dims_of(x.shape, PoolKind::Avg, "x");
  const std::string op = op_name(PoolKind::Avg, dims, false);
  const Sizes dilation(static_cast<size_t>(dims), 1);
  const Pool2dGeometry g = pool_geometry(x.shape, {kernel, stride, padding, dilation, ceil_mode}, PoolKind::Avg, op);
  check_divisor_override(divisor_override, op);
  const char* o = op.c_str();
  const ArrayView y = view_output(y_obj, o, "out");
  check_float_args(o, {x, "x"}, {{y, "out"}});
  check_shape(y, output_shape(x.shape, g), o, "out");
  check_disjoint(y, x, o, "out", "x");
  RANVIER_RUN_FLOAT_KERNEL(x, o, avg_pool2d_forward, g, count_include_pad, divisor_override,
                           x.ptr<T>(), y.ptr<T>());
}

// grad_input (N, C, *in) from grad_output (N, C, *out) of average pooling
void avg_pool_backward(py::handle dy_obj, py::handle dx_obj, const Sizes& kernel, const Sizes& stride,
                       const Sizes& padding, bool ceil_mode, bool count_include_pad,
                       int64_t divisor_override) {
  const ArrayView dx = view_output(dx_obj, op_name_for(dx_obj, PoolKind::Avg, true).c_str(), "out");
  const int64_t dims = spatial_dims_of(dx.shape, PoolKind::Avg, "out (the gradient of the input)");
  const std::string op = op_name(PoolKind::Avg, dims, true);
  const char* o = op.c_str();
  const Sizes dilation(static_cast<size_t>(dims), 1);
  const Pool2dGeometry g = pool_geometry(dx.shape, {kernel, stride, padding, dilation, ceil_mode}, PoolKind::Avg, op);
  check_divisor_override(divisor_override, op);
  const ArrayView dy = view_array(dy_obj, o, "grad_output");
  check_float_args(o, {dy, "grad_output"}, {{dx, "out"}});
  check_shape(dy, output_shape(dx.shape, g), o, "grad_output");
  check_disjoint(dx, dy, o, "out", "grad_output");
  RANVIER_RUN_FLOAT_KERNEL(dy, o, avg_pool2d_backward, g, count_include_pad, divisor_override,
                           dy.ptr<T>(), dx.ptr<T>());
}

// The (in, out) pair of an adaptive pooling call: same rank, batch and channels; the
// spatial sizes of both at least 1. Returns the kernel's (planes, in_h, in_w, out_h, out_w).
struct AdaptiveSizes {
  int64_t planes, in_h, in_w, out_h, out_w;
};

AdaptiveSizes adaptive_sizes(const ArrayView& in, const ArrayView& out, const char* in_name,
                             const char* out_name, const std::string& op) {
  check_pool_input(in.shape, op, in_name);
  if (out.ndim() != in.ndim() || out.shape[0] != in.shape[0] || out.shape[1] != in.shape[1]) {
    fail_value(op.c_str(), std::string(out_name) + " of shape " + out.shape_str() + " does not match " +
                               in_name + " of shape " + in.shape_str() +
                               " (same rank, batch and channels expected)");
  }
  check_pool_input(out.shape, op, out_name);
  const bool two_d = in.ndim() == 4;
  return {in.shape[0] * in.shape[1], two_d ? in.shape[2] : 1, in.shape.back(),
          two_d ? out.shape[2] : 1, out.shape.back()};
}

// y (N, C, *out) = adaptive average pooling of x (N, C, *in); y's shape sets the output size
void adaptive_avg_pool_forward(py::handle x_obj, py::handle y_obj) {
  const ArrayView x = view_array(x_obj, op_name_for(x_obj, PoolKind::AdaptiveAvg, false).c_str(), "x");
  const int64_t dims = spatial_dims_of(x.shape, PoolKind::AdaptiveAvg, "x");
  const std::string op = op_name(PoolKind::AdaptiveAvg, dims, false);
  const char* o = op.c_str();
  const ArrayView y = view_output(y_obj, o, "out");
  check_float_args(o, {x, "x"}, {{y, "out"}});
  const AdaptiveSizes s = adaptive_sizes(x, y, "x", "out", op);
  check_disjoint(y, x, o, "out", "x");
  RANVIER_RUN_FLOAT_KERNEL(x, o, adaptive_avg_pool2d_forward, s.planes, s.in_h, s.in_w, s.out_h,
                           s.out_w, x.ptr<T>(), y.ptr<T>());
}

// grad_input (N, C, *in) from grad_output (N, C, *out) of adaptive average pooling
void adaptive_avg_pool_backward(py::handle dy_obj, py::handle dx_obj) {
  const ArrayView dx = view_output(dx_obj, op_name_for(dx_obj, PoolKind::AdaptiveAvg, true).c_str(), "out");
  const int64_t dims = spatial_dims_of(dx.shape, PoolKind::AdaptiveAvg, "out (the gradient of the input)");
  const std::string op = op_name(PoolKind::AdaptiveAvg, dims, true);
  const char* o = op.c_str();
  const ArrayView dy = view_array(dy_obj, o, "grad_output");
  check_float_args(o, {dy, "grad_output"}, {{dx, "out"}});
  const AdaptiveSizes s = adaptive_sizes(dx, dy, "out (the gradient of the input)", "grad_output", op);
  check_disjoint(dx, dy, o, "out", "grad_output");
  RANVIER_RUN_FLOAT_KERNEL(dy, o, adaptive_avg_pool2d_backward, s.planes, s.in_h, s.in_w, s.out_h,
                           s.out_w, dy.ptr<T>(), dx.ptr<T>());
}

}  // namespace

void bind_pooling(py::module_& m) {
  m.def("pool_output_shape", &pool_output_shape, py::arg("kind"), py::arg("input_shape"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("ceil_mode"),
        "Output shape of 'max' or 'avg' pooling of an (N, C, L) or (N, C, H, W) input, after "
        "checking the window (raises ValueError naming the op and the shapes).");
  m.def("max_pool_forward", &max_pool_forward, py::arg("x"), py::arg("out"), py::arg("indices"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("ceil_mode"), "out, indices (int64, flat within each input plane) = max pooling of x.");
  m.def("max_pool_backward", &max_pool_backward, py::arg("grad_output"), py::arg("indices"),
        py::arg("out"), py::arg("kernel_size") = py::none(), py::arg("stride") = py::none(),
        py::arg("padding") = py::none(), py::arg("dilation") = py::none(), py::arg("ceil_mode") = false,
        "out (the input's shape) = grad_output routed to the arg-max indices. The forward's window "
        "(all four sizes, and ceil_mode), when given, is checked against the shapes and lets CUDA "
        "arrays use the faster gather kernel.");
  m.def("avg_pool_forward", &avg_pool_forward, py::arg("x"), py::arg("out"), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"), py::arg("count_include_pad"),
        py::arg("divisor_override"), "out = average pooling of x (divisor_override 0: none).");
  m.def("avg_pool_backward", &avg_pool_backward, py::arg("grad_output"), py::arg("out"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"),
        py::arg("count_include_pad"), py::arg("divisor_override"),
        "out (the input's shape) = gradient of average pooling.");
  m.def("adaptive_avg_pool_forward", &adaptive_avg_pool_forward, py::arg("x"), py::arg("out"),
        "out = adaptive average pooling of x to out's spatial size.");
  m.def("adaptive_avg_pool_backward", &adaptive_avg_pool_backward, py::arg("grad_output"),
        py::arg("out"), "out (the input's shape) = gradient of adaptive average pooling.");
}

}  // namespace ranvier::binding
