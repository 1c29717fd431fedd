// DataParallel: the part of a training step that differs when the process is one of
// several data-parallel ranks. The trainer runs its micro-batches as usual (scaling
// each backward by 1 / (micro-batches x ranks), sample_split.h) and hands over:
//
//   model.ZeroGrad();
//   for each micro-batch m:
//     forward
//     model.Backward(scale, m == last ? dp.BeginLastBackward() : nullptr);
//   StepStats stats = dp.ReduceAndStep(step);   // gradients summed over ranks, update
//   float loss = dp.SumOverRanks(local_loss);   // the global mean loss
//
// Plain DP (zero = 0): the gradients are all-reduced in buckets (GradReducer), during
// the last backward when overlap is on, and every rank applies the same AdamW to the
// same summed gradients, so the ranks' weights stay bit-identical. Inner micro-batches
// communicate nothing. ZeRO-1 (zero = 1): after the last backward, ZeroAdamW
// reduce-scatters, updates its shard and all-gathers; the model must have been created
// with flat_multiple = FlatMultiple(...).
//
// Thread safety: the training thread only. Owns the optimizer of the DP run; borrows
// the model and the group's communicator, which must outlive it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "colossus/memory_plan.h"
#include "colossus/model.h"
#include "colossus/optimizer.h"
#include "colossus/parallel/grad_reducer.h"
#include "colossus/parallel/process_group.h"
#include "colossus/parallel/zero_optimizer.h"

namespace colossus::parallel {

struct DataParallelOptions {
  bool zero = false;                         // ZeRO-1
  size_t bucket_bytes = kDefaultBucketBytes;  // plain DP's all-reduce buckets
  bool overlap = true;                        // all-reduce during the last backward
};

class DataParallel {
 public:
  // The flat_multiple a model needs for these options on `ranks` ranks (GPT::Create).
  static int64_t FlatMultiple(const DataParallelOptions& options, int ranks) {
    return options.zero ? ranks : 1;
  }

  static absl::StatusOr<std::unique_ptr<DataParallel>> Create(comm::Communicator* comm, GPT* model,
                                                              const OptimizerConfig& config,
                                                              const DataParallelOptions& options);
  ~DataParallel();

  int rank() const { return comm_->rank(); }
  int size() const { return comm_->size(); }

  // Call right before the last micro-batch's Backward and pass the result to it: the
  // bucket hook (plain DP with overlap) or nullptr (no overlap, or ZeRO).
  GradsReadyFn BeginLastBackward();
  // After the last Backward: completes the gradient reduction and applies the update.
  // Errors come from the communicator and name the bucket or phase.
  absl::StatusOr<StepStats> ReduceAndStep(int64_t step);
  // The sum of `value` over the ranks (every rank gets it).
  absl::StatusOr<float> SumOverRanks(float value);
  // Collective: OK when every rank passed the same `value` (a fingerprint of what must
  // agree: the training config, the dataset), else FailedPrecondition naming `what` and
  // the ranks that differ from rank 0. Replicas that silently disagree (another seed,
  // other data) would never converge to one model.
  absl::Status CheckSameOnAllRanks(uint64_t value, const std::string& what);

  // Bytes of optimizer state this rank holds (the moments; sharded with ZeRO-1).
  size_t optimizer_state_bytes() const;
  const OptimizerConfig& optimizer_config() const;
  // Plain DP only (nullptr with ZeRO).
  const GradReducer* reducer() const { return reducer_.get(); }
  // ZeRO-1 only (nullptr otherwise).
  const ZeroAdamW* zero() const { return zero_.get(); }
  // Plain DP only (nullptr with ZeRO): the replicated AdamW.
  const AdamW* adamw() const { return adamw_.get(); }

 private:
  DataParallel(comm::Communicator* comm, GPT* model, const DataParallelOptions& options)
      : comm_(comm), model_(model), options_(options) {}

  comm::Communicator* comm_;
  GPT* model_;
  DataParallelOptions options_;
  std::unique_ptr<GradReducer> reducer_;
  std::unique_ptr<AdamW> adamw_;
  std::unique_ptr<ZeroAdamW> zero_;
  // Backend memory for SumOverRanks (one f32) and CheckSameOnAllRanks (one i64 per rank).
  std::unique_ptr<MemoryPlan> scratch_;
  bool armed_ = false;                   // BeginLastBackward armed the reducer
};

}  // namespace colossus::parallel
