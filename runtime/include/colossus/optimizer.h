// AdamW with decoupled weight decay, a warmup + cosine learning-rate schedule and
// global-norm gradient clipping, over a GPT's flat parameter buffer.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "colossus/memory_plan.h"
#include "colossus/model.h"

namespace colossus {

struct OptimizerConfig {
  float lr = 6e-4f;          // peak learning rate
  float min_lr = 6e-5f;      // floor at the end of the cosine
  int64_t warmup_steps = 0;  // linear warmup from lr/warmup_steps to lr
  int64_t total_steps = 0;   // cosine decays from the end of warmup to total_steps; 0 = constant
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;  // on matrices and embeddings only, never biases or LayerNorm gains
  float grad_clip = 1.0f;     // max global L2 norm; 0 disables clipping

  absl::Status Validate() const;  // names the field: "optimizer.lr must be > 0, got -1"
};

// Learning rate at `step` (0-based): linear warmup over warmup_steps to lr (step s of
// warmup uses lr * (s+1) / warmup_steps), then cosine from lr down to min_lr at
// total_steps, then min_lr.
float LearningRateAt(const OptimizerConfig& config, int64_t step);

struct StepStats {
  float lr = 0.0f;
  float grad_norm = 0.0f;  // global L2 norm before clipping
  float clip_scale = 1.0f; // factor the gradients were scaled by (1 = not clipped)
};

// Which of a model's flat parameter elements get weight decay (DecaysWeight), one byte
// per kernels::kAdamWDecayGranule elements, in backend memory: the decay_mask that lets
// AdamWUpdateRange update every parameter in one AdamW call. Built once; a model's
// layout never changes.
class DecayMask {
 public:
  static absl::StatusOr<std::unique_ptr<DecayMask>> Create(const GPT& model);
  const uint8_t* data() const;

 private:
  DecayMask() = default;
  std::unique_ptr<MemoryPlan> plan_;
};

class AdamW {
 public:
  // Allocates the two f32 moments for every parameter of `model` (zeroed).
  static absl::StatusOr<std::unique_ptr<AdamW>> Create(const OptimizerConfig& config, GPT* model);
  ~AdamW();

  // One update from the model's current gradients at 0-based `step`: computes the
  // global gradient norm, clips, applies AdamW with LearningRateAt(step). Does not
  // zero the gradients. Returns the figures the trainer logs.
  StepStats Step(int64_t step);

  // Step in three parts, for an update launched as an op graph (graph_step.h), where only
  // the middle one is captured:
  //   StageStep: writes `step`'s learning rate and bias corrections to backend memory
  //     (AdamWParams::step_scalars; a host copy: never inside a capture);
  //   EnqueueUpdate: the update's ops (the squared norm, then AdamW with the clip scale
  //     computed on the device from it), enqueued and not waited for; capturable;
  //   ReadStats: waits, and returns the step's figures as Step does.
  // The weights and moments they leave are bit for bit those Step(step) leaves.
  void StageStep(int64_t step);
  void EnqueueUpdate();
  StepStats ReadStats(int64_t step);

  const OptimizerConfig& config() const { return config_; }
  // The moments as flat f32 views over the same layout as model->flat_params().
  kernels::View first_moment() const;
  kernels::View second_moment() const;
  size_t state_bytes() const;

 private:
  AdamW(const OptimizerConfig& config, GPT* model);
  OptimizerConfig config_;
  GPT* model_;
  // [0] first moment, [1] second moment, [2] norm scratch, [3] step scalars (StageStep)
  std::unique_ptr<MemoryPlan> state_;
  std::unique_ptr<DecayMask> decay_mask_;
};

// True for parameters that get weight decay (2-D: linear weights and embeddings).
bool DecaysWeight(const Tensor& param);

// The building blocks of AdamW::Step, shared with the sharded optimizer (ZeRO-1,
// parallel/zero_optimizer.h) so that both do exactly the same arithmetic.
//
// The figures of one step from the squared global gradient norm: lr at `step`, the
// norm, and torch.nn.utils.clip_grad_norm_'s scale.
StepStats StepStatsFor(const OptimizerConfig& config, float grad_sumsq, int64_t step);
// The kernel's AdamW parameters for `step` (0-based) from the config and the step's
// figures: lr, betas, eps, the clip scale as grad_scale, bias correction for step + 1.
kernels::AdamWParams AdamWParamsFor(const OptimizerConfig& config, const StepStats& stats,
                                    int64_t step);
// Applies one AdamW update (stats.lr, stats.clip_scale, bias correction for `step`) to
// the elements [begin, end) of model->flat_params(), reading the same range of
// model->flat_grads(), with weight decay where `mask` (the model's DecayMask) says, and
// refreshes the compute copies of those elements: one AdamW call for the whole range.
// m and v hold the moments of exactly that range (m[0] belongs to element `begin`).
// Gaps between tensors and the end padding are zero in every buffer and stay zero (a
// zero weight with zero gradient and moments is not moved).
// REQUIRES: 0 <= begin <= end <= flat numel.
void AdamWUpdateRange(GPT* model, const DecayMask& mask, const OptimizerConfig& config,
                      const StepStats& stats, int64_t step, int64_t begin, int64_t end,
                      float* m, float* v);

}  // namespace colossus
