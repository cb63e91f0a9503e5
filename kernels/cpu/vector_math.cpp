// The vector math's entry points (ranvier/vector_math.h): the SIMD kernels of the chosen
// path (vector_math_kernels.h), or the scalar libm functions of ranvier/math.h on the
// portable path (and for float64 erf on every path).
#include "ranvier/vector_math.h"

#include "ranvier/activation_math.h"
#include "ranvier/math.h"
#include "ranvier/simd_path.h"
#include "ranvier/softmax_math.h"
#include "vector_math_kernels.h"

namespace ranvier::cpu {

namespace {

namespace vk = vector_math_kernels;

template <typename T, typename F>
void scalar_map(const T* x, T* y, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
}

// Calls avx512_kernel, avx2_kernel or portable() as simd_path() says.
template <typename Avx512, typename Avx2, typename Portable>
void on_path(Avx512 avx512_kernel, Avx2 avx2_kernel, Portable portable) {
#if RANVIER_SIMD_X86
  switch (simd_path()) {
    case SimdPath::avx512: return avx512_kernel();
    case SimdPath::avx2: return avx2_kernel();
    default: break;
  }
#else
  (void)avx512_kernel;
  (void)avx2_kernel;
#endif
  portable();
}

}  // namespace

#if RANVIER_SIMD_X86
#define RANVIER_ON_PATH(kernel, x, y, n, scalar)                                  \
  on_path([&] { vk::avx512::kernel(x, y, n); }, [&] { vk::avx2::kernel(x, y, n); }, \
          [&] { scalar_map(x, y, n, scalar); })
#else
#define RANVIER_ON_PATH(kernel, x, y, n, scalar) scalar_map(x, y, n, scalar)
#endif

template <typename T>
void vector_exp(const T* x, T* y, int64_t n) {
  RANVIER_ON_PATH(exp_array, x, y, n, [](T v) { return math_exp(v); });
}

template <typename T>
void vector_sigmoid(const T* x, T* y, int64_t n) {
  RANVIER_ON_PATH(sigmoid_array, x, y, n, [](T v) { return stable_sigmoid(v); });
}

template <typename T>
void vector_tanh(const T* x, T* y, int64_t n) {
  RANVIER_ON_PATH(tanh_array, x, y, n, [](T v) { return math_tanh(v); });
}

template <typename T>
void vector_log(const T* x, T* y, int64_t n) {
  RANVIER_ON_PATH(log_array, x, y, n, [](T v) { return math_log(v); });
}

template <typename T>
void vector_log1p(const T* x, T* y, int64_t n) {
  RANVIER_ON_PATH(log1p_array, x, y, n, [](T v) { return math_log1p(v); });
}

template <>
void vector_erf<float>(const float* x, float* y, int64_t n) {
  RANVIER_ON_PATH(erf_array, x, y, n, [](float v) { return math_erf(v); });
}

// float64 erf: the scalar libm erf on every path (no SIMD version of float64 accuracy yet).
template <>
void vector_erf<double>(const double* x, double* y, int64_t n) {
  scalar_map(x, y, n, [](double v) { return math_erf(v); });
}

#undef RANVIER_ON_PATH

template <typename T>
T vector_max(const T* x, int64_t n) {
#if RANVIER_SIMD_X86
  switch (simd_path()) {
    case SimdPath::avx512: return vk::avx512::max_array(x, n);
    case SimdPath::avx2: return vk::avx2::max_array(x, n);
    default: break;
  }
#endif
  T result = x[0];
  for (int64_t i = 1; i < n; ++i) result = max_propagating_nan(result, x[i]);
  return result;
}

template void vector_exp<float>(const float*, float*, int64_t);
template void vector_exp<double>(const double*, double*, int64_t);
template void vector_sigmoid<float>(const float*, float*, int64_t);
template void vector_sigmoid<double>(const double*, double*, int64_t);
template void vector_tanh<float>(const float*, float*, int64_t);
template void vector_tanh<double>(const double*, double*, int64_t);
template void vector_log<float>(const float*, float*, int64_t);
template void vector_log<double>(const double*, double*, int64_t);
template void vector_log1p<float>(const float*, float*, int64_t);
template void vector_log1p<double>(const double*, double*, int64_t);
template float vector_max<float>(const float*, int64_t);
template double vector_max<double>(const double*, int64_t);

}  // namespace ranvier::cpu
