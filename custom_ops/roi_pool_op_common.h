// Input validation and geometry shared by the CPU and GPU kernels of the RoI
// pooling ops (TensorFlow side; the arithmetic is in roi_pool_kernels.h).
#ifndef KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_OP_COMMON_H_
#define KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_OP_COMMON_H_

#include <cmath>
#include <limits>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"

#include "roi_pool_kernels.h"

namespace keras_frcnn {

// Reads and checks the attrs common to the three ops.
inline void ReadPoolAttrs(::tensorflow::OpKernelConstruction* ctx, int* pooled_height,
                          int* pooled_width, float* spatial_scale) {
  OP_REQUIRES_OK(ctx, ctx->GetAttr("pooled_height", pooled_height));
  OP_REQUIRES_OK(ctx, ctx->GetAttr("pooled_width", pooled_width));
  OP_REQUIRES_OK(ctx, ctx->GetAttr("spatial_scale", spatial_scale));
  OP_REQUIRES(ctx, std::isfinite(*spatial_scale) && *spatial_scale > 0.0f,
              ::tensorflow::errors::InvalidArgument(
                  "RoI pooling: spatial_scale must be a positive finite number (feature cells "
                  "per input pixel, e.g. 0.0625 for stride 16), got ",
                  *spatial_scale));
}

// Validates features [N, H, W, C] and rois [R, 5] (rois in host memory) and
// fills the geometry. Every RoI is checked so that no kernel ever reads
// outside the feature map.
inline ::tensorflow::Status ValidatePoolInputs(const ::tensorflow::Tensor& features,
                                               const ::tensorflow::Tensor& rois,
                                               int pooled_height, int pooled_width,
                                               float spatial_scale, PoolGeometry* geometry) {
  using ::tensorflow::errors::InvalidArgument;
  if (features.dims() != 4) {
    return InvalidArgument("RoI pooling: features must have rank 4 [N, H, W, C], got shape ",
                           features.shape().DebugString());
  }
  if (rois.dims() != 2 || rois.dim_size(1) != 5) {
    return InvalidArgument(
        "RoI pooling: rois must have shape [R, 5] (batch_index, x1, y1, x2, y2), got shape ",
        rois.shape().DebugString());
  }
  const int64_t int_max = std::numeric_limits<int>::max();
  if (features.dim_size(1) * features.dim_size(2) > int_max ||
      rois.dim_size(0) * pooled_height * pooled_width > int_max) {
    return InvalidArgument("RoI pooling: feature map ", features.shape().DebugString(),
                           " or RoI count ", rois.dim_size(0), " too large for int32 indices");
  }
  geometry->num_images = features.dim_size(0);
  geometry->height = features.dim_size(1);
  geometry->width = features.dim_size(2);
  geometry->channels = features.dim_size(3);
  geometry->pooled_height = pooled_height;
  geometry->pooled_width = pooled_width;
  geometry->spatial_scale = spatial_scale;
  // Two passes, batch indices first: a RoI set meant for other features (the
  // commonest mistake, including features of N = 0 images) is reported as
  // such even when a later RoI also has a bad coordinate. The composite
  // (keras_frcnn/ops/roi_pool_composite.py) checks in the same order.
  const auto roi_values = rois.flat<float>();
  for (const bool batch_pass : {true, false}) {
    for (int64_t r = 0; r < rois.dim_size(0); ++r) {
      const float* roi = roi_values.data() + 5 * r;
      const RoiStatus status = CheckRoi(roi, geometry->num_images, spatial_scale);
      if (status == RoiStatus::kOk || (batch_pass && status != RoiStatus::kBadBatchIndex)) {
        continue;
      }
      return InvalidArgument("RoI pooling: RoI ", r, " = (", roi[0], ", ", roi[1], ", ", roi[2],
                             ", ", roi[3], ", ", roi[4], ") has a ", RoiStatusMessage(status),
                             "; features hold N = ", geometry->num_images,
                             " images. Fix the RoIs passed to roi_pool.");
    }
  }
  // A map with no cell leaves every bin of every RoI empty: the pooled zeros
  // would look like features and be scored (DESIGN.md section 6: nothing is
  // silently made up). Zero RoIs on such a map are still an empty result.
  if (rois.dim_size(0) > 0 && (geometry->height == 0 || geometry->width == 0)) {
    return InvalidArgument("RoI pooling: features of shape ", features.shape().DebugString(),
                           " have an empty feature map (H = 0 or W = 0), so the ",
                           rois.dim_size(0),
                           " RoIs have no cell to pool. An input smaller than the backbone's "
                           "stride gives an empty map: pass larger inputs, or no RoIs for "
                           "such an input.");
  }
  return ::tensorflow::Status();
}

// Checks the backward inputs against the forward geometry.
inline ::tensorflow::Status ValidateGradInputs(const ::tensorflow::Tensor& argmax,
                                               const ::tensorflow::Tensor& grad,
                                               const ::tensorflow::Tensor& rois,
                                               const PoolGeometry& g) {
  const ::tensorflow::TensorShape expected(
      {rois.dim_size(0), g.pooled_height, g.pooled_width, g.channels});
  if (argmax.shape() != expected || grad.shape() != expected) {
    return ::tensorflow::errors::InvalidArgument(
        "RoI pooling gradient: argmax ", argmax.shape().DebugString(), " and grad ",
        grad.shape().DebugString(), " must both have shape ", expected.DebugString());
  }
  return ::tensorflow::Status();
}

// Base of the CPU and GPU kernels of the three ops: reads the attrs once, and
// validates the inputs and allocates the outputs before a kernel computes.
class RoiPoolKernelBase : public ::tensorflow::OpKernel {
 public:
  explicit RoiPoolKernelBase(::tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {
    ReadPoolAttrs(ctx, &pooled_height_, &pooled_width_, &spatial_scale_);
  }

 protected:
  // Forward: inputs (features, rois). Returns false when the op failed (status
  // already set) or there is nothing to compute (empty output).
  // With argmax == nullptr (the inference op) only the output is allocated.
  bool PrepareForward(::tensorflow::OpKernelContext* ctx, PoolGeometry* g,
                      ::tensorflow::Tensor** output, ::tensorflow::Tensor** argmax) {
    if (!Check(ctx, ValidatePoolInputs(ctx->input(0), ctx->input(1), pooled_height_,
                                       pooled_width_, spatial_scale_, g))) {
      return false;
    }
    const ::tensorflow::TensorShape shape(
        {ctx->input(1).dim_size(0), g->pooled_height, g->pooled_width, g->channels});
    return Check(ctx, ctx->allocate_output(0, shape, output)) &&
           (argmax == nullptr || Check(ctx, ctx->allocate_output(1, shape, argmax))) &&
           (*output)->NumElements() > 0;
  }

  // Backward: inputs (features, rois, argmax, grad). Returns false when the op
  // failed or the features are empty.
  bool PrepareBackward(::tensorflow::OpKernelContext* ctx, PoolGeometry* g,
                       ::tensorflow::Tensor** grad_features) {
    const ::tensorflow::Tensor& features = ctx->input(0);
    return Check(ctx, ValidatePoolInputs(features, ctx->input(1), pooled_height_,
                                         pooled_width_, spatial_scale_, g)) &&
           Check(ctx, ValidateGradInputs(ctx->input(2), ctx->input(3), ctx->input(1), *g)) &&
           Check(ctx, ctx->allocate_output(0, features.shape(), grad_features)) &&
           features.NumElements() > 0;
  }

 private:
  static bool Check(::tensorflow::OpKernelContext* ctx, const ::tensorflow::Status& status) {
    if (!status.ok()) ctx->SetStatus(status);
    return status.ok();
  }

  int pooled_height_;
  int pooled_width_;
  float spatial_scale_;
};

}  // namespace keras_frcnn

#endif  // KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_OP_COMMON_H_
