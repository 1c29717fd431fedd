#include "colossus/optimizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

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

namespace {

// One AdamW call over the elements [begin, end) of the model's flat buffers, with p's
// per-step values (host fields or device scalars), weight decay where the mask says.
void ApplyUpdate(GPT* model, const DecayMask& mask, const OptimizerConfig& config,
                 kernels::AdamWParams p, int64_t begin, int64_t end, float* m, float* v) {
  const kernels::View params = model->flat_params();
  CHECK(begin >= 0 && begin <= end && end <= params.numel)
      << "AdamW update [" << begin << ", " << end << ") of " << params.numel;
  p.weight_decay = config.weight_decay;
  p.decay_mask = mask.data();
  p.mask_origin = begin;
  const int64_t n = end - begin;
  // The update also refreshes the compute copies when the ops read them (bf16 on CUDA);
  // they mirror the master weights element for element (GPT::flat_compute_params).
  const kernels::View copies = model->flat_compute_params();
  kernels::View copy;
  if (copies.data != params.data) {
    copy = kernels::View(static_cast<char*>(copies.data) +
                             begin * static_cast<int64_t>(kernels::DTypeSize(copies.dtype)),
                         copies.dtype, n);
  }
  model->backend()->AdamW(kernels::View(params.as<float>() + begin, n),
                          kernels::View(model->flat_grads().as<float>() + begin, n), m, v,
                          copy, n, p);
}

}  // namespace

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
  opt->state_->Add("step_scalars", {3}, DType::kF32);
  if (absl::Status s = opt->state_->Allocate(); !s.ok()) return s;
  auto mask = DecayMask::Create(*model);
  if (!mask.ok()) return mask.status();
  opt->decay_mask_ = *std::move(mask);
  return opt;
}

kernels::View AdamW::first_moment() const { return (*state_)[0].view(); }
kernels::View AdamW::second_moment() const { return (*state_)[1].view(); }
size_t AdamW::state_bytes() const { return (*state_)[0].bytes() + (*state_)[1].bytes(); }

void AdamW::StageStep(int64_t step) {
  const float scalars[3] = {LearningRateAt(config_, step),
                            kernels::AdamWBiasCorrection(config_.beta1, step + 1),
                            kernels::AdamWBiasCorrection(config_.beta2, step + 1)};
  model_->backend()->CopyFromHost((*state_)[3].data, scalars, sizeof(scalars));
}

void AdamW::EnqueueUpdate() {
  kernels::Backend* be = model_->backend();
  const kernels::View grads = model_->flat_grads();
  float* sumsq = (*state_)[2].as<float>();
  be->Fill((*state_)[2].view(), 0.0f);
  be->SumSquares(sumsq, grads, grads.numel);
  // What StepStatsFor and AdamWParamsFor give Step, from device memory instead: the lr and
  // bias corrections StageStep wrote, the clip scale from the norm just computed.
  kernels::AdamWParams p;
  p.beta1 = config_.beta1;
  p.beta2 = config_.beta2;
  p.eps = config_.eps;
  p.step_scalars = (*state_)[3].as<float>();
  if (config_.grad_clip > 0) {
    p.grad_sumsq = sumsq;
    p.clip_norm = config_.grad_clip;
  }
  ApplyUpdate(model_, *decay_mask_, config_, p, 0, model_->flat_params().numel,
              first_moment().as<float>(), second_moment().as<float>());
}

StepStats AdamW::ReadStats(int64_t step) {
  float sumsq = 0.0f;
  model_->backend()->CopyToHost(&sumsq, (*state_)[2].data, sizeof(float));
  return StepStatsFor(config_, sumsq, step);
}

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

void AdamWUpdateRange(GPT* model, const DecayMask& mask, const OptimizerConfig& config,
                      const StepStats& stats, int64_t step, int64_t begin, int64_t end,
                      float* m, float* v) {
  ApplyUpdate(model, mask, config, AdamWParamsFor(config, stats, step), begin, end, m, v);
}

absl::StatusOr<std::unique_ptr<DecayMask>> DecayMask::Create(const GPT& model) {
  const int64_t g = kernels::kAdamWDecayGranule;
  const int64_t granules = (model.flat_params().numel + g - 1) / g;
  std::vector<uint8_t> bytes(static_cast<size_t>(granules), 0);
  const char* base = static_cast<const char*>(model.flat_params().data);
  for (const Tensor& t : model.params()) {
    const int64_t offset = (static_cast<const char*>(t.data) - base) / 4;
    // MemoryPlan aligns every f32 tensor to 64 bytes: no granule holds two tensors.
    CHECK(offset % g == 0) << t.name << " starts at element " << offset
                           << ", inside a weight-decay granule";
    if (!DecaysWeight(t)) continue;
    std::fill(bytes.begin() + offset / g, bytes.begin() + (offset + t.numel() + g - 1) / g, 1);
  }
  std::unique_ptr<DecayMask> mask(new DecayMask());
  mask->plan_ = std::make_unique<MemoryPlan>(model.backend(), "weight-decay mask");
  // Bytes in i32 words: MemoryPlan's dtypes have no byte type.
  mask->plan_->Add("decay_mask", {(granules + 3) / 4}, DType::kI32);
  if (absl::Status s = mask->plan_->Allocate(); !s.ok()) return s;
  model.backend()->CopyFromHost((*mask->plan_)[0].data, bytes.data(), bytes.size());
  return mask;
}

const uint8_t* DecayMask::data() const { return static_cast<const uint8_t*>((*plan_)[0].data); }

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
  AdamWUpdateRange(model_, *decay_mask_, config_, stats, step, 0, model_->flat_params().numel,
                   first_moment().as<float>(), second_moment().as<float>());
  return stats;
}

}  // namespace colossus
