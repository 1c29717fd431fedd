// ProfilingBackend: forwarding with marks around each op (profiling_backend.h).
#include "colossus/kernels/profiling_backend.h"

#include <algorithm>
#include <utility>

#include "colossus/check.h"

namespace colossus::kernels {
namespace {

// Each op's category, by ForwardingBackend::Op.
OpCategory CategoryOf(ForwardingBackend::Op op) {
  switch (op) {
    case ForwardingBackend::kMatmulForward:
    case ForwardingBackend::kMatmulGeluForward:
    case ForwardingBackend::kMatmulBackward:
      return OpCategory::kGemm;
    case ForwardingBackend::kAttentionForward:
    case ForwardingBackend::kAttentionBackward:
      return OpCategory::kAttention;
    case ForwardingBackend::kCopyToHost:
    case ForwardingBackend::kCopyFromHost:
      return OpCategory::kHostCopy;
    default:
      return OpCategory::kOther;
  }
}

}  // namespace

ProfilingBackend::ProfilingBackend(Backend* inner, std::unique_ptr<OpTimer> timer)
    : ForwardingBackend(inner),
      timer_(timer != nullptr ? std::move(timer) : MakeOpTimer(*inner)) {}

void ProfilingBackend::Dispatch(Op op, std::function<void()> call) {
  if (!recording_) {
    call();
    return;
  }
  ran_.push_back(op);
  timer_->Mark();
  call();
  timer_->Mark();
}

absl::Status ProfilingBackend::BeginCapture() {
  if (recording_) {
    return absl::FailedPreconditionError(
        "ProfilingBackend: cannot capture an op graph while recording a profile");
  }
  return ForwardingBackend::BeginCapture();
}

void ProfilingBackend::Start() {
  if (recording_) timer_->Resolve();  // drop the marks of the recording being restarted
  ran_.clear();
  recording_ = true;
}

OpProfile ProfilingBackend::Stop(int64_t steps) {
  CHECK(steps >= 1) << "ProfilingBackend::Stop: steps must be at least 1, not " << steps;
  OpProfile p;
  p.backend = inner()->Describe();
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
    s.op = OpName(static_cast<Op>(op));
    s.category = CategoryOf(static_cast<Op>(op));
    p.category_ms[static_cast<int>(s.category)] += s.total_ms;
    p.ops.push_back(std::move(s));
  }
  std::stable_sort(p.ops.begin(), p.ops.end(), [](const OpStats& a, const OpStats& b) {
    return a.total_ms > b.total_ms;
  });
  ran_.clear();
  return p;
}

}  // namespace colossus::kernels
