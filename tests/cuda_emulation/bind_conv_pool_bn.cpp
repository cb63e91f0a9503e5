// Convolution, pooling and batch normalisation (ranvier/conv.h, pooling.h, batch_norm.h, cuda
// namespace). The shape structs are bound as plain classes with every field read-write, so
// the tests spell out each size the kernels are given (Conv2dShape, Conv1dShape,
// Pool2dGeometry: the bindings of ranvier._C compute them, here the tests do).
#include "bindings.h"
#include "ranvier/batch_norm.h"
#include "ranvier/conv.h"
#include "ranvier/pooling.h"

#include <cstdint>

namespace emulated {

namespace {

namespace cuda = ranvier::cuda;
using ranvier::Pool2dGeometry;
using ranvier::cpu::Conv1dShape;
using ranvier::cpu::Conv2dShape;

void bind_shapes(py::module_& m) {
  py::class_<Conv2dShape>(m, "Conv2dShape")
      .def(py::init<>())
      .def_readwrite("batch", &Conv2dShape::batch)
      .def_readwrite("in_channels", &Conv2dShape::in_channels)
      .def_readwrite("in_height", &Conv2dShape::in_height)
      .def_readwrite("in_width", &Conv2dShape::in_width)
      .def_readwrite("out_channels", &Conv2dShape::out_channels)
      .def_readwrite("kernel_height", &Conv2dShape::kernel_height)
      .def_readwrite("kernel_width", &Conv2dShape::kernel_width)
      .def_readwrite("stride_height", &Conv2dShape::stride_height)
      .def_readwrite("stride_width", &Conv2dShape::stride_width)
      .def_readwrite("pad_top", &Conv2dShape::pad_top)
      .def_readwrite("pad_bottom", &Conv2dShape::pad_bottom)
      .def_readwrite("pad_left", &Conv2dShape::pad_left)
      .def_readwrite("pad_right", &Conv2dShape::pad_right)
      .def_readwrite("dilation_height", &Conv2dShape::dilation_height)
      .def_readwrite("dilation_width", &Conv2dShape::dilation_width)
      .def_readwrite("groups", &Conv2dShape::groups)
      .def("out_height", &Conv2dShape::out_height)
      .def("out_width", &Conv2dShape::out_width);
  py::class_<Conv1dShape>(m, "Conv1dShape")
      .def(py::init<>())
      .def_readwrite("batch", &Conv1dShape::batch)
      .def_readwrite("in_channels", &Conv1dShape::in_channels)
      .def_readwrite("in_length", &Conv1dShape::in_length)
      .def_readwrite("out_channels", &Conv1dShape::out_channels)
      .def_readwrite("kernel_size", &Conv1dShape::kernel_size)
      .def_readwrite("stride", &Conv1dShape::stride)
      .def_readwrite("pad_left", &Conv1dShape::pad_left)
      .def_readwrite("pad_right", &Conv1dShape::pad_right)
      .def_readwrite("dilation", &Conv1dShape::dilation)
      .def_readwrite("groups", &Conv1dShape::groups)
      .def("out_length", &Conv1dShape::out_length);
  py::class_<Pool2dGeometry>(m, "Pool2dGeometry")
      .def(py::init<>())
      .def_readwrite("planes", &Pool2dGeometry::planes)
      .def_readwrite("in_h", &Pool2dGeometry::in_h)
      .def_readwrite("in_w", &Pool2dGeometry::in_w)
      .def_readwrite("out_h", &Pool2dGeometry::out_h)
      .def_readwrite("out_w", &Pool2dGeometry::out_w)
      .def_readwrite("kernel_h", &Pool2dGeometry::kernel_h)
      .def_readwrite("kernel_w", &Pool2dGeometry::kernel_w)
      .def_readwrite("stride_h", &Pool2dGeometry::stride_h)
      .def_readwrite("stride_w", &Pool2dGeometry::stride_w)
      .def_readwrite("pad_h", &Pool2dGeometry::pad_h)
      .def_readwrite("pad_w", &Pool2dGeometry::pad_w)
      .def_readwrite("dilation_h", &Pool2dGeometry::dilation_h)
      .def_readwrite("dilation_w", &Pool2dGeometry::dilation_w);
}

// conv1d_* and conv2d_* share their argument lists; Shape picks the entry point.
template <typename Shape>
void bind_conv(py::module_& m, const char* prefix) {
  const std::string p(prefix);
  m.def((p + "_forward").c_str(), [](const Shape& shape, py::array x, py::array w, py::object bias, py::array y) {
    dispatch_float(y, [&](auto t) {
      using T = decltype(t);
      if constexpr (std::is_same_v<Shape, Conv2dShape>) {
        cuda::conv2d_forward<T>(shape, data<T>(x, "x"), data<T>(w, "w"), optional_data<T>(bias, "bias"),
                                data<T>(y, "y"), kStream);
      } else {
        cuda::conv1d_forward<T>(shape, data<T>(x, "x"), data<T>(w, "w"), optional_data<T>(bias, "bias"),
                                data<T>(y, "y"), kStream);
      }
    });
  });
  m.def((p + "_backward_input").c_str(), [](const Shape& shape, py::array dy, py::array w, py::array dx) {
    dispatch_float(dx, [&](auto t) {
      using T = decltype(t);
      if constexpr (std::is_same_v<Shape, Conv2dShape>) {
        cuda::conv2d_backward_input<T>(shape, data<T>(dy, "dy"), data<T>(w, "w"), data<T>(dx, "dx"), kStream);
      } else {
        cuda::conv1d_backward_input<T>(shape, data<T>(dy, "dy"), data<T>(w, "w"), data<T>(dx, "dx"), kStream);
      }
    });
  });
  m.def((p + "_backward_weight").c_str(),
        [](const Shape& shape, py::array dy, py::array x, py::array dw, py::object dbias) {
          dispatch_float(dw, [&](auto t) {
            using T = decltype(t);
            if constexpr (std::is_same_v<Shape, Conv2dShape>) {
              cuda::conv2d_backward_weight<T>(shape, data<T>(dy, "dy"), data<T>(x, "x"), data<T>(dw, "dw"),
                                              optional_data<T>(dbias, "dbias"), kStream);
            } else {
              cuda::conv1d_backward_weight<T>(shape, data<T>(dy, "dy"), data<T>(x, "x"), data<T>(dw, "dw"),
                                              optional_data<T>(dbias, "dbias"), kStream);
            }
          });
        });
}

void bind_pooling(py::module_& m) {
  m.def("max_pool2d_forward", [](const Pool2dGeometry& g, py::array x, py::array y, py::array indices) {
    dispatch_float(y, [&](auto t) {
      using T = decltype(t);
      cuda::max_pool2d_forward<T>(g, data<T>(x, "x"), data<T>(y, "y"), data<int64_t>(indices, "indices"),
                                  kStream);
    });
  });
  m.def("max_pool2d_backward", [](const Pool2dGeometry& g, py::array dy, py::array indices, py::array dx) {
    dispatch_float(dx, [&](auto t) {
      using T = decltype(t);
      cuda::max_pool2d_backward<T>(g, data<T>(dy, "dy"), data<int64_t>(indices, "indices"), data<T>(dx, "dx"),
                                   kStream);
    });
  });
  m.def("max_pool2d_backward_by_plane",
        [](const Pool2dGeometry& g, py::array dy, py::array indices, py::array dx) {
          dispatch_float(dx, [&](auto t) {
            using T = decltype(t);
            cuda::max_pool2d_backward_by_plane<T>(g, data<T>(dy, "dy"), data<int64_t>(indices, "indices"),
                                                  data<T>(dx, "dx"), kStream);
          });
        });
  // Returns (position, bad value): position -1 (and the value untouched) when all are inside.
  m.def("first_out_of_plane_index", [](py::array indices, int64_t n, int64_t plane) {
    int64_t bad_value = -12345;
    const int64_t position =
        cuda::first_out_of_plane_index(data<int64_t>(indices, "indices"), n, plane, &bad_value, kStream);
    return py::make_tuple(position, bad_value);
  });
  m.def("avg_pool2d_forward", [](const Pool2dGeometry& g, bool count_include_pad, int64_t divisor_override,
                                 py::array x, py::array y) {
    dispatch_float(y, [&](auto t) {
      using T = decltype(t);
      cuda::avg_pool2d_forward<T>(g, count_include_pad, divisor_override, data<T>(x, "x"), data<T>(y, "y"),
                                  kStream);
    });
  });
  m.def("avg_pool2d_backward", [](const Pool2dGeometry& g, bool count_include_pad, int64_t divisor_override,
                                  py::array dy, py::array dx) {
    dispatch_float(dx, [&](auto t) {
      using T = decltype(t);
      cuda::avg_pool2d_backward<T>(g, count_include_pad, divisor_override, data<T>(dy, "dy"), data<T>(dx, "dx"),
                                   kStream);
    });
  });
  m.def("adaptive_avg_pool2d_forward", [](int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h,
                                          int64_t out_w, py::array x, py::array y) {
    dispatch_float(y, [&](auto t) {
      using T = decltype(t);
      cuda::adaptive_avg_pool2d_forward<T>(planes, in_h, in_w, out_h, out_w, data<T>(x, "x"), data<T>(y, "y"),
                                           kStream);
    });
  });
  m.def("adaptive_avg_pool2d_backward", [](int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h,
                                           int64_t out_w, py::array dy, py::array dx) {
    dispatch_float(dx, [&](auto t) {
      using T = decltype(t);
      cuda::adaptive_avg_pool2d_backward<T>(planes, in_h, in_w, out_h, out_w, data<T>(dy, "dy"),
                                            data<T>(dx, "dx"), kStream);
    });
  });
}

void bind_batch_norm(py::module_& m) {
  m.def("batch_norm_forward_training",
        [](py::array x, py::object weight, py::object bias, py::array y, py::array save_mean,
           py::array save_invstd, py::object running_mean, py::object running_var, int64_t N, int64_t C,
           int64_t L, double momentum, double eps) {
          dispatch_float(y, [&](auto t) {
            using T = decltype(t);
            cuda::batch_norm_forward_training<T>(
                data<T>(x, "x"), optional_data<T>(weight, "weight"), optional_data<T>(bias, "bias"),
                data<T>(y, "y"), data<T>(save_mean, "save_mean"), data<T>(save_invstd, "save_invstd"),
                optional_data<T>(running_mean, "running_mean"), optional_data<T>(running_var, "running_var"), N,
                C, L, momentum, eps, kStream);
          });
        });
  m.def("batch_norm_forward_eval",
        [](py::array x, py::object weight, py::object bias, py::array running_mean, py::array running_var,
           py::array y, py::array save_mean, py::array save_invstd, int64_t N, int64_t C, int64_t L, double eps) {
          dispatch_float(y, [&](auto t) {
            using T = decltype(t);
            cuda::batch_norm_forward_eval<T>(
                data<T>(x, "x"), optional_data<T>(weight, "weight"), optional_data<T>(bias, "bias"),
                data<T>(running_mean, "running_mean"), data<T>(running_var, "running_var"), data<T>(y, "y"),
                data<T>(save_mean, "save_mean"), data<T>(save_invstd, "save_invstd"), N, C, L, eps, kStream);
          });
        });
  m.def("batch_norm_backward",
        [](py::array dy, py::array x, py::array save_mean, py::array save_invstd, py::object weight,
           py::object dx, py::array dweight, py::array dbias, int64_t N, int64_t C, int64_t L, bool training) {
          dispatch_float(dweight, [&](auto t) {
            using T = decltype(t);
            cuda::batch_norm_backward<T>(data<T>(dy, "dy"), data<T>(x, "x"), data<T>(save_mean, "save_mean"),
                                         data<T>(save_invstd, "save_invstd"), optional_data<T>(weight, "weight"),
                                         optional_data<T>(dx, "dx"), data<T>(dweight, "dweight"),
                                         data<T>(dbias, "dbias"), N, C, L, training, kStream);
          });
        });
}

}  // namespace

void bind_conv_pool_bn(py::module_& m) {
  bind_shapes(m);
  bind_conv<Conv2dShape>(m, "conv2d");
  bind_conv<Conv1dShape>(m, "conv1d");
  bind_pooling(m);
  bind_batch_norm(m);
  // How conv2d_backward_weight splits a batch into slices and passes (split-K), so that the
  // tests can check that their cases reach several slices and several passes.
  m.def("conv2d_weight_grad_split", [](const Conv2dShape& shape, int64_t itemsize) {
    const cuda::WeightGradSplit split = cuda::conv2d_weight_grad_split(shape, itemsize);
    return py::make_tuple(split.slices, split.images_per_slice, split.slices_per_pass);
  }, py::arg("shape"), py::arg("itemsize"));
  // Which algorithm a shape gets, and the knob that moves the boundary, so that every case
  // can run through both the direct kernels and the implicit GEMM.
  m.def("conv_uses_direct_kernels", &cuda::conv2d_uses_direct_kernels, py::arg("shape"));
  m.def("conv_uses_direct_kernels", [](const Conv1dShape& shape) {
    return cuda::conv2d_uses_direct_kernels(shape.as_conv2d());
  }, py::arg("shape"));
  m.def("conv_direct_max_group_size", &cuda::conv_direct_max_group_size);
  m.def("set_conv_direct_max_group_size", &cuda::set_conv_direct_max_group_size, py::arg("size"));
#if defined(RANVIER_CONV_WORKSPACE_BYTES)
  // conv.cu's workspace cap (the partial weight gradients of one pass), as this build sets it
  // (build.py).
  m.attr("conv_workspace_bytes") = static_cast<int64_t>(RANVIER_CONV_WORKSPACE_BYTES);
#endif
}

}  // namespace emulated
