#include "colossus/optimizer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "colossus/check.h"

namespace colossus {

absl::Status OptimizerConfig::Validate() const {
  auto bad = [](const char* field, double v, const char* rule) {
    return absl::InvalidArgumentError(absl::StrFormat("optimizer.%s = %g: %s", field, v, rule));
  };
  if (!(lr > 0)) return bad("lr", lr, "must be > 0");
  if (!(min_lr >= 0) || min_lr > lr) return bad("min_lr", min_lr, "must be in [0, lr]");
  if (warmup_steps < 0) return bad("warmup_steps", warmup_steps, "must be >= 0");
  if (total_steps < 0) return bad("total_steps", total_steps, "must be >= 0 (0 = constant)");
  if (!(beta1 >= 0 && beta1 < 1)) return bad("beta1", beta1, "must be in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) return bad("beta2", beta2, "must be in [0, 1)");
  if (!(eps > 0)) return bad("eps", eps, "must be > 0");
  if (!(weight_decay >= 0)) return bad("weight_decay", weight_decay, "must be >= 0");
  if (!(grad_clip >= 0)) return bad("grad_clip", grad_clip, "must be >= 0 (0 = off)");
  return absl::OkStatus();
}

float LearningRateAt(const OptimizerConfig& c, int64_t step) {
  if (step < c.warmup_steps) {
    return c.lr * static_cast<float>(step + 1) / static_cast<float>(c.warmup_steps);
  }
  if (c.total_steps <= 0) return c.lr;
  if (step >= c.total_steps) return c.min_lr;
  const int64_t decay_steps = c.total_steps - c.warmup_steps;
  if (decay_steps <= 0) return c.min_lr;
  const double ratio = static_cast<double>(step - c.warmup_steps) / decay_steps;
  const double coeff = 0.5 * (1.0 + std::cos(M_PI * ratio));
  return static_cast<float>(c.min_lr + coeff * (c.lr - c.min_lr));
}

bool DecaysWeight(const Tensor& param) { return param.shape.size() >= 2; }

AdamW::AdamW(const OptimizerConfig& config, GPT* model) : config_(config), model_(model) {}
AdamW::~AdamW() = default;

absl::StatusOr<std::unique_ptr<AdamW>> AdamW::Create(const OptimizerConfig& config,
                                                     GPT* model) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  std::unique_ptr<AdamW> opt(new AdamW(config, model));
  const int64_t n = model->flat_params().numel;
  opt->state_ = std::make_unique<MemoryPlan>(model->backend(), "optimizer state");
  opt->state_->Add("adam.m", {n}, DType::kF32);
  opt->state_->Add("adam.v", {n}, DType::kF32);
  opt->state_->Add("grad_norm_scratch", {1}, DType::kF32);
  if (absl::Status s = opt->state_->Allocate(); !s.ok()) return s;
  return opt;
}

kernels::View AdamW::first_moment() const { return (*state_)[0].view(); }
kernels::View AdamW::second_moment() const { return (*state_)[1].view(); }
size_t AdamW::state_bytes() const { return (*state_)[0].bytes() + (*state_)[1].bytes(); }

StepStats StepStatsFor(const OptimizerConfig& config, float grad_sumsq, int64_t step) {
  StepStats stats;
  stats.grad_norm = std::sqrt(grad_sumsq);
  // torch.nn.utils.clip_grad_norm_'s rule, so runs compare step for step.
  if (config.grad_clip > 0) {
    stats.clip_scale = std::min(1.0f, config.grad_clip / (stats.grad_norm + 1e-6f));
  }
  stats.lr = LearningRateAt(config, step);
  return stats;
}

kernels::AdamWParams AdamWParamsFor(const OptimizerConfig& config, const StepStats& stats,
                                    int64_t step) {
  kernels::AdamWParams p;
  p.lr = stats.lr;
  p.beta1 = config.beta1;
  p.beta2 = config.beta2;
  p.eps = config.eps;
  p.grad_scale = stats.clip_scale;
  p.step = step + 1;
  return p;
}

void AdamWUpdateRange(GPT* model, const OptimizerConfig& config, const StepStats& stats,
                      int64_t step, int64_t begin, int64_t end, float* m, float* v) {
  CHECK(begin >= 0 && begin <= end && end <= model->flat_params().numel)
      << "AdamWUpdateRange [" << begin << ", " << end << ") of " << model->flat_params().numel;
  kernels::Backend* be = model->backend();
  kernels::AdamWParams p = AdamWParamsFor(config, stats, step);
  // Each tensor sits at the same offset in the parameter, gradient and moment buffers;
  // the update is elementwise, so any sub-range of a tensor updates exactly as the
  // whole tensor would.
  const char* param_base = static_cast<const char*>(model->flat_params().data);
  const auto& params = model->params();
  const auto& copies = model->compute_params();
  const auto& grads = model->grads();
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t offset = (static_cast<const char*>(params[i].data) - param_base) / 4;
    const int64_t lo = std::max(offset, begin);
    const int64_t hi = std::min(offset + params[i].numel(), end);
    if (lo >= hi) continue;
    const int64_t skip = lo - offset, n = hi - lo;
    p.weight_decay = DecaysWeight(params[i]) ? config.weight_decay : 0.0f;
    // The update also refreshes the compute copy when the ops read one (bf16 on CUDA).
    kernels::View copy;
    if (copies[i].data != params[i].data) {
      copy = kernels::View(static_cast<char*>(copies[i].data) +
                               skip * static_cast<int64_t>(kernels::DTypeSize(copies[i].dtype)),
                           copies[i].dtype, n);
    }
    be->AdamW(kernels::View(params[i].as<float>() + skip, n),
              kernels::View(grads[i].as<float>() + skip, n), m + (lo - begin),
              v + (lo - begin), copy, n, p);
  }
}

StepStats AdamW::Step(int64_t step) {
  kernels::Backend* be = model_->backend();
  float* scratch = (*state_)[2].as<float>();
  be->Fill((*state_)[2].view(), 0.0f);
  // The flat gradient buffer's alignment gaps are zero (MemoryPlan), so one pass over
  // it is the global norm.
  be->SumSquares(scratch, model_->flat_grads(), model_->flat_grads().numel);
  float sumsq = 0.0f;
  be->CopyToHost(&sumsq, scratch, sizeof(float));
  const StepStats stats = StepStatsFor(config_, sumsq, step);
  AdamWUpdateRange(model_, config_, stats, step, 0, model_->flat_params().numel,
                   first_moment().as<float>(), second_moment().as<float>());
  return stats;
}

}  // namespace colossus
