// Records, inside each built library, the TensorFlow version and the source
// digest it was built from, so that keras_frcnn can detect a stale library
// by reading the file before loading it (loading an ABI-mismatched library
// can abort the process). The Makefile defines both macros.
#ifndef KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_BUILD_INFO_H_
#define KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_BUILD_INFO_H_

#ifndef KERAS_FRCNN_TF_VERSION
#error "KERAS_FRCNN_TF_VERSION must be defined by the build (custom_ops/Makefile)"
#endif
#ifndef KERAS_FRCNN_SOURCE_DIGEST
#error "KERAS_FRCNN_SOURCE_DIGEST must be defined by the build (custom_ops/Makefile)"
#endif

namespace keras_frcnn {
// Read by keras_frcnn/ops/loader.py: keep the layout of this string in sync.
__attribute__((used)) static const char kBuildInfo[] =
    "KERAS_FRCNN_BUILD_INFO;tf=" KERAS_FRCNN_TF_VERSION ";src=" KERAS_FRCNN_SOURCE_DIGEST ";";
}  // namespace keras_frcnn

#endif  // KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_BUILD_INFO_H_
