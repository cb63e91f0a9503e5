// _C.conv{1,2}d_output_shape, _C.conv{1,2}d_forward, _C.conv{1,2}d_backward_input,
// _C.conv{1,2}d_backward_weight, on CPU (NumPy) or CUDA (CuPy) arrays, all on one device.
//
// Hyper-parameters arrive as sequences with one entry per spatial axis:
//   stride (sh, sw) / (s,), dilation (dh, dw) / (d,), padding (top, bottom, left, right) /
//   (left, right): each side separately, so that 'same' padding with an even kernel can pad
//   one more at the end, as PyTorch does. groups is one integer.
// One checker (conv_shape) validates the input and weight shapes against the
// hyper-parameters for every function, so ranvier.ops computes the output shape with the
// same rules that guard the kernels.
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/stl.h>

#include "array_view.h"
#include "bindings.h"
#include "ranvier/conv.h"

namespace ranvier::binding {

namespace {

// Hyper-parameters above this are refused, which keeps every size computed from them far
// from int64 overflow.
constexpr int64_t kMaxHyperParameter = std::numeric_limits<int32_t>::max();

std::string shape_string(const std::vector<int64_t>& shape) {
  ArrayView view;
  view.shape = shape;
  return view.shape_str();
}

std::string sizes_string(const int64_t* sizes, int64_t count, const char* separator) {
  std::string s;
  for (int64_t i = 0; i < count; ++i) s += (i ? separator : "") + std::to_string(sizes[i]);
  return s;
}

struct ConvParams {
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups = 1;
};

void check_param_count(const char* op, const char* name, const std::vector<int64_t>& values,
                       size_t count, const char* meaning) {
  if (values.size() != count) {
    fail_value(op, std::string(name) + " must have " + std::to_string(count) + " entries " +
                       meaning + ", got " + std::to_string(values.size()));
  }
}

void check_param_range(const char* op, const char* name, const std::vector<int64_t>& values,
                       int64_t min_value) {
  for (const int64_t v : values) {
    if (v < min_value || v > kMaxHyperParameter) {
      fail_value(op, std::string(name) + " must be " +
                         (min_value == 0 ? "non-negative" : "positive") + " (and at most " +
                         std::to_string(kMaxHyperParameter) + "), got (" +
                         sizes_string(values.data(), static_cast<int64_t>(values.size()), ", ") +
                         ")");
    }
  }
}

// Validates x (N, C, *spatial) and weight (K, C/groups, *kernel) against the
// hyper-parameters and returns the Conv2dShape of the call (conv1d as height 1).
// `x_name` / `weight_name` say which argument the shapes came from, for messages.
cpu::Conv2dShape conv_shape(const char* op, int spatial, const std::vector<int64_t>& x_shape,
                            const char* x_name, const std::vector<int64_t>& w_shape,
                            const char* weight_name, const ConvParams& params) {
  const size_t rank = static_cast<size_t>(spatial) + 2;
  const char* layout = spatial == 1 ? "(N, C, L)" : "(N, C, H, W)";
  const char* w_layout = spatial == 1 ? "(out_channels, in_channels/groups, kernel_size)"
                                      : "(out_channels, in_channels/groups, kh, kw)";
  if (x_shape.size() != rank) {
    fail_value(op, std::string(x_name) + " must be " + std::to_string(rank) + "-D " + layout +
                       ", got shape " + shape_string(x_shape));
  }
  if (w_shape.size() != rank) {
    fail_value(op, std::string(weight_name) + " must be " + std::to_string(rank) + "-D " +
                       w_layout + ", got shape " + shape_string(w_shape));
  }
  const size_t s = static_cast<size_t>(spatial);
  check_param_count(op, "stride", params.stride, s, "(one per spatial axis)");
  check_param_count(op, "dilation", params.dilation, s, "(one per spatial axis)");
  check_param_count(op, "padding", params.padding, 2 * s,
                    spatial == 1 ? "(left, right)" : "(top, bottom, left, right)");
  check_param_range(op, "stride", params.stride, 1);
  check_param_range(op, "dilation", params.dilation, 1);
  check_param_range(op, "padding", params.padding, 0);
  const int64_t groups = params.groups;
  if (groups < 1 || groups > kMaxHyperParameter) {
    fail_value(op, "groups must be a positive integer, got " + std::to_string(groups));
  }

  const int64_t batch = x_shape[0], channels = x_shape[1];
  const int64_t out_channels = w_shape[0], group_channels = w_shape[1];
  for (size_t i = 1; i < rank; ++i) {
    if (x_shape[i] < 1) {
      fail_value(op, std::string(x_name) + " " + shape_string(x_shape) + " " + layout +
                         " has an empty channel or spatial dimension; only the batch may be 0");
    }
  }
  for (size_t i = 0; i < rank; ++i) {
    if (w_shape[i] < 1) {
      fail_value(op, std::string(weight_name) + " " + shape_string(w_shape) +
                         " has an empty dimension");
    }
  }
  if (channels % groups != 0) {
    fail_value(op, "groups=" + std::to_string(groups) + " does not divide the " +
                       std::to_string(channels) + " input channels of " + x_name + " " +
                       shape_string(x_shape));
  }
  if (out_channels % groups != 0) {
    fail_value(op, "groups=" + std::to_string(groups) + " does not divide the " +
                       std::to_string(out_channels) + " output channels of " + weight_name + " " +
                       shape_string(w_shape));
  }
  if (group_channels != channels / groups) {
    fail_value(op, std::string(x_name) + " " + shape_string(x_shape) + " has " +
                       std::to_string(channels) + " channels but " + weight_name + " " +
                       shape_string(w_shape) + " " + w_layout + " with groups=" +
                       std::to_string(groups) + " expects " +
                       std::to_string(group_channels) + " per group, " +
                       std::to_string(group_channels * groups) + " in all");
  }

  // The dilated kernel must fit in the padded input on every spatial axis.
  int64_t padded[2], extent[2];
  for (size_t a = 0; a < s; ++a) {
    const int64_t size = x_shape[2 + a], kernel = w_shape[2 + a];
    const int64_t dilation = params.dilation[a];
    if (kernel - 1 > std::numeric_limits<int64_t>::max() / 4 / dilation) {
      fail_value(op, std::string(weight_name) + " " + shape_string(w_shape) +
                         " with dilation " + std::to_string(dilation) + " is too large");
    }
    padded[a] = size + params.padding[2 * a] + params.padding[2 * a + 1];
    extent[a] = dilation * (kernel - 1) + 1;
  }
  bool fits = true;
  for (size_t a = 0; a < s; ++a) fits = fits && extent[a] <= padded[a];
  if (!fits) {
    const int64_t n = static_cast<int64_t>(s);
    fail_value(op, "the kernel (" + sizes_string(extent, n, " x ") + " after dilation; " +
                       weight_name + " " + shape_string(w_shape) + ") is larger than the padded "
                       "input (" + sizes_string(padded, n, " x ") + "; " + x_name + " " +
                       shape_string(x_shape) + " with padding (" +
                       sizes_string(params.padding.data(), 2 * n, ", ") + "))");
  }

  if (spatial == 1) {
    cpu::Conv1dShape s1;
    s1.batch = batch;
    s1.in_channels = channels;
    s1.in_length = x_shape[2];
    s1.out_channels = out_channels;
    s1.kernel_size = w_shape[2];
    s1.stride = params.stride[0];
    s1.pad_left = params.padding[0];
    s1.pad_right = params.padding[1];
    s1.dilation = params.dilation[0];
    s1.groups = groups;
    return s1.as_conv2d();
  }
  cpu::Conv2dShape shape;
  shape.batch = batch;
  shape.in_channels = channels;
  shape.out_channels = out_channels;
  shape.groups = groups;
  shape.in_height = x_shape[2];
  shape.in_width = x_shape[3];
  shape.kernel_height = w_shape[2];
  shape.kernel_width = w_shape[3];
  shape.stride_height = params.stride[0];
  shape.stride_width = params.stride[1];
  shape.pad_top = params.padding[0];
  shape.pad_bottom = params.padding[1];
  shape.pad_left = params.padding[2];
  shape.pad_right = params.padding[3];
  shape.dilation_height = params.dilation[0];
  shape.dilation_width = params.dilation[1];
  return shape;
}

// (N, K, P, Q) for conv2d, (N, K, L_out) for conv1d.
std::vector<int64_t> output_shape(int spatial, const cpu::Conv2dShape& s) {
  if (spatial == 1) return {s.batch, s.out_channels, s.out_width()};
  return {s.batch, s.out_channels, s.out_height(), s.out_width()};
}

// The output shape for these input and weight shapes; `op`, `x_name` and `weight_name` are
// the caller's names for messages (ranvier.ops checks its arguments with this).
template <int Spatial>
py::tuple conv_output_shape(const std::vector<int64_t>& x_shape,
                            const std::vector<int64_t>& w_shape, const ConvParams& params,
                            const std::string& op, const std::string& x_name,
                            const std::string& weight_name) {
  const cpu::Conv2dShape s = conv_shape(op.c_str(), Spatial, x_shape, x_name.c_str(), w_shape,
                                        weight_name.c_str(), params);
  return py::tuple(py::cast(output_shape(Spatial, s)));
}

// out (N, K, *out_spatial) = conv(x (N, C, *spatial), weight (K, C/groups, *kernel)) + bias (K).
template <int Spatial>
void conv_forward(py::handle x_obj, py::handle w_obj, py::object bias_obj, py::handle out_obj,
                  const ConvParams& params) {
  const char* op = Spatial == 1 ? "conv1d_forward" : "conv2d_forward";
  const ArrayView x = view_array(x_obj, op, "x");
  const ArrayView w = view_array(w_obj, op, "weight");
  const ArrayView y = view_output(out_obj, op, "out");
  const ArrayView bias = view_optional(bias_obj, op, "bias");
  check_float_args(op, {x, "x"}, {{w, "weight"}, {y, "out"}, {bias, "bias"}});
  const cpu::Conv2dShape s = conv_shape(op, Spatial, x.shape, "x", w.shape, "weight", params);
  check_shape(bias, {s.out_channels}, op, "bias");
  check_shape(y, output_shape(Spatial, s), op, "out");
  check_outputs_disjoint(op, {{y, "out"}}, {{x, "x"}, {w, "weight"}, {bias, "bias"}});

  RANVIER_RUN_FLOAT_KERNEL(x, op, conv2d_forward, s, x.ptr<T>(), w.ptr<T>(), bias.ptr<T>(),
                           y.ptr<T>());
}

// out (N, C, *spatial) = gradient wrt x, from grad_output (N, K, *out_spatial) and weight.
template <int Spatial>
void conv_backward_input(py::handle dy_obj, py::handle w_obj, py::handle out_obj,
                         const ConvParams& params) {
  const char* op = Spatial == 1 ? "conv1d_backward_input" : "conv2d_backward_input";
  const ArrayView dy = view_array(dy_obj, op, "grad_output");
  const ArrayView w = view_array(w_obj, op, "weight");
  const ArrayView dx = view_output(out_obj, op, "out");
  check_float_args(op, {dy, "grad_output"}, {{w, "weight"}, {dx, "out"}});
  // The input's shape is out's: the forward input is not needed, only its shape.
  const cpu::Conv2dShape s =
      conv_shape(op, Spatial, dx.shape, "out (the input's shape)", w.shape, "weight", params);
  check_shape(dy, output_shape(Spatial, s), op, "grad_output");
  check_outputs_disjoint(op, {{dx, "out"}}, {{dy, "grad_output"}, {w, "weight"}});

  RANVIER_RUN_FLOAT_KERNEL(dy, op, conv2d_backward_input, s, dy.ptr<T>(), w.ptr<T>(), dx.ptr<T>());
}

// out_weight (K, C/groups, *kernel) and out_bias (K, or None) from grad_output and x.
template <int Spatial>
void conv_backward_weight(py::handle dy_obj, py::handle x_obj, py::handle dw_obj,
                          py::object db_obj, const ConvParams& params) {
  const char* op = Spatial == 1 ? "conv1d_backward_weight" : "conv2d_backward_weight";
  const ArrayView dy = view_array(dy_obj, op, "grad_output");
  const ArrayView x = view_array(x_obj, op, "x");
  const ArrayView dw = view_output(dw_obj, op, "out_weight");
  const ArrayView db = view_optional_output(db_obj, op, "out_bias");
  check_float_args(op, {dy, "grad_output"}, {{x, "x"}, {dw, "out_weight"}, {db, "out_bias"}});
  const cpu::Conv2dShape s = conv_shape(op, Spatial, x.shape, "x", dw.shape,
                                        "out_weight (the weight's shape)", params);
  check_shape(dy, output_shape(Spatial, s), op, "grad_output");
  check_shape(db, {s.out_channels}, op, "out_bias");
  check_outputs_disjoint(op, {{db, "out_bias"}, {dw, "out_weight"}}, {{dy, "grad_output"}, {x, "x"}});

  RANVIER_RUN_FLOAT_KERNEL(dy, op, conv2d_backward_weight, s, dy.ptr<T>(), x.ptr<T>(), dw.ptr<T>(),
                           db.ptr<T>());
}

template <int Spatial>
void define_conv(py::module_& m) {
  const std::string prefix = Spatial == 1 ? "conv1d" : "conv2d";
  const char* spatial_doc = Spatial == 1 ? "(L)" : "(H, W)";
  const char* padding_doc =
      Spatial == 1 ? "padding (left, right)" : "padding (top, bottom, left, right)";
  using Sizes = std::vector<int64_t>;
  auto params = [](Sizes stride, Sizes padding, Sizes dilation, int64_t groups) {
    return ConvParams{std::move(stride), std::move(padding), std::move(dilation), groups};
  };
  const std::string hyper = std::string("stride and dilation have one entry per spatial axis ") +
                            spatial_doc + ", " + padding_doc + ".";
  m.def((prefix + "_output_shape").c_str(),
        [params](const Sizes& x_shape, const Sizes& w_shape, Sizes stride, Sizes padding,
                 Sizes dilation, int64_t groups, const std::string& op, const std::string& x_name,
                 const std::string& weight_name) {
          return conv_output_shape<Spatial>(x_shape, w_shape,
                                            params(stride, padding, dilation, groups), op,
                                            x_name, weight_name);
        },
        py::arg("x_shape"), py::arg("weight_shape"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("groups"), py::arg("op") = prefix, py::arg("x_name") = "x",
        py::arg("weight_name") = "weight",
        ("The output shape of " + prefix + " for these input and weight shapes, after checking "
         "them (ValueError otherwise). " + hyper).c_str());
  m.def((prefix + "_forward").c_str(),
        [params](py::handle x, py::handle w, py::object bias, py::handle out, Sizes stride,
                 Sizes padding, Sizes dilation, int64_t groups) {
          conv_forward<Spatial>(x, w, bias, out, params(stride, padding, dilation, groups));
        },
        py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        ("out = " + prefix + "(x, weight) + bias (None for no bias). " + hyper).c_str());
  m.def((prefix + "_backward_input").c_str(),
        [params](py::handle dy, py::handle w, py::handle out, Sizes stride,
                 Sizes padding, Sizes dilation, int64_t groups) {
          conv_backward_input<Spatial>(dy, w, out, params(stride, padding, dilation, groups));
        },
        py::arg("grad_output"), py::arg("weight"), py::arg("out"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        ("out (the input's shape) = gradient of " + prefix + " wrt its input. " + hyper).c_str());
  m.def((prefix + "_backward_weight").c_str(),
        [params](py::handle dy, py::handle x, py::handle out_weight, py::object out_bias,
                 Sizes stride, Sizes padding, Sizes dilation,
                 int64_t groups) {
          conv_backward_weight<Spatial>(dy, x, out_weight, out_bias,
                                        params(stride, padding, dilation, groups));
        },
        py::arg("grad_output"), py::arg("x"), py::arg("out_weight"), py::arg("out_bias"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        ("out_weight (the weight's shape), out_bias (K,) or None = gradients of " + prefix +
         " wrt weight and bias. " + hyper).c_str());
}

}  // namespace

void bind_conv(py::module_& m) {
  define_conv<1>(m);
  define_conv<2>(m);
}

}  // namespace ranvier::binding
