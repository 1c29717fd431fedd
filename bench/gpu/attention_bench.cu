// colossus-attention-bench: causal attention forward and backward (kernels/cuda/attention.h)
// on bf16, against PyTorch's scaled_dot_product_attention with its flash backend
// (bench/gpu/attention_torch.py, run by this program on the same shapes in the same run).
//
//   build/release/bench/colossus-attention-bench              # ours + torch, four shapes
//   build/release/bench/colossus-attention-bench --no-torch   # ours only
//   build/release/bench/colossus-attention-bench --python /path/to/python3 --iters 100
//
// Shapes: head size 64 and 128 at T = 1024 and 4096, with B*T = 16384 tokens and
// C = NH*hs = 2048 (the FlashAttention papers' benchmark shapes). Each figure is the
// median of --iters runs timed with CUDA events after --warmup untimed ones. Inputs rotate
// over enough copies that the working set is at least 4x the L2 cache, so no run finds its
// inputs already in L2 (at these shapes one copy is already far larger).
//
// FLOPs counted as FlashAttention does for causal attention: forward 4*B*NH*T^2*hs / 2
// (two GEMMs, half the score matrix), backward 2.5x that (five GEMMs).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "colossus/kernels/cuda_device.h"
#include "colossus/kernels/dtype.h"
#include "cuda/attention.h"

namespace {

using colossus::kernels::DType;
using colossus::kernels::View;
namespace attn = colossus::kernels::cuda;

#define BENCH_CUDA(call)                                                                          \
  do {                                                                                            \
    const cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

struct Shape {
  int hs, T, B, NH;
};

// Deterministic pseudo-random bf16 in [-2, 2): a hash of the index, no host round trip.
__global__ void FillRandom(__nv_bfloat16* x, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9E3779B1u ^ seed ^ static_cast<uint32_t>(i >> 32);
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    x[i] = __float2bfloat16(static_cast<float>(h) * (4.0f / 4294967296.0f) - 2.0f);
  }
}

void Fill(void* p, int64_t n, uint32_t seed) {
  FillRandom<<<1024, 256>>>(static_cast<__nv_bfloat16*>(p), n, seed);
  BENCH_CUDA(cudaGetLastError());
}

struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t bytes) { BENCH_CUDA(cudaMalloc(&p, bytes)); }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// One full set of a step's attention tensors.
struct Tensors {
  DeviceBuffer qkv, out, dout, dqkv, lse;
  Tensors(const Shape& s, int64_t btc, uint32_t seed)
      : qkv(3 * btc * 2),
        out(btc * 2),
        dout(btc * 2),
        dqkv(3 * btc * 2),
        lse(static_cast<size_t>(s.B) * s.NH * s.T * 4) {
    Fill(qkv.p, 3 * btc, seed);
    Fill(dout.p, btc, seed + 1);
  }
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median milliseconds of `fn(i)` over `iters` runs after `warmup`, each between two events.
template <typename F>
double TimeMs(cudaStream_t s, int warmup, int iters, F&& fn) {
  cudaEvent_t a, b;
  BENCH_CUDA(cudaEventCreate(&a));
  BENCH_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < warmup; ++i) fn(i);
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    BENCH_CUDA(cudaEventRecord(a, s));
    fn(warmup + i);
    BENCH_CUDA(cudaEventRecord(b, s));
    BENCH_CUDA(cudaEventSynchronize(b));
    float t = 0;
    BENCH_CUDA(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  BENCH_CUDA(cudaEventDestroy(a));
  BENCH_CUDA(cudaEventDestroy(b));
  return Median(ms);
}

double FwdFlops(const Shape& s) {
  return 4.0 * s.B * s.NH * static_cast<double>(s.T) * s.T * s.hs / 2;
}

// Runs attention_torch.py on the same shapes; returns (hs, T, B, NH) -> (fwd ms, bwd ms),
// empty (with the reason printed) when PyTorch or its CUDA is unavailable.
std::map<std::tuple<int, int, int, int>, std::pair<double, double>> RunTorch(
    const std::string& python, const std::string& script, const std::vector<Shape>& shapes,
    int warmup, int iters) {
  std::string cmd = python + " " + script + " --warmup " + std::to_string(warmup) + " --iters " +
                    std::to_string(iters) + " --shapes ";
  for (size_t i = 0; i < shapes.size(); ++i) {
    const Shape& s = shapes[i];
    cmd += (i ? "," : "") + std::to_string(s.hs) + ":" + std::to_string(s.T) + ":" +
           std::to_string(s.B) + ":" + std::to_string(s.NH);
  }
  cmd += " 2>&1";
  std::map<std::tuple<int, int, int, int>, std::pair<double, double>> result;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) {
    std::printf("torch: could not run %s\n", cmd.c_str());
    return result;
  }
  char line[1024];
  while (std::fgets(line, sizeof line, pipe) != nullptr) {
    Shape s;
    double fwd, bwd;
    if (std::sscanf(line, "RESULT %d %d %d %d %lf %lf", &s.hs, &s.T, &s.B, &s.NH, &fwd, &bwd) ==
        6) {
      result[{s.hs, s.T, s.B, s.NH}] = {fwd, bwd};
    } else {
      std::printf("torch: %s", line);  // its own report: versions, or why it cannot run
    }
  }
  const int rc = pclose(pipe);
  if (rc != 0) std::printf("torch: %s exited with status %d\n", script.c_str(), rc);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Causal attention (bf16) forward/backward vs PyTorch flash SDPA"};
  int warmup = 10, iters = 50;
  bool no_torch = false;
  std::string python = "python3";
  std::string script = std::string(COLOSSUS_SOURCE_DIR) + "/bench/gpu/attention_torch.py";
  app.add_option("--warmup", warmup, "untimed runs first");
  app.add_option("--iters", iters, "timed runs (the median is reported)");
  app.add_flag("--no-torch", no_torch, "skip the PyTorch comparison");
  app.add_option("--python", python, "the Python with torch (CUDA build)");
  app.add_option("--torch-script", script, "path of attention_torch.py");
  CLI11_PARSE(app, argc, argv);

  const colossus::kernels::CudaProbe probe = colossus::kernels::ProbeCudaDevices();
  if (probe.devices.empty()) {
    std::printf("no CUDA device: %s\n", probe.reason.c_str());
    return 1;
  }
  cudaDeviceProp prop{};
  BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB, CUDA runtime %d, driver %d\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize >> 20, probe.runtime_version,
              probe.driver_version);

  const std::vector<Shape> shapes = {
      {64, 1024, 16, 32}, {64, 4096, 4, 32}, {128, 1024, 16, 16}, {128, 4096, 4, 16}};
  std::map<std::tuple<int, int, int, int>, std::pair<double, double>> torch;
  if (!no_torch) torch = RunTorch(python, script, shapes, warmup, iters);

  cudaStream_t stream;
  BENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::printf("\n%-22s %9s %8s %9s %8s %9s %8s | %9s %9s %7s %7s\n", "shape (hs T B NH)", "fwd ms",
              "TFLOP/s", "bwd ms", "TFLOP/s", "f+b ms", "TFLOP/s", "torch fwd", "torch bwd",
              "x fwd", "x f+b");
  for (const Shape& s : shapes) {
    const int C = s.NH * s.hs;
    const int64_t btc = static_cast<int64_t>(s.B) * s.T * C;
    const size_t scratch_bytes = attn::AttentionBackwardScratchBytes(s.B, s.T, C, s.NH);
    const size_t set_bytes = static_cast<size_t>(btc) * 2 * 8 + scratch_bytes;
    const int copies = static_cast<int>(std::clamp<size_t>(
        (4 * static_cast<size_t>(prop.l2CacheSize) + set_bytes - 1) / set_bytes, 1, 16));
    std::vector<std::unique_ptr<Tensors>> sets;
    for (int i = 0; i < copies; ++i) sets.push_back(std::make_unique<Tensors>(s, btc, 17 * i + 1));
    DeviceBuffer scratch(scratch_bytes);
    auto view = [&](void* p, int64_t n) { return View(p, DType::kBF16, n); };
    auto forward = [&](int i) {
      Tensors& t = *sets[i % copies];
      attn::AttentionForward(view(t.out.p, btc), static_cast<float*>(t.lse.p),
                             view(t.qkv.p, 3 * btc), s.B, s.T, C, s.NH, stream);
    };
    auto backward = [&](int i) {
      Tensors& t = *sets[i % copies];
      attn::AttentionBackward(view(t.dqkv.p, 3 * btc), view(t.dout.p, btc), view(t.qkv.p, 3 * btc),
                              view(t.out.p, btc), static_cast<const float*>(t.lse.p), scratch.p,
                              s.B, s.T, C, s.NH, stream);
    };
    for (int i = 0; i < copies; ++i) forward(i);  // every set gets a valid out and lse
    BENCH_CUDA(cudaStreamSynchronize(stream));
    const double fwd = TimeMs(stream, warmup, iters, forward);
    const double bwd = TimeMs(stream, warmup, iters, backward);
    const double ff = FwdFlops(s), bf = 2.5 * ff;
    char name[64];
    std::snprintf(name, sizeof name, "%d %d %d %d", s.hs, s.T, s.B, s.NH);
    std::printf("%-22s %9.3f %8.1f %9.3f %8.1f %9.3f %8.1f |", name, fwd, ff / fwd * 1e-9, bwd,
                bf / bwd * 1e-9, fwd + bwd, (ff + bf) / (fwd + bwd) * 1e-9);
    const auto it = torch.find({s.hs, s.T, s.B, s.NH});
    if (it != torch.end()) {
      const auto [tf, tb] = it->second;
      // Ratios > 1: ours is faster.
      std::printf(" %9.3f %9.3f %7.2f %7.2f\n", tf, tb, tf / fwd, (tf + tb) / (fwd + bwd));
    } else {
      std::printf(" %9s %9s %7s %7s\n", "-", "-", "-", "-");
    }
  }
  std::printf(
      "\nx = torch time / our time (> 1: ours faster). TFLOP/s: causal FLOPs, forward "
      "4*B*NH*T^2*hs/2, backward 2.5x forward.\n");
  BENCH_CUDA(cudaStreamDestroy(stream));
  return 0;
}
