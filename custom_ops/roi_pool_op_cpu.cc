// CPU kernels of KerasFrcnn>RoiPool, KerasFrcnn>RoiPoolInference and KerasFrcnn>RoiPoolGrad on
// TensorFlow's intra-op thread pool. The loops are roi_pool_kernels.h,
// compiled per instruction set (roi_pool_cpu.h).
#include <algorithm>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/util/work_sharder.h"

#include "roi_pool_cpu.h"
#include "roi_pool_op_common.h"

namespace keras_frcnn {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;

namespace {

// The kernels built for the best instruction set this CPU has; both variants
// give identical results.
bool HasAvx2() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool has_avx2 = __builtin_cpu_supports("avx2");
  return has_avx2;
#else
  return false;
#endif
}

template <typename T>
CpuKernels<T> SelectKernels();
template <>
CpuKernels<float> SelectKernels<float>() {
  return HasAvx2() ? Avx2KernelsFloat() : BaselineKernelsFloat();
}
template <>
CpuKernels<double> SelectKernels<double>() {
  return HasAvx2() ? Avx2KernelsDouble() : BaselineKernelsDouble();
}

}  // namespace

// KerasFrcnn>RoiPool (kArgmax) and KerasFrcnn>RoiPoolInference (pooled values only).
template <typename T, bool kArgmax>
class RoiPoolCpuOp : public RoiPoolKernelBase {
 public:
  explicit RoiPoolCpuOp(OpKernelConstruction* ctx) : RoiPoolKernelBase(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    PoolGeometry g;
    Tensor* output = nullptr;
    Tensor* argmax = nullptr;
    if (!PrepareForward(ctx, &g, &output, kArgmax ? &argmax : nullptr)) return;
    const T* feature_data = ctx->input(0).flat<T>().data();
    const float* roi_data = ctx->input(1).flat<float>().data();
    T* output_data = output->flat<T>().data();
    int32_t* argmax_data = kArgmax ? argmax->flat<int32_t>().data() : nullptr;
    const int64_t num_bins = ctx->input(1).dim_size(0) * g.pooled_height * g.pooled_width;
    // Cost of one bin: about one pass over an average window, all channels (the
    // argmax blend doubles it).
    const int64_t cells_per_bin =
        std::max<int64_t>(1, g.height * g.width / (g.pooled_height * g.pooled_width));
    const int64_t cost = (kArgmax ? 4 : 2) * g.channels * (cells_per_bin + 1);
    const CpuKernels<T> kernels = SelectKernels<T>();
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    ::tensorflow::Shard(workers->num_threads, workers->workers, num_bins, cost,
                        [&](int64_t begin, int64_t end) {
                          if (kArgmax) {
                            kernels.forward(feature_data, roi_data, g, begin, end,
                                            output_data, argmax_data);
                          } else {
                            kernels.values(feature_data, roi_data, g, begin, end, output_data);
                          }
                        });
  }
};

template <typename T>
class RoiPoolGradCpuOp : public RoiPoolKernelBase {
 public:
  explicit RoiPoolGradCpuOp(OpKernelConstruction* ctx) : RoiPoolKernelBase(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    PoolGeometry g;
    Tensor* grad_features = nullptr;
    if (!PrepareBackward(ctx, &g, &grad_features)) return;
    const float* roi_data = ctx->input(1).flat<float>().data();
    const int32_t* argmax_data = ctx->input(2).flat<int32_t>().data();
    const T* grad_data = ctx->input(3).flat<T>().data();
    T* out = grad_features->flat<T>().data();
    const int64_t num_rois = ctx->input(1).dim_size(0);
    // One contiguous, cache-line-aligned channel range per thread: disjoint
    // outputs, and a summation order independent of the number of threads.
    // (Finer blocks would make every block re-read all bins with short
    // strided reads, measured 1.5-2x slower.)
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    const int64_t threads = std::max(1, workers->num_threads);
    const int64_t line = 64 / static_cast<int64_t>(sizeof(T));
    const int64_t block =
        std::max(line, (g.channels + threads * line - 1) / (threads * line) * line);
    const CpuKernels<T> kernels = SelectKernels<T>();
    workers->workers->ParallelFor(
        g.channels, ::tsl::thread::ThreadPool::SchedulingParams::Fixed(block),
        [&](int64_t c_begin, int64_t c_end) {
          kernels.backward(grad_data, argmax_data, roi_data, num_rois, g, c_begin, c_end, out);
        });
  }
};

#define REGISTER_CPU(T)                                                                   \
  REGISTER_KERNEL_BUILDER(                                                                \
      Name("KerasFrcnn>RoiPool").Device(DEVICE_CPU).TypeConstraint<T>("T"),              \
      RoiPoolCpuOp<T, true>);                                                             \
  REGISTER_KERNEL_BUILDER(                                                                \
      Name("KerasFrcnn>RoiPoolGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),          \
      RoiPoolGradCpuOp<T>);                                                               \
  REGISTER_KERNEL_BUILDER(                                                                \
      Name("KerasFrcnn>RoiPoolInference").Device(DEVICE_CPU).TypeConstraint<T>("T"),     \
      RoiPoolCpuOp<T, false>);

REGISTER_CPU(float);
REGISTER_CPU(double);
#undef REGISTER_CPU

}  // namespace keras_frcnn
