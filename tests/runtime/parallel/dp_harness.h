// Shared pieces of the data-parallel tests: a small corpus on disk, a tiny training
// config, running the real Trainer as N ranks in forked processes (tests/comm's
// multiproc harness), and reading back what each rank produced.
//
// The parent process (gtest) never computes: it only forks and reads files, so no
// OpenMP pool exists in it when it forks (libgomp's pool does not survive fork).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "colossus/train_config.h"
#include "multiproc.h"

namespace colossus::testing {

// A fresh directory under the test temp dir, with train/val shards of a patterned text.
std::string MakeCorpus(const std::string& name);

// The tiny model, batch 2 x 32 tokens, global batch 8 (1 rank: 4 micro-batches; 2: 2;
// 4: 1), 20 steps with warmup, clipping and decay active, one CPU thread, validation
// every 10 steps over 4 batches, short samples.
TrainConfig TinyDpConfig(const std::string& corpus_dir);

// What one run left behind, per rank.
struct RankOutput {
  std::string weights_path;     // every rank's final parameters (safetensors)
  size_t state_bytes = 0;       // optimizer state held by the rank
  int buckets = 0;              // gradient buckets (plain DP)
  int launched_by_hook = 0;     // last step: buckets handed off inside backward
  int launched_by_finish = 0;
  std::vector<int> launched_after_calls;
  float val_loss = -1;
  int64_t flat_numel = 0;       // the model's flat buffer (padding included)
  bool wrote_metrics = false;   // its output dir has metrics.jsonl
  bool wrote_weights = false;   // ... model.safetensors
};

struct RunOutput {
  bool ok = false;
  std::vector<RankOutput> ranks;
  std::vector<double> losses;      // per step, from rank 0's metrics.jsonl
  std::vector<double> grad_norms;
  std::vector<double> val_losses;
};

// Trains `config` as `ranks` processes. ranks == 0 means ONE process with no group at
// all (the plain single-process trainer); otherwise a group of that size is made over
// the harness's store through ProcessGroupOptions::store_factory. Every rank's
// output_dir is <run_dir>/out.rank<r>, so the test can see who wrote what.
RunOutput RunTraining(const TrainConfig& config, int ranks, const std::string& run_dir,
                      absl::Duration deadline = absl::Seconds(90));

// Largest relative L2 difference over the tensors of two weight files:
// max over tensors of |a - b|_2 / |b|_2 (a tensor of zeros compares absolutely).
// Adds a failure when the files do not hold the same tensors.
//
// The attention KEY biases (the middle third of every h.*.attn.qkv.bias) are left out:
// adding a constant to every key leaves each query's softmax unchanged, so their
// gradient is exactly zero in exact arithmetic and only floating-point noise in
// practice, which AdamW normalises into steps of arbitrary sign. Their values are
// noise in any run (their size is checked by KeyBiasNorm instead).
double MaxRelativeDifference(const std::string& a_path, const std::string& b_path,
                             std::string* worst_tensor = nullptr);
// The largest L2 norm of a key bias in the file (see above).
double KeyBiasNorm(const std::string& path);

// True when both files hold bit-identical tensors.
bool BitIdentical(const std::string& a_path, const std::string& b_path);

// max_i |a_i - b_i| / |b_i|.
double MaxRelativeDifference(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace colossus::testing
