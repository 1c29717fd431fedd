// TpAdamW and the tp x dp group split (tensor_parallel.h).
#include "absl/strings/str_format.h"
#include "colossus/check.h"
#include "colossus/parallel/tensor_parallel.h"

namespace colossus::parallel {

using kernels::DType;

TpAdamW::~TpAdamW() = default;

absl::StatusOr<std::unique_ptr<TpAdamW>> TpAdamW::Create(const OptimizerConfig& config,
                                                         TensorParallelGPT* model,
                                                         comm::Communicator* dp) {
  CHECK(model != nullptr);
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  std::unique_ptr<TpAdamW> opt(new TpAdamW(config, model, dp));
  const int64_t n = model->flat_params().numel;
  opt->state_ = std::make_unique<MemoryPlan>(model->backend(), "tp optimizer state");
  opt->state_->Add("adam.m", {n}, DType::kF32);
  opt->state_->Add("adam.v", {n}, DType::kF32);
  opt->state_->Add("norm_cells", {2}, DType::kF32);
  if (absl::Status s = opt->state_->Allocate(); !s.ok()) return s;
  return opt;
}

size_t TpAdamW::state_bytes() const { return (*state_)[0].bytes() + (*state_)[1].bytes(); }

absl::StatusOr<StepStats> TpAdamW::Step(int64_t step) {
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

  kernels::AdamWParams p;
  p.lr = stats.lr;
  p.beta1 = config_.beta1;
  p.beta2 = config_.beta2;
  p.eps = config_.eps;
  p.grad_scale = stats.clip_scale;
  p.step = step + 1;
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
