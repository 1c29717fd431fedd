// ProfilingBackend: forwarding with marks around each op (profiling_backend.h).
#include "colossus/kernels/profiling_backend.h"

#include <algorithm>
#include <utility>

#include "colossus/check.h"

namespace colossus::kernels {
namespace {

// Every timed op: its name (the Backend method's) and category. The index is the id
// recorded per call.
enum Op : uint8_t {
  kCopyToHost,
  kCopyFromHost,
  kCopy,
  kFill,
  kEmbeddingForward,
  kEmbeddingBackward,
  kLayerNormForward,
  kLayerNormBackward,
  kResidualLayerNormForward,
  kMatmulForward,
  kMatmulGeluForward,
  kMatmulBackward,
  kAttentionForward,
  kAttentionBackward,
  kGeluForward,
  kGeluBackward,
  kAdd,
  kAccumulate,
  kCrossEntropyForward,
  kCrossEntropyBackward,
  kAdamW,
  kSumSquares,
  kCast,
  kNumOps
};

struct OpInfo {
  const char* name;
  OpCategory category;
};

constexpr OpInfo kOps[kNumOps] = {
    {"CopyToHost", OpCategory::kHostCopy},
    {"CopyFromHost", OpCategory::kHostCopy},
    {"Copy", OpCategory::kOther},
    {"Fill", OpCategory::kOther},
    {"EmbeddingForward", OpCategory::kOther},
    {"EmbeddingBackward", OpCategory::kOther},
    {"LayerNormForward", OpCategory::kOther},
    {"LayerNormBackward", OpCategory::kOther},
    {"ResidualLayerNormForward", OpCategory::kOther},
    {"MatmulForward", OpCategory::kGemm},
    {"MatmulGeluForward", OpCategory::kGemm},
    {"MatmulBackward", OpCategory::kGemm},
    {"AttentionForward", OpCategory::kAttention},
    {"AttentionBackward", OpCategory::kAttention},
    {"GeluForward", OpCategory::kOther},
    {"GeluBackward", OpCategory::kOther},
    {"Add", OpCategory::kOther},
    {"Accumulate", OpCategory::kOther},
    {"CrossEntropyForward", OpCategory::kOther},
    {"CrossEntropyBackward", OpCategory::kOther},
    {"AdamW", OpCategory::kOther},
    {"SumSquares", OpCategory::kOther},
    {"Cast", OpCategory::kOther},
};

}  // namespace

// Marks the start at construction and the end at destruction, while recording.
class ProfilingBackend::Scope {
 public:
  Scope(ProfilingBackend* b, Op op) : b_(b->recording_ ? b : nullptr) {
    if (b_ == nullptr) return;
    b_->ran_.push_back(op);
    b_->timer_->Mark();
  }
  ~Scope() {
    if (b_ != nullptr) b_->timer_->Mark();
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  ProfilingBackend* b_;
};

ProfilingBackend::ProfilingBackend(Backend* inner, std::unique_ptr<OpTimer> timer)
    : inner_(inner), timer_(timer != nullptr ? std::move(timer) : MakeOpTimer(*inner)) {
  CHECK(inner_ != nullptr) << "ProfilingBackend: no inner backend";
}

void ProfilingBackend::Start() {
  if (recording_) timer_->Resolve();  // drop the marks of the recording being restarted
  ran_.clear();
  recording_ = true;
}

OpProfile ProfilingBackend::Stop(int64_t steps) {
  CHECK(steps >= 1) << "ProfilingBackend::Stop: steps must be at least 1, not " << steps;
  OpProfile p;
  p.backend = inner_->Describe();
  p.steps = steps;
  if (!recording_) return p;
  recording_ = false;
  const std::vector<double> marks = timer_->Resolve();
  CHECK(marks.size() == 2 * ran_.size())
      << "ProfilingBackend: " << marks.size() << " marks for " << ran_.size() << " ops";
  if (ran_.empty()) return p;

  std::array<OpStats, kNumOps> by_op;
  for (size_t i = 0; i < ran_.size(); ++i) {
    // An op's time cannot be negative; a clock that says so (it would be a bug in the
    // timer) is clamped rather than allowed to shrink another op's share.
    const double ms = std::max(0.0, marks[2 * i + 1] - marks[2 * i]);
    OpStats& s = by_op[ran_[i]];
    s.calls += 1;
    s.total_ms += ms;
    p.ops_ms += ms;
  }
  p.span_ms = std::max(p.ops_ms, marks.back() - marks.front());
  for (int op = 0; op < kNumOps; ++op) {
    OpStats& s = by_op[op];
    if (s.calls == 0) continue;
    s.op = kOps[op].name;
    s.category = kOps[op].category;
    p.category_ms[static_cast<int>(s.category)] += s.total_ms;
    p.ops.push_back(std::move(s));
  }
  std::stable_sort(p.ops.begin(), p.ops.end(), [](const OpStats& a, const OpStats& b) {
    return a.total_ms > b.total_ms;
  });
  ran_.clear();
  return p;
}

// ---- forwarding ------------------------------------------------------------------------

void ProfilingBackend::CopyToHost(void* host_dst, const void* src, size_t bytes) {
  Scope s(this, kCopyToHost);
  inner_->CopyToHost(host_dst, src, bytes);
}
void ProfilingBackend::CopyFromHost(void* dst, const void* host_src, size_t bytes) {
  Scope s(this, kCopyFromHost);
  inner_->CopyFromHost(dst, host_src, bytes);
}
void ProfilingBackend::Copy(void* dst, const void* src, size_t bytes) {
  Scope s(this, kCopy);
  inner_->Copy(dst, src, bytes);
}
void ProfilingBackend::Fill(View x, float value) {
  Scope s(this, kFill);
  inner_->Fill(x, value);
}
void ProfilingBackend::EmbeddingForward(View out, const int32_t* tokens, View wte, View wpe,
                                        int B, int T, int C) {
  Scope s(this, kEmbeddingForward);
  inner_->EmbeddingForward(out, tokens, wte, wpe, B, T, C);
}
void ProfilingBackend::EmbeddingBackward(View dwte, View dwpe, View dout, const int32_t* tokens,
                                         int B, int T, int C) {
  Scope s(this, kEmbeddingBackward);
  inner_->EmbeddingBackward(dwte, dwpe, dout, tokens, B, T, C);
}
void ProfilingBackend::LayerNormForward(View out, float* mean, float* rstd, View inp,
                                        View weight, View bias, int64_t N, int C) {
  Scope s(this, kLayerNormForward);
  inner_->LayerNormForward(out, mean, rstd, inp, weight, bias, N, C);
}
void ProfilingBackend::LayerNormBackward(View dinp, View dweight, View dbias, View dout,
                                         View inp, View weight, const float* mean,
                                         const float* rstd, int64_t N, int C) {
  Scope s(this, kLayerNormBackward);
  inner_->LayerNormBackward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}
void ProfilingBackend::ResidualLayerNormForward(View residual, View out, float* mean,
                                                float* rstd, View a, View b, View weight,
                                                View bias, int64_t N, int C) {
  Scope s(this, kResidualLayerNormForward);
  inner_->ResidualLayerNormForward(residual, out, mean, rstd, a, b, weight, bias, N, C);
}
void ProfilingBackend::MatmulForward(View out, View inp, View weight, View bias, int64_t N,
                                     int C, int OC) {
  Scope s(this, kMatmulForward);
  inner_->MatmulForward(out, inp, weight, bias, N, C, OC);
}
void ProfilingBackend::MatmulGeluForward(View out, View pre_gelu, View inp, View weight,
                                         View bias, int64_t N, int C, int OC) {
  Scope s(this, kMatmulGeluForward);
  inner_->MatmulGeluForward(out, pre_gelu, inp, weight, bias, N, C, OC);
}
void ProfilingBackend::MatmulBackward(View dinp, View dweight, View dbias, View dout, View inp,
                                      View weight, int64_t N, int C, int OC) {
  Scope s(this, kMatmulBackward);
  inner_->MatmulBackward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}
void ProfilingBackend::AttentionForward(View out, float* lse, View qkv, int B, int T, int C,
                                        int NH) {
  Scope s(this, kAttentionForward);
  inner_->AttentionForward(out, lse, qkv, B, T, C, NH);
}
void ProfilingBackend::AttentionBackward(View dqkv, View dout, View qkv, View out,
                                         const float* lse, int B, int T, int C, int NH) {
  Scope s(this, kAttentionBackward);
  inner_->AttentionBackward(dqkv, dout, qkv, out, lse, B, T, C, NH);
}
void ProfilingBackend::GeluForward(View out, View inp, int64_t n) {
  Scope s(this, kGeluForward);
  inner_->GeluForward(out, inp, n);
}
void ProfilingBackend::GeluBackward(View dinp, View inp, View dout, int64_t n) {
  Scope s(this, kGeluBackward);
  inner_->GeluBackward(dinp, inp, dout, n);
}
void ProfilingBackend::Add(View out, View a, View b, int64_t n) {
  Scope s(this, kAdd);
  inner_->Add(out, a, b, n);
}
void ProfilingBackend::Accumulate(View dst, View src, int64_t n) {
  Scope s(this, kAccumulate);
  inner_->Accumulate(dst, src, n);
}
void ProfilingBackend::CrossEntropyForward(float* losses, float* lse, View logits,
                                           const int32_t* targets, int64_t N, int V, int Vp) {
  Scope s(this, kCrossEntropyForward);
  inner_->CrossEntropyForward(losses, lse, logits, targets, N, V, Vp);
}
void ProfilingBackend::CrossEntropyBackward(View dlogits, View logits, const float* lse,
                                            const int32_t* targets, float dloss, int64_t N,
                                            int V, int Vp) {
  Scope s(this, kCrossEntropyBackward);
  inner_->CrossEntropyBackward(dlogits, logits, lse, targets, dloss, N, V, Vp);
}
void ProfilingBackend::AdamW(View param, View grad, float* m, float* v, View param_copy,
                             int64_t n, const AdamWParams& p) {
  Scope s(this, kAdamW);
  inner_->AdamW(param, grad, m, v, param_copy, n, p);
}
void ProfilingBackend::SumSquares(float* out, View x, int64_t n) {
  Scope s(this, kSumSquares);
  inner_->SumSquares(out, x, n);
}
void ProfilingBackend::Cast(View out, View in, int64_t n) {
  Scope s(this, kCast);
  inner_->Cast(out, in, n);
}

}  // namespace colossus::kernels
