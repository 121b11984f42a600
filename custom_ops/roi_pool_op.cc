// Op schema of RoI max pooling: names, attrs, shape functions, docs. Kernels
// live in roi_pool_op_cpu.cc and roi_pool_op_gpu.cc.
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

#include "roi_pool_build_info.h"

namespace keras_frcnn {

using ::tensorflow::Status;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

namespace {

// features [N, H, W, C] and rois [R, 5] -> [R, PH, PW, C].
Status PooledShape(InferenceContext* c, ShapeHandle* pooled) {
  ShapeHandle features, rois;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &features));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &rois));
  DimensionHandle unused;
  TF_RETURN_IF_ERROR(c->WithValue(c->Dim(rois, 1), 5, &unused));
  int pooled_height, pooled_width;
  TF_RETURN_IF_ERROR(c->GetAttr("pooled_height", &pooled_height));
  TF_RETURN_IF_ERROR(c->GetAttr("pooled_width", &pooled_width));
  *pooled = c->MakeShape(
      {c->Dim(rois, 0), c->MakeDim(pooled_height), c->MakeDim(pooled_width), c->Dim(features, 3)});
  return Status();
}

}  // namespace

REGISTER_OP("KerasFrcnn>RoiPool")
    .Input("features: T")
    .Input("rois: float")
    .Output("output: T")
    .Output("argmax: int32")
    .Attr("pooled_height: int >= 1")
    .Attr("pooled_width: int >= 1")
    .Attr("spatial_scale: float")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle pooled;
      TF_RETURN_IF_ERROR(PooledShape(c, &pooled));
      c->set_output(0, pooled);
      c->set_output(1, pooled);
      return Status();
    })
    .Doc(R"doc(
RoI max pooling of Fast R-CNN (Girshick 2015), as in the original Caffe layer.

Each RoI is scaled by spatial_scale, rounded half away from zero, divided into
pooled_height x pooled_width bins (bin sizes in the feature dtype) and each bin
max-pooled per channel; empty bins give 0.

features: [N, H, W, C] feature maps (NHWC).
rois: [R, 5] float32 (batch_index, x1, y1, x2, y2) in input-image pixels,
  inclusive corners.
output: [R, pooled_height, pooled_width, C] pooled features.
argmax: [R, pooled_height, pooled_width, C] int32 cell h * W + w of each
  maximum inside its image (first in row-major order on ties), -1 for an
  empty bin. Used by the gradient.
)doc");

REGISTER_OP("KerasFrcnn>RoiPoolInference")
    .Input("features: T")
    .Input("rois: float")
    .Output("output: T")
    .Attr("pooled_height: int >= 1")
    .Attr("pooled_width: int >= 1")
    .Attr("spatial_scale: float")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle pooled;
      TF_RETURN_IF_ERROR(PooledShape(c, &pooled));
      c->set_output(0, pooled);
      return Status();
    })
    .Doc(R"doc(
KerasFrcnn>RoiPool without the argmax output, for inference: the same pooled
values, bit for bit, and half the bytes written. Its gradient (registered in
Python) runs KerasFrcnn>RoiPool again for the argmax.

features: [N, H, W, C] feature maps (NHWC).
rois: [R, 5] float32 (batch_index, x1, y1, x2, y2) in input-image pixels.
output: [R, pooled_height, pooled_width, C] pooled features.
)doc");

REGISTER_OP("KerasFrcnn>RoiPoolGrad")
    .Input("features: T")
    .Input("rois: float")
    .Input("argmax: int32")
    .Input("grad: T")
    .Output("grad_features: T")
    .Attr("pooled_height: int >= 1")
    .Attr("pooled_width: int >= 1")
    .Attr("spatial_scale: float")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle pooled, merged;
      TF_RETURN_IF_ERROR(PooledShape(c, &pooled));
      TF_RETURN_IF_ERROR(c->Merge(c->input(2), pooled, &merged));
      TF_RETURN_IF_ERROR(c->Merge(c->input(3), pooled, &merged));
      c->set_output(0, c->input(0));
      return Status();
    })
    .Doc(R"doc(
Gradient of KerasFrcnn>RoiPool with respect to its features: every output
gradient is added to the feature cell its argmax names. Deterministic on CPU.

features: the forward op's features (only their shape is read).
rois: the forward op's rois.
argmax: the forward op's argmax output.
grad: [R, pooled_height, pooled_width, C] gradient of the pooled output.
grad_features: [N, H, W, C].
)doc");

}  // namespace keras_frcnn
