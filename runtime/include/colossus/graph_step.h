// A training step launched as two op graphs (kernels/backend.h, "Graphs"): one
// micro-batch's forward and backward, and the optimizer's update. The step's hundreds of
// kernel launches become two graph launches per micro-batch and update, and the step
// waits exactly where the eager step waits: for the loss and for the gradient norm.
//
// Per step (the caller zeroes the gradients first, one op, eagerly):
//   each micro-batch: model.Stage (host copies) -> forward+backward graph -> ReadLoss
//   then:             optimizer.StageStep -> update graph -> ReadStats
// What a graph freezes is its key. The forward+backward graph's is the batch shape and
// the loss gradient per row (loss_scale / counted targets): a micro-batch with another
// key (a batch with ignored targets) runs eagerly, and one whose key repeats is
// captured. The first step at a key always runs eagerly, so that every op has run once
// at its shapes before a capture (the CUDA ops size their scratch and plans on first
// use; nothing may allocate while capturing).
//
// The weights, moments and losses are bit for bit those of the eager step on the same
// backend: the graphs hold the same ops with the same arguments, and the per-step values
// (tokens, targets, lr, bias corrections, clip scale) are read from device memory.
// Tested on the CPU through kernels::RecordingBackend and on a GPU through CUDA graphs.
//
// One process only: data-parallel all-reduce hooks and tensor-parallel collectives run
// on the host between ops and cannot be captured. Thread safety: the model's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <tuple>

#include "absl/status/statusor.h"
#include "colossus/kernels/backend.h"
#include "colossus/model.h"
#include "colossus/optimizer.h"

namespace colossus {

class GraphStep {
 public:
  // REQUIRES: model and optimizer outlive this; the optimizer updates the model; their
  // backend captures (CUDA, or kernels::RecordingBackend), else the first capture fails
  // with Unimplemented.
  GraphStep(GPT* model, AdamW* optimizer) : model_(model), optimizer_(optimizer) {}

  // One micro-batch, forward and backward (gradients accumulate, scaled by loss_scale as
  // in GPT::Backward); returns its mean loss. Errors: a bad batch (GPT::Stage's), or a
  // capture the backend refused or could not complete.
  absl::StatusOr<float> MicroBatch(const int32_t* tokens, const int32_t* targets, int B, int T,
                                   float loss_scale = 1.0f);
  // The optimizer's update at 0-based `step` (AdamW::Step's figures).
  absl::StatusOr<StepStats> Update(int64_t step);

  // Graphs captured so far, and nodes in the last forward+backward graph (reports).
  int captures() const { return captures_; }
  int64_t forward_backward_nodes() const { return fwd_bwd_ ? fwd_bwd_->size() : 0; }

 private:
  using Key = std::tuple<int, int, int64_t, float>;  // B, T, counted targets, loss_scale

  GPT* model_;
  AdamW* optimizer_;
  std::unique_ptr<kernels::OpGraph> fwd_bwd_;
  std::optional<Key> fwd_bwd_key_;  // what fwd_bwd_ was captured for
  std::optional<Key> warm_key_;     // the last key that ran eagerly
  std::unique_ptr<kernels::OpGraph> update_;
  bool update_warm_ = false;
  int captures_ = 0;
};

}  // namespace colossus
