// The binding layer's view of an incoming array, and the checks every binding runs on it.
//
// Every _C function receives NumPy arrays (host memory) or objects exposing
// __cuda_array_interface__ (CuPy arrays, device memory). view_array() turns either into an
// ArrayView (pointer, shape, dtype, device) and rejects anything the kernels cannot take:
// other types, non-contiguous or misaligned data, byte-swapped or unsupported dtypes.
// Errors are Python exceptions whose message starts with the op's name.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "ranvier/activations.h"
#include "ranvier/common.h"

namespace ranvier::binding {

namespace py = pybind11;

enum class DType { Float32, Float64, Int64, UInt8, Other };
enum class Device { CPU, CUDA };

const char* dtype_name(DType dtype);
const char* device_name(Device device);

struct ArrayView {
  void* data = nullptr;
  std::vector<int64_t> shape;
  DType dtype = DType::Other;
  std::string dtype_str;  // the array's own dtype name, for messages
  Device device = Device::CPU;
  int device_id = -1;     // CUDA device ordinal; -1 on the CPU
  bool writable = false;
  // False for an optional argument given as None (view_optional): data is null, so ptr<T>()
  // is the null pointer the kernels take for "absent", and every check below passes it.
  bool present = false;

  int64_t ndim() const { return static_cast<int64_t>(shape.size()); }
  int64_t numel() const;
  int64_t itemsize() const;
  // Size of axis `axis`; negative counts from the end. Throws on a bad axis.
  int64_t dim(int64_t axis) const;
  std::string shape_str() const;  // "(3, 4)"
  template <typename T>
  T* ptr() const { return static_cast<T*>(data); }
};

// View an array argument; `op` and `name` appear in error messages.
ArrayView view_array(py::handle obj, const char* op, const char* name);
// As view_array, and the array must be writable: the kernel writes into it.
ArrayView view_output(py::handle obj, const char* op, const char* name);
// As view_array / view_output for an optional argument: None gives an absent view.
ArrayView view_optional(py::handle obj, const char* op, const char* name);
ArrayView view_optional_output(py::handle obj, const char* op, const char* name);

// Errors raised by the checks below (and usable by the bindings directly). Every check
// passes an absent optional argument (present false).
[[noreturn]] void fail_value(const char* op, const std::string& message);
[[noreturn]] void fail_type(const char* op, const std::string& message);

void check_float(const ArrayView& a, const char* op, const char* name);
void check_dtype(const ArrayView& a, DType dtype, const char* op, const char* name);
void check_same_dtype(const ArrayView& a, const ArrayView& b, const char* op, const char* name_a,
                      const char* name_b);
void check_ndim(const ArrayView& a, int64_t ndim, const char* op, const char* name);
void check_shape(const ArrayView& a, const std::vector<int64_t>& shape, const char* op,
                 const char* name);
void check_same_shape(const ArrayView& a, const ArrayView& b, const char* op, const char* name_a,
                      const char* name_b);
void check_same_device(const ArrayView& a, const ArrayView& b, const char* op, const char* name_a,
                       const char* name_b);
// An output may be the very same buffer as an input (in-place elementwise) but must not
// overlap it partially.
void check_no_partial_overlap(const ArrayView& out, const ArrayView& in, const char* op,
                              const char* name_out, const char* name_in);
// An output must not share any memory with an input (GEMM-like kernels read inputs late).
void check_disjoint(const ArrayView& out, const ArrayView& in, const char* op,
                    const char* name_out, const char* name_in);

// An array argument with its name, for the checks over several arguments of one call.
struct Arg {
  const ArrayView& view;
  const char* name;
};

// The rules the arrays of a float kernel share, in this order (the first broken one is the
// error): every array of same_dtype and same_device on ref's device, a CUDA build for CUDA
// arrays, ref float32 or float64, every array of same_dtype of ref's dtype. same_device holds
// the arrays of another dtype (int64 indices, uint8 masks), which the caller checks.
void check_float_args(const char* op, Arg ref, std::initializer_list<Arg> same_dtype,
                      std::initializer_list<Arg> same_device = {});
// Every array of `others` on ref's device, then every one of ref's dtype: for arguments
// checked later than ref's check_float_args (optional weights, outputs of losses).
void check_like(const char* op, Arg ref, std::initializer_list<Arg> others);
// For kernels that read their inputs late (GEMM-like): each output, in order, shares no
// memory with any input nor with the outputs after it (an overlap of two outputs is reported
// under the one listed first).
void check_outputs_disjoint(const char* op, std::initializer_list<Arg> outputs,
                            std::initializer_list<Arg> inputs);

// For kernels with no CUDA twin yet: refuse a device array before its pointer can reach a
// CPU kernel.
void require_cpu(const ArrayView& a, const char* op, const char* name);
// CUDA arrays need a CUDA build; on a CPU-only build this raises a clear error.
void require_cuda_built(const ArrayView& a, const char* op);
// The stream our CUDA kernels run on: CuPy's current stream (0 when CuPy is absent).
StreamHandle current_cuda_stream();
// The stream for a call on a's device: current_cuda_stream() for CUDA arrays, null on the CPU.
// Looked up with the GIL held, before the kernel call releases it.
inline StreamHandle stream_for(const ArrayView& a) {
  return a.device == Device::CUDA ? current_cuda_stream() : nullptr;
}

// Calls f(T{}) with T = float or double according to `dtype`.
template <typename F>
decltype(auto) dispatch_float(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::Float32: return f(float{});
    case DType::Float64: return f(double{});
    default: fail_type(op, std::string("expected float32 or float64, got ") + dtype_name(dtype));
  }
}

Reduction parse_reduction(const std::string& reduction, const char* op);
// The Activation with this code (the values of _C.Activation).
Activation parse_activation(int code, const char* op);

// The call of a kernel that has the same arguments on both devices: with the GIL released,
// cpu::kernel<T>(args...) when `device` is the CPU, or cuda::kernel<T>(args..., stream) for
// CUDA arrays (`stream` is evaluated first, with the GIL still held). A CPU-only build
// compiles no CUDA call. For bindings that already know T (e.g. they needed it to view
// typed state first); RANVIER_RUN_FLOAT_KERNEL below picks T from an array's dtype.
#ifdef RANVIER_WITH_CUDA
#define RANVIER_IF_CUDA_BUILD(...) __VA_ARGS__
#else
#define RANVIER_IF_CUDA_BUILD(...)
#endif

#define RANVIER_RUN_TYPED_KERNEL(T, device, stream, kernel, ...)                           \
  do {                                                                                     \
    const ::ranvier::StreamHandle ranvier_typed_stream_ = (stream);                        \
    ::pybind11::gil_scoped_release ranvier_nogil_;                                         \
    if ((device) == ::ranvier::binding::Device::CPU) {                                     \
      ::ranvier::cpu::kernel<T>(__VA_ARGS__);                                              \
    } else {                                                                               \
      RANVIER_IF_CUDA_BUILD(::ranvier::cuda::kernel<T>(__VA_ARGS__, ranvier_typed_stream_);) \
    }                                                                                      \
    (void)ranvier_typed_stream_;                                                           \
  } while (0)

// RANVIER_RUN_TYPED_KERNEL with T = float or double as a's dtype says, on a's device. The
// arguments may name T.
#define RANVIER_RUN_FLOAT_KERNEL(a, op, kernel, ...)                                       \
  do {                                                                                     \
    const ::ranvier::StreamHandle ranvier_stream_ = ::ranvier::binding::stream_for(a);     \
    ::ranvier::binding::dispatch_float((a).dtype, op, [&](auto ranvier_zero_) {            \
      using T = decltype(ranvier_zero_);                                                   \
      RANVIER_RUN_TYPED_KERNEL(T, (a).device, ranvier_stream_, kernel, __VA_ARGS__);       \
    });                                                                                    \
  } while (0)

}  // namespace ranvier::binding
