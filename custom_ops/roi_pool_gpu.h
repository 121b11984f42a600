// Launchers for the RoI pooling CUDA kernels (roi_pool_gpu.cu.cc).
//
// No TensorFlow and no CUDA headers: the TF glue (roi_pool_op_gpu.cc, built
// with a host compiler) and the standalone harness call these with a raw
// CUstream/cudaStream_t passed as void*. All pointers are device pointers;
// `rois` is the [R, 5] float32 array already copied to the device. Each
// function returns an empty string on success, else the CUDA error text.
#ifndef KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_GPU_H_
#define KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_GPU_H_

#include <stddef.h>
#include <stdint.h>

#include <string>

#include "roi_pool_kernels.h"

namespace keras_frcnn {

// Copies `bytes` from host to device on `stream` (pageable source: the call
// returns once the source may be freed).
std::string CopyHostToDevice(void* stream, void* device_dst, const void* host_src, size_t bytes);

template <typename T>
std::string LaunchRoiPoolForward(void* stream, const T* features, const float* rois,
                                 int64_t num_rois, const PoolGeometry& geometry, T* output,
                                 int32_t* argmax);

// KerasFrcnn>RoiPoolInference: the forward's output only, no argmax written;
// the same values as LaunchRoiPoolForward, bit for bit.
template <typename T>
std::string LaunchRoiPoolInference(void* stream, const T* features, const float* rois,
                                   int64_t num_rois, const PoolGeometry& geometry, T* output);

// deterministic == false: one thread per output element with atomicAdd (fast;
// float sums in a scheduling-dependent order). deterministic == true: one
// thread per (image, channel) adding RoIs and bins in ascending order, which
// reproduces the CPU kernel bit for bit.
template <typename T>
std::string LaunchRoiPoolBackward(void* stream, const T* grad_output, const int32_t* argmax,
                                  const float* rois, int64_t num_rois,
                                  const PoolGeometry& geometry, bool deterministic,
                                  T* grad_features);

}  // namespace keras_frcnn

#endif  // KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_GPU_H_
