// Standalone check of the RoI pooling CUDA kernels against the CPU kernels,
// with no TensorFlow: both run the arithmetic of roi_pool_kernels.h on the
// same random inputs.
//
//   make -C custom_ops harness && custom_ops/build/roi_pool_harness [cases]
//
// Checks, per case (float32 and float64, ties and tie-free features, RoIs
// inside, partly and wholly outside the map, malformed and on half-pixel
// rounding ties, several images):
//   forward output and argmax: bit-identical to the CPU kernel;
//   inference (no argmax) output: bit-identical to the CPU inference kernel
//     (RoiPoolValuesBins) and to the GPU forward's output;
//   deterministic backward: bit-identical to the CPU kernel;
//   atomic backward: equal to the CPU kernel within float reassociation.
// Without a GPU only the CPU half runs, which still checks the CPU inference
// values against the CPU forward output bit for bit.
// Then times the kernels at the benchmark shapes of docs/benchmarks.md.
// Exit status: 0 all equal, 1 a mismatch or CUDA error, 77 no CUDA device
// (the CPU kernels ran and agreed).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "roi_pool_gpu.h"
#include "roi_pool_kernels.h"

using keras_frcnn::PoolGeometry;

namespace {

#define CUDA_CHECK(expr)                                                                      \
  do {                                                                                        \
    cudaError_t err_ = (expr);                                                                \
    if (err_ != cudaSuccess) {                                                                \
      std::fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(err_), __FILE__,  \
                   __LINE__);                                                                 \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

void Check(const std::string& err, const char* what) {
  if (!err.empty()) {
    std::fprintf(stderr, "%s failed: %s\n", what, err.c_str());
    std::exit(1);
  }
}

// Cases failing each comparison, and the largest atomic-backward difference.
struct Tally {
  int64_t cpu_inference = 0;          // CPU inference values vs CPU forward output
  int64_t forward = 0;                // GPU forward output or argmax vs CPU forward
  int64_t inference_vs_cpu = 0;       // GPU inference vs CPU inference values
  int64_t inference_vs_forward = 0;   // GPU inference vs GPU forward output
  int64_t deterministic = 0;          // GPU deterministic backward vs CPU backward
  int64_t atomic = 0;                 // GPU atomic backward vs CPU, beyond tolerance
  double max_atomic_rel[2] = {0, 0};  // float32, float64
};

struct Case {
  PoolGeometry g;
  std::vector<float> rois;
  int64_t num_rois;
};

Case RandomCase(std::mt19937_64& rng, int64_t n, int64_t h, int64_t w, int64_t c, int ph, int pw,
                float scale, int64_t num_rois) {
  Case k;
  k.g = PoolGeometry{n, h, w, c, ph, pw, scale};
  k.num_rois = num_rois;
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const float extent_w = w / scale, extent_h = h / scale;
  for (int64_t r = 0; r < num_rois; ++r) {
    float roi[5];
    roi[0] = static_cast<float>(rng() % n);
    const int kind = static_cast<int>(rng() % 5);
    float x1 = (unit(rng) * 1.4f - 0.2f) * extent_w, y1 = (unit(rng) * 1.4f - 0.2f) * extent_h;
    float x2 = x1 + unit(rng) * 0.7f * extent_w, y2 = y1 + unit(rng) * 0.7f * extent_h;
    if (kind == 1) std::swap(x1, x2);  // malformed: x2 < x1
    if (kind == 2) {                   // snap to half cells: rounding ties
      x1 = std::round(x1 * scale * 2) / (scale * 2);
      y2 = std::round(y2 * scale * 2) / (scale * 2);
    }
    if (kind == 3) x1 = x2 = extent_w * 2;  // wholly outside
    roi[1] = x1, roi[2] = y1, roi[3] = x2, roi[4] = y2;
    if (keras_frcnn::CheckRoi(roi, n, scale) != keras_frcnn::RoiStatus::kOk) {
      std::fprintf(stderr, "generated an invalid RoI\n");
      std::exit(1);
    }
    k.rois.insert(k.rois.end(), roi, roi + 5);
  }
  return k;
}

template <typename T>
std::vector<T> RandomFeatures(std::mt19937_64& rng, const PoolGeometry& g, bool ties) {
  std::vector<T> x(g.num_images * g.height * g.width * g.channels);
  std::normal_distribution<double> normal;
  for (auto& v : x) v = ties ? static_cast<T>(std::round(normal(rng) * 2)) : static_cast<T>(normal(rng));
  return x;
}

template <typename T>
T* ToDevice(const std::vector<T>& host) {
  T* dev = nullptr;
  CUDA_CHECK(cudaMalloc(&dev, std::max<size_t>(1, host.size()) * sizeof(T)));
  if (!host.empty()) CUDA_CHECK(cudaMemcpy(dev, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return dev;
}

// A device buffer of `count` elements, every byte `byte`: 0xFF makes float
// and double NaN, so an element a kernel fails to write cannot pass for a
// pooled value (not even an empty bin's 0).
template <typename T>
T* DeviceFilled(size_t count, int byte) {
  T* dev = nullptr;
  CUDA_CHECK(cudaMalloc(&dev, std::max<size_t>(1, count) * sizeof(T)));
  CUDA_CHECK(cudaMemset(dev, byte, std::max<size_t>(1, count) * sizeof(T)));
  return dev;
}

template <typename T>
bool SameBits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <typename T>
std::vector<T> ToHost(const T* dev, size_t count) {
  std::vector<T> host(count);
  if (count) CUDA_CHECK(cudaMemcpy(host.data(), dev, count * sizeof(T), cudaMemcpyDeviceToHost));
  return host;
}

// Runs one case on CPU (and GPU when present), counting each failed
// comparison in `tally`; returns whether any failed.
template <typename T>
bool RunCase(std::mt19937_64& rng, const Case& k, bool ties, bool gpu, Tally* tally) {
  const PoolGeometry& g = k.g;
  const std::vector<T> x = RandomFeatures<T>(rng, g, ties);
  const int64_t bins = k.num_rois * g.pooled_height * g.pooled_width;
  const int64_t out_size = bins * g.channels;
  std::vector<T> out(out_size), values(out_size), grad_in(x.size());
  std::vector<int32_t> arg(out_size);
  keras_frcnn::RoiPoolForwardBins<T>(x.data(), k.rois.data(), g, 0, bins, out.data(), arg.data());
  keras_frcnn::RoiPoolValuesBins<T>(x.data(), k.rois.data(), g, 0, bins, values.data());
  const bool cpu_inference_bad = !SameBits(values, out);
  tally->cpu_inference += cpu_inference_bad;
  std::vector<T> dy(out_size);
  std::normal_distribution<double> normal;
  for (auto& v : dy) v = static_cast<T>(normal(rng));
  keras_frcnn::RoiPoolBackwardChannels<T>(dy.data(), arg.data(), k.rois.data(), k.num_rois, g, 0,
                                          g.channels, grad_in.data());
  if (!gpu) return cpu_inference_bad;

  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreate(&stream));
  T* d_x = ToDevice(x);
  T* d_dy = ToDevice(dy);
  float* d_rois = ToDevice(k.rois);
  T* d_out = DeviceFilled<T>(out_size, 0xFF);
  T* d_values = DeviceFilled<T>(out_size, 0xFF);
  int32_t* d_arg = DeviceFilled<int32_t>(out_size, 0x7F);  // 0x7F7F7F7F: no cell, not -1
  T* d_grad = ToDevice(std::vector<T>(x.size()));
  Check(keras_frcnn::LaunchRoiPoolForward<T>(stream, d_x, d_rois, k.num_rois, g, d_out, d_arg),
        "forward");
  Check(keras_frcnn::LaunchRoiPoolInference<T>(stream, d_x, d_rois, k.num_rois, g, d_values),
        "inference");
  CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<T> gpu_out = ToHost(d_out, out_size);
  const std::vector<int32_t> gpu_arg = ToHost(d_arg, out_size);
  const std::vector<T> gpu_values = ToHost(d_values, out_size);
  const bool forward_bad = !SameBits(gpu_out, out) || gpu_arg != arg;
  const bool inference_cpu_bad = !SameBits(gpu_values, values);
  const bool inference_forward_bad = !SameBits(gpu_values, gpu_out);
  // Backward from the GPU's own argmax (equal to the CPU's when the above held).
  Check(keras_frcnn::LaunchRoiPoolBackward<T>(stream, d_dy, d_arg, d_rois, k.num_rois, g, true,
                                              d_grad),
        "deterministic backward");
  CUDA_CHECK(cudaStreamSynchronize(stream));
  const bool deterministic_bad = !SameBits(ToHost(d_grad, x.size()), grad_in);
  Check(keras_frcnn::LaunchRoiPoolBackward<T>(stream, d_dy, d_arg, d_rois, k.num_rois, g, false,
                                              d_grad),
        "atomic backward");
  CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<T> atomic = ToHost(d_grad, x.size());
  const double tolerance = sizeof(T) == 4 ? 1e-5 : 1e-12;
  double& max_rel = tally->max_atomic_rel[sizeof(T) == 4 ? 0 : 1];
  bool atomic_bad = false;
  for (size_t i = 0; i < x.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(atomic[i]) - grad_in[i]);
    const double rel = diff / std::max(1.0, std::fabs(static_cast<double>(grad_in[i])));
    max_rel = std::max(max_rel, rel);
    atomic_bad |= rel > tolerance;
  }
  cudaFree(d_x), cudaFree(d_dy), cudaFree(d_rois), cudaFree(d_out), cudaFree(d_values);
  cudaFree(d_arg), cudaFree(d_grad);
  cudaStreamDestroy(stream);
  tally->forward += forward_bad;
  tally->inference_vs_cpu += inference_cpu_bad;
  tally->inference_vs_forward += inference_forward_bad;
  tally->deterministic += deterministic_bad;
  tally->atomic += atomic_bad;
  return cpu_inference_bad || forward_bad || inference_cpu_bad || inference_forward_bad ||
         deterministic_bad || atomic_bad;
}

// Median milliseconds of `fn` over `repeats` runs, timed with CUDA events.
template <typename Fn>
float GpuMedianMs(cudaStream_t stream, int repeats, Fn fn) {
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  fn();  // warm-up
  std::vector<float> times;
  for (int i = 0; i < repeats; ++i) {
    CUDA_CHECK(cudaEventRecord(start, stream));
    fn();
    CUDA_CHECK(cudaEventRecord(stop, stream));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// RoIs with sides uniform in 5-60 % of the image, as in benchmarks/roi_pool_benchmark.py.
Case BenchmarkCase(std::mt19937_64& rng, int64_t n, int64_t h, int64_t w, int64_t num_rois) {
  Case k;
  k.g = PoolGeometry{n, h, w, 512, 7, 7, 1.0f / 16};
  k.num_rois = num_rois;
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const float img_w = w * 16.0f, img_h = h * 16.0f;
  for (int64_t r = 0; r < num_rois; ++r) {
    const float bw = (0.05f + 0.55f * unit(rng)) * img_w, bh = (0.05f + 0.55f * unit(rng)) * img_h;
    const float x1 = unit(rng) * (img_w - bw), y1 = unit(rng) * (img_h - bh);
    const float roi[5] = {static_cast<float>(rng() % n), x1, y1, x1 + bw, y1 + bh};
    k.rois.insert(k.rois.end(), roi, roi + 5);
  }
  return k;
}

void Benchmark(std::mt19937_64& rng, const char* name, int64_t n, int64_t h, int64_t w,
               int64_t num_rois) {
  const Case k = BenchmarkCase(rng, n, h, w, num_rois);
  const PoolGeometry& g = k.g;
  const std::vector<float> x = RandomFeatures<float>(rng, g, false);
  const int64_t out_size = num_rois * 49 * g.channels;
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreate(&stream));
  float* d_x = ToDevice(x);
  float* d_rois = ToDevice(k.rois);
  float* d_out = ToDevice(std::vector<float>(out_size));
  int32_t* d_arg = ToDevice(std::vector<int32_t>(out_size));
  float* d_grad = ToDevice(std::vector<float>(x.size()));
  const float fwd = GpuMedianMs(stream, 50, [&] {
    Check(keras_frcnn::LaunchRoiPoolForward<float>(stream, d_x, d_rois, num_rois, g, d_out, d_arg), "fwd");
  });
  const float inference = GpuMedianMs(stream, 50, [&] {
    Check(keras_frcnn::LaunchRoiPoolInference<float>(stream, d_x, d_rois, num_rois, g, d_out), "inference");
  });
  const float bwd_atomic = GpuMedianMs(stream, 50, [&] {
    Check(keras_frcnn::LaunchRoiPoolBackward<float>(stream, d_out, d_arg, d_rois, num_rois, g, false, d_grad), "bwd");
  });
  const float bwd_det = GpuMedianMs(stream, 10, [&] {
    Check(keras_frcnn::LaunchRoiPoolBackward<float>(stream, d_out, d_arg, d_rois, num_rois, g, true, d_grad), "bwd");
  });
  std::vector<float> out(out_size);
  std::vector<int32_t> arg(out_size);
  const auto t0 = std::chrono::steady_clock::now();
  keras_frcnn::RoiPoolForwardBins<float>(x.data(), k.rois.data(), g, 0, num_rois * 49, out.data(), arg.data());
  const double cpu_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("benchmark %-5s %lldx%lldx%lldx512, %lld RoIs: forward %.3f ms, inference %.3f ms, "
              "backward atomic %.3f ms, backward deterministic %.3f ms (CPU forward, 1 thread: "
              "%.1f ms)\n",
              name, (long long)n, (long long)h, (long long)w, (long long)num_rois, fwd, inference,
              bwd_atomic, bwd_det, cpu_ms);
  cudaFree(d_x), cudaFree(d_rois), cudaFree(d_out), cudaFree(d_arg), cudaFree(d_grad);
  cudaStreamDestroy(stream);
}

// The comparisons that failed between two snapshots of the tally.
std::string NewFailures(const Tally& before, const Tally& after) {
  std::string names;
  auto add = [&](int64_t was, int64_t now, const char* name) {
    if (now > was) names += names.empty() ? name : std::string(", ") + name;
  };
  add(before.cpu_inference, after.cpu_inference, "CPU inference vs CPU forward");
  add(before.forward, after.forward, "GPU forward vs CPU");
  add(before.inference_vs_cpu, after.inference_vs_cpu, "GPU inference vs CPU inference");
  add(before.inference_vs_forward, after.inference_vs_forward, "GPU inference vs GPU forward");
  add(before.deterministic, after.deterministic, "deterministic backward vs CPU");
  add(before.atomic, after.atomic, "atomic backward vs CPU");
  return names;
}

const char* YesNo(int64_t failures) { return failures ? "NO" : "yes"; }

}  // namespace

int main(int argc, char** argv) {
  const int num_cases = argc > 1 ? std::atoi(argv[1]) : 400;
  int devices = 0;
  const bool gpu = cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
  if (gpu) {
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
  }
  std::mt19937_64 rng(20150413);
  int64_t failed = 0;
  Tally tally;
  for (int i = 0; i < num_cases; ++i) {
    const int64_t n = 1 + rng() % 3, h = 1 + rng() % 40, w = 1 + rng() % 40, c = 1 + rng() % 70;
    const int ph = 1 + rng() % 8, pw = 1 + rng() % 8;
    const float scales[] = {1.0f, 0.5f, 1.0f / 16, 0.3f};
    const Case k = RandomCase(rng, n, h, w, c, ph, pw, scales[rng() % 4], rng() % 200);
    const bool ties = i % 2 == 0;
    const Tally before = tally;
    const bool bad = i % 4 < 2 ? RunCase<float>(rng, k, ties, gpu, &tally)
                               : RunCase<double>(rng, k, ties, gpu, &tally);
    if (bad) {
      ++failed;
      std::printf("case %d (%s, N=%lld H=%lld W=%lld C=%lld PH=%d PW=%d R=%lld) failed: %s\n",
                  i, i % 4 < 2 ? "float32" : "float64", (long long)n, (long long)h, (long long)w,
                  (long long)c, ph, pw, (long long)k.num_rois, NewFailures(before, tally).c_str());
    }
  }
  if (!gpu) {
    std::printf("no CUDA device: ran the CPU kernels on %d cases; CPU inference bit-identical "
                "to CPU forward output: %s; GPU comparisons skipped\n",
                num_cases, YesNo(tally.cpu_inference));
    return failed ? 1 : 77;
  }
  std::printf("harness: %d cases, %lld failed; forward and deterministic backward bit-identical "
              "to CPU: %s; atomic backward max relative difference float32 %.3g, float64 %.3g\n",
              num_cases, (long long)failed, YesNo(tally.forward + tally.deterministic),
              tally.max_atomic_rel[0], tally.max_atomic_rel[1]);
  std::printf("inference (no argmax): GPU output bit-identical to CPU inference: %s, to GPU "
              "forward output: %s; CPU inference bit-identical to CPU forward output: %s\n",
              YesNo(tally.inference_vs_cpu), YesNo(tally.inference_vs_forward),
              YesNo(tally.cpu_inference));
  Benchmark(rng, "train", 2, 38, 50, 128);
  Benchmark(rng, "test", 1, 38, 63, 2000);
  return failed ? 1 : 0;
}
