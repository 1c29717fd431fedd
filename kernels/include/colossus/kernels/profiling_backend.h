// Where a training step's time goes, op by op: a Backend that forwards every call to
// another backend and, while recording, brackets each op with marks of an OpTimer
// (op_timer.h: the host clock on the CPU, CUDA events on the GPU's stream).
//
//   ProfilingBackend prof(inner.get());            // the model is built on &prof
//   ... warm-up steps (not recorded) ...
//   prof.Start();  ... N steps ...  OpProfile p = prof.Stop(N);
//   std::cout << p.Table();                         // or p.Json()
//
// The profile sums each op's time over the recorded steps and sorts the ops into four
// categories: GEMMs (the Matmul* ops, with their fused bias/GELU epilogues and bias
// reductions), attention (the fused FlashAttention-style pair), other kernels
// (LayerNorm, GELU, cross-entropy, AdamW, norms, casts, fills, copies on the device)
// and host copies (CopyToHost/CopyFromHost). The span is the time from the first op's
// start to the last op's end; span minus the ops' sum is the time between ops (on CUDA
// the GPU idle waiting for launches; on the CPU the model's own host code).
//
// Forwarding never changes a result: the inner backend gets exactly the arguments given.
// While not recording, an op costs one extra virtual call. Memory calls (Allocate, Free)
// and Synchronize are forwarded and never timed.
//
// Thread safety: one thread at a time, as for any Backend.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "colossus/kernels/backend.h"
#include "colossus/kernels/op_timer.h"

namespace colossus::kernels {

enum class OpCategory : uint8_t { kGemm = 0, kAttention, kOther, kHostCopy };
inline constexpr int kNumOpCategories = 4;
const char* OpCategoryName(OpCategory c);  // "gemm", "attention", "other", "host_copy"

// One op's share of a profile.
struct OpStats {
  std::string op;  // the Backend method's name, e.g. "MatmulBackward"
  OpCategory category = OpCategory::kOther;
  int64_t calls = 0;
  double total_ms = 0;  // summed over the recorded steps
};

struct OpProfile {
  std::string backend;  // the inner backend's Describe()
  int64_t steps = 0;    // what Stop() was told; the per-step figures divide by it
  double span_ms = 0;   // first op's start to last op's end, all steps
  double ops_ms = 0;    // the ops' sum, all steps
  std::vector<OpStats> ops;  // the ops that ran, longest total first
  std::array<double, kNumOpCategories> category_ms{};  // by OpCategory, all steps

  double between_ops_ms() const { return span_ms - ops_ms; }
  double CategoryMs(OpCategory c) const { return category_ms[static_cast<int>(c)]; }
  // Kernels other than GEMMs (attention, other kernels, host copies) as a fraction of
  // the span: issue 3's "non-GEMM share of a step's GPU time". 0 for an empty profile.
  double NonGemmShare() const;
  // The same without attention (its kernels run on tensor cores like the GEMMs).
  double NonGemmShareExcludingAttention() const;
  // A table per op (calls per step, ms per step, % of the span) and the categories.
  std::string Table() const;
  // One JSON object with every figure above; ops as [{op, category, calls, total_ms}].
  std::string Json() const;
};

class ProfilingBackend final : public Backend {
 public:
  // REQUIRES: inner outlives this. The timer is MakeOpTimer(*inner) unless one is given
  // (tests give a scripted clock).
  explicit ProfilingBackend(Backend* inner, std::unique_ptr<OpTimer> timer = nullptr);

  // Starts recording (dropping anything recorded before).
  void Start();
  // Stops recording, waits for the marks (Synchronize on CUDA) and returns the profile
  // of what ran since Start, with `steps` recorded in it (>= 1; the caller knows how
  // many steps it ran). Stop without Start returns an empty profile.
  OpProfile Stop(int64_t steps = 1);
  bool recording() const { return recording_; }
  Backend* inner() const { return inner_; }

  DeviceKind kind() const override { return inner_->kind(); }
  DType compute_dtype() const override { return inner_->compute_dtype(); }
  std::string Describe() const override { return inner_->Describe(); }
  absl::StatusOr<void*> Allocate(size_t bytes) override { return inner_->Allocate(bytes); }
  void Free(void* ptr) override { inner_->Free(ptr); }
  void Synchronize() override { inner_->Synchronize(); }

  void CopyToHost(void* host_dst, const void* src, size_t bytes) override;
  void CopyFromHost(void* dst, const void* host_src, size_t bytes) override;
  void Copy(void* dst, const void* src, size_t bytes) override;
  void Fill(View x, float value) override;
  void EmbeddingForward(View out, const int32_t* tokens, View wte, View wpe, int B, int T,
                        int C) override;
  void EmbeddingBackward(View dwte, View dwpe, View dout, const int32_t* tokens, int B, int T,
                         int C) override;
  void LayerNormForward(View out, float* mean, float* rstd, View inp, View weight, View bias,
                        int64_t N, int C) override;
  void LayerNormBackward(View dinp, View dweight, View dbias, View dout, View inp, View weight,
                         const float* mean, const float* rstd, int64_t N, int C) override;
  void ResidualLayerNormForward(View residual, View out, float* mean, float* rstd, View a,
                                View b, View weight, View bias, int64_t N, int C) override;
  void MatmulForward(View out, View inp, View weight, View bias, int64_t N, int C,
                     int OC) override;
  void MatmulGeluForward(View out, View pre_gelu, View inp, View weight, View bias, int64_t N,
                         int C, int OC) override;
  void MatmulBackward(View dinp, View dweight, View dbias, View dout, View inp, View weight,
                      int64_t N, int C, int OC) override;
  void AttentionForward(View out, float* lse, View qkv, int B, int T, int C, int NH) override;
  void AttentionBackward(View dqkv, View dout, View qkv, View out, const float* lse, int B,
                         int T, int C, int NH) override;
  void GeluForward(View out, View inp, int64_t n) override;
  void GeluBackward(View dinp, View inp, View dout, int64_t n) override;
  void Add(View out, View a, View b, int64_t n) override;
  void Accumulate(View dst, View src, int64_t n) override;
  void CrossEntropyForward(float* losses, float* lse, View logits, const int32_t* targets,
                           int64_t N, int V, int Vp) override;
  void CrossEntropyBackward(View dlogits, View logits, const float* lse,
                            const int32_t* targets, float dloss, int64_t N, int V,
                            int Vp) override;
  void AdamW(View param, View grad, float* m, float* v, View param_copy, int64_t n,
             const AdamWParams& p) override;
  void SumSquares(float* out, View x, int64_t n) override;
  void Cast(View out, View in, int64_t n) override;

 private:
  class Scope;  // marks an op's start and end while recording

  Backend* inner_;
  std::unique_ptr<OpTimer> timer_;
  bool recording_ = false;
  // One entry per timed op call, the op's index in the .cc's table; marks 2i and 2i+1
  // bracket call i.
  std::vector<uint8_t> ran_;
};

}  // namespace colossus::kernels
