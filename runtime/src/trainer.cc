#include "colossus/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>

#include "absl/strings/str_format.h"
#include "colossus/checkpoint/reader.h"
#include "colossus/comm/in_memory_store.h"
#include "colossus/comm/nccl.h"
#include "colossus/device.h"
#include "colossus/generate.h"
#include "colossus/mfu.h"
#include "colossus/parallel/sample_split.h"
#include "colossus/weights.h"
#include "nlohmann/json.hpp"

namespace colossus {
namespace {
using Clock = std::chrono::steady_clock;

// FNV-1a: stable across processes and builds (absl::Hash is seeded per process).
uint64_t Fingerprint(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : text) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return h;
}

// What every data-parallel rank must agree on: the model, the batch arithmetic, the
// optimizer, the seed and the parallel settings, and the training data as loaded.
std::string AgreedSettings(const TrainConfig& c, int accum, const DataLoader& train) {
  const OptimizerConfig& o = c.optimizer;
  return absl::StrFormat(
      "%s|B%d T%d k%d G%d|steps %d seed %d|lr %a %a %d %d %a %a %a %a %a|zero %d bucket %a "
      "overlap %d|data %d tokens %d windows",
      c.model.DebugString(), c.batch_size, c.seq_len, accum, c.global_batch, c.steps, c.seed,
      o.lr, o.min_lr, o.warmup_steps, o.total_steps, o.beta1, o.beta2, o.eps, o.weight_decay,
      o.grad_clip, c.zero, c.bucket_mb, c.overlap, train.num_tokens(), train.num_windows());
}
double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
}  // namespace

Trainer::~Trainer() = default;

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainConfig& config) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  // The environment first: a bad one is refused before any data or device is touched.
  absl::StatusOr<std::optional<parallel::DistEnv>> env = parallel::ReadDistEnv();
  if (!env.ok()) return env.status();
  std::unique_ptr<Trainer> t(new Trainer(config));
  t->dist_env_ = *env;
  if (absl::Status s = t->Init(); !s.ok()) return s;
  return t;
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(
    const TrainConfig& config, std::unique_ptr<parallel::ProcessGroup> group) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  std::unique_ptr<Trainer> t(new Trainer(config));
  if (group != nullptr) t->dist_env_ = group->env();
  t->group_ = std::move(group);
  if (absl::Status s = t->Init(); !s.ok()) return s;
  return t;
}

void Trainer::Say(const std::string& line) {
  if (progress_) progress_->Line(line);
}

size_t Trainer::optimizer_state_bytes() const {
  if (tp_optimizer_) return tp_optimizer_->state_bytes();
  return dp_ ? dp_->optimizer_state_bytes() : optimizer_->state_bytes();
}

absl::Status Trainer::SyncFullModel() {
  if (tp_model_ == nullptr || !full_model_stale_) return absl::OkStatus();
  if (absl::Status s = tp_model_->GatherTo(model_.get(), /*grads=*/false); !s.ok()) return s;
  full_model_stale_ = false;
  return absl::OkStatus();
}

absl::Status Trainer::Init() {
  const TrainConfig& c = config_;
  auto tok = LoadTokenizer(c.tokenizer);
  if (!tok.ok()) return tok.status();
  tokenizer_ = std::move(*tok);
  if (tokenizer_->vocab_size() > c.model.vocab_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "data.tokenizer '%s' has %d tokens but model.vocab_size is %d", c.tokenizer,
        tokenizer_->vocab_size(), c.model.vocab_size));
  }
  auto train = DataLoader::Open({c.train_data}, c.model.vocab_size, c.seq_len, c.seed, true);
  if (!train.ok()) return train.status();
  train_ = std::move(*train);
  if (!c.val_data.empty()) {
    auto val = DataLoader::Open({c.val_data}, c.model.vocab_size, c.seq_len, c.seed, false);
    if (!val.ok()) return val.status();
    val_ = std::move(*val);
  }

  // A rank of a multi-GPU job computes on its own GPU (dist_env.h: LOCAL_RANK, or the
  // one device CUDA_VISIBLE_DEVICES leaves it).
  std::string device = c.device;
  if (dist_env_.has_value() && (device == "cuda" || device == "auto")) {
    if (device == "cuda" || comm::NcclDeviceCount().ok()) {
      device = absl::StrFormat("cuda:%d", dist_env_->cuda_device);
    }
  }
  auto backend = CreateBackend(device, c.threads);
  if (!backend.ok()) return backend.status();
  backend_ = std::move(backend->backend);
  backend_why_ = backend->why;
  flops_per_token_ = ModelFlopsPerToken(c.model, c.seq_len);
  peak_flops_ = c.peak_tflops > 0 ? 1e12 * c.peak_tflops : PeakBf16Flops(backend_->Describe());

  const comm::Backend comm_backend =
      backend_->kind() == kernels::DeviceKind::kCPU ? comm::Backend::kGloo : comm::Backend::kNccl;
  if (group_ == nullptr && dist_env_.has_value()) {
    parallel::ProcessGroupOptions po;
    po.backend = comm_backend;
    auto group = parallel::ProcessGroup::Create(*dist_env_, po);
    if (!group.ok()) return group.status();
    group_ = *std::move(group);
  }
  if (group_ != nullptr && group_->backend() != comm_backend) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "rank %d: the process group speaks %s but the model computes on %s (which needs %s)",
        group_->rank(), comm::BackendName(group_->backend()), backend_->Describe(),
        comm::BackendName(comm_backend)));
  }
  if (c.tensor_parallel > 1 && !c.checkpoint_dir.empty()) {
    return absl::UnimplementedError(absl::StrFormat(
        "checkpoint.dir = %s with parallel.tensor_parallel = %d: checkpoints of a "
        "tensor-parallel model are not implemented yet (unset checkpoint.dir, or use tp 1)",
        c.checkpoint_dir, c.tensor_parallel));
  }
  if (c.tensor_parallel > 1) {
    if (group_ == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "parallel.tensor_parallel = %d needs a job of several ranks (WORLD_SIZE is unset: "
          "one process)", c.tensor_parallel));
    }
    auto groups = parallel::SplitTpDp(group_->world(), c.tensor_parallel);
    if (!groups.ok()) return groups.status();
    tp_groups_ = *std::move(groups);
  }
  auto accum = MicroBatchesPerRank(c, dp_size());
  if (!accum.ok()) return accum.status();
  accum_ = *accum;

  parallel::DataParallelOptions dpo;
  dpo.zero = c.zero == 1;
  dpo.bucket_bytes = std::max<size_t>(1, static_cast<size_t>(static_cast<double>(c.bucket_mb) * (1 << 20)));
  dpo.overlap = c.overlap == 1;
  auto model = GPT::Create(c.model, backend_.get(), c.batch_size, c.seq_len,
                           parallel::DataParallel::FlatMultiple(dpo, ranks()));
  if (!model.ok()) return model.status();
  model_ = std::move(*model);
  // Every rank draws the same weights from the seed, so the replicas start identical
  // without a broadcast.
  model_->InitWeights(c.seed);
  OptimizerConfig oc = c.optimizer;
  if (oc.total_steps == 0) oc.total_steps = c.steps;
  if (c.tensor_parallel > 1) {
    // model_ keeps the full weights (the same on every rank from the seed); each rank
    // trains its shard of them and gathers them back for validation, samples and saving.
    auto tp = parallel::TensorParallelGPT::Create(c.model, backend_.get(), tp_groups_.tp.get(),
                                                  c.batch_size, c.seq_len);
    if (!tp.ok()) return tp.status();
    tp_model_ = *std::move(tp);
    if (absl::Status s = tp_model_->LoadFrom(*model_); !s.ok()) return s;
    auto opt = parallel::TpAdamW::Create(oc, tp_model_.get(), tp_groups_.dp.get());
    if (!opt.ok()) return opt.status();
    tp_optimizer_ = *std::move(opt);
  } else if (group_ != nullptr) {
    auto dp = parallel::DataParallel::Create(&group_->dp(), model_.get(), oc, dpo);
    if (!dp.ok()) return dp.status();
    dp_ = *std::move(dp);
    if (absl::Status s = dp_->CheckSameOnAllRanks(
            Fingerprint(AgreedSettings(c, accum_, *train_)), "training config or data");
        !s.ok()) {
      return s;
    }
  } else {
    auto opt = AdamW::Create(oc, model_.get());
    if (!opt.ok()) return opt.status();
    optimizer_ = std::move(*opt);
  }

  if (rank() == 0) {
    std::error_code ec;
    std::filesystem::create_directories(c.output_dir, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrFormat("output.dir %s: cannot create: %s",
                                                    c.output_dir, ec.message()));
    }
    auto log = JsonLinesWriter::Open(c.output_dir + "/metrics.jsonl");
    if (!log.ok()) return log.status();
    log_ = std::move(*log);
    progress_ = std::make_unique<ProgressPrinter>(c.log_every);
  }
  inputs_.resize(static_cast<size_t>(c.batch_size) * c.seq_len);
  targets_.resize(inputs_.size());
  return absl::OkStatus();
}

absl::StatusOr<float> Trainer::Evaluate() {
  if (!val_) return absl::FailedPreconditionError("no validation data (data.val is empty)");
  const int B = config_.batch_size, T = config_.seq_len;
  const int64_t batches =
      std::max<int64_t>(1, std::min<int64_t>(config_.eval_batches, (val_->num_windows() + B - 1) / B));
  // Under data parallelism rank r scores batches r, r + ranks, ...; the sum is shared.
  // Under tensor parallelism every rank scores all of them on the gathered full model.
  if (absl::Status s = SyncFullModel(); !s.ok()) return s;
  const int first = tp_model_ ? 0 : rank(), stride = tp_model_ ? 1 : ranks();
  double sum = 0;
  for (int64_t i = first; i < batches; i += stride) {
    val_->Batch(i * B, B, inputs_.data(), targets_.data());
    auto loss = model_->Forward(inputs_.data(), targets_.data(), B, T);
    if (!loss.ok()) return loss.status();
    sum += *loss;
  }
  if (dp_ != nullptr) {
    auto total = dp_->SumOverRanks(static_cast<float>(sum));
    if (!total.ok()) return total.status();
    sum = *total;
  }
  return static_cast<float>(sum / batches);
}

float Trainer::UnigramValLoss() const {
  if (!val_) return -1.0f;
  const int V = config_.model.vocab_size;
  std::vector<double> counts(V, 1.0);  // add-one smoothing: unseen tokens are not infinitely bad
  double total = V;
  for (const TokenShard& shard : train_->shards()) {
    for (int64_t i = 0; i < shard.size(); ++i) counts[shard.tokens()[i]] += 1.0;
    total += static_cast<double>(shard.size());
  }
  const int B = config_.batch_size, T = config_.seq_len;
  const int64_t batches =
      std::max<int64_t>(1, std::min<int64_t>(config_.eval_batches, (val_->num_windows() + B - 1) / B));
  std::vector<int32_t> in(static_cast<size_t>(B) * T), tgt(in.size());
  double nll = 0;
  int64_t n = 0;
  for (int64_t i = 0; i < batches; ++i) {
    val_->Batch(i * B, B, in.data(), tgt.data());
    for (int32_t t : tgt) {
      nll -= std::log(counts[t] / total);
      ++n;
    }
  }
  return static_cast<float>(nll / n);
}

absl::StatusOr<std::string> Trainer::SampleText(uint64_t seed) {
  std::vector<int> prompt = tokenizer_->Encode(config_.sample_prompt);
  if (prompt.empty()) prompt.push_back(0);
  auto ids = Generate(*model_, prompt, config_.sample_tokens, config_.sample_temperature, seed);
  if (!ids.ok()) return ids.status();
  return config_.sample_prompt + tokenizer_->Decode(*ids);
}

absl::Status Trainer::Barrier() {
  if (group_ == nullptr) return absl::OkStatus();
  return group_->world().Barrier().Wait();
}

checkpoint::HeldState Trainer::Held() const {
  checkpoint::HeldState held;
  const kernels::View flat = model_->flat_params();
  held.params = static_cast<float*>(flat.data);
  if (dp_ != nullptr && dp_->zero() != nullptr) {
    const parallel::ZeroAdamW* zero = dp_->zero();
    held.first_moment = static_cast<float*>(zero->first_moment().data);
    held.second_moment = static_cast<float*>(zero->second_moment().data);
    held.moments_begin = zero->shard_begin();
    held.moments_end = zero->shard_begin() + zero->shard_size();
    return held;
  }
  const AdamW* adam = dp_ != nullptr ? dp_->adamw() : optimizer_.get();
  held.first_moment = static_cast<float*>(adam->first_moment().data);
  held.second_moment = static_cast<float*>(adam->second_moment().data);
  held.moments_begin = 0;
  held.moments_end = flat.numel;
  return held;
}

absl::Status Trainer::SetUpCheckpoints(int64_t* first_step, TrainSummary* summary) {
  const TrainConfig& c = config_;
  const std::string& dir = c.checkpoint_dir;
  const int world = ranks();
  checkpoint::RetentionPolicy retention;
  retention.keep_last = c.checkpoint_keep;
  OptimizerConfig oc = c.optimizer;
  if (oc.total_steps == 0) oc.total_steps = c.steps;

  // The coordinator is the authority on what is committed: a step it committed whose
  // completing rank died before writing COMMIT.json is finished here, by one rank.
  if (hooks_.latest_checkpoint) {
    auto latest = hooks_.latest_checkpoint();
    if (!latest.ok()) return latest.status();
    const auto& [step, step_dir] = *latest;
    if (rank() == 0 && step > 0 && !step_dir.empty() &&
        !std::filesystem::exists(step_dir + "/" + checkpoint::kCommitFileName)) {
      if (absl::Status s = checkpoint::CompleteCommitFromReports(step_dir, retention); !s.ok()) {
        Say(absl::StrFormat("colossus: checkpoint step %d (%s) is committed by the coordinator "
                            "but cannot be completed: %s", step, step_dir, s.message()));
      } else {
        Say(absl::StrFormat("colossus: completed the commit of step %d (%s) from its reports",
                            step, step_dir));
      }
    }
    if (absl::Status s = Barrier(); !s.ok()) return s;
  }

  const checkpoint::FlatLayout layout = checkpoint::FlatLayout::FromModel(*model_);
  const checkpoint::HeldState held = Held();
  checkpoint::LoadRequest request;
  request.rank = rank();
  request.pieces = checkpoint::PiecesToLoad(layout, held);
  request.model = c.model;
  request.optimizer = oc;
  request.backend = backend_.get();
  checkpoint::AgreeFn agree;
  if (dp_ != nullptr) {
    agree = [this, world](bool ok) -> absl::StatusOr<bool> {
      auto sum = dp_->SumOverRanks(ok ? 1.0f : 0.0f);
      if (!sum.ok()) return sum.status();
      return static_cast<int>(*sum) == world;
    };
  }
  absl::StatusOr<checkpoint::LoadOutcome> out = checkpoint::LoadLatestValid(dir, request, agree);
  int64_t keep_through = 0;  // steps after this one are discarded before saving again
  if (out.ok()) {
    for (const checkpoint::SkippedStep& skipped : out->skipped) {
      Say(absl::StrFormat("colossus: checkpoint step %d skipped: %s", skipped.step,
                          skipped.why.message()));
    }
    model_->SyncComputeWeights();
    *first_step = out->loaded.meta.step;
    keep_through = *first_step;
    summary->resumed_from = *first_step;
    Say(absl::StrFormat("colossus: resumed from step %d (%s)", *first_step, out->loaded.step_dir));
  } else if (absl::IsFailedPrecondition(out.status())) {
    // This run's model or optimizer differs from what was saved: a user error, never a
    // reason to fall back to an older step or to start over on top of it.
    return absl::FailedPreconditionError(absl::StrFormat(
        "checkpoint.dir %s holds a checkpoint of another configuration: %s", dir,
        out.status().message()));
  } else if (absl::IsNotFound(out.status())) {
    Say(absl::StrFormat("colossus: no committed checkpoint in %s: starting at step 0", dir));
  } else if (absl::IsDataLoss(out.status())) {
    Say(absl::StrFormat("colossus: no committed checkpoint in %s loads (%s): starting at step 0",
                        dir, out.status().message()));
  } else {
    return out.status();
  }
  // Steps beyond the one resumed from (a corrupt newer one, an unfinished save) would
  // collide with the saves this run makes: move them aside, on one rank.
  if (rank() == 0 && std::filesystem::exists(dir)) {
    if (absl::Status s = checkpoint::DiscardStepsAfter(dir, keep_through); !s.ok()) return s;
  }
  if (absl::Status s = Barrier(); !s.ok()) return s;

  std::shared_ptr<checkpoint::ShardCommitter> committer;
  if (hooks_.make_committer) {
    committer = hooks_.make_committer(rank(), world, retention);
  } else {
    checkpoint::StoreCommitterOptions so;
    so.rank = rank();
    so.world = world;
    so.retention = retention;
    std::shared_ptr<comm::Store> store =
        group_ != nullptr ? group_->store() : std::make_shared<comm::InMemoryStore>();
    committer = std::make_shared<checkpoint::StoreShardCommitter>(std::move(store), so);
  }
  checkpoint::CheckpointWriterOptions wo;
  wo.dir = dir;
  wo.rank = rank();
  wo.world = world;
  wo.committer = std::move(committer);
  auto writer = checkpoint::CheckpointWriter::Create(wo);
  if (!writer.ok()) return writer.status();
  writer_ = *std::move(writer);
  return writer_->Reserve(
      checkpoint::SourceBytes(checkpoint::PiecesToSave(layout, held, rank(), world)));
}

absl::Status Trainer::SaveCheckpoint(int64_t done, TrainSummary* summary) {
  const TrainConfig& c = config_;
  checkpoint::SaveRequest req;
  req.meta.step = done;
  req.meta.numel = model_->num_parameters();
  req.meta.data_position =
      parallel::FirstSampleOf(done, 0, 0, dp_size(), c.batch_size, accum_);
  req.meta.dp = dp_size();
  req.meta.tp = 1;
  req.meta.model = c.model;
  req.meta.optimizer = c.optimizer;
  if (req.meta.optimizer.total_steps == 0) req.meta.optimizer.total_steps = c.steps;
  req.pieces = checkpoint::PiecesToSave(checkpoint::FlatLayout::FromModel(*model_), Held(),
                                        rank(), ranks());
  req.backend = backend_.get();
  auto result = writer_->Save(req);
  if (!result.ok()) return result.status();
  ++summary->checkpoints_saved;
  summary->max_checkpoint_stall_s =
      std::max(summary->max_checkpoint_stall_s, result->stall_seconds());
  if (!result->previous.ok()) {
    // The previous committed step stays the latest; training matters more than one save.
    Say(absl::StrFormat("colossus: checkpoint save failed, training goes on: %s",
                        result->previous.message()));
  }
  if (log_) {
    log_->Write(nlohmann::json({{"step", done - 1},
                                {"checkpoint_step", done},
                                {"checkpoint_stall_s", result->stall_seconds()},
                                {"checkpoint_bytes", result->bytes}})
                    .dump());
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainSummary> Trainer::Run(int64_t first_step) {
  const TrainConfig& c = config_;
  const int B = c.batch_size, T = c.seq_len;
  const int dp = dp_size(), k = accum_;
  const int64_t samples_per_step = static_cast<int64_t>(B) * k * dp;  // the global batch
  const int64_t tokens_per_step = samples_per_step * T;
  TrainSummary summary;
  summary.ranks = dp;
  summary.global_batch = samples_per_step;

  Say(absl::StrFormat("colossus: %s", backend_->Describe()));
  Say(absl::StrFormat("colossus: %s", backend_why_));
  if (dp_ != nullptr) {
    const parallel::GradReducer* reducer = dp_->reducer();
    Say(absl::StrFormat(
        "colossus: data parallel over %d ranks (%s, %s): %s",
        dp, comm::BackendName(group_->backend()), group_->env().DebugString(),
        reducer != nullptr
            ? absl::StrFormat("gradients all-reduced in %d bucket%s (target %.3g MiB), %s",
                              reducer->buckets().size(), reducer->buckets().size() == 1 ? "" : "s",
                              c.bucket_mb,
                              c.overlap ? "overlapped with backward" : "after backward")
            : absl::StrFormat("ZeRO-1, optimizer state %.1f MiB per rank (1/%d)",
                              dp_->optimizer_state_bytes() / 1048576.0, dp)));
  }
  if (tp_model_ != nullptr) {
    Say(absl::StrFormat(
        "colossus: tensor parallel %d x data parallel %d (%s): %d of %d parameters per rank, "
        "optimizer state %.1f MiB per rank",
        c.tensor_parallel, dp, comm::BackendName(group_->backend()),
        tp_model_->num_local_parameters(), c.model.NumParameters(),
        tp_optimizer_->state_bytes() / 1048576.0));
  }
  Say(absl::StrFormat(
      "colossus: model %s | batch %d x %d tokens x %d accum x %d ranks = %d tokens/step | %d steps",
      c.model.DebugString(), B, T, k, dp, tokens_per_step, c.steps));
  Say(absl::StrFormat(
      "colossus: train %d tokens (%d windows)%s", train_->num_tokens(), train_->num_windows(),
      val_ ? absl::StrFormat(", val %d tokens", val_->num_tokens()) : ""));
  if (peak_flops_ > 0) {
    Say(absl::StrFormat(
        "colossus: %s; N = %d, L = %d, C = %d, T = %d: %.4g GFLOPs/token; peak %.0f TFLOP/s (%s)",
        kMfuFormula, c.model.NumParameters(), c.model.n_layer, c.model.n_embd, T,
        flops_per_token_ / 1e9, peak_flops_ / 1e12,
        c.peak_tflops > 0 ? "runtime.peak_tflops" : "by GPU name"));
  }
  if (val_ && rank() == 0) {
    summary.unigram_val_loss = UnigramValLoss();
    Say(absl::StrFormat("colossus: unigram baseline val loss %.4f (a model that knows only token frequencies)",
                                    summary.unigram_val_loss));
  }

  int64_t end_step = first_step + c.steps;
  // Under colossus-launch generations start at 1; a later one is a restart after a
  // failure or a new launch of the same job (the coordinator's events say which).
  if (dist_env_.has_value() && dist_env_->generation > 1) {
    Say(absl::StrFormat("colossus: generation %d: the worker group was re-formed (a restart "
                        "or a new launch of the job)", dist_env_->generation));
  }
  if (!c.checkpoint_dir.empty()) {
    if (absl::Status s = SetUpCheckpoints(&first_step, &summary); !s.ok()) return s;
    // A resumed run finishes the run it continues: config.steps in all.
    if (summary.resumed_from >= 0) end_step = std::max(first_step, c.steps);
  }
  summary.first_step = first_step;

  const auto start = Clock::now();
  for (int64_t step = first_step; step < end_step; ++step) {
    const auto t0 = Clock::now();
    if (tp_model_) {
      tp_model_->ZeroGrad();
    } else {
      model_->ZeroGrad();
    }
    double loss = 0;
    // Each micro-batch's mean loss counts 1/(k*dp): summed over micro-batches and ranks,
    // that is the mean over the global batch (parallel/sample_split.h).
    const int share = k * dp;
    for (int micro = 0; micro < k; ++micro) {
      train_->Batch(parallel::FirstSampleOf(step, micro, dp_index(), dp, B, k), B,
                    inputs_.data(), targets_.data());
      if (tp_model_) {
        auto l = tp_model_->Forward(inputs_.data(), targets_.data(), B, T);
        if (!l.ok()) return l.status();
        if (absl::Status s = tp_model_->Backward(1.0f / share); !s.ok()) return s;
        loss += *l / share;
        continue;
      }
      auto l = model_->Forward(inputs_.data(), targets_.data(), B, T);
      if (!l.ok()) return l.status();
      // Only the last micro-batch's backward communicates (its buckets overlap it).
      const GradsReadyFn hook =
          dp_ != nullptr && micro == k - 1 ? dp_->BeginLastBackward() : nullptr;
      model_->Backward(1.0f / share, hook);
      loss += *l / share;
    }
    StepStats stats;
    if (tp_optimizer_ != nullptr) {
      auto st = tp_optimizer_->Step(step);
      if (!st.ok()) return st.status();
      stats = *st;
      full_model_stale_ = true;
      // Every rank of a TP group has the same loss; the DP group sums the replicas'.
      float global = static_cast<float>(loss);
      if (absl::Status s = tp_groups_.dp
                               ->AllReduce(&global, &global, 1, comm::DataType::kF32,
                                           comm::ReduceOp::kSum)
                               .Wait();
          !s.ok()) {
        return s;
      }
      loss = global;
    } else if (dp_ != nullptr) {
      auto st = dp_->ReduceAndStep(step);
      if (!st.ok()) return st.status();
      stats = *st;
      auto global = dp_->SumOverRanks(static_cast<float>(loss));
      if (!global.ok()) return global.status();
      loss = *global;
    } else {
      stats = optimizer_->Step(step);
    }
    // On CUDA the AdamW kernels are still queued (the gradient norm was read back before
    // them): wait, so that the step time (and MFU) is the device's. A no-op on the CPU.
    backend_->Synchronize();
    const auto t1 = Clock::now();
    if (!std::isfinite(loss)) {
      return absl::InternalError(absl::StrFormat(
          "step %d: loss is %f (grad norm %f); training diverged", step, loss, stats.grad_norm));
    }

    StepRecord r;
    r.step = step;
    r.total_steps = end_step;
    r.loss = static_cast<float>(loss);
    r.lr = stats.lr;
    r.grad_norm = stats.grad_norm;
    r.step_ms = Seconds(t0, t1) * 1e3;
    r.tokens_per_s = tokens_per_step / Seconds(t0, t1);
    r.elapsed_s = Seconds(start, t1);
    // MFU is per device: each rank's share of the tokens against one device's peak.
    r.mfu = Mfu(flops_per_token_, r.tokens_per_s / ranks(), peak_flops_);
    if (log_) log_->Write(StepRecordJson(r));
    if (progress_) progress_->Step(r);
    if (hooks_.on_step) hooks_.on_step(r);
    if (step == first_step) summary.first_loss = r.loss;
    summary.final_loss = r.loss;

    const int64_t done = step + 1;
    const bool last = done == end_step;
    if (writer_ != nullptr && ((c.checkpoint_every > 0 && done % c.checkpoint_every == 0) || last)) {
      if (absl::Status s = SaveCheckpoint(done, &summary); !s.ok()) return s;
    }
    if (val_ && ((c.eval_every > 0 && done % c.eval_every == 0) || last)) {
      auto vl = Evaluate();
      if (!vl.ok()) return vl.status();
      summary.val_loss = *vl;
      if (log_) log_->Write(nlohmann::json({{"step", step}, {"val_loss", *vl}}).dump());
      Say(absl::StrFormat("step %d: val loss %.4f (unigram %.4f)", done, *vl,
                                      summary.unigram_val_loss));
    }
    // Samples are for people to read: rank 0 writes them, the others need not wait (under
    // tensor parallelism they take part in gathering the weights first).
    const bool sample = (c.sample_every > 0 && done % c.sample_every == 0) || last;
    if (sample) {
      if (absl::Status s = SyncFullModel(); !s.ok()) return s;
    }
    if (rank() == 0 && sample) {
      auto text = SampleText(c.seed + done);
      if (!text.ok()) return text.status();
      summary.sample = *text;
      if (!last) Say(absl::StrFormat("step %d sample: %s", done, *text));
    }
  }
  if (writer_ != nullptr) {
    // The last save must be committed before the run reports success.
    if (absl::Status s = writer_->Flush(); !s.ok()) {
      Say(absl::StrFormat("colossus: the final checkpoint was not committed: %s", s.message()));
    }
    writer_.reset();
  }
  summary.steps = end_step - first_step;
  summary.seconds = Seconds(start, Clock::now());
  summary.tokens_per_s =
      summary.seconds > 0 ? summary.steps * tokens_per_step / summary.seconds : 0;
  summary.weights_path = c.output_dir + "/model.safetensors";
  if (absl::Status s = SyncFullModel(); !s.ok()) return s;
  if (rank() == 0) {
    if (absl::Status s = SaveWeights(*model_, summary.weights_path); !s.ok()) return s;
  }
  return summary;
}

}  // namespace colossus
