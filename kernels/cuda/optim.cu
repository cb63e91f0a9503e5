// Fused in-place optimizer updates on the GPU: one grid-stride pass per parameter with the
// per-element update of optim_math.h, the same code the CPU runs. CMakeLists.txt compiles
// this file with --fmad=false: without FMA contraction every element rounds exactly as on
// the CPU, so a GPU step equals a CPU step bit for bit.
#include "check.cuh"
#include "ranvier/optim.h"
#include "ranvier/optim_math.h"

namespace ranvier::cuda {

namespace {

template <typename T>
__global__ void sgd_step_kernel(SgdCoefficients<T> c, T* param, const T* grad, T* momentum_buf, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    sgd_update(c, param, grad, momentum_buf, i);
  }
}

template <typename T>
__global__ void adam_step_kernel(AdamCoefficients<T> c, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
                                 T* max_exp_avg_sq, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    adam_update(c, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i);
  }
}

template <typename T>
__global__ void rmsprop_step_kernel(RmspropCoefficients<T> c, T* param, const T* grad, T* square_avg,
                                    T* momentum_buf, T* grad_avg, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    rmsprop_update(c, param, grad, square_avg, momentum_buf, grad_avg, i);
  }
}

}  // namespace

// param, grad, momentum_buf (n)
template <typename T>
void sgd_step(T* param, const T* grad, T* momentum_buf, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool maximize, bool first_step,
              StreamHandle stream) {
  if (n <= 0) return;
  const SgdCoefficients<T> c =
      make_sgd_coefficients<T>(lr, momentum, dampening, weight_decay, nesterov, maximize, first_step);
  launch_kernel("sgd_step_kernel", sgd_step_kernel<T>, grid_for(n), kBlockSize, 0, as_stream(stream), c,
                param, grad, momentum_buf, n);
}

// param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (n)
template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
               double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step,
               bool decoupled_weight_decay, bool amsgrad, bool maximize, StreamHandle stream) {
  if (n <= 0) return;
  const AdamCoefficients<T> c = make_adam_coefficients<T>(lr, beta1, beta2, eps, weight_decay, step,
                                                          decoupled_weight_decay, amsgrad, maximize);
  launch_kernel("adam_step_kernel", adam_step_kernel<T>, grid_for(n), kBlockSize, 0, as_stream(stream), c,
                param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n);
}

// param, grad, square_avg, momentum_buf, grad_avg (n)
template <typename T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* momentum_buf, T* grad_avg, int64_t n,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize, StreamHandle stream) {
  if (n <= 0) return;
  const RmspropCoefficients<T> c =
      make_rmsprop_coefficients<T>(lr, alpha, eps, weight_decay, momentum, centered, maximize);
  launch_kernel("rmsprop_step_kernel", rmsprop_step_kernel<T>, grid_for(n), kBlockSize, 0, as_stream(stream),
                c, param, grad, square_avg, momentum_buf, grad_avg, n);
}

#define RANVIER_INSTANTIATE_OPTIM(T)                                                                      \
  template void sgd_step<T>(T*, const T*, T*, int64_t, double, double, double, double, bool, bool, bool,  \
                            StreamHandle);                                                                \
  template void adam_step<T>(T*, const T*, T*, T*, T*, int64_t, double, double, double, double, double,   \
                             int64_t, bool, bool, bool, StreamHandle);                                    \
  template void rmsprop_step<T>(T*, const T*, T*, T*, T*, int64_t, double, double, double, double, double, \
                                bool, bool, StreamHandle);

RANVIER_INSTANTIATE_OPTIM(float)
RANVIER_INSTANTIATE_OPTIM(double)

#undef RANVIER_INSTANTIATE_OPTIM

// ---- Multi-tensor updates -------------------------------------------------------------------
// Many parameters in one launch (as PyTorch's multi_tensor_apply): the host splits every
// parameter into chunks of kChunkSize elements and fills a table, passed by value as a kernel
// argument (no device allocation, no copy), that maps each block to one (tensor, chunk) pair.
// A table holds up to kMaxTensorsPerLaunch tensors and kMaxBlocksPerLaunch chunks; more take
// further launches, each on the same stream, so the updates stay in order.
namespace {

constexpr int kMaxTensorsPerLaunch = 32;
constexpr int kMaxBlocksPerLaunch = 192;
constexpr int64_t kChunkSize = 65536;  // elements per block: 256 per thread

// kLists arrays per tensor (param, grad, state...; grad is only read), and what differs
// between tensors besides their arrays (PerTensor: Adam's step-dependent scalars, SGD's
// first_step). Kept under the 4 KiB kernel-argument limit (static_assert below).
template <typename T, int kLists, typename PerTensor>
struct TensorChunkTable {
  T* arrays[kLists][kMaxTensorsPerLaunch];
  int64_t sizes[kMaxTensorsPerLaunch];
  PerTensor per_tensor[kMaxTensorsPerLaunch];
  int32_t block_chunk[kMaxBlocksPerLaunch];     // chunk index within its tensor (< 2^31: 2^47 elements)
  uint8_t block_tensor[kMaxBlocksPerLaunch];    // table slot of the block's tensor
};

// update(table, slot, i) for the elements of block blockIdx.x's chunk.
template <typename Table, typename Update>
__global__ void multi_tensor_kernel(Table table, Update update) {
  const int slot = table.block_tensor[blockIdx.x];
  const int64_t begin = static_cast<int64_t>(table.block_chunk[blockIdx.x]) * kChunkSize;
  const int64_t n = table.sizes[slot];
  const int64_t end = begin + kChunkSize < n ? begin + kChunkSize : n;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) update(table, slot, i);
}

// Fills tables from `count` host entries and launches one kernel per full table.
// fill(table, slot, entry) stores the entry's arrays and per-tensor values in the slot.
template <typename Table, typename Entry, typename Fill, typename Update>
void launch_multi_tensor(const Entry* entries, int64_t count, const Fill& fill, const Update& update,
                         StreamHandle stream, const char* kernel_name) {
  static_assert(sizeof(Table) + sizeof(Update) <= 4000, "kernel arguments must stay under 4 KiB");
  Table table{};  // unused slots stay zero
  int tensors = 0, blocks = 0;
  auto launch_table = [&] {
    if (blocks > 0) {
      launch_kernel(kernel_name, multi_tensor_kernel<Table, Update>, blocks, kBlockSize, 0, as_stream(stream),
                    table, update);
    }
    tensors = 0;
    blocks = 0;
  };
  for (int64_t k = 0; k < count; ++k) {
    const Entry& entry = entries[k];
    if (entry.n <= 0) continue;
    if (tensors == kMaxTensorsPerLaunch) launch_table();
    int slot = tensors++;
    fill(table, slot, entry);
    table.sizes[slot] = entry.n;
    const int64_t chunks = (entry.n + kChunkSize - 1) / kChunkSize;
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      table.block_tensor[blocks] = static_cast<uint8_t>(slot);
      table.block_chunk[blocks] = static_cast<int32_t>(chunk);
      ++blocks;
      if (blocks == kMaxBlocksPerLaunch) {
        // The tensor's remaining chunks continue in the next table, in slot 0.
        const bool more_chunks = chunk + 1 < chunks;
        launch_table();
        if (more_chunks) {
          slot = 0;
          fill(table, slot, entry);
          table.sizes[slot] = entry.n;
          tensors = 1;
        }
      }
    }
  }
  launch_table();
}

struct NoPerTensor {};

struct SgdPerTensor {
  bool first_step;
};

template <typename T>
struct AdamPerTensor {
  T neg_step_size, bias_correction2_sqrt;  // from the tensor's own step
};

template <typename T>
using SgdTable = TensorChunkTable<T, 3, SgdPerTensor>;
template <typename T>
using AdamTable = TensorChunkTable<T, 5, AdamPerTensor<T>>;
template <typename T>
using RmspropTable = TensorChunkTable<T, 5, NoPerTensor>;

// The coefficients of the tensor in a table slot: the call's, with the tensor's own values.
template <typename T>
__device__ SgdCoefficients<T> with_own_values(SgdCoefficients<T> c, const SgdPerTensor& own) {
  c.first_step = own.first_step;
  return c;
}

template <typename T>
__device__ AdamCoefficients<T> with_own_values(AdamCoefficients<T> c, const AdamPerTensor<T>& own) {
  c.neg_step_size = own.neg_step_size;
  c.bias_correction2_sqrt = own.bias_correction2_sqrt;
  return c;
}

template <typename T>
struct SgdMultiUpdate {
  SgdCoefficients<T> c;
  __device__ void operator()(const SgdTable<T>& t, int slot, int64_t i) const {
    sgd_update(with_own_values(c, t.per_tensor[slot]), t.arrays[0][slot], t.arrays[1][slot], t.arrays[2][slot], i);
  }
};

template <typename T>
struct AdamMultiUpdate {
  AdamCoefficients<T> c;
  __device__ void operator()(const AdamTable<T>& t, int slot, int64_t i) const {
    adam_update(with_own_values(c, t.per_tensor[slot]), t.arrays[0][slot], t.arrays[1][slot], t.arrays[2][slot],
                t.arrays[3][slot], t.arrays[4][slot], i);
  }
};

template <typename T>
struct RmspropMultiUpdate {
  RmspropCoefficients<T> c;
  __device__ void operator()(const RmspropTable<T>& t, int slot, int64_t i) const {
    rmsprop_update(c, t.arrays[0][slot], t.arrays[1][slot], t.arrays[2][slot], t.arrays[3][slot],
                   t.arrays[4][slot], i);
  }
};

}  // namespace

template <typename T>
void sgd_step_multi(const SgdTensor<T>* tensors, int64_t count, double lr, double momentum, double dampening,
                    double weight_decay, bool nesterov, bool maximize, StreamHandle stream) {
  const SgdMultiUpdate<T> update{
      make_sgd_coefficients<T>(lr, momentum, dampening, weight_decay, nesterov, maximize, false)};
  const auto fill = [](SgdTable<T>& table, int slot, const SgdTensor<T>& t) {
    table.arrays[0][slot] = t.param;
    table.arrays[1][slot] = const_cast<T*>(t.grad);  // only read
    table.arrays[2][slot] = t.momentum_buf;
    table.per_tensor[slot] = SgdPerTensor{t.first_step};
  };
  launch_multi_tensor<SgdTable<T>>(tensors, count, fill, update, stream, "sgd_step_multi_kernel");
}

template <typename T>
void adam_step_multi(const AdamTensor<T>* tensors, int64_t count, double lr, double beta1, double beta2,
                     double eps, double weight_decay, bool decoupled_weight_decay, bool amsgrad, bool maximize,
                     StreamHandle stream) {
  // The step-independent coefficients; each tensor's bias corrections are made on the host
  // by the same make_adam_coefficients as the single-tensor path (so they round alike).
  const AdamMultiUpdate<T> update{make_adam_coefficients<T>(lr, beta1, beta2, eps, weight_decay, 1,
                                                           decoupled_weight_decay, amsgrad, maximize)};
  const auto fill = [&](AdamTable<T>& table, int slot, const AdamTensor<T>& t) {
    const AdamCoefficients<T> own = make_adam_coefficients<T>(lr, beta1, beta2, eps, weight_decay, t.step,
                                                              decoupled_weight_decay, amsgrad, maximize);
    table.arrays[0][slot] = t.param;
    table.arrays[1][slot] = const_cast<T*>(t.grad);  // only read
    table.arrays[2][slot] = t.exp_avg;
    table.arrays[3][slot] = t.exp_avg_sq;
    table.arrays[4][slot] = t.max_exp_avg_sq;
    table.per_tensor[slot] = AdamPerTensor<T>{own.neg_step_size, own.bias_correction2_sqrt};
  };
  launch_multi_tensor<AdamTable<T>>(tensors, count, fill, update, stream, "adam_step_multi_kernel");
}

template <typename T>
void rmsprop_step_multi(const RmspropTensor<T>* tensors, int64_t count, double lr, double alpha, double eps,
                        double weight_decay, double momentum, bool centered, bool maximize, StreamHandle stream) {
  const RmspropMultiUpdate<T> update{
      make_rmsprop_coefficients<T>(lr, alpha, eps, weight_decay, momentum, centered, maximize)};
  const auto fill = [](RmspropTable<T>& table, int slot, const RmspropTensor<T>& t) {
    table.arrays[0][slot] = t.param;
    table.arrays[1][slot] = const_cast<T*>(t.grad);  // only read
    table.arrays[2][slot] = t.square_avg;
    table.arrays[3][slot] = t.momentum_buf;
    table.arrays[4][slot] = t.grad_avg;
  };
  launch_multi_tensor<RmspropTable<T>>(tensors, count, fill, update, stream, "rmsprop_step_multi_kernel");
}

#define RANVIER_INSTANTIATE_OPTIM_MULTI(T)                                                                      \
  template void sgd_step_multi<T>(const SgdTensor<T>*, int64_t, double, double, double, double, bool, bool,    \
                                  StreamHandle);                                                                \
  template void adam_step_multi<T>(const AdamTensor<T>*, int64_t, double, double, double, double, double,      \
                                   bool, bool, bool, StreamHandle);                                             \
  template void rmsprop_step_multi<T>(const RmspropTensor<T>*, int64_t, double, double, double, double, double, \
                                      bool, bool, StreamHandle);

RANVIER_INSTANTIATE_OPTIM_MULTI(float)
RANVIER_INSTANTIATE_OPTIM_MULTI(double)

#undef RANVIER_INSTANTIATE_OPTIM_MULTI

}  // namespace ranvier::cuda
