#include "array_view.h"

#include <sstream>

#ifdef RANVIER_WITH_CUDA
#include "ranvier/cuda_runtime_info.h"
#endif

namespace ranvier::binding {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
    default: return "an unsupported dtype";
  }
}

const char* device_name(Device device) { return device == Device::CPU ? "cpu" : "cuda"; }

int64_t ArrayView::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

int64_t ArrayView::itemsize() const {
  switch (dtype) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Int64: return 8;
    case DType::UInt8: return 1;
    default: return 1;
  }
}

int64_t ArrayView::dim(int64_t axis) const {
  const int64_t n = ndim();
  if (axis < -n || axis >= n) {
    throw py::index_error("axis " + std::to_string(axis) + " is out of range for shape " +
                          shape_str());
  }
  return shape[static_cast<size_t>(axis < 0 ? axis + n : axis)];
}

std::string ArrayView::shape_str() const {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) s << ",";
  s << ")";
  return s.str();
}

void fail_value(const char* op, const std::string& message) {
  throw py::value_error(std::string(op) + ": " + message);
}

void fail_type(const char* op, const std::string& message) {
  throw py::type_error(std::string(op) + ": " + message);
}

namespace {

DType classify_numpy_dtype(const py::dtype& dt) {
  // equal() is false for byte-swapped dtypes, which the kernels cannot read.
  if (dt.equal(py::dtype::of<float>())) return DType::Float32;
  if (dt.equal(py::dtype::of<double>())) return DType::Float64;
  if (dt.equal(py::dtype::of<int64_t>())) return DType::Int64;
  if (dt.equal(py::dtype::of<uint8_t>())) return DType::UInt8;
  return DType::Other;
}

DType classify_typestr(const std::string& typestr) {
  if (typestr == "<f4") return DType::Float32;
  if (typestr == "<f8") return DType::Float64;
  if (typestr == "<i8") return DType::Int64;
  if (typestr == "|u1" || typestr == "<u1") return DType::UInt8;
  return DType::Other;
}

ArrayView view_numpy(const py::array& arr, const char* op, const char* name) {
  ArrayView v;
  v.dtype = classify_numpy_dtype(arr.dtype());
  // NumPy's own dtype name is only needed for a message; building it costs more than the
  // rest of the checks together, so the common dtypes use our names.
  v.dtype_str = v.dtype == DType::Other ? py::str(arr.dtype()).cast<std::string>() : dtype_name(v.dtype);
  if (v.dtype == DType::Other) {
    fail_type(op, std::string(name) + " has dtype " + v.dtype_str +
                      "; expected float32 or float64 (int64 for class targets)");
  }
  v.shape.assign(arr.shape(), arr.shape() + arr.ndim());
  if (!(arr.flags() & py::array::c_style)) {
    fail_value(op, std::string(name) + " of shape " + v.shape_str() +
                       " is not C-contiguous; pass np.ascontiguousarray(" + name + ")");
  }
  v.data = const_cast<void*>(arr.data());
  if (reinterpret_cast<uintptr_t>(v.data) % static_cast<uintptr_t>(v.itemsize()) != 0) {
    fail_value(op, std::string(name) + " is not aligned to its element size");
  }
  v.writable = arr.writeable();
  v.device = Device::CPU;
  v.present = true;
  return v;
}

std::string cuda_device_str(int device_id) {
  return device_id < 0 ? std::string("cuda") : "cuda:" + std::to_string(device_id);
}

// Our kernels launch on the current device (CuPy's, in a `with cupy.cuda.Device(n):` block);
// an array on another GPU would be read through an invalid (or a peer) address there. So every
// CUDA array of a call must be on the current device, which also puts all of them on one.
// Only where a GPU can be queried: without one (a CUDA build on a CPU machine) device_id
// stays -1 and no kernel can run anyway.
void check_on_current_device(ArrayView& v, const char* op, const char* name) {
#ifdef RANVIER_WITH_CUDA
  if (v.numel() == 0) return;  // an empty array may carry any pointer, even null
  v.device_id = cuda::pointer_device(v.data);
  if (v.device_id < 0) return;
  const int current = cuda::current_device();
  if (current >= 0 && v.device_id != current) {
    fail_value(op, std::string(name) + " is on " + cuda_device_str(v.device_id) + " but the current device is " +
                       cuda_device_str(current) + "; run the call under `with cupy.cuda.Device(" +
                       std::to_string(v.device_id) + "):` or move the arrays to " + cuda_device_str(current));
  }
#else
  (void)v;
  (void)op;
  (void)name;
#endif
}

ArrayView view_cuda_interface(py::handle obj, const char* op, const char* name) {
  py::dict iface = obj.attr("__cuda_array_interface__");
  ArrayView v;
  v.device = Device::CUDA;
  v.present = true;
  const std::string typestr = iface["typestr"].cast<std::string>();
  v.dtype = classify_typestr(typestr);
  v.dtype_str = typestr;
  if (v.dtype == DType::Other) {
    fail_type(op, std::string(name) + " has CUDA dtype " + typestr +
                      "; expected float32 or float64 (int64 for class targets)");
  }
  for (py::handle s : iface["shape"].cast<py::tuple>()) v.shape.push_back(s.cast<int64_t>());
  py::tuple data = iface["data"].cast<py::tuple>();
  v.data = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
  v.writable = !data[1].cast<bool>();
  // Strides None means C-contiguous; explicit strides must equal the C-contiguous ones.
  if (iface.contains("strides") && !iface["strides"].is_none()) {
    py::tuple strides = iface["strides"].cast<py::tuple>();
    int64_t expected = v.itemsize();
    for (int64_t i = v.ndim() - 1; i >= 0; --i) {
      if (v.shape[static_cast<size_t>(i)] > 1 &&
          strides[static_cast<size_t>(i)].cast<int64_t>() != expected) {
        fail_value(op, std::string(name) + " of shape " + v.shape_str() +
                           " is not C-contiguous; pass cupy.ascontiguousarray(" + name + ")");
      }
      expected *= v.shape[static_cast<size_t>(i)];
    }
  }
  if (reinterpret_cast<uintptr_t>(v.data) % static_cast<uintptr_t>(v.itemsize()) != 0) {
    fail_value(op, std::string(name) + " is not aligned to its element size");
  }
  check_on_current_device(v, op, name);
  return v;
}

}  // namespace

ArrayView view_array(py::handle obj, const char* op, const char* name) {
  if (py::isinstance<py::array>(obj)) return view_numpy(py::reinterpret_borrow<py::array>(obj), op, name);
  if (py::hasattr(obj, "__cuda_array_interface__")) return view_cuda_interface(obj, op, name);
  fail_type(op, std::string(name) + " must be a NumPy or CuPy array, got " +
                    py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
}

ArrayView view_output(py::handle obj, const char* op, const char* name) {
  ArrayView v = view_array(obj, op, name);
  if (!v.writable) fail_value(op, std::string(name) + " is read-only but the kernel writes into it");
  return v;
}

ArrayView view_optional(py::handle obj, const char* op, const char* name) {
  return obj.is_none() ? ArrayView{} : view_array(obj, op, name);
}

ArrayView view_optional_output(py::handle obj, const char* op, const char* name) {
  return obj.is_none() ? ArrayView{} : view_output(obj, op, name);
}

void check_float(const ArrayView& a, const char* op, const char* name) {
  if (a.present && a.dtype != DType::Float32 && a.dtype != DType::Float64) {
    fail_type(op, std::string(name) + " has dtype " + a.dtype_str + "; expected float32 or float64");
  }
}

void check_dtype(const ArrayView& a, DType dtype, const char* op, const char* name) {
  if (a.present && a.dtype != dtype) {
    fail_type(op, std::string(name) + " has dtype " + a.dtype_str + "; expected " + dtype_name(dtype));
  }
}

void check_same_dtype(const ArrayView& a, const ArrayView& b, const char* op, const char* name_a,
                      const char* name_b) {
  if (a.present && b.present && a.dtype != b.dtype) {
    fail_type(op, std::string(name_a) + " (" + a.dtype_str + ") and " + name_b + " (" + b.dtype_str +
                      ") must have the same dtype");
  }
}

void check_ndim(const ArrayView& a, int64_t ndim, const char* op, const char* name) {
  if (a.present && a.ndim() != ndim) {
    fail_value(op, std::string(name) + " must be " + std::to_string(ndim) + "-D, got shape " +
                       a.shape_str());
  }
}

void check_shape(const ArrayView& a, const std::vector<int64_t>& shape, const char* op,
                 const char* name) {
  if (a.present && a.shape != shape) {
    ArrayView expected;
    expected.shape = shape;
    fail_value(op, std::string(name) + " has shape " + a.shape_str() + ", expected " +
                       expected.shape_str());
  }
}

void check_same_shape(const ArrayView& a, const ArrayView& b, const char* op, const char* name_a,
                      const char* name_b) {
  if (a.present && b.present && a.shape != b.shape) {
    fail_value(op, std::string(name_a) + " " + a.shape_str() + " and " + name_b + " " + b.shape_str() +
                       " must have the same shape");
  }
}

void check_same_device(const ArrayView& a, const ArrayView& b, const char* op, const char* name_a,
                       const char* name_b) {
  if (!a.present || !b.present) return;
  if (a.device != b.device) {
    fail_value(op, std::string(name_a) + " is on " + device_name(a.device) + " but " + name_b +
                       " is on " + device_name(b.device) + "; move both to one device");
  }
  if (a.device == Device::CUDA && a.device_id >= 0 && b.device_id >= 0 && a.device_id != b.device_id) {
    fail_value(op, std::string(name_a) + " is on " + cuda_device_str(a.device_id) + " but " + name_b + " is on " +
                       cuda_device_str(b.device_id) + "; move both to one device");
  }
}

namespace {
bool ranges_overlap(const ArrayView& a, const ArrayView& b) {
  if (!a.present || !b.present || a.device != b.device || a.numel() == 0 || b.numel() == 0) return false;
  const auto a0 = reinterpret_cast<uintptr_t>(a.data);
  const auto b0 = reinterpret_cast<uintptr_t>(b.data);
  const auto a1 = a0 + static_cast<uintptr_t>(a.numel() * a.itemsize());
  const auto b1 = b0 + static_cast<uintptr_t>(b.numel() * b.itemsize());
  return a0 < b1 && b0 < a1;
}
}  // namespace

void check_no_partial_overlap(const ArrayView& out, const ArrayView& in, const char* op,
                              const char* name_out, const char* name_in) {
  const bool identical = out.data == in.data && out.numel() == in.numel() && out.dtype == in.dtype;
  if (ranges_overlap(out, in) && !identical) {
    fail_value(op, std::string(name_out) + " partially overlaps " + name_in + " in memory");
  }
}

void check_disjoint(const ArrayView& out, const ArrayView& in, const char* op, const char* name_out,
                    const char* name_in) {
  if (ranges_overlap(out, in)) {
    fail_value(op, std::string(name_out) + " must not share memory with " + name_in);
  }
}

void check_float_args(const char* op, Arg ref, std::initializer_list<Arg> same_dtype,
                      std::initializer_list<Arg> same_device) {
  for (const Arg& a : same_dtype) check_same_device(ref.view, a.view, op, ref.name, a.name);
  for (const Arg& a : same_device) check_same_device(ref.view, a.view, op, ref.name, a.name);
  require_cuda_built(ref.view, op);
  check_float(ref.view, op, ref.name);
  for (const Arg& a : same_dtype) check_same_dtype(ref.view, a.view, op, ref.name, a.name);
}

void check_like(const char* op, Arg ref, std::initializer_list<Arg> others) {
  for (const Arg& a : others) check_same_device(ref.view, a.view, op, ref.name, a.name);
  for (const Arg& a : others) check_same_dtype(ref.view, a.view, op, ref.name, a.name);
}

void check_outputs_disjoint(const char* op, std::initializer_list<Arg> outputs,
                            std::initializer_list<Arg> inputs) {
  for (auto out = outputs.begin(); out != outputs.end(); ++out) {
    for (const Arg& in : inputs) check_disjoint(out->view, in.view, op, out->name, in.name);
    for (auto later = out + 1; later != outputs.end(); ++later) {
      check_disjoint(out->view, later->view, op, out->name, later->name);
    }
  }
}

void require_cpu(const ArrayView& a, const char* op, const char* name) {
  if (a.present && a.device != Device::CPU) {
    fail_value(op, std::string(name) + " is a CUDA array, but CUDA arrays are not supported by "
                                       "this kernel yet; pass a NumPy array");
  }
}

void require_cuda_built(const ArrayView& a, const char* op) {
#ifndef RANVIER_WITH_CUDA
  if (a.present && a.device == Device::CUDA) {
    fail_value(op, "got a CUDA array, but this ranvier was built without CUDA "
                   "(ranvier.cuda.is_built() is False)");
  }
#else
  (void)a;
  (void)op;
#endif
}

StreamHandle current_cuda_stream() {
  // Our kernels run on CuPy's current stream so that they order correctly with CuPy's own
  // work. Looked up per call: a `with cupy.cuda.Stream():` block changes it.
  py::module_ cupy_cuda = py::module_::import("cupy.cuda");
  const auto ptr = cupy_cuda.attr("get_current_stream")().attr("ptr").cast<uintptr_t>();
  return reinterpret_cast<StreamHandle>(ptr);
}

Reduction parse_reduction(const std::string& reduction, const char* op) {
  if (reduction == "mean") return Reduction::Mean;
  if (reduction == "sum") return Reduction::Sum;
  if (reduction == "none") return Reduction::None;
  fail_value(op, "reduction must be 'mean', 'sum' or 'none', got '" + reduction + "'");
}

Activation parse_activation(int code, const char* op) {
  if (code < static_cast<int>(Activation::ReLU) || code > static_cast<int>(Activation::GELUTanh)) {
    fail_value(op, "unknown activation code " + std::to_string(code));
  }
  return static_cast<Activation>(code);
}

}  // namespace ranvier::binding
