// Small kernels that test the emulator itself (tests/test_cuda_emulation.py): that it runs
// every thread with the right coordinates, that barriers and warp shuffles exchange data as
// on a GPU, and that the mistakes it exists to catch (a missing barrier, barriers or
// shuffles some threads skip, bad launch configurations, out-of-bounds writes) do show.
// Compiled only into the emulation module, never by nvcc.
#include "../../kernels/cuda/check.cuh"
#include "bindings.h"

namespace emulated {

namespace {

using ranvier::cuda::launch_kernel;

// coords[linear global thread id] = (blockIdx, threadIdx, blockDim, gridDim) flattened.
__global__ void coordinates_kernel(unsigned int* coords) {
  const unsigned int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  unsigned int* c = coords + 12 * (block * blockDim.x * blockDim.y * blockDim.z + thread);
  const dim3 values[4] = {blockIdx, threadIdx, blockDim, gridDim};
  for (int v = 0; v < 4; ++v) {
    c[3 * v] = values[v].x;
    c[3 * v + 1] = values[v].y;
    c[3 * v + 2] = values[v].z;
  }
}

// out[t] = the value thread t + 1 (mod threads) wrote to shared memory; with_barrier false
// leaves out the __syncthreads between the write and the read.
__global__ void neighbour_kernel(const int* in, int* out, bool with_barrier) {
  __shared__ int shared[256];
  const int t = threadIdx.x;
  shared[t] = in[t];
  if (with_barrier) __syncthreads();
  out[t] = shared[(t + 1) % blockDim.x];
}

// out[lane] = the sum over the warp of in[lane], by the usual butterfly of shuffles.
__global__ void warp_sum_kernel(const double* in, double* out) {
  double v = in[threadIdx.x];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  out[threadIdx.x] = v;
}

// Thread 0 skips the barrier the others wait at.
__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x != 0) __syncthreads();
  out[threadIdx.x] = 1;
}

// Lanes 16..31 exit before the others shuffle with a full mask.
__global__ void shuffle_after_exit_kernel(float* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

// Writes out[0..n] inclusive: one element past the end.
__global__ void write_past_end_kernel(float* out, int64_t n) {
  for (int64_t i = threadIdx.x; i <= n; i += blockDim.x) out[i] = 1.0f;
}

}  // namespace

void bind_selftest(py::module_& m) {
  m.def("selftest_coordinates", [](py::array coords, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                   unsigned by, unsigned bz) {
    launch_kernel("coordinates_kernel", coordinates_kernel, dim3(gx, gy, gz), dim3(bx, by, bz), 0, nullptr,
                  data<unsigned int>(coords, "coords"));
  });
  m.def("selftest_neighbour", [](py::array in, py::array out, unsigned threads, bool with_barrier) {
    launch_kernel("neighbour_kernel", neighbour_kernel, 1, threads, 0, nullptr, data<int>(in, "in"),
                  data<int>(out, "out"), with_barrier);
  });
  m.def("selftest_warp_sum", [](py::array in, py::array out) {
    launch_kernel("warp_sum_kernel", warp_sum_kernel, 1, 32, 0, nullptr, data<double>(in, "in"),
                  data<double>(out, "out"));
  });
  m.def("selftest_divergent_barrier", [](py::array out, unsigned threads) {
    launch_kernel("divergent_barrier_kernel", divergent_barrier_kernel, 1, threads, 0, nullptr,
                  data<int>(out, "out"));
  });
  m.def("selftest_shuffle_after_exit", [](py::array out) {
    launch_kernel("shuffle_after_exit_kernel", shuffle_after_exit_kernel, 1, 32, 0, nullptr,
                  data<float>(out, "out"));
  });
  m.def("selftest_launch", [](py::array out, unsigned grid, unsigned block_x, unsigned block_z) {
    launch_kernel("divergent_barrier_kernel", divergent_barrier_kernel, grid, dim3(block_x, 1, block_z), 0,
                  nullptr, data<int>(out, "out"));
  });
  m.def("selftest_write_past_end", [](int64_t n) {
    // A device buffer of n floats from the emulated runtime (host memory: AddressSanitizer
    // watches its end).
    void* buffer = nullptr;
    ranvier::cuda::check_cuda(cudaMallocAsync(&buffer, sizeof(float) * static_cast<size_t>(n), nullptr),
                              "selftest_write_past_end");
    launch_kernel("write_past_end_kernel", write_past_end_kernel, 1, 32, 0, nullptr, static_cast<float*>(buffer),
                  n);
    cudaFreeAsync(buffer, nullptr);
  });
}

}  // namespace emulated
