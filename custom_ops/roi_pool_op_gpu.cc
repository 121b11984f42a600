// GPU kernels of KerasFrcnn>RoiPool, KerasFrcnn>RoiPoolInference and
// KerasFrcnn>RoiPoolGrad: TensorFlow glue around the launchers of roi_pool_gpu.cu.cc. Built into a separate
// library (_roi_pool_ops_gpu.so) with the CUDA runtime linked statically, so
// the CPU library never depends on CUDA.
//
// rois stay in host memory: they are validated on the host (no kernel ever
// reads outside the feature map, and a bad RoI is an InvalidArgument, not a
// device fault) and then copied to the device.
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/util/determinism.h"
#include "xla/stream_executor/stream.h"

#include "roi_pool_build_info.h"
#include "roi_pool_gpu.h"
#include "roi_pool_op_common.h"

namespace keras_frcnn {

using ::tensorflow::DEVICE_GPU;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;

namespace {

::tensorflow::Status GpuStream(OpKernelContext* ctx, void** stream) {
  auto* device_context = ctx->op_device_context();
  *stream = device_context == nullptr || device_context->stream() == nullptr
                ? nullptr
                : device_context->stream()->platform_specific_handle().stream;
  if (*stream == nullptr) {
    return ::tensorflow::errors::Internal("RoI pooling: no CUDA stream for the GPU kernel");
  }
  return ::tensorflow::Status();
}

::tensorflow::Status CudaStatus(const std::string& error) {
  return error.empty() ? ::tensorflow::Status()
                       : ::tensorflow::errors::Internal("RoI pooling CUDA error: ", error);
}

// Copies the host rois into a device temporary.
::tensorflow::Status RoisToDevice(OpKernelContext* ctx, void* stream, const Tensor& rois,
                                  Tensor* device_rois) {
  TF_RETURN_IF_ERROR(ctx->allocate_temp(::tensorflow::DT_FLOAT, rois.shape(), device_rois));
  return CudaStatus(CopyHostToDevice(stream, device_rois->flat<float>().data(),
                                     rois.flat<float>().data(), rois.TotalBytes()));
}

}  // namespace

// KerasFrcnn>RoiPool (kArgmax) and KerasFrcnn>RoiPoolInference (pooled values only:
// only the output is allocated and written).
template <typename T, bool kArgmax>
class RoiPoolGpuOp : public RoiPoolKernelBase {
 public:
  explicit RoiPoolGpuOp(OpKernelConstruction* ctx) : RoiPoolKernelBase(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    PoolGeometry g;
    Tensor* output = nullptr;
    Tensor* argmax = nullptr;
    if (!PrepareForward(ctx, &g, &output, kArgmax ? &argmax : nullptr)) return;
    void* stream = nullptr;
    OP_REQUIRES_OK(ctx, GpuStream(ctx, &stream));
    const Tensor& rois = ctx->input(1);
    Tensor device_rois;
    OP_REQUIRES_OK(ctx, RoisToDevice(ctx, stream, rois, &device_rois));
    const T* features = ctx->input(0).flat<T>().data();
    const float* device_roi_data = device_rois.flat<float>().data();
    T* output_data = output->flat<T>().data();
    OP_REQUIRES_OK(ctx, CudaStatus(
        kArgmax ? LaunchRoiPoolForward<T>(stream, features, device_roi_data, rois.dim_size(0),
                                          g, output_data, argmax->flat<int32_t>().data())
                : LaunchRoiPoolInference<T>(stream, features, device_roi_data,
                                            rois.dim_size(0), g, output_data)));
  }
};

template <typename T>
class RoiPoolGradGpuOp : public RoiPoolKernelBase {
 public:
  explicit RoiPoolGradGpuOp(OpKernelConstruction* ctx) : RoiPoolKernelBase(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    PoolGeometry g;
    Tensor* grad_features = nullptr;
    if (!PrepareBackward(ctx, &g, &grad_features)) return;
    void* stream = nullptr;
    OP_REQUIRES_OK(ctx, GpuStream(ctx, &stream));
    const Tensor& rois = ctx->input(1);
    Tensor device_rois;
    OP_REQUIRES_OK(ctx, RoisToDevice(ctx, stream, rois, &device_rois));
    // The atomic kernel is faster but sums in a scheduling-dependent order;
    // under tf.config.experimental.enable_op_determinism() the ordered kernel
    // reproduces the CPU result bit for bit.
    const bool deterministic = ::tensorflow::OpDeterminismRequired();
    OP_REQUIRES_OK(ctx, CudaStatus(LaunchRoiPoolBackward<T>(
                            stream, ctx->input(3).flat<T>().data(),
                            ctx->input(2).flat<int32_t>().data(),
                            device_rois.flat<float>().data(), rois.dim_size(0), g, deterministic,
                            grad_features->flat<T>().data())));
  }
};

#define REGISTER_GPU(T)                                                             \
  REGISTER_KERNEL_BUILDER(Name("KerasFrcnn>RoiPool")                                \
                              .Device(DEVICE_GPU)                                   \
                              .TypeConstraint<T>("T")                               \
                              .HostMemory("rois"),                                  \
                          RoiPoolGpuOp<T, true>);                                   \
  REGISTER_KERNEL_BUILDER(Name("KerasFrcnn>RoiPoolInference")                       \
                              .Device(DEVICE_GPU)                                   \
                              .TypeConstraint<T>("T")                               \
                              .HostMemory("rois"),                                  \
                          RoiPoolGpuOp<T, false>);                                  \
  REGISTER_KERNEL_BUILDER(Name("KerasFrcnn>RoiPoolGrad")                            \
                              .Device(DEVICE_GPU)                                   \
                              .TypeConstraint<T>("T")                               \
                              .HostMemory("rois"),                                  \
                          RoiPoolGradGpuOp<T>);

REGISTER_GPU(float);
REGISTER_GPU(double);
#undef REGISTER_GPU

}  // namespace keras_frcnn
