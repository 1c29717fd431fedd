// TpAdamW and the tp x dp group split (tensor_parallel.h).
#include <algorithm>

#include "absl/strings/str_format.h"
#include "colossus/check.h"
#include "colossus/parallel/tensor_parallel.h"

namespace colossus::parallel {

using kernels::DType;

TpAdamW::~TpAdamW() = default;

absl::StatusOr<std::unique_ptr<TpAdamW>> TpAdamW::Create(const OptimizerConfig& config,
                                                         TensorParallelGPT* model,
                                                         comm::Communicator* dp, bool zero) {
  CHECK(model != nullptr);
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  // ZeRO over a DP group of one is plain AdamW.
  zero = zero && dp != nullptr && dp->size() > 1;
  std::unique_ptr<TpAdamW> opt(new TpAdamW(config, model, dp, zero));
  const int64_t n = model->flat_params().numel;
  opt->moments_end_ = n;
  if (zero) {
    if (n % dp->size() != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "ZeRO-1 over the tensor-parallel shard: its flat buffer (%d elements) does not "
          "split into %d equal ranges; create the model with flat_multiple = %d",
          n, dp->size(), dp->size()));
    }
    const int64_t S = n / dp->size();
    opt->moments_begin_ = S * dp->rank();
    opt->moments_end_ = opt->moments_begin_ + S;
  }
  const int64_t held = opt->moments_end_ - opt->moments_begin_;
  opt->state_ = std::make_unique<MemoryPlan>(
      model->backend(), zero ? "tp optimizer state (ZeRO-1 range)" : "tp optimizer state");
  opt->state_->Add("adam.m", {held}, DType::kF32);
  opt->state_->Add("adam.v", {held}, DType::kF32);
  opt->state_->Add("norm_cells", {2}, DType::kF32);
  if (absl::Status s = opt->state_->Allocate(); !s.ok()) return s;
  return opt;
}

size_t TpAdamW::state_bytes() const { return (*state_)[0].bytes() + (*state_)[1].bytes(); }
kernels::View TpAdamW::first_moment() const { return (*state_)[0].view(); }
kernels::View TpAdamW::second_moment() const { return (*state_)[1].view(); }

absl::StatusOr<StepStats> TpAdamW::Step(int64_t step) {
  if (zero_) return ZeroStep(step);
  kernels::Backend* be = model_->backend();
  const kernels::View grads = model_->flat_grads();
  if (dp_ != nullptr && dp_->size() > 1) {
    absl::Status s = dp_->AllReduce(grads.data, grads.data, static_cast<size_t>(grads.numel),
                                    comm::DataType::kF32, comm::ReduceOp::kSum)
                         .Wait();
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrFormat("data-parallel rank %d of %d, gradient "
                                                    "all-reduce (%d floats): %s",
                                                    dp_->rank(), dp_->size(), grads.numel,
                                                    s.message()));
    }
  }
  // cells[0]: sum of squares of this rank's sharded gradients (all-reduced over TP so
  // each shard counts once); cells[1]: the replicated ones, the same on every TP rank,
  // so counted once by not reducing them.
  float* cells = (*state_)[2].as<float>();
  be->Fill((*state_)[2].view(), 0.0f);
  const auto& g = model_->grads();
  for (size_t i = 0; i < g.size(); ++i) {
    be->SumSquares(cells + (model_->sharded(i) ? 0 : 1), g[i].view(), g[i].numel());
  }
  comm::Communicator* tp = model_->tp_group();
  if (absl::Status s =
          tp->AllReduce(cells, cells, 1, comm::DataType::kF32, comm::ReduceOp::kSum).Wait();
      !s.ok()) {
    return absl::Status(s.code(), absl::StrFormat("tensor-parallel rank %d of %d, gradient-norm "
                                                  "all-reduce: %s",
                                                  tp->rank(), tp->size(), s.message()));
  }
  float host[2];
  be->CopyToHost(host, cells, sizeof(host));
  const StepStats stats = StepStatsFor(config_, host[0] + host[1], step);

  kernels::AdamWParams p = AdamWParamsFor(config_, stats, step);
  const auto& params = model_->params();
  const char* base = static_cast<const char*>(model_->flat_params().data);
  float* m = (*state_)[0].as<float>();
  float* v = (*state_)[1].as<float>();
  for (size_t i = 0; i < params.size(); ++i) {
    // Moments sit at the parameter's offset in the flat layout.
    const int64_t offset = (static_cast<const char*>(params[i].data) - base) / 4;
    p.weight_decay = DecaysWeight(params[i]) ? config_.weight_decay : 0.0f;
    be->AdamW(params[i].view(), g[i].view(), m + offset, v + offset, kernels::View(),
              params[i].numel(), p);
  }
  return stats;
}

absl::StatusOr<StepStats> TpAdamW::ZeroStep(int64_t step) {
  kernels::Backend* be = model_->backend();
  const int64_t begin = moments_begin_, end = moments_end_;
  const size_t S = static_cast<size_t>(end - begin);
  float* grads = model_->flat_grads().as<float>();
  float* params = model_->flat_params().as<float>();
  auto named = [&](const absl::Status& s, const char* what) {
    return absl::Status(s.code(), absl::StrFormat("ZeRO-1 step %d, data-parallel rank %d of %d "
                                                  "of tensor-parallel rank %d, %s: %s",
                                                  step, dp_->rank(), dp_->size(),
                                                  model_->tp_rank(), what, s.message()));
  };
  // The communicator reads backend memory from its own stream (NCCL): backward's work
  // must be done.
  be->Synchronize();
  if (absl::Status s = dp_->ReduceScatter(grads, grads + begin, S, comm::DataType::kF32,
                                          comm::ReduceOp::kSum)
                           .Wait();
      !s.ok()) {
    return named(s, "reduce-scatter of the gradients");
  }
  // The own range's parts of each tensor: cells[0] sums the sharded tensors' squares,
  // cells[1] the replicated ones'. Over DP both add up to this TP rank's whole buffer;
  // then only the sharded sum is added over TP (the replicated one is the same there).
  float* cells = (*state_)[2].as<float>();
  be->Fill((*state_)[2].view(), 0.0f);
  const auto& ps = model_->params();
  for (size_t i = 0; i < ps.size(); ++i) {
    const int64_t off = model_->flat_offset(i);
    const int64_t lo = std::max(begin, off), hi = std::min(end, off + ps[i].numel());
    if (lo < hi) {
      be->SumSquares(cells + (model_->sharded(i) ? 0 : 1), kernels::View(grads + lo, hi - lo),
                     hi - lo);
    }
  }
  be->Synchronize();
  if (absl::Status s =
          dp_->AllReduce(cells, cells, 2, comm::DataType::kF32, comm::ReduceOp::kSum).Wait();
      !s.ok()) {
    return named(s, "data-parallel all-reduce of the squared gradient norm");
  }
  comm::Communicator* tp = model_->tp_group();
  if (absl::Status s =
          tp->AllReduce(cells, cells, 1, comm::DataType::kF32, comm::ReduceOp::kSum).Wait();
      !s.ok()) {
    return named(s, "tensor-parallel all-reduce of the squared gradient norm");
  }
  float host[2];
  be->CopyToHost(host, cells, sizeof(host));
  const StepStats stats = StepStatsFor(config_, host[0] + host[1], step);

  kernels::AdamWParams p = AdamWParamsFor(config_, stats, step);
  float* m = first_moment().as<float>();
  float* v = second_moment().as<float>();
  for (size_t i = 0; i < ps.size(); ++i) {
    const int64_t off = model_->flat_offset(i);
    const int64_t lo = std::max(begin, off), hi = std::min(end, off + ps[i].numel());
    if (lo >= hi) continue;
    // Element-wise: any part of a tensor updates exactly as it would within the whole.
    p.weight_decay = DecaysWeight(ps[i]) ? config_.weight_decay : 0.0f;
    be->AdamW(kernels::View(params + lo, hi - lo), kernels::View(grads + lo, hi - lo),
              m + (lo - begin), v + (lo - begin), kernels::View(), hi - lo, p);
  }
  be->Synchronize();
  if (absl::Status s = dp_->AllGather(params + begin, params, S, comm::DataType::kF32).Wait();
      !s.ok()) {
    return named(s, "all-gather of the updated parameters");
  }
  return stats;
}

absl::StatusOr<TpDpGroups> SplitTpDp(comm::Communicator& world, int tp) {
  if (tp < 1 || world.size() % tp != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "parallel.tensor_parallel = %d does not divide the world size %d (the layout is "
        "tp x dp)", tp, world.size()));
  }
  TpDpGroups g;
  g.tp_index = world.rank() % tp;
  g.dp_index = world.rank() / tp;
  absl::StatusOr<std::unique_ptr<comm::Communicator>> t =
      world.Split(/*color=*/g.dp_index, /*key=*/g.tp_index, "tp");
  if (!t.ok()) return t.status();
  absl::StatusOr<std::unique_ptr<comm::Communicator>> d =
      world.Split(/*color=*/g.tp_index, /*key=*/g.dp_index, "dp");
  if (!d.ok()) return d.status();
  g.tp = *std::move(t);
  g.dp = *std::move(d);
  CHECK(g.tp->rank() == g.tp_index && g.dp->rank() == g.dp_index);
  return g;
}

}  // namespace colossus::parallel
