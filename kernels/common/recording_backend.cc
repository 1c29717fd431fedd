// RecordingBackend: ops kept as closures while capturing (recording_backend.h).
#include "colossus/kernels/recording_backend.h"

#include <utility>

#include "colossus/check.h"

namespace colossus::kernels {
namespace {

class RecordedGraph final : public OpGraph {
 public:
  explicit RecordedGraph(std::vector<std::function<void()>> ops) : ops_(std::move(ops)) {}
  void Replay() override {
    for (const auto& op : ops_) op();
  }
  int64_t size() const override { return static_cast<int64_t>(ops_.size()); }

 private:
  std::vector<std::function<void()>> ops_;
};

}  // namespace

absl::Status RecordingBackend::BeginCapture() {
  if (capturing_) return absl::FailedPreconditionError("BeginCapture: a capture is in progress");
  capturing_ = true;
  recorded_.clear();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<OpGraph>> RecordingBackend::EndCapture() {
  if (!capturing_) return absl::FailedPreconditionError("EndCapture: no capture in progress");
  capturing_ = false;
  return std::unique_ptr<OpGraph>(new RecordedGraph(std::exchange(recorded_, {})));
}

absl::StatusOr<void*> RecordingBackend::Allocate(size_t bytes) {
  CHECK(!capturing_) << "RecordingBackend: Allocate(" << bytes << ") while capturing an op graph";
  return ForwardingBackend::Allocate(bytes);
}

void RecordingBackend::Free(void* ptr) {
  CHECK(!capturing_) << "RecordingBackend: Free while capturing an op graph";
  ForwardingBackend::Free(ptr);
}

void RecordingBackend::Synchronize() {
  CHECK(!capturing_) << "RecordingBackend: Synchronize while capturing an op graph";
  ForwardingBackend::Synchronize();
}

void RecordingBackend::Dispatch(Op op, std::function<void()> call) {
  if (!capturing_) {
    call();
    return;
  }
  CHECK(op != kCopyToHost && op != kCopyFromHost)
      << "RecordingBackend: " << OpName(op) << " while capturing an op graph (host copies "
      << "block, and a graph replays only device work)";
  recorded_.push_back(std::move(call));
}

}  // namespace colossus::kernels
