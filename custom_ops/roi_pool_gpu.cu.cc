// CUDA kernels for RoI max pooling (with and without argmax) and its
// gradient. No TensorFlow dependency: the arithmetic is roi_pool_kernels.h,
// shared with the CPU kernel, and the launchers take a raw stream (see
// roi_pool_gpu.h).
#include <cuda_runtime.h>

#include "roi_pool_gpu.h"

namespace keras_frcnn {
namespace {

constexpr int kThreadsPerBlock = 256;

int BlocksFor(int64_t work) {
  const int64_t blocks = (work + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<int>(blocks < 1 ? 1 : (blocks > (1 << 30) ? (1 << 30) : blocks));
}

std::string LastError() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? std::string() : std::string(cudaGetErrorString(err));
}

// Runs on the device that owns `stream`, whatever device the calling thread
// last selected (TensorFlow's executor threads serve several GPUs).
std::string UseStreamDevice(void* stream) {
  int device = 0;
  cudaError_t err = cudaStreamGetDevice(static_cast<cudaStream_t>(stream), &device);
  if (err == cudaSuccess) err = cudaSetDevice(device);
  return err == cudaSuccess ? std::string() : std::string(cudaGetErrorString(err));
}

// Output element i = (r, ph, pw, c) of the forward, c fastest so that a warp
// reads consecutive channels of each cell: the bin's maximum in *value and its
// cell in *argmax (0 and -1 for an empty bin).
template <typename T>
__device__ __forceinline__ void PoolElement(const T* features, const float* rois,
                                            const PoolGeometry& g, int64_t i, T* value,
                                            int32_t* argmax) {
  const int C = static_cast<int>(g.channels);
  const int PH = static_cast<int>(g.pooled_height), PW = static_cast<int>(g.pooled_width);
  const int H = static_cast<int>(g.height), W = static_cast<int>(g.width);
  const int c = static_cast<int>(i % C);
  const int64_t bin = i / C;
  const int pw = static_cast<int>(bin % PW);
  const int ph = static_cast<int>((bin / PW) % PH);
  const int64_t r = bin / (PH * PW);
  const RoiBins<T> bins = MakeRoiBins<T>(rois + 5 * r, g.spatial_scale, PH, PW);
  const BinWindow win = MakeBinWindow(bins, ph, pw, H, W);
  if (IsEmpty(win)) {
    *value = T(0);
    *argmax = -1;
    return;
  }
  const T* image = features + static_cast<int64_t>(bins.batch) * H * W * C;
  PoolBinChannel(image, W, C, win, c, value, argmax);
}

// One thread per output element.
template <typename T>
__global__ void RoiPoolForwardKernel(const T* features, const float* rois, int64_t total,
                                     PoolGeometry g, T* output, int32_t* argmax) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    PoolElement(features, rois, g, i, output + i, argmax + i);
  }
}

// The forward without argmax (KerasFrcnn>RoiPoolInference): the same scan, so
// the same values bit for bit. The argmax goes to a local that is never read,
// so once PoolElement is inlined the compiler drops its bookkeeping (no index
// select, no int32 store in the PTX) and only the values reach global memory.
template <typename T>
__global__ void RoiPoolInferenceKernel(const T* features, const float* rois, int64_t total,
                                       PoolGeometry g, T* output) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    int32_t unused_argmax;
    PoolElement(features, rois, g, i, output + i, &unused_argmax);
  }
}

template <typename T>
__global__ void RoiPoolBackwardAtomicKernel(const T* grad_output, const int32_t* argmax,
                                            const float* rois, int64_t total, PoolGeometry g,
                                            T* grad_features) {
  const int64_t C = g.channels;
  const int64_t roi_size = g.pooled_height * g.pooled_width * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int32_t cell = argmax[i];
    if (cell < 0 || cell >= g.height * g.width) continue;  // see RoiPoolBackwardChannels
    const int64_t batch = static_cast<int>(rois[5 * (i / roi_size)]);
    atomicAdd(grad_features + (batch * g.height * g.width + cell) * C + i % C, grad_output[i]);
  }
}

// One thread per (image, channel): the same summation order as the CPU
// kernel, hence bit-identical and deterministic, at lower parallelism.
template <typename T>
__global__ void RoiPoolBackwardOrderedKernel(const T* grad_output, const int32_t* argmax,
                                             const float* rois, int64_t num_rois, PoolGeometry g,
                                             T* grad_features) {
  const int64_t C = g.channels;
  const int64_t bins_per_roi = g.pooled_height * g.pooled_width;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       i < g.num_images * C; i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t n = i / C, c = i % C;
    T* image_grad = grad_features + n * g.height * g.width * C;
    for (int64_t r = 0; r < num_rois; ++r) {
      if (static_cast<int>(rois[5 * r]) != n) continue;
      for (int64_t bin = r * bins_per_roi; bin < (r + 1) * bins_per_roi; ++bin) {
        const int32_t cell = argmax[bin * C + c];
        if (cell >= 0 && cell < g.height * g.width) image_grad[static_cast<int64_t>(cell) * C + c] += grad_output[bin * C + c];
      }
    }
  }
}

}  // namespace

std::string CopyHostToDevice(void* stream, void* device_dst, const void* host_src, size_t bytes) {
  std::string err = UseStreamDevice(stream);
  if (!err.empty() || bytes == 0) return err;
  const cudaError_t status = cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice,
                                             static_cast<cudaStream_t>(stream));
  return status == cudaSuccess ? std::string() : std::string(cudaGetErrorString(status));
}

template <typename T>
std::string LaunchRoiPoolForward(void* stream, const T* features, const float* rois,
                                 int64_t num_rois, const PoolGeometry& geometry, T* output,
                                 int32_t* argmax) {
  const int64_t total =
      num_rois * geometry.pooled_height * geometry.pooled_width * geometry.channels;
  if (total == 0) return std::string();
  std::string err = UseStreamDevice(stream);
  if (!err.empty()) return err;
  RoiPoolForwardKernel<T><<<BlocksFor(total), kThreadsPerBlock, 0,
                            static_cast<cudaStream_t>(stream)>>>(features, rois, total, geometry,
                                                                  output, argmax);
  return LastError();
}

template <typename T>
std::string LaunchRoiPoolInference(void* stream, const T* features, const float* rois,
                                   int64_t num_rois, const PoolGeometry& geometry, T* output) {
  const int64_t total =
      num_rois * geometry.pooled_height * geometry.pooled_width * geometry.channels;
  if (total == 0) return std::string();
  std::string err = UseStreamDevice(stream);
  if (!err.empty()) return err;
  RoiPoolInferenceKernel<T><<<BlocksFor(total), kThreadsPerBlock, 0,
                              static_cast<cudaStream_t>(stream)>>>(features, rois, total,
                                                                    geometry, output);
  return LastError();
}

template <typename T>
std::string LaunchRoiPoolBackward(void* stream, const T* grad_output, const int32_t* argmax,
                                  const float* rois, int64_t num_rois,
                                  const PoolGeometry& geometry, bool deterministic,
                                  T* grad_features) {
  std::string err = UseStreamDevice(stream);
  if (!err.empty()) return err;
  const cudaStream_t cu_stream = static_cast<cudaStream_t>(stream);
  const int64_t feature_size =
      geometry.num_images * geometry.height * geometry.width * geometry.channels;
  if (feature_size == 0) return std::string();
  if (cudaMemsetAsync(grad_features, 0, feature_size * sizeof(T), cu_stream) != cudaSuccess) {
    return LastError();
  }
  const int64_t total =
      num_rois * geometry.pooled_height * geometry.pooled_width * geometry.channels;
  if (total == 0) return std::string();
  if (deterministic) {
    const int64_t threads = geometry.num_images * geometry.channels;
    RoiPoolBackwardOrderedKernel<T><<<BlocksFor(threads), kThreadsPerBlock, 0, cu_stream>>>(
        grad_output, argmax, rois, num_rois, geometry, grad_features);
  } else {
    RoiPoolBackwardAtomicKernel<T><<<BlocksFor(total), kThreadsPerBlock, 0, cu_stream>>>(
        grad_output, argmax, rois, total, geometry, grad_features);
  }
  return LastError();
}

template std::string LaunchRoiPoolForward<float>(void*, const float*, const float*, int64_t,
                                                 const PoolGeometry&, float*, int32_t*);
template std::string LaunchRoiPoolForward<double>(void*, const double*, const float*, int64_t,
                                                  const PoolGeometry&, double*, int32_t*);
template std::string LaunchRoiPoolInference<float>(void*, const float*, const float*, int64_t,
                                                   const PoolGeometry&, float*);
template std::string LaunchRoiPoolInference<double>(void*, const double*, const float*, int64_t,
                                                    const PoolGeometry&, double*);
template std::string LaunchRoiPoolBackward<float>(void*, const float*, const int32_t*,
                                                  const float*, int64_t, const PoolGeometry&,
                                                  bool, float*);
template std::string LaunchRoiPoolBackward<double>(void*, const double*, const int32_t*,
                                                   const float*, int64_t, const PoolGeometry&,
                                                   bool, double*);

}  // namespace keras_frcnn
