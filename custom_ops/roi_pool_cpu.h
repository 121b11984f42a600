// CPU entry points of the RoI pooling kernels, compiled once per instruction
// set and chosen at run time (host only; TensorFlow-free).
//
// roi_pool_cpu_baseline.cc compiles the loops of roi_pool_kernels.h for the
// baseline x86-64 ISA (SSE2); roi_pool_cpu_avx2.cc compiles the same loops
// with -mavx2, where the channel loop of the forward scan runs 8 floats per
// compare and select. Only comparisons, selects and the backward's additions
// (in the same order) are involved, so both give identical bits.
// roi_pool_op_cpu.cc picks one with SelectKernels<T>() (AVX2 when the CPU has it).
#ifndef KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_CPU_H_
#define KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_CPU_H_

#include "roi_pool_kernels.h"

namespace keras_frcnn {

template <typename T>
struct CpuKernels {
  void (*forward)(const T* features, const float* rois, const PoolGeometry& g, int64_t begin,
                  int64_t end, T* output, int32_t* argmax);
  void (*backward)(const T* grad_output, const int32_t* argmax, const float* rois,
                   int64_t num_rois, const PoolGeometry& g, int64_t c_begin, int64_t c_end,
                   T* grad_features);
  void (*values)(const T* features, const float* rois, const PoolGeometry& g, int64_t begin,
                 int64_t end, T* output);
};

CpuKernels<float> BaselineKernelsFloat();
CpuKernels<double> BaselineKernelsDouble();
CpuKernels<float> Avx2KernelsFloat();
CpuKernels<double> Avx2KernelsDouble();

}  // namespace keras_frcnn

#endif  // KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_CPU_H_
