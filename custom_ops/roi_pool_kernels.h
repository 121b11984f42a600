// RoI max pooling arithmetic (Fast R-CNN, Girshick 2015, section 2.1).
//
// This header has no TensorFlow dependency: it is compiled into the TF CPU
// kernel (roi_pool_op_cpu.cc), the CUDA kernels (roi_pool_gpu.cu.cc) and the
// standalone CPU-vs-CUDA harness (harness/roi_pool_harness.cu), so all three
// run the same arithmetic.
//
// Conventions (DESIGN.md section 3):
//   features  [N, H, W, C] row-major (NHWC), dtype T (float or double)
//   rois      [R, 5] float32: (batch_index, x1, y1, x2, y2) in input pixels
//   output    [R, PH, PW, C] dtype T
//   argmax    [R, PH, PW, C] int32: h * W + w inside image batch_index, or -1
//             for an empty bin
// Coordinates are scaled in float32 and rounded half away from zero (C
// round(), not banker's rounding); bin sizes are computed in T, so float32
// features reproduce the float32 bin edges of the original Caffe layer.
#ifndef KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_KERNELS_H_
#define KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_KERNELS_H_

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define KFRCNN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define KFRCNN_HOST_DEVICE inline
#endif

namespace keras_frcnn {

// Scaled RoI coordinates must stay below 2^24 in magnitude: every integer up
// to there is exact in float32 and all index arithmetic fits in int32.
constexpr float kMaxScaledCoordinate = 16777216.0f;

struct PoolGeometry {
  int64_t num_images;     // N
  int64_t height;         // H
  int64_t width;          // W
  int64_t channels;       // C
  int64_t pooled_height;  // PH
  int64_t pooled_width;   // PW
  float spatial_scale;    // input pixels -> feature cells
};

enum class RoiStatus { kOk, kBadBatchIndex, kNonFiniteCoordinate, kCoordinateTooLarge };

// The quantised RoI in feature cells: its origin and the size of one bin.
template <typename T>
struct RoiBins {
  int batch;
  int x_start;
  int y_start;
  T bin_w;
  T bin_h;
};

// Window of output bin (ph, pw) of an RoI, in feature cells.
struct BinWindow {
  int h_start, h_end, w_start, w_end;
};

// The functions below are compiled into several translation units with
// different instruction sets (roi_pool_cpu_*.cc); a per-ISA inline namespace
// keeps the linker from merging an AVX2 copy with a baseline one.
#ifndef KERAS_FRCNN_ISA_NAMESPACE
#define KERAS_FRCNN_ISA_NAMESPACE isa_default
#endif
inline namespace KERAS_FRCNN_ISA_NAMESPACE {

// Checks one RoI. Batch indices are truncated toward zero like the C cast in
// the reference, so the float must lie in (-1, N).
inline RoiStatus CheckRoi(const float* roi, int64_t num_images, float spatial_scale) {
  const float b = roi[0];
  if (!(b > -1.0f && b < static_cast<float>(num_images))) return RoiStatus::kBadBatchIndex;
  for (int k = 1; k < 5; ++k) {
    if (!isfinite(roi[k])) return RoiStatus::kNonFiniteCoordinate;
    if (!(fabsf(roi[k] * spatial_scale) < kMaxScaledCoordinate)) {
      return RoiStatus::kCoordinateTooLarge;
    }
  }
  return RoiStatus::kOk;
}

inline const char* RoiStatusMessage(RoiStatus status) {
  switch (status) {
    case RoiStatus::kOk: return "ok";
    case RoiStatus::kBadBatchIndex: return "batch index (column 0) outside [0, N)";
    case RoiStatus::kNonFiniteCoordinate: return "non-finite coordinate (NaN or inf)";
    case RoiStatus::kCoordinateTooLarge:
      return "coordinate whose scaled magnitude is 2^24 or more";
  }
  return "unknown";
}

KFRCNN_HOST_DEVICE int RoundHalfAwayFromZero(float x) { return static_cast<int>(roundf(x)); }
KFRCNN_HOST_DEVICE float Floor(float x) { return floorf(x); }
KFRCNN_HOST_DEVICE double Floor(double x) { return floor(x); }
KFRCNN_HOST_DEVICE float Ceil(float x) { return ceilf(x); }
KFRCNN_HOST_DEVICE double Ceil(double x) { return ceil(x); }
KFRCNN_HOST_DEVICE int Clamp(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

template <typename T>
KFRCNN_HOST_DEVICE RoiBins<T> MakeRoiBins(const float* roi, float spatial_scale,
                                          int pooled_height, int pooled_width) {
  RoiBins<T> bins;
  bins.batch = static_cast<int>(roi[0]);
  bins.x_start = RoundHalfAwayFromZero(roi[1] * spatial_scale);
  bins.y_start = RoundHalfAwayFromZero(roi[2] * spatial_scale);
  const int x_end = RoundHalfAwayFromZero(roi[3] * spatial_scale);
  const int y_end = RoundHalfAwayFromZero(roi[4] * spatial_scale);
  // Malformed RoIs (x2 < x1) are forced to one cell, as in the reference.
  const int roi_w = x_end - bins.x_start + 1 > 1 ? x_end - bins.x_start + 1 : 1;
  const int roi_h = y_end - bins.y_start + 1 > 1 ? y_end - bins.y_start + 1 : 1;
  bins.bin_w = static_cast<T>(roi_w) / static_cast<T>(pooled_width);
  bins.bin_h = static_cast<T>(roi_h) / static_cast<T>(pooled_height);
  return bins;
}

// Half-open cell range [*start, *end) of bin p along one axis of `size` cells.
template <typename T>
KFRCNN_HOST_DEVICE void BinRange(int p, T bin_size, int offset, int size, int* start, int* end) {
  const int lo = static_cast<int>(Floor(static_cast<T>(p) * bin_size)) + offset;
  const int hi = static_cast<int>(Ceil(static_cast<T>(p + 1) * bin_size)) + offset;
  *start = Clamp(lo, 0, size);
  *end = Clamp(hi, 0, size);
}

// Whether `candidate` replaces the running maximum `current`: strictly
// greater, so ties keep the first element in row-major order; NaN beats any
// number so that a NaN in the window propagates (the first NaN wins).
template <typename T>
KFRCNN_HOST_DEVICE bool Replaces(T candidate, T current) {
  return candidate > current || (candidate != candidate && current == current);
}

KFRCNN_HOST_DEVICE bool IsEmpty(const BinWindow& win) {
  return win.h_end <= win.h_start || win.w_end <= win.w_start;
}

template <typename T>
KFRCNN_HOST_DEVICE BinWindow MakeBinWindow(const RoiBins<T>& bins, int ph, int pw, int height,
                                           int width) {
  BinWindow win;
  BinRange(ph, bins.bin_h, bins.y_start, height, &win.h_start, &win.h_end);
  BinRange(pw, bins.bin_w, bins.x_start, width, &win.w_start, &win.w_end);
  return win;
}

// Max of one channel over a non-empty window (the per-thread work on GPU).
template <typename T>
KFRCNN_HOST_DEVICE void PoolBinChannel(const T* image, int width, int channels,
                                       const BinWindow& win, int c, T* value, int32_t* argmax) {
  int best = win.h_start * width + win.w_start;
  T best_value = image[static_cast<int64_t>(best) * channels + c];
  for (int h = win.h_start; h < win.h_end; ++h) {
    for (int w = win.w_start; w < win.w_end; ++w) {
      const int cell = h * width + w;
      const T v = image[static_cast<int64_t>(cell) * channels + c];
      if (Replaces(v, best_value)) {
        best_value = v;
        best = cell;
      }
    }
  }
  *value = best_value;
  *argmax = best;
}

// One cell of a window, all channels: the running maximum `out`/`arg` takes
// the cell's value wherever Replaces() holds. Branch-free and unaliased, so
// the compiler vectorises it; per channel it is the same comparison sequence
// as PoolBinChannel, so CPU and GPU agree bit for bit.
template <typename T>
inline void UpdateBinAllChannels(const T* __restrict px, int64_t channels, int32_t cell,
                                 T* __restrict out, int32_t* __restrict arg) {
  for (int64_t c = 0; c < channels; ++c) {
    const T v = px[c];
    const T m = out[c];
    const bool take = (v > m) | ((v != v) & (m == m));
    out[c] = take ? v : m;
    arg[c] = take ? cell : arg[c];
  }
}

// One cell of a window, all channels, values only (the inference kernel): the
// same comparison as UpdateBinAllChannels, so the pooled values are identical.
template <typename T>
inline void MaxBinAllChannels(const T* __restrict px, int64_t channels, T* __restrict out) {
  for (int64_t c = 0; c < channels; ++c) {
    const T v = px[c];
    const T m = out[c];
    const bool take = (v > m) | ((v != v) & (m == m));
    out[c] = take ? v : m;
  }
}

// CPU forward over the flat bins [begin, end) of the R * PH * PW output bins.
// Each bin scans its window once with all channels innermost (contiguous in
// NHWC). kArgmax: also write each bin's argmax (the training kernel); without
// it only the pooled values are written (the inference kernel: half the bytes
// and no index blend, the same values).
template <typename T, bool kArgmax>
inline void PoolBins(const T* features, const float* rois, const PoolGeometry& g, int64_t begin,
                     int64_t end, T* output, int32_t* argmax) {
  const int H = static_cast<int>(g.height), W = static_cast<int>(g.width);
  const int64_t C = g.channels;
  const int PH = static_cast<int>(g.pooled_height), PW = static_cast<int>(g.pooled_width);
  for (int64_t bin = begin; bin < end; ++bin) {
    const int64_t r = bin / (PH * PW);
    const int ph = static_cast<int>((bin / PW) % PH);
    const int pw = static_cast<int>(bin % PW);
    const RoiBins<T> bins = MakeRoiBins<T>(rois + 5 * r, g.spatial_scale, PH, PW);
    const BinWindow win = MakeBinWindow(bins, ph, pw, H, W);
    T* out = output + bin * C;
    int32_t* arg = kArgmax ? argmax + bin * C : nullptr;
    const bool empty = IsEmpty(win);
    const T* image = features + static_cast<int64_t>(bins.batch) * H * W * C;
    const int first = empty ? 0 : win.h_start * W + win.w_start;
    for (int64_t c = 0; c < C; ++c) out[c] = empty ? T(0) : image[first * C + c];
    if constexpr (kArgmax) {
      for (int64_t c = 0; c < C; ++c) arg[c] = empty ? -1 : first;
    }
    if (empty) continue;
    for (int h = win.h_start; h < win.h_end; ++h) {
      for (int w = win.w_start; w < win.w_end; ++w) {
        const int cell = h * W + w;
        if constexpr (kArgmax) {
          UpdateBinAllChannels(image + cell * C, C, cell, out, arg);
        } else {
          MaxBinAllChannels(image + cell * C, C, out);
        }
      }
    }
  }
}

template <typename T>
inline void RoiPoolForwardBins(const T* features, const float* rois, const PoolGeometry& g,
                               int64_t begin, int64_t end, T* output, int32_t* argmax) {
  PoolBins<T, true>(features, rois, g, begin, end, output, argmax);
}

template <typename T>
inline void RoiPoolValuesBins(const T* features, const float* rois, const PoolGeometry& g,
                              int64_t begin, int64_t end, T* output) {
  PoolBins<T, false>(features, rois, g, begin, end, output, nullptr);
}

// CPU backward for channels [c_begin, c_end): zeroes those channels of
// grad_features, then adds every output gradient to its argmax cell, RoIs and
// bins in ascending order. Channel ranges are disjoint, so threads never share
// a cell and the sums are the same whatever the sharding (deterministic).
template <typename T>
void RoiPoolBackwardChannels(const T* grad_output, const int32_t* argmax, const float* rois,
                             int64_t num_rois, const PoolGeometry& g, int64_t c_begin,
                             int64_t c_end, T* grad_features) {
  const int64_t C = g.channels;
  const int64_t image_cells = g.height * g.width;
  const int64_t bins_per_roi = g.pooled_height * g.pooled_width;
  for (int64_t cell = 0; cell < g.num_images * image_cells; ++cell) {
    for (int64_t c = c_begin; c < c_end; ++c) grad_features[cell * C + c] = T(0);
  }
  for (int64_t r = 0; r < num_rois; ++r) {
    T* image_grad = grad_features + static_cast<int64_t>(static_cast<int>(rois[5 * r])) *
                                        image_cells * C;
    for (int64_t bin = r * bins_per_roi; bin < (r + 1) * bins_per_roi; ++bin) {
      const int32_t* arg = argmax + bin * C;
      const T* grad = grad_output + bin * C;
      for (int64_t c = c_begin; c < c_end; ++c) {
        // argmax comes from the forward op; a value outside the image (only
        // possible when the grad op is fed by hand) is ignored, never written.
        if (arg[c] >= 0 && arg[c] < image_cells) {
          image_grad[static_cast<int64_t>(arg[c]) * C + c] += grad[c];
        }
      }
    }
  }
}

}  // inline namespace KERAS_FRCNN_ISA_NAMESPACE
}  // namespace keras_frcnn

#endif  // KERAS_FRCNN_CUSTOM_OPS_ROI_POOL_KERNELS_H_
