// Trainer: the pretraining loop, in one process or as one data-parallel rank of many.
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
//
// Data parallelism. When the process environment names a job of several ranks
// (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT: parallel/dist_env.h), Create joins the
// group (parallel/process_group.h; Gloo on the CPU, NCCL on CUDA with GPU LOCAL_RANK)
// and every rank trains the same model on its slice of each global batch: step s uses
// global samples [s*G, (s+1)*G), G = batch_size x k x ranks, rank r the contiguous
// slice of k micro-batches starting at s*G + r*k*batch_size (parallel/sample_split.h;
// k = grad_accum, or global_batch / (batch_size x ranks) when training.global_batch is
// set). Gradients are averaged over the G samples (bucketed all-reduce overlapped with
// the last backward, or ZeRO-1 with parallel.zero = 1: parallel/data_parallel.h), so
// losses and weights match a one-process run with the same global batch up to
// floating-point summation order. Logged loss and gradient norm are global; validation
// is split over the ranks. Only rank 0 writes metrics.jsonl, the console progress, text
// samples and model.safetensors; every rank computes. WORLD_SIZE unset: one process, no
// communicator, exactly the single-process loop.
//
// Tensor parallelism (parallel.tensor_parallel = tp > 1): the ranks form a tp x dp layout
// (parallel/tensor_parallel.h: SplitTpDp, Megatron order); each TP group trains one
// TensorParallelGPT on the samples of its DP index (the split above with dp = ranks / tp,
// rank = dp index), TpAdamW all-reduces the gradients over the DP group, or with
// parallel.zero = 1 reduce-scatters them and keeps 1/dp of the shard's moments per rank
// (ZeRO-1 within each TP index's DP group). model() is then a full GPT that the TP
// shards are gathered into (collectively, on every rank) before validation, text samples
// and the final save; validation runs on it whole on every rank. The bucketed/overlapped
// DP reducer is not used with tp > 1.
//
// Checkpoints (config.checkpoint_dir set; checkpoint/*.h). At the start of Run every
// rank loads the newest committed step that every rank can read (corrupt steps are
// skipped together, and named on the console); the run then trains steps [that step,
// config.steps), so running the same command again continues where it stopped and a
// run restarted after a failure sees exactly the samples and weights an uninterrupted
// one would (bit for bit on the CPU). A checkpoint whose model or optimizer config
// differs from this run's stops Run with FailedPrecondition naming the field (set
// optimizer.total_steps when the step count changes between runs). After step s the
// state is saved asynchronously when (s + 1) is a multiple of checkpoint_every, and
// after the last step; the loop waits only for the copy into host memory (logged as
// "checkpoint_stall_s" in metrics.jsonl). A failed background save is reported and
// training goes on; the previous committed step stays the latest. Checkpoint failures
// (a failed save, a step this rank could not load) are printed by the rank that saw
// them, on its own stderr, naming the rank, step and file; successes by rank 0 only.
// When the resume falls back past the authority's latest step (TrainerHooks), rank 0
// reports the fallback through TrainerHooks::checkpoint_fallback with the reason some
// rank gave (exchanged through the group's store). Committing goes
// through a StoreShardCommitter on the group's store, or whatever
// TrainerHooks::make_committer returns (the coordinator under colossus-launch).
// Every layout saves the canonical state of the whole model, each rank its own part
// (parallel/tp_checkpoint.h under tensor parallelism: no gather), and records the
// layout (dp x tp) in COMMIT.json; so a run resumes at another tp x dp, ZeRO or not,
// from any checkpoint of the same model and optimizer, and colossus-export reads any.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "colossus/checkpoint/committer.h"
#include "colossus/checkpoint/reader.h"
#include "colossus/checkpoint/writer.h"
#include "colossus/data.h"
#include "colossus/graph_step.h"
#include "colossus/kernels/recording_backend.h"
#include "colossus/metrics.h"
#include "colossus/model.h"
#include "colossus/optimizer.h"
#include "colossus/parallel/data_parallel.h"
#include "colossus/parallel/dist_env.h"
#include "colossus/parallel/process_group.h"
#include "colossus/parallel/tensor_parallel.h"
#include "colossus/parallel/tp_checkpoint.h"
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
  double tokens_per_s = 0.0;     // over the whole run, all ranks together
  int ranks = 1;                 // data-parallel ranks
  int64_t global_batch = 0;      // samples per optimizer step over all ranks
  std::string weights_path;      // written by rank 0 only
  std::string sample;            // the final text sample (rank 0 only; "" elsewhere)
  int64_t first_step = 0;        // the step Run started at (the resumed step, or 0)
  int64_t resumed_from = -1;     // the checkpoint step resumed from; -1: fresh start
  int checkpoints_saved = 0;     // saves started by this run
  double max_checkpoint_stall_s = 0.0;  // the longest the loop waited for one save
};

// What a resume fell back past (TrainerHooks::checkpoint_fallback).
struct CheckpointFallback {
  int64_t resumed_step = 0;  // the step every rank loaded; 0: none, the run starts over
  std::string resumed_dir;   // its directory ("" for none)
  int num_shards = 0;        // its shards (dp x tp it was saved at; 0 for none)
  struct Invalid {
    int64_t step = 0;
    std::string step_dir;
    // Names the rank that could not load it and the bad file ("rank 1: <path>: ...").
    std::string reason;
  };
  // The committed steps after resumed_step that were not used, newest first: those on
  // disk that some rank could not load, and the authority's latest when the disk has no
  // commit of it.
  std::vector<Invalid> invalid;
};

// Ways for the program around the trainer (a launcher's worker) to plug in what the
// runtime must not depend on. Every member is optional.
struct TrainerHooks {
  // The committer for this rank's checkpoint writer; null: a StoreShardCommitter over
  // the process group's store (or an in-process store for one process).
  std::function<std::shared_ptr<checkpoint::ShardCommitter>(
      int rank, int world, const checkpoint::RetentionPolicy& retention)>
      make_committer;
  // The authority's latest committed step and its directory (step 0: none), e.g. the
  // coordinator's GetLatestCheckpoint. When it names a step whose directory lacks
  // COMMIT.json, rank 0 completes the commit from the report files before resuming.
  std::function<absl::StatusOr<std::pair<int64_t, std::string>>()> latest_checkpoint;
  // Called on rank 0 only, after every rank agreed to resume from a step older than the
  // one latest_checkpoint named (and before any rank saves): tells the authority that
  // the newer steps are invalid and why (e.g. the coordinator's InvalidateCheckpoints).
  // An error is printed and training goes on.
  std::function<absl::Status(const CheckpointFallback&)> checkpoint_fallback;
  // Called on every rank after every step (e.g. a status file for the node agent).
  std::function<void(const StepRecord&)> on_step;
};

class Trainer {
 public:
  // Joins the data-parallel group the process environment describes (see above);
  // errors naming the variable for a bad environment, before anything is built.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const TrainConfig& config);
  // With a group the caller made (tests, embedders); nullptr: one process, whatever the
  // environment says. The group's backend must suit the device (Gloo for the CPU).
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(
      const TrainConfig& config, std::unique_ptr<parallel::ProcessGroup> group);
  // With a backend the caller made as well (tests, embedders wrapping or configuring
  // one), used instead of the one config.device names; nullptr: that one. It must be able
  // to capture op graphs itself for runtime.graphs = 1 unless it is a CPU backend.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(
      const TrainConfig& config, std::unique_ptr<parallel::ProcessGroup> group,
      std::unique_ptr<kernels::Backend> backend);
  ~Trainer();

  // Before Run.
  void set_hooks(TrainerHooks hooks) { hooks_ = std::move(hooks); }

  // Runs config.steps optimizer steps starting at step `first_step` (0 for a fresh run).
  // With checkpoints a resumed run instead starts at the checkpoint's step and ends at
  // config.steps (see above).
  absl::StatusOr<TrainSummary> Run(int64_t first_step = 0);

  // Mean loss over the first eval_batches batches of the validation set, in order.
  // Collective under data parallelism: the batches are split over the ranks.
  absl::StatusOr<float> Evaluate();
  // Cross-entropy of a unigram (add-one smoothed byte/token frequency) model of the
  // training shards on exactly the positions Evaluate scores.
  float UnigramValLoss() const;
  // Decodes `tokens` new tokens after config.sample_prompt.
  absl::StatusOr<std::string> SampleText(uint64_t seed);

  GPT& model() { return *model_; }
  const TrainConfig& config() const { return config_; }
  int rank() const { return group_ ? group_->rank() : 0; }
  int ranks() const { return group_ ? group_->size() : 1; }
  int micro_batches_per_rank() const { return accum_; }
  // Bytes of optimizer state this process holds (1/ranks of it with ZeRO-1).
  size_t optimizer_state_bytes() const;
  // The data-parallel machinery, nullptr in a single process.
  const parallel::DataParallel* data_parallel() const { return dp_.get(); }
  // The tensor-parallel shard, nullptr unless parallel.tensor_parallel > 1.
  const parallel::TensorParallelGPT* tensor_parallel() const { return tp_model_.get(); }
  const std::string& backend_description() const { return backend_why_; }

 private:
  Trainer(const TrainConfig& config) : config_(config) {}
  absl::Status Init();
  // A console line, on rank 0 only (progress and successes: one line per job).
  void Say(const std::string& line);
  // A failure this rank saw, printed on every rank's own stderr as
  // "colossus: rank R: <line>" (a failure seen only by rank 7 must be in rank 7's log).
  void Warn(const std::string& line);
  // Rank 0: tells hooks_.checkpoint_fallback that the run resumed from `resumed`
  // (nullptr: none loaded) although the authority's latest step was `authority_step`.
  void ReportFallback(const checkpoint::LoadedCheckpoint* resumed, int64_t authority_step,
                      const std::string& authority_dir,
                      const std::vector<checkpoint::SkippedStep>& skipped,
                      const std::map<int64_t, std::string>& reasons);
  // Data-parallel size and this rank's DP index (the TP layout's, or ranks() and rank()).
  int dp_size() const { return ranks() / config_.tensor_parallel; }
  int dp_index() const { return rank() / config_.tensor_parallel; }
  // Tensor parallelism: gathers the TP shards into model_ if a step changed them since
  // the last gather. Collective over the TP group; a no-op without TP.
  absl::Status SyncFullModel();
  // Checkpoints: resumes (setting *first_step when a step loads) and creates writer_.
  absl::Status SetUpCheckpoints(int64_t* first_step, TrainSummary* summary);
  // Starts the asynchronous save of the state after step `done` - 1.
  absl::Status SaveCheckpoint(int64_t done, TrainSummary* summary);
  // Collective over the data-parallel group (no-op in one process).
  absl::Status Barrier();
  // What this rank holds (without / with tensor parallelism), and the canonical pieces
  // it saves and loads (tensor parallelism: after SetUpCheckpoints made tp_checkpoint_).
  checkpoint::HeldState Held() const;
  parallel::TpHeldState TpHeld() const;
  std::vector<checkpoint::SourcePiece> PiecesToSave() const;
  std::vector<checkpoint::DestPiece> PiecesToLoad() const;

  TrainConfig config_;
  // Set by Create before Init: the environment to join, or an injected group (and
  // backend_, when the caller gave one).
  std::optional<parallel::DistEnv> dist_env_;
  int accum_ = 1;  // micro-batches per rank per step
  std::unique_ptr<kernels::Backend> backend_;
  // runtime.graphs = 1 on the CPU: the model's ops go through the recorder (the CUDA
  // backend captures itself). Declared after backend_ and before the model: it outlives
  // the model, which frees its memory through it.
  std::unique_ptr<kernels::RecordingBackend> recorder_;
  std::string backend_why_;
  std::unique_ptr<GPT> model_;
  std::unique_ptr<AdamW> optimizer_;  // single process only
  std::unique_ptr<GraphStep> graph_step_;  // runtime.graphs = 1: the steps as op graphs
  // Declared after the backend and the model, which they use: destroyed before them
  // (dp_ first: its communication thread and scratch need the group and the backend).
  std::unique_ptr<parallel::ProcessGroup> group_;
  std::unique_ptr<parallel::DataParallel> dp_;  // non-null iff group_ and no TP
  // Tensor parallelism (tensor_parallel > 1): the groups, then what uses them.
  parallel::TpDpGroups tp_groups_;
  std::unique_ptr<parallel::TensorParallelGPT> tp_model_;
  std::unique_ptr<parallel::TpAdamW> tp_optimizer_;
  std::unique_ptr<parallel::TpCheckpointLayout> tp_checkpoint_;  // with checkpoints only
  bool full_model_stale_ = false;  // tp_model_ stepped since model_ was gathered
  std::unique_ptr<DataLoader> train_;
  std::unique_ptr<DataLoader> val_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<JsonLinesWriter> log_;        // rank 0 only
  std::unique_ptr<ProgressPrinter> progress_;  // rank 0 only
  std::vector<int32_t> inputs_, targets_;
  double flops_per_token_ = 0.0;  // ModelFlopsPerToken(model, seq_len)
  double peak_flops_ = 0.0;       // 0: unknown, no MFU
  TrainerHooks hooks_;
  int64_t last_save_step_ = -1;  // the step of the save in flight (or last started)
  // Declared last: destroyed first, before the group whose store its committer uses.
  std::unique_ptr<checkpoint::CheckpointWriter> writer_;
};

}  // namespace colossus
