// The CPU loops of roi_pool_kernels.h compiled with -mavx2 (see the Makefile);
// called only when the CPU reports AVX2. Their own inline namespace gives
// them symbols distinct from the baseline copies.
#define KERAS_FRCNN_ISA_NAMESPACE isa_avx2
#include "roi_pool_cpu.h"

namespace keras_frcnn {

CpuKernels<float> Avx2KernelsFloat() {
  return {&RoiPoolForwardBins<float>, &RoiPoolBackwardChannels<float>,
          &RoiPoolValuesBins<float>};
}
CpuKernels<double> Avx2KernelsDouble() {
  return {&RoiPoolForwardBins<double>, &RoiPoolBackwardChannels<double>,
          &RoiPoolValuesBins<double>};
}

}  // namespace keras_frcnn
