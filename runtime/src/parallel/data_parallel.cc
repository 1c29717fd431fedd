#include "colossus/parallel/data_parallel.h"

#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "colossus/check.h"

namespace colossus::parallel {

DataParallel::~DataParallel() = default;

absl::StatusOr<std::unique_ptr<DataParallel>> DataParallel::Create(
    comm::Communicator* comm, GPT* model, const OptimizerConfig& config,
    const DataParallelOptions& options) {
  CHECK(comm != nullptr && model != nullptr);
  std::unique_ptr<DataParallel> dp(new DataParallel(comm, model, options));
  if (options.zero) {
    auto zero = ZeroAdamW::Create(config, model, comm);
    if (!zero.ok()) return zero.status();
    dp->zero_ = *std::move(zero);
  } else {
    auto reducer = GradReducer::Create(model, comm, options.bucket_bytes);
    if (!reducer.ok()) return reducer.status();
    dp->reducer_ = *std::move(reducer);
    auto adamw = AdamW::Create(config, model);
    if (!adamw.ok()) return adamw.status();
    dp->adamw_ = *std::move(adamw);
  }
  dp->scratch_ = std::make_unique<MemoryPlan>(model->backend(), "data-parallel scratch");
  dp->scratch_->Add("sum_over_ranks", {1}, DType::kF32);
  // i64 has no kernels::DType: room for one 8-byte value per rank, declared as f32 pairs.
  dp->scratch_->Add("fingerprints", {2 * static_cast<int64_t>(comm->size())}, DType::kF32);
  if (absl::Status s = dp->scratch_->Allocate(); !s.ok()) return s;
  return dp;
}

GradsReadyFn DataParallel::BeginLastBackward() {
  if (!reducer_) return nullptr;
  reducer_->BeginStep();
  armed_ = true;
  return options_.overlap ? reducer_->Hook() : nullptr;
}

absl::StatusOr<StepStats> DataParallel::ReduceAndStep(int64_t step) {
  if (zero_) return zero_->Step(step);
  // BeginLastBackward is normally called by the trainer; arm here if it was not, so
  // the reduction still happens (without overlap).
  if (!armed_) reducer_->BeginStep();
  armed_ = false;
  if (absl::Status s = reducer_->Finish(); !s.ok()) {
    return absl::Status(s.code(), absl::StrFormat("step %d, gradient all-reduce: %s", step,
                                                  s.message()));
  }
  // Every rank now holds the same summed gradients: the replicated update keeps the
  // weights identical, and the norm it computes is the global one.
  return adamw_->Step(step);
}

absl::StatusOr<float> DataParallel::SumOverRanks(float value) {
  kernels::Backend* be = model_->backend();
  float* cell = (*scratch_)[0].as<float>();
  be->CopyFromHost(cell, &value, sizeof(float));
  be->Synchronize();
  if (absl::Status s =
          comm_->AllReduce(cell, cell, 1, comm::DataType::kF32, comm::ReduceOp::kSum).Wait();
      !s.ok()) {
    return s;
  }
  float sum = 0.0f;
  be->CopyToHost(&sum, cell, sizeof(float));
  return sum;
}

absl::Status DataParallel::CheckSameOnAllRanks(uint64_t value, const std::string& what) {
  kernels::Backend* be = model_->backend();
  const size_t n = static_cast<size_t>(size());
  auto* all = static_cast<int64_t*>((*scratch_)[1].data);
  int64_t mine = static_cast<int64_t>(value);
  be->CopyFromHost(all + rank(), &mine, sizeof(mine));
  be->Synchronize();
  if (absl::Status s = comm_->AllGather(all + rank(), all, 1, comm::DataType::kI64).Wait();
      !s.ok()) {
    return s;
  }
  std::vector<int64_t> host(n);
  be->CopyToHost(host.data(), all, n * sizeof(int64_t));
  std::string differ;
  for (size_t r = 1; r < n; ++r) {
    if (host[r] != host[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
  }
  if (differ.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "rank %d: the %s differs across the data-parallel ranks: rank(s) %s disagree with rank 0 "
      "(every rank must train with the same settings and data)",
      rank(), what, differ));
}

size_t DataParallel::optimizer_state_bytes() const {
  return zero_ ? zero_->state_bytes() : adamw_->state_bytes();
}

const OptimizerConfig& DataParallel::optimizer_config() const {
  return zero_ ? zero_->config() : adamw_->config();
}

}  // namespace colossus::parallel
