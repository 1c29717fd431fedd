// TrainConfig: everything one training run needs, from a YAML file and/or flags.
//
// YAML schema (every key optional except data.train; unknown keys are refused so a
// typo never silently falls back to a default):
//   model:     {preset: demo, n_layer, n_head, n_embd, block_size, vocab_size, padded_vocab_size}
//   data:      {train: "dir/train_*.bin", val: "dir/val_*.bin", tokenizer: byte | path.model}
//   training:  {batch_size, seq_len, grad_accum, global_batch, steps, seed}
//   optimizer: {lr, min_lr, warmup_steps, total_steps, beta1, beta2, eps, weight_decay, grad_clip}
//   eval:      {every, batches}
//   sample:    {every, tokens, prompt, temperature}
//   runtime:   {device: auto | cpu | cuda, threads, peak_tflops, graphs: 0 | 1}
//   parallel:  {zero: 0 | 1, bucket_mb, overlap: 0 | 1, tensor_parallel}
//   output:    {dir, log_every}
//   checkpoint: {dir, interval_steps, keep}   (off unless dir is set; trainer.h)
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "colossus/config.h"
#include "colossus/optimizer.h"

namespace colossus {

struct TrainConfig {
  GPTConfig model;                 // GPTConfig's defaults (GPT-2 124M) unless set
  std::string train_data;          // glob of training shards (required)
  std::string val_data;            // glob of validation shards ("" = no validation)
  std::string tokenizer = "byte";  // "byte" or a SentencePiece .model path
  int batch_size = 16;             // sequences per micro-batch
  int seq_len = 128;               // tokens per sequence (<= model.block_size)
  int grad_accum = 1;              // micro-batches per optimizer step, per rank
  // Samples per optimizer step over all data-parallel ranks (parallel/sample_split.h).
  // 0: batch_size x grad_accum x ranks. When set, it is kept whatever the number of
  // ranks (a restart on fewer ranks trains on the same samples): the micro-batches per
  // rank become global_batch / (batch_size x ranks), and grad_accum must be 1 or agree.
  int64_t global_batch = 0;
  int64_t steps = 100;             // optimizer steps
  uint64_t seed = 1337;            // weights and sample order
  OptimizerConfig optimizer;       // total_steps 0 = follow `steps`
  int64_t eval_every = 0;          // validation every k steps (and at the end); 0 = end only
  int eval_batches = 20;
  int64_t sample_every = 0;        // text samples every k steps; 0 = at the end only
  int sample_tokens = 200;
  std::string sample_prompt = "\n";
  float sample_temperature = 0.8f;
  std::string device = "auto";
  int threads = 0;                 // CPU threads, 0 = OpenMP default
  // The device's dense bf16 peak for MFU (mfu.h), in TFLOP/s; 0 = look it up by GPU name
  // (H100, H200 989; A100 312), and no MFU on a CPU or an unknown GPU. A value > 0 is
  // used whatever the device.
  float peak_tflops = 0.0f;
  // 1: each step is launched as op graphs (graph_step.h: CUDA graphs on a GPU, recorded
  // ops on the CPU), forward+backward per micro-batch and the update. One process only.
  int graphs = 0;
  // Data parallelism (used when the process is one rank of several, dist_env.h).
  int zero = 0;                    // 1: ZeRO-1, optimizer state sharded over the ranks
  float bucket_mb = 25.0f;         // gradient all-reduce bucket size, MiB (plain DP)
  int overlap = 1;                 // 1: all-reduce buckets during backward; 0: after it
  // Tensor-parallel group size (parallel/tensor_parallel.h): the job's ranks form a
  // tp x dp layout, dp = ranks / tensor_parallel. 1: data parallelism only.
  int tensor_parallel = 1;
  std::string output_dir = "runs/default";
  int64_t log_every = 10;          // a log line every k steps when not on a TTY
  // Sharded checkpoints (checkpoint/*.h). "" = none: no save, no resume. Otherwise the
  // run resumes from the newest committed step under it when there is one, and saves
  // every checkpoint_every steps (0: never periodically) and after the last step,
  // keeping the newest checkpoint_keep committed steps.
  std::string checkpoint_dir;
  int64_t checkpoint_every = 1000;
  int checkpoint_keep = 3;

  // Cross-field checks; the message names the field ("training.seq_len = 2048 exceeds
  // model.block_size = 1024").
  absl::Status Validate() const;
};

// Micro-batches each of `ranks` data-parallel ranks runs per optimizer step (see
// global_batch). InvalidArgument naming the fields when global_batch does not split
// into whole micro-batches per rank, or disagrees with an explicit grad_accum.
absl::StatusOr<int> MicroBatchesPerRank(const TrainConfig& config, int ranks);

// Parses a YAML config file. Errors name the file, the line and the key.
absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path);
// Applies "section.key=value" overrides (the same keys as the YAML), e.g.
// "training.steps=50". Errors name the key.
absl::Status ApplyOverride(TrainConfig* config, const std::string& assignment);

}  // namespace colossus
