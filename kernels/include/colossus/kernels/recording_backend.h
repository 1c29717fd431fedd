// Op graphs on any backend: between BeginCapture and EndCapture the ops called are kept
// as closures (ForwardingBackend) instead of run, and the OpGraph's Replay runs them
// again, in order, on the inner backend with the arguments they were called with.
//
// What it is for: the CUDA backend captures natively (a CUDA graph); this gives the CPU
// the same contract (backend.h, "Graphs"), so that a step launched as a graph is tested
// on machines without a GPU. A replayed step that trains exactly like an eager one
// shows the step is replay-safe: no per-step value frozen into an op's arguments, no
// host work needed between its ops.
//
// Misuse is a bug and aborts naming the call: a memory call (Allocate, Free, CopyToHost,
// CopyFromHost) or Synchronize while capturing, as the CUDA backend's capture does.
// Thread safety: one thread at a time, as for any Backend.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "colossus/kernels/forwarding_backend.h"

namespace colossus::kernels {

class RecordingBackend final : public ForwardingBackend {
 public:
  // REQUIRES: inner outlives this and every graph it returns.
  explicit RecordingBackend(Backend* inner) : ForwardingBackend(inner) {}

  absl::Status BeginCapture() override;
  absl::StatusOr<std::unique_ptr<OpGraph>> EndCapture() override;
  bool capturing() const { return capturing_; }

  absl::StatusOr<void*> Allocate(size_t bytes) override;
  void Free(void* ptr) override;
  void Synchronize() override;

 protected:
  void Dispatch(Op op, std::function<void()> call) override;

 private:
  bool capturing_ = false;
  std::vector<std::function<void()>> recorded_;
};

}  // namespace colossus::kernels
