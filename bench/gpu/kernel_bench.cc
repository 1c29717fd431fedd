// colossus-gpu-kernel-bench: every memory-bound op of the CUDA backend at GPT-2 124M
// training shapes, its achieved bandwidth as a share of the device-to-device copy
// bandwidth measured in the same run (the ceiling), plus the Linear layer's GEMMs in
// TFLOP/s. A program that prints figures, not a test (STYLE.md).
//
//   colossus-gpu-kernel-bench [--tokens N] [--iters K] [--warmup W] [--json FILE] [--device D]
//   colossus-gpu-kernel-bench --describe      # the backend's one-line description
//
// Method, for every figure:
//  * inputs rotate: each op gets `copies` complete sets of its buffers, as many as make
//    the sets together at least 4x the L2 cache, and run i uses set i % copies, so no
//    run finds its inputs left in L2 by the one before;
//  * W untimed warm-up runs first (plans, scratch, clocks), then K timed runs, each
//    bracketed by two CUDA events on the backend's stream; the median is reported;
//  * bytes are the minimum an op must move (each input read once, each output written
//    once, read-modify-write counted twice), so "% of copy" is what a perfect kernel
//    would approach; the copy itself moves 2 bytes per byte copied (read + write).
// Shapes: N = --tokens rows (default 16384 = B 16 x T 1024), C = 768, 4C = 3072, V = 50257
// padded to 50304, and 124,439,808 parameters for AdamW, SumSquares and Cast.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "colossus/kernels/backend.h"
#include "colossus/kernels/cuda_backend.h"

namespace colossus::kernels {
namespace {

#define BENCH_CUDA(call)                                                                  \
  do {                                                                                    \
    const cudaError_t e_ = (call);                                                        \
    if (e_ != cudaSuccess) {                                                              \
      std::fprintf(stderr, "%s failed: %s at %s:%d\n", #call, cudaGetErrorString(e_),     \
                   __FILE__, __LINE__);                                                   \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)

struct Options {
  int64_t tokens = 16384;
  int iters = 50;
  int warmup = 5;
  int device = 0;
  std::string json;
  bool describe_only = false;  // print the backend's description and exit
};

struct Result {
  std::string name;
  std::string shape;
  int copies = 1;
  double median_us = 0;
  double bytes = 0;  // minimum bytes moved per call (0 for GEMMs)
  double flops = 0;  // per call (GEMMs only)
};

// A device buffer from the backend, freed with it.
class Buffer {
 public:
  Buffer(Backend* b, DType dtype, int64_t n) : backend_(b), dtype_(dtype), n_(n) {
    absl::StatusOr<void*> p = b->Allocate(static_cast<size_t>(n) * DTypeSize(dtype));
    if (!p.ok()) {
      std::fprintf(stderr, "allocation of %lld x %s failed: %s\n", static_cast<long long>(n),
                   DTypeName(dtype), std::string(p.status().message()).c_str());
      std::exit(1);
    }
    data_ = *p;
  }
  ~Buffer() { backend_->Free(data_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  View view() const { return View(data_, dtype_, n_); }
  float* f32() const { return static_cast<float*>(data_); }
  int32_t* i32() const { return static_cast<int32_t*>(data_); }
  size_t bytes() const { return static_cast<size_t>(n_) * DTypeSize(dtype_); }

 private:
  Backend* backend_;
  DType dtype_;
  int64_t n_;
  void* data_ = nullptr;
};

class Bench {
 public:
  Bench(Backend* backend, const Options& options) : backend_(backend), options_(options) {
    stream_ = static_cast<cudaStream_t>(CudaStreamOf(*backend));
    BENCH_CUDA(cudaGetDevice(&device_));
    BENCH_CUDA(cudaGetDeviceProperties(&prop_, device_));
  }

  // How many copies of `bytes_per_copy` make at least 4x L2 (and at least 1).
  int CopiesFor(double bytes_per_copy) const {
    const double want = 4.0 * prop_.l2CacheSize;
    return std::max(1, static_cast<int>(std::ceil(want / std::max(bytes_per_copy, 1.0))));
  }

  // Times op(copy) as described at the top of the file; returns the median in us.
  double Time(int copies, const std::function<void(int)>& op) {
    for (int i = 0; i < options_.warmup; ++i) op(i % copies);
    std::vector<cudaEvent_t> start(options_.iters), stop(options_.iters);
    for (int i = 0; i < options_.iters; ++i) {
      BENCH_CUDA(cudaEventCreate(&start[i]));
      BENCH_CUDA(cudaEventCreate(&stop[i]));
    }
    for (int i = 0; i < options_.iters; ++i) {
      BENCH_CUDA(cudaEventRecord(start[i], stream_));
      op(i % copies);
      BENCH_CUDA(cudaEventRecord(stop[i], stream_));
    }
    BENCH_CUDA(cudaStreamSynchronize(stream_));
    std::vector<double> us(options_.iters);
    for (int i = 0; i < options_.iters; ++i) {
      float ms = 0;
      BENCH_CUDA(cudaEventElapsedTime(&ms, start[i], stop[i]));
      us[i] = 1000.0 * ms;
      BENCH_CUDA(cudaEventDestroy(start[i]));
      BENCH_CUDA(cudaEventDestroy(stop[i]));
    }
    std::sort(us.begin(), us.end());
    const size_t n = us.size();
    return n % 2 ? us[n / 2] : 0.5 * (us[n / 2 - 1] + us[n / 2]);
  }

  // Buffers of one op, `copies` times over: sets[copy][k].
  using Sets = std::vector<std::vector<std::unique_ptr<Buffer>>>;
  Sets Allocate(int copies, const std::vector<std::pair<DType, int64_t>>& shapes,
                float fill = 0.5f) {
    Sets sets(copies);
    for (auto& set : sets) {
      for (const auto& [dtype, n] : shapes) {
        set.push_back(std::make_unique<Buffer>(backend_, dtype, n));
        if (dtype != DType::kI32) backend_->Fill(set.back()->view(), fill);
      }
    }
    return sets;
  }
  static double SetBytes(const std::vector<std::pair<DType, int64_t>>& shapes) {
    double b = 0;
    for (const auto& [dtype, n] : shapes) b += static_cast<double>(n) * DTypeSize(dtype);
    return b;
  }

  void Add(Result r) {
    results_.push_back(std::move(r));
    Print(results_.back());
  }

  void Print(const Result& r) const {
    if (r.flops > 0) {
      std::printf("%-34s %-28s %4d %10.1f %10s %8s %9.1f\n", r.name.c_str(), r.shape.c_str(),
                  r.copies, r.median_us, "-", "-", r.flops / (r.median_us * 1e-6) / 1e12);
    } else {
      const double gbps = r.bytes / (r.median_us * 1e-6) / 1e9;
      std::printf("%-34s %-28s %4d %10.1f %10.1f %7.1f%% %9s\n", r.name.c_str(),
                  r.shape.c_str(), r.copies, r.median_us, gbps,
                  copy_gbps_ > 0 ? 100.0 * gbps / copy_gbps_ : 0.0, "-");
    }
    std::fflush(stdout);
  }

  void WriteJson(const std::string& path) const {
    FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      std::exit(1);
    }
    std::fprintf(f, "{\n  \"device\": \"%s\",\n  \"describe\": \"%s\",\n", prop_.name,
                 backend_->Describe().c_str());
    std::fprintf(f, "  \"l2_bytes\": %d,\n  \"iters\": %d,\n  \"warmup\": %d,\n",
                 prop_.l2CacheSize, options_.iters, options_.warmup);
    std::fprintf(f, "  \"copy_gbps\": %.3f,\n  \"results\": [\n", copy_gbps_);
    for (size_t i = 0; i < results_.size(); ++i) {
      const Result& r = results_[i];
      const double gbps = r.bytes > 0 ? r.bytes / (r.median_us * 1e-6) / 1e9 : 0;
      std::fprintf(f,
                   "    {\"name\": \"%s\", \"shape\": \"%s\", \"copies\": %d, \"median_us\": "
                   "%.3f, \"bytes\": %.0f, \"gbps\": %.3f, \"share_of_copy\": %.4f, "
                   "\"flops\": %.0f, \"tflops\": %.3f}%s\n",
                   r.name.c_str(), r.shape.c_str(), r.copies, r.median_us, r.bytes, gbps,
                   copy_gbps_ > 0 && r.bytes > 0 ? gbps / copy_gbps_ : 0.0, r.flops,
                   r.flops > 0 ? r.flops / (r.median_us * 1e-6) / 1e12 : 0.0,
                   i + 1 < results_.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
  }

  Backend* backend() const { return backend_; }
  cudaStream_t stream() const { return stream_; }
  void set_copy_gbps(double g) { copy_gbps_ = g; }

 private:
  Backend* backend_;
  Options options_;
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
  cudaDeviceProp prop_{};
  double copy_gbps_ = 0;
  std::vector<Result> results_;
};

void Run(Bench& bench, const Options& o) {
  Backend* b = bench.backend();
  const DType A = DType::kBF16, F = DType::kF32;
  const int64_t N = o.tokens;
  const int C = 768, C4 = 4 * C, V = 50257, Vp = 50304, T = 1024;
  const int64_t NC = N * C;
  const int64_t kParams = 124439808;  // GPT-2 124M with Vp = 50304
  const std::string nc = std::to_string(N) + "x" + std::to_string(C);

  std::printf("%-34s %-28s %4s %10s %10s %8s %9s\n", "op", "shape", "sets", "median_us",
              "GB/s", "of copy", "TFLOP/s");

  // ---- the ceiling: device-to-device copy --------------------------------------------
  {
    const int64_t bytes = int64_t{1} << 30;  // 1 GiB: far beyond L2
    const std::vector<std::pair<DType, int64_t>> shapes = {{DType::kF32, bytes / 4},
                                                           {DType::kF32, bytes / 4}};
    const int copies = 2;
    auto sets = bench.Allocate(copies, shapes);
    Result r{"copy d2d (cudaMemcpyAsync)", "1 GiB", copies};
    r.bytes = 2.0 * bytes;
    r.median_us = bench.Time(copies, [&](int c) {
      BENCH_CUDA(cudaMemcpyAsync(sets[c][1]->f32(), sets[c][0]->f32(), bytes,
                                 cudaMemcpyDeviceToDevice, bench.stream()));
    });
    bench.set_copy_gbps(r.bytes / (r.median_us * 1e-6) / 1e9);
    bench.Add(r);
  }

  // Runs one memory-bound op over rotating sets of `shapes`.
  auto memory_bound = [&](const std::string& name, const std::string& shape,
                          const std::vector<std::pair<DType, int64_t>>& shapes, double bytes,
                          const std::function<void(Bench::Sets&, int)>& op) {
    const int copies = bench.CopiesFor(Bench::SetBytes(shapes));
    auto sets = bench.Allocate(copies, shapes, 0.25f);
    Result r{name, shape, copies};
    r.bytes = bytes;
    r.median_us = bench.Time(copies, [&](int c) { op(sets, c); });
    bench.Add(r);
  };

  // ---- embedding --------------------------------------------------------------------------
  {
    // out, wte, wpe, tokens. Tokens are 0: the table rows hit L2, as real text's frequent
    // tokens do; bytes count only out and wpe and the tokens.
    memory_bound("embedding fwd (bf16)", nc, {{A, NC}, {A, int64_t{Vp} * C}, {A, int64_t{T} * C}, {DType::kI32, N}},
                 2.0 * NC * 2 + 4.0 * N, [&](Bench::Sets& s, int c) {
                   BENCH_CUDA(cudaMemsetAsync(s[c][3]->i32(), 0, N * 4, bench.stream()));
                   b->EmbeddingForward(s[c][0]->view(), s[c][3]->i32(), s[c][1]->view(),
                                       s[c][2]->view(), static_cast<int>(N / T), T, C);
                 });
  }

  // ---- layernorm ----------------------------------------------------------------------------
  memory_bound("layernorm fwd (bf16)", nc, {{A, NC}, {A, NC}, {A, C}, {A, C}, {F, N}, {F, N}},
               2.0 * NC * 2 + 8.0 * N, [&](Bench::Sets& s, int c) {
                 b->LayerNormForward(s[c][1]->view(), s[c][4]->f32(), s[c][5]->f32(),
                                     s[c][0]->view(), s[c][2]->view(), s[c][3]->view(), N, C);
               });
  memory_bound("residual+layernorm fwd (bf16)", nc,
               {{A, NC}, {A, NC}, {A, NC}, {A, C}, {A, C}, {F, N}, {F, N}},
               4.0 * NC * 2 + 8.0 * N, [&](Bench::Sets& s, int c) {
                 // residual = a + b written over a (the in-place residual stream).
                 b->ResidualLayerNormForward(s[c][0]->view(), s[c][2]->view(), s[c][5]->f32(),
                                             s[c][6]->f32(), s[c][0]->view(), s[c][1]->view(),
                                             s[c][3]->view(), s[c][4]->view(), N, C);
               });
  memory_bound("layernorm bwd (bf16, f32 grads)", nc,
               {{A, NC}, {A, NC}, {A, NC}, {A, C}, {F, C}, {F, C}, {F, N}, {F, N}},
               4.0 * NC * 2 + 8.0 * N, [&](Bench::Sets& s, int c) {
                 b->LayerNormBackward(s[c][0]->view(), s[c][4]->view(), s[c][5]->view(),
                                      s[c][1]->view(), s[c][2]->view(), s[c][3]->view(),
                                      s[c][6]->f32(), s[c][7]->f32(), N, C);
               });

  // ---- GELU -----------------------------------------------------------------------------------
  const int64_t N4C = N * C4;
  const std::string n4c = std::to_string(N) + "x" + std::to_string(C4);
  memory_bound("gelu fwd (bf16)", n4c, {{A, N4C}, {A, N4C}}, 2.0 * N4C * 2,
               [&](Bench::Sets& s, int c) { b->GeluForward(s[c][1]->view(), s[c][0]->view(), N4C); });
  memory_bound("gelu bwd (bf16)", n4c, {{A, N4C}, {A, N4C}, {A, N4C}}, 3.0 * N4C * 2,
               [&](Bench::Sets& s, int c) {
                 b->GeluBackward(s[c][2]->view(), s[c][0]->view(), s[c][1]->view(), N4C);
               });
  memory_bound("add (bf16)", nc, {{A, NC}, {A, NC}, {A, NC}}, 3.0 * NC * 2,
               [&](Bench::Sets& s, int c) {
                 b->Add(s[c][2]->view(), s[c][0]->view(), s[c][1]->view(), NC);
               });

  // ---- softmax + cross-entropy ------------------------------------------------------------
  {
    const int64_t NV = N * Vp;
    const std::string nv = std::to_string(N) + "x" + std::to_string(Vp);
    memory_bound("cross-entropy fwd (bf16 logits)", nv, {{A, NV}, {F, N}, {F, N}, {DType::kI32, N}},
                 1.0 * N * V * 2 + 8.0 * N + 4.0 * N, [&](Bench::Sets& s, int c) {
                   BENCH_CUDA(cudaMemsetAsync(s[c][3]->i32(), 0, N * 4, bench.stream()));
                   b->CrossEntropyForward(s[c][1]->f32(), s[c][2]->f32(), s[c][0]->view(),
                                          s[c][3]->i32(), N, V, Vp);
                 });
    memory_bound("cross-entropy bwd (in place)", nv, {{A, NV}, {F, N}, {DType::kI32, N}},
                 1.0 * N * V * 2 + 1.0 * N * Vp * 2 + 8.0 * N, [&](Bench::Sets& s, int c) {
                   BENCH_CUDA(cudaMemsetAsync(s[c][2]->i32(), 0, N * 4, bench.stream()));
                   b->CrossEntropyBackward(s[c][0]->view(), s[c][0]->view(), s[c][1]->f32(),
                                           s[c][2]->i32(), 1.0f / N, N, V, Vp);
                 });
  }

  // ---- optimizer and friends over every parameter -----------------------------------------
  {
    const std::string np = std::to_string(kParams);
    memory_bound("adamw (f32 grad, bf16 copy)", np,
                 {{F, kParams}, {F, kParams}, {F, kParams}, {F, kParams}, {A, kParams}},
                 kParams * (4.0 * 4 + 3.0 * 4 + 2.0), [&](Bench::Sets& s, int c) {
                   AdamWParams p;
                   p.lr = 1e-4f;
                   p.weight_decay = 0.1f;
                   b->AdamW(s[c][0]->view(), s[c][1]->view(), s[c][2]->f32(), s[c][3]->f32(),
                            s[c][4]->view(), kParams, p);
                 });
    memory_bound("sum of squares (f32)", np, {{F, kParams}, {F, 1}}, kParams * 4.0,
                 [&](Bench::Sets& s, int c) { b->SumSquares(s[c][1]->f32(), s[c][0]->view(), kParams); });
    memory_bound("cast f32 -> bf16", np, {{F, kParams}, {A, kParams}}, kParams * 6.0,
                 [&](Bench::Sets& s, int c) { b->Cast(s[c][1]->view(), s[c][0]->view(), kParams); });
  }

  // ---- GEMMs (cuBLASLt), bf16 in, fp32 accumulate ----------------------------------------------
  struct Gemm {
    const char* name;
    int C, OC;
    bool gelu;
  };
  for (const Gemm g : {Gemm{"qkv", C, 3 * C, false}, Gemm{"attn proj", C, C, false},
                       Gemm{"mlp fc (+gelu epilogue)", C, C4, true}, Gemm{"mlp fc", C, C4, false},
                       Gemm{"mlp proj", C4, C, false}, Gemm{"lm head", C, Vp, false}}) {
    const std::string shape = std::to_string(N) + "x" + std::to_string(g.C) + " @ " +
                              std::to_string(g.OC) + "x" + std::to_string(g.C) + "^T";
    const std::vector<std::pair<DType, int64_t>> shapes = {
        {A, N * g.C},  {A, int64_t{g.OC} * g.C}, {A, g.OC},         {A, N * g.OC},
        {A, N * g.OC}, {A, N * g.C},             {F, int64_t{g.OC} * g.C}, {F, g.OC}};
    const int copies = bench.CopiesFor(Bench::SetBytes(shapes));
    auto s = bench.Allocate(copies, shapes, 0.01f);
    const double flops = 2.0 * N * g.C * g.OC;
    const bool lm = g.OC == Vp;  // the tied lm head has no bias
    Result fwd{std::string("matmul fwd ") + g.name, shape, copies};
    fwd.flops = flops;
    fwd.median_us = bench.Time(copies, [&](int c) {
      const View bias = lm ? View() : s[c][2]->view();
      if (g.gelu) {
        b->MatmulGeluForward(s[c][3]->view(), s[c][4]->view(), s[c][0]->view(), s[c][1]->view(),
                             bias, N, g.C, g.OC);
      } else {
        b->MatmulForward(s[c][3]->view(), s[c][0]->view(), s[c][1]->view(), bias, N, g.C, g.OC);
      }
    });
    bench.Add(fwd);
    if (g.gelu) continue;
    Result bwd{std::string("matmul bwd ") + g.name + " (dinp+dW+db)", shape, copies};
    bwd.flops = 2 * flops;
    bwd.median_us = bench.Time(copies, [&](int c) {
      b->MatmulBackward(s[c][5]->view(), s[c][6]->view(), lm ? View() : s[c][7]->view(),
                        s[c][3]->view(), s[c][0]->view(), s[c][1]->view(), N, g.C, g.OC);
    });
    bench.Add(bwd);
  }
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--tokens") {
      o.tokens = std::atoll(next().c_str());
    } else if (a == "--iters") {
      o.iters = std::atoi(next().c_str());
    } else if (a == "--warmup") {
      o.warmup = std::atoi(next().c_str());
    } else if (a == "--json") {
      o.json = next();
    } else if (a == "--device") {
      o.device = std::atoi(next().c_str());
    } else if (a == "--describe") {
      o.describe_only = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--tokens N (multiple of 1024)] [--iters K] [--warmup W] "
                   "[--json FILE] [--device D] [--describe]\n",
                   argv[0]);
      return 2;
    }
  }
  if (o.tokens <= 0 || o.tokens % 1024 != 0 || o.iters < 1 || o.warmup < 0) {
    std::fprintf(stderr, "--tokens must be a positive multiple of 1024, --iters >= 1\n");
    return 2;
  }
  absl::StatusOr<std::unique_ptr<Backend>> backend = MakeCudaBackend(o.device);
  if (!backend.ok()) {
    std::fprintf(stderr, "no CUDA backend: %s\n", std::string(backend.status().message()).c_str());
    return 1;
  }
  if (o.describe_only) {
    std::printf("%s\n", (*backend)->Describe().c_str());
    return 0;
  }
  std::printf("# %s\n# median of %d runs after %d warm-ups; inputs rotate over >= 4x L2\n",
              (*backend)->Describe().c_str(), o.iters, o.warmup);
  Bench bench(backend->get(), o);
  Run(bench, o);
  if (!o.json.empty()) bench.WriteJson(o.json);
  return 0;
}

}  // namespace
}  // namespace colossus::kernels

int main(int argc, char** argv) { return colossus::kernels::Main(argc, argv); }
