// ZeroAdamW: AdamW with its state sharded across the data-parallel group (ZeRO stage 1).
//
// The flat parameter/gradient buffer of n elements (the model is created with
// flat_multiple = dp, so n is a multiple of dp; GPT::Create) splits into dp equal
// shards of S = n / dp elements; rank r owns [r*S, (r+1)*S). Rank r keeps the two
// AdamW moments of its shard only: 8*S bytes instead of plain AdamW's 8*n. One step:
//   1. reduce-scatter (sum, in place) of the flat gradient: rank r's shard of the
//      gradient buffer receives the sum over ranks (the caller scaled the loss so that
//      the sum is the average, as with GradReducer); the rest of the buffer is left
//      partially reduced and must not be read until the next ZeroGrad,
//   2. the global gradient norm: each rank's sum of squares over its shard, all-reduced,
//   3. clipping and AdamW on the shard only (AdamWUpdateRange: the same arithmetic as
//      the unsharded AdamW, element for element),
//   4. all-gather (in place) of the updated parameter shards, so every rank again holds
//      the whole model; compute copies (bf16 on CUDA) are refreshed from it.
// Master weights: the model's f32 parameters are what the ops read on the CPU, so there
// is no separate master copy to shard there; on CUDA the f32 master stays replicated
// (only the moments are sharded) until the GPU work moves it here.
//
// Thread safety: none; the training thread drives it. Uses the communicator between
// the backward pass and the next forward.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "colossus/comm/communicator.h"
#include "colossus/memory_plan.h"
#include "colossus/model.h"
#include "colossus/optimizer.h"

namespace colossus::parallel {

class ZeroAdamW {
 public:
  // InvalidArgument (naming both numbers) when model->flat_params().numel is not a
  // multiple of comm->size(). `model` and `comm` must outlive the optimizer.
  static absl::StatusOr<std::unique_ptr<ZeroAdamW>> Create(const OptimizerConfig& config,
                                                           GPT* model, comm::Communicator* comm);
  ~ZeroAdamW();
  ZeroAdamW(const ZeroAdamW&) = delete;
  ZeroAdamW& operator=(const ZeroAdamW&) = delete;

  // One collective update at 0-based `step` (see above). Errors are the communicator's,
  // naming the phase; the model is then in an undefined state.
  absl::StatusOr<StepStats> Step(int64_t step);

  const OptimizerConfig& config() const { return config_; }
  int64_t shard_begin() const { return shard_begin_; }  // first flat element owned here
  int64_t shard_size() const { return shard_size_; }    // S
  // The moments of this rank's shard (S f32 each).
  kernels::View first_moment() const;
  kernels::View second_moment() const;
  // Bytes of optimizer state held by this rank: the two moment shards, 8*S.
  size_t state_bytes() const;

 private:
  ZeroAdamW(const OptimizerConfig& config, GPT* model, comm::Communicator* comm);

  OptimizerConfig config_;
  GPT* model_;
  comm::Communicator* comm_;
  int64_t shard_begin_ = 0;
  int64_t shard_size_ = 0;
  std::unique_ptr<MemoryPlan> state_;  // [0] m shard, [1] v shard, [2] norm scratch
  std::unique_ptr<DecayMask> decay_mask_;  // of the whole model; the update reads its shard's
};

}  // namespace colossus::parallel
