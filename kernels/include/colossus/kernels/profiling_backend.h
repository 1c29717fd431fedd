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
// Forwarding never changes a result: the inner backend gets exactly the arguments given
// (ForwardingBackend). While not recording, an op costs a closure and two calls. Memory
// calls (Allocate, Free) and Synchronize are forwarded and never timed.
//
// Thread safety: one thread at a time, as for any Backend.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "colossus/kernels/backend.h"
#include "colossus/kernels/forwarding_backend.h"
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

class ProfilingBackend final : public ForwardingBackend {
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
  // Refused (FailedPrecondition) while recording: a mark inside a captured graph would
  // time the capture, not the replay. Otherwise the inner backend's.
  absl::Status BeginCapture() override;

 protected:
  // While recording, marks the op's start and end around it.
  void Dispatch(Op op, std::function<void()> call) override;

 private:
  std::unique_ptr<OpTimer> timer_;
  bool recording_ = false;
  // One entry per timed op call; marks 2i and 2i+1 bracket call i.
  std::vector<Op> ran_;
};

}  // namespace colossus::kernels
