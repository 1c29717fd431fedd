// A training step as op graphs (graph_step.h).
#include "colossus/graph_step.h"

#include <utility>

namespace colossus {
namespace {

// Records what `enqueue` enqueues into a graph of `backend`.
template <typename F>
absl::StatusOr<std::unique_ptr<kernels::OpGraph>> Capture(kernels::Backend* backend,
                                                          F&& enqueue) {
  if (absl::Status s = backend->BeginCapture(); !s.ok()) return s;
  enqueue();
  return backend->EndCapture();
}

}  // namespace

absl::StatusOr<float> GraphStep::MicroBatch(const int32_t* tokens, const int32_t* targets, int B,
                                            int T, float loss_scale) {
  if (targets == nullptr) {
    return absl::InvalidArgumentError("GraphStep::MicroBatch: a training step needs targets");
  }
  if (absl::Status s = model_->Stage(tokens, targets, B, T); !s.ok()) return s;
  const Key key{B, T, model_->counted_targets(), loss_scale};
  auto enqueue = [&] {
    model_->EnqueueForward();
    model_->Backward(loss_scale);
  };
  if (fwd_bwd_key_ != key) {
    if (warm_key_ != key) {
      // First time at this key: eagerly, so that every op has met its shapes.
      enqueue();
      warm_key_ = key;
      return model_->ReadLoss();
    }
    fwd_bwd_.reset();
    fwd_bwd_key_.reset();
    auto graph = Capture(model_->backend(), enqueue);
    if (!graph.ok()) return graph.status();
    fwd_bwd_ = *std::move(graph);
    fwd_bwd_key_ = key;
    ++captures_;
  }
  fwd_bwd_->Replay();
  return model_->ReadLoss();
}

absl::StatusOr<StepStats> GraphStep::Update(int64_t step) {
  optimizer_->StageStep(step);
  if (update_ == nullptr) {
    if (!update_warm_) {
      optimizer_->EnqueueUpdate();
      update_warm_ = true;
      return optimizer_->ReadStats(step);
    }
    auto graph = Capture(model_->backend(), [&] { optimizer_->EnqueueUpdate(); });
    if (!graph.ok()) return graph.status();
    update_ = *std::move(graph);
    ++captures_;
  }
  update_->Replay();
  return optimizer_->ReadStats(step);
}

}  // namespace colossus
