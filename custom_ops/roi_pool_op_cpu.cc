// CPU kernels of KerasFrcnn>RoiPool and KerasFrcnn>RoiPoolGrad, sharded over
// TensorFlow's intra-op thread pool. The arithmetic is roi_pool_kernels.h.
#include <algorithm>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/util/work_sharder.h"

#include "roi_pool_cpu.h"
#include "roi_pool_op_common.h"

namespace keras_frcnn {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

namespace {

// The kernels built for the best instruction set this CPU has (see
// roi_pool_cpu.h); both variants give identical results.
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

template <typename T>
class RoiPoolCpuOp : public OpKernel {
 public:
  explicit RoiPoolCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    ReadPoolAttrs(ctx, &pooled_height_, &pooled_width_, &spatial_scale_);
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& features = ctx->input(0);
    const Tensor& rois = ctx->input(1);
    PoolGeometry g;
    OP_REQUIRES_OK(ctx, ValidatePoolInputs(features, rois, pooled_height_, pooled_width_,
                                           spatial_scale_, &g));
    const int64_t num_rois = rois.dim_size(0);
    const TensorShape out_shape({num_rois, g.pooled_height, g.pooled_width, g.channels});
    Tensor* output = nullptr;
    Tensor* argmax = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &output));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, out_shape, &argmax));
    const int64_t num_bins = num_rois * g.pooled_height * g.pooled_width;
    if (num_bins == 0 || g.channels == 0) return;

    const T* feature_data = features.flat<T>().data();
    const float* roi_data = rois.flat<float>().data();
    T* output_data = output->flat<T>().data();
    int32_t* argmax_data = argmax->flat<int32_t>().data();
    // Cost of one bin: about one pass over an average window, all channels.
    const int64_t cells_per_bin =
        std::max<int64_t>(1, g.height * g.width / (g.pooled_height * g.pooled_width));
    const int64_t cost = 4 * g.channels * (cells_per_bin + 1);
    const CpuKernels<T> kernels = SelectKernels<T>();
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    ::tensorflow::Shard(workers->num_threads, workers->workers, num_bins, cost,
                        [&](int64_t begin, int64_t end) {
                          kernels.forward(feature_data, roi_data, g, begin, end, output_data,
                                          argmax_data);
                        });
  }

 private:
  int pooled_height_;
  int pooled_width_;
  float spatial_scale_;
};

template <typename T>
class RoiPoolGradCpuOp : public OpKernel {
 public:
  explicit RoiPoolGradCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    ReadPoolAttrs(ctx, &pooled_height_, &pooled_width_, &spatial_scale_);
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& features = ctx->input(0);
    const Tensor& rois = ctx->input(1);
    const Tensor& argmax = ctx->input(2);
    const Tensor& grad = ctx->input(3);
    PoolGeometry g;
    OP_REQUIRES_OK(ctx, ValidatePoolInputs(features, rois, pooled_height_, pooled_width_,
                                           spatial_scale_, &g));
    OP_REQUIRES_OK(ctx, ValidateGradInputs(argmax, grad, rois, g));
    Tensor* grad_features = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, features.shape(), &grad_features));
    if (features.NumElements() == 0) return;

    const T* grad_data = grad.flat<T>().data();
    const int32_t* argmax_data = argmax.flat<int32_t>().data();
    const float* roi_data = rois.flat<float>().data();
    T* out = grad_features->flat<T>().data();
    const int64_t num_rois = rois.dim_size(0);
    // One contiguous, cache-line-aligned channel range per thread: disjoint
    // outputs, and a summation order independent of the number of threads.
    // (Finer blocks would make every block re-read all bins with short
    // strided reads, measured 2-3x slower.)
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    const int64_t threads = std::max(1, workers->num_threads);
    const int64_t line = 64 / static_cast<int64_t>(sizeof(T));
    const int64_t block = std::max(line, (g.channels + threads * line - 1) / (threads * line) * line);
    const CpuKernels<T> kernels = SelectKernels<T>();
    workers->workers->ParallelFor(
        g.channels, ::tsl::thread::ThreadPool::SchedulingParams::Fixed(block),
        [&](int64_t c_begin, int64_t c_end) {
          kernels.backward(grad_data, argmax_data, roi_data, num_rois, g, c_begin, c_end, out);
        });
  }

 private:
  int pooled_height_;
  int pooled_width_;
  float spatial_scale_;
};

#define REGISTER_CPU(T)                                                                   \
  REGISTER_KERNEL_BUILDER(                                                                \
      Name("KerasFrcnn>RoiPool").Device(DEVICE_CPU).TypeConstraint<T>("T"),              \
      RoiPoolCpuOp<T>);                                                                   \
  REGISTER_KERNEL_BUILDER(                                                                \
      Name("KerasFrcnn>RoiPoolGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),          \
      RoiPoolGradCpuOp<T>);

REGISTER_CPU(float);
REGISTER_CPU(double);
#undef REGISTER_CPU

}  // namespace keras_frcnn
