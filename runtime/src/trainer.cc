#include "colossus/trainer.h"

#include <chrono>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <optional>

#include "absl/strings/str_format.h"
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
  return Create(config, std::move(group), nullptr);
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(
    const TrainConfig& config, std::unique_ptr<parallel::ProcessGroup> group,
    std::unique_ptr<kernels::Backend> backend) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  std::unique_ptr<Trainer> t(new Trainer(config));
  if (group != nullptr) t->dist_env_ = group->env();
  t->group_ = std::move(group);
  t->backend_ = std::move(backend);
  if (absl::Status s = t->Init(); !s.ok()) return s;
  return t;
}

void Trainer::Say(const std::string& line) {
  if (progress_) progress_->Line(line);
}

void Trainer::Warn(const std::string& line) {
  const std::string text = absl::StrFormat("colossus: rank %d: %s", rank(), line);
  if (progress_) {
    progress_->Line(text);  // rank 0: without garbling the progress bar
  } else {
    std::fprintf(stderr, "%s\n", text.c_str());
    std::fflush(stderr);
  }
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
  if (backend_ != nullptr) {
    backend_why_ = "backend given by the program embedding the trainer (runtime.device unused)";
  } else {
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
  }
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
  if (c.graphs == 1 && group_ != nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "runtime.graphs = 1 needs a single process, and this is rank %d of %d: data- and "
        "tensor-parallel collectives run on the host between ops and cannot be captured",
        group_->rank(), group_->world().size()));
  }
  kernels::Backend* model_backend = backend_.get();
  if (c.graphs == 1 && backend_->kind() == kernels::DeviceKind::kCPU) {
    recorder_ = std::make_unique<kernels::RecordingBackend>(backend_.get());
    model_backend = recorder_.get();
  }

  parallel::DataParallelOptions dpo;
  dpo.zero = c.zero == 1;
  dpo.bucket_bytes = std::max<size_t>(1, static_cast<size_t>(static_cast<double>(c.bucket_mb) * (1 << 20)));
  dpo.overlap = c.overlap == 1;
  // Under tensor parallelism the full model is a gather target only; ZeRO pads the TP
  // shard's buffers instead.
  auto model = GPT::Create(c.model, model_backend, c.batch_size, c.seq_len,
                           c.tensor_parallel > 1
                               ? 1
                               : parallel::DataParallel::FlatMultiple(dpo, ranks()));
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
    // With ZeRO-1 the shard's flat buffers split evenly over the DP group.
    auto tp = parallel::TensorParallelGPT::Create(c.model, backend_.get(), tp_groups_.tp.get(),
                                                  c.batch_size, c.seq_len,
                                                  dpo.zero ? dp_size() : 1);
    if (!tp.ok()) return tp.status();
    tp_model_ = *std::move(tp);
    if (absl::Status s = tp_model_->LoadFrom(*model_); !s.ok()) return s;
    auto opt = parallel::TpAdamW::Create(oc, tp_model_.get(), tp_groups_.dp.get(), dpo.zero);
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
    if (c.graphs == 1) graph_step_ = std::make_unique<GraphStep>(model_.get(), optimizer_.get());
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
  if (graph_step_) {
    Say(absl::StrFormat("colossus: each step launched as op graphs (%s): forward+backward per "
                        "micro-batch and the update, each captured the second time it runs",
                        recorder_ ? "recorded ops on the CPU" : "CUDA graphs"));
  }
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
        "optimizer state %.1f MiB per rank%s",
        c.tensor_parallel, dp, comm::BackendName(group_->backend()),
        tp_model_->num_local_parameters(), c.model.NumParameters(),
        tp_optimizer_->state_bytes() / 1048576.0,
        tp_optimizer_->zero() ? absl::StrFormat(" (ZeRO-1: 1/%d of the shard's)", dp) : ""));
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
      if (graph_step_) {
        auto l = graph_step_->MicroBatch(inputs_.data(), targets_.data(), B, T, 1.0f / share);
        if (!l.ok()) return l.status();
        loss += *l / share;
        continue;
      }
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
    } else if (graph_step_) {
      auto st = graph_step_->Update(step);
      if (!st.ok()) return st.status();
      stats = *st;
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
      Warn(absl::StrFormat("the final checkpoint was not committed: %s", s.message()));
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
