// Trainer: the single-process pretraining loop.
//
// Builds the backend, model, optimizer, data loaders and tokenizer from a TrainConfig,
// then runs optimizer steps: gradient accumulation over micro-batches, global-norm
// clipping, AdamW on the warmup + cosine schedule. Reports every step to the console
// (progress bar on a TTY) and to <output_dir>/metrics.jsonl; evaluates validation loss
// and samples text periodically; writes <output_dir>/model.safetensors at the end.
//
// MFU (mfu.h): on a GPU whose dense bf16 peak is known (runtime.peak_tflops, or looked
// up by name), Run prints the formula and the peak once at the start and reports MFU in
// every progress line and metrics.jsonl line ("mfu"); elsewhere MFU is omitted.
//
// Sample g of the run (g = step * batch_size * grad_accum + micro * batch_size + row)
// is DataLoader sample g, a pure function of (seed, g): a run restarted at step s
// continues the exact stream.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "colossus/data.h"
#include "colossus/metrics.h"
#include "colossus/model.h"
#include "colossus/optimizer.h"
#include "colossus/tokenizer.h"
#include "colossus/train_config.h"

namespace colossus {

struct TrainSummary {
  int64_t steps = 0;
  float first_loss = 0.0f;       // training loss of the first step
  float final_loss = 0.0f;       // training loss of the last step
  float val_loss = -1.0f;        // final validation loss (-1: no validation data)
  float unigram_val_loss = -1.0f;  // a unigram model of the training text on the same positions
  double seconds = 0.0;
  double tokens_per_s = 0.0;     // over the whole run
  std::string weights_path;
  std::string sample;            // the final text sample
};

class Trainer {
 public:
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const TrainConfig& config);
  ~Trainer();

  // Runs config.steps optimizer steps starting at step `first_step` (0 for a fresh run).
  absl::StatusOr<TrainSummary> Run(int64_t first_step = 0);

  // Mean loss over the first eval_batches batches of the validation set, in order.
  absl::StatusOr<float> Evaluate();
  // Cross-entropy of a unigram (add-one smoothed byte/token frequency) model of the
  // training shards on exactly the positions Evaluate scores.
  float UnigramValLoss() const;
  // Decodes `tokens` new tokens after config.sample_prompt.
  absl::StatusOr<std::string> SampleText(uint64_t seed);

  GPT& model() { return *model_; }
  AdamW& optimizer() { return *optimizer_; }
  const TrainConfig& config() const { return config_; }
  const std::string& backend_description() const { return backend_why_; }

 private:
  Trainer(const TrainConfig& config) : config_(config) {}
  absl::Status Init();

  TrainConfig config_;
  std::unique_ptr<kernels::Backend> backend_;
  std::string backend_why_;
  std::unique_ptr<GPT> model_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<DataLoader> train_;
  std::unique_ptr<DataLoader> val_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<JsonLinesWriter> log_;
  std::unique_ptr<ProgressPrinter> progress_;
  std::vector<int32_t> inputs_, targets_;
  double flops_per_token_ = 0.0;  // ModelFlopsPerToken(model, seq_len)
  double peak_flops_ = 0.0;       // 0: unknown, no MFU
};

}  // namespace colossus
