#include "colossus/parallel/zero_optimizer.h"

#include "absl/strings/str_format.h"
#include "colossus/check.h"

namespace colossus::parallel {
namespace {

absl::Status Named(const absl::Status& s, const char* phase, int64_t step) {
  return absl::Status(s.code(), absl::StrFormat("ZeRO-1 step %d, %s: %s", step, phase, s.message()));
}

}  // namespace

ZeroAdamW::ZeroAdamW(const OptimizerConfig& config, GPT* model, comm::Communicator* comm)
    : config_(config), model_(model), comm_(comm) {}
ZeroAdamW::~ZeroAdamW() = default;

absl::StatusOr<std::unique_ptr<ZeroAdamW>> ZeroAdamW::Create(const OptimizerConfig& config,
                                                             GPT* model,
                                                             comm::Communicator* comm) {
  CHECK(model != nullptr && comm != nullptr);
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  const int64_t n = model->flat_params().numel;
  const int dp = comm->size();
  if (n % dp != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ZeRO-1: the flat parameter buffer (%d elements) does not split into %d equal shards; "
        "create the model with flat_multiple = %d",
        n, dp, dp));
  }
  std::unique_ptr<ZeroAdamW> opt(new ZeroAdamW(config, model, comm));
  opt->shard_size_ = n / dp;
  opt->shard_begin_ = opt->shard_size_ * comm->rank();
  opt->state_ = std::make_unique<MemoryPlan>(model->backend(), "optimizer state (ZeRO-1 shard)");
  opt->state_->Add("adam.m.shard", {opt->shard_size_}, DType::kF32);
  opt->state_->Add("adam.v.shard", {opt->shard_size_}, DType::kF32);
  opt->state_->Add("grad_norm_scratch", {1}, DType::kF32);
  if (absl::Status s = opt->state_->Allocate(); !s.ok()) return s;
  auto mask = DecayMask::Create(*model);
  if (!mask.ok()) return mask.status();
  opt->decay_mask_ = *std::move(mask);
  return opt;
}

kernels::View ZeroAdamW::first_moment() const { return (*state_)[0].view(); }
kernels::View ZeroAdamW::second_moment() const { return (*state_)[1].view(); }
size_t ZeroAdamW::state_bytes() const { return (*state_)[0].bytes() + (*state_)[1].bytes(); }

absl::StatusOr<StepStats> ZeroAdamW::Step(int64_t step) {
  kernels::Backend* be = model_->backend();
  const size_t S = static_cast<size_t>(shard_size_);
  float* grads = model_->flat_grads().as<float>();
  float* params = model_->flat_params().as<float>();
  // The communicator reads backend memory from its own stream (NCCL): what backward
  // queued must be done.
  be->Synchronize();

  if (absl::Status s = comm_->ReduceScatter(grads, grads + shard_begin_, S, comm::DataType::kF32,
                                            comm::ReduceOp::kSum)
                           .Wait();
      !s.ok()) {
    return Named(s, "reduce-scatter of the gradients", step);
  }

  float* scratch = (*state_)[2].as<float>();
  be->Fill((*state_)[2].view(), 0.0f);
  be->SumSquares(scratch, kernels::View(grads + shard_begin_, shard_size_), shard_size_);
  be->Synchronize();
  if (absl::Status s =
          comm_->AllReduce(scratch, scratch, 1, comm::DataType::kF32, comm::ReduceOp::kSum).Wait();
      !s.ok()) {
    return Named(s, "all-reduce of the squared gradient norm", step);
  }
  float sumsq = 0.0f;
  be->CopyToHost(&sumsq, scratch, sizeof(float));
  const StepStats stats = StepStatsFor(config_, sumsq, step);

  AdamWUpdateRange(model_, *decay_mask_, config_, stats, step, shard_begin_,
                   shard_begin_ + shard_size_,
                   first_moment().as<float>(), second_moment().as<float>());
  be->Synchronize();
  if (absl::Status s =
          comm_->AllGather(params + shard_begin_, params, S, comm::DataType::kF32).Wait();
      !s.ok()) {
    return Named(s, "all-gather of the updated parameters", step);
  }
  // The other ranks' shards arrived in f32 only: refresh the compute copies (a no-op
  // where the ops read the f32 weights themselves).
  model_->SyncComputeWeights();
  return stats;
}

}  // namespace colossus::parallel
