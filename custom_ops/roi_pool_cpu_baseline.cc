// The CPU loops of roi_pool_kernels.h for the baseline x86-64 ISA.
#include "roi_pool_cpu.h"

namespace keras_frcnn {

CpuKernels<float> BaselineKernelsFloat() {
  return {&RoiPoolForwardBins<float>, &RoiPoolBackwardChannels<float>,
          &RoiPoolValuesBins<float>};
}
CpuKernels<double> BaselineKernelsDouble() {
  return {&RoiPoolForwardBins<double>, &RoiPoolBackwardChannels<double>,
          &RoiPoolValuesBins<double>};
}

}  // namespace keras_frcnn
