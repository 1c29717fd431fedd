// Trainer's checkpoints (trainer.h): what each rank holds and saves, resuming at start-up,
// and the asynchronous save after a step. Data parallelism (plain or ZeRO-1) and tensor
// parallelism (tp x dp, ZeRO-1 or not) all save the canonical state of the whole model
// (checkpoint/state.h; parallel/tp_checkpoint.h), so any layout resumes from any other.
#include <filesystem>
#include <map>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "colossus/check.h"
#include "colossus/checkpoint/reader.h"
#include "colossus/comm/in_memory_store.h"
#include "colossus/parallel/sample_split.h"
#include "colossus/trainer.h"
#include "nlohmann/json.hpp"

namespace colossus {

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

std::vector<checkpoint::SourcePiece> Trainer::PiecesToSave() const {
  if (tp_model_ != nullptr) {
    CHECK(tp_checkpoint_ != nullptr) << "SetUpCheckpoints first";
    return tp_checkpoint_->PiecesToSave(TpHeld(), dp_index(), dp_size());
  }
  return checkpoint::PiecesToSave(checkpoint::FlatLayout::FromModel(*model_), Held(), rank(),
                                  ranks());
}

std::vector<checkpoint::DestPiece> Trainer::PiecesToLoad() const {
  if (tp_model_ != nullptr) {
    CHECK(tp_checkpoint_ != nullptr) << "SetUpCheckpoints first";
    return tp_checkpoint_->PiecesToLoad(TpHeld());
  }
  return checkpoint::PiecesToLoad(checkpoint::FlatLayout::FromModel(*model_), Held());
}

parallel::TpHeldState Trainer::TpHeld() const {
  parallel::TpHeldState held;
  held.params = tp_model_->flat_params().as<float>();
  held.first_moment = tp_optimizer_->first_moment().as<float>();
  held.second_moment = tp_optimizer_->second_moment().as<float>();
  held.moments_begin = tp_optimizer_->moments_begin();
  held.moments_end = tp_optimizer_->moments_end();
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
  int64_t authority_step = 0;  // the authority's latest step (0: none, or no authority)
  std::string authority_dir;
  std::map<int64_t, std::string> reasons;  // rank 0: why a step is not usable, by step
  if (hooks_.latest_checkpoint) {
    auto latest = hooks_.latest_checkpoint();
    if (!latest.ok()) return latest.status();
    std::tie(authority_step, authority_dir) = *latest;
    if (rank() == 0 && authority_step > 0 && !authority_dir.empty() &&
        !std::filesystem::exists(authority_dir + "/" + checkpoint::kCommitFileName)) {
      if (absl::Status s = checkpoint::CompleteCommitFromReports(authority_dir, retention);
          !s.ok()) {
        Warn(absl::StrFormat("checkpoint step %d (%s) is committed by the coordinator but "
                             "cannot be completed: %s", authority_step, authority_dir,
                             s.message()));
        reasons[authority_step] = absl::StrFormat("rank %d: %s", rank(), s.message());
      } else {
        Say(absl::StrFormat("colossus: completed the commit of step %d (%s) from its reports",
                            authority_step, authority_dir));
      }
    }
    if (absl::Status s = Barrier(); !s.ok()) return s;
  }

  if (tp_model_ != nullptr) {
    tp_checkpoint_ = std::make_unique<parallel::TpCheckpointLayout>(*model_, *tp_model_);
  }
  checkpoint::LoadRequest request;
  request.rank = rank();
  request.pieces = PiecesToLoad();
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
  } else if (tp_model_ != nullptr) {
    // Every rank of every TP group: a step one rank cannot read is skipped by all.
    // (Tensor parallelism computes on the CPU: the communicator reads host memory.)
    agree = [this, world](bool ok) -> absl::StatusOr<bool> {
      float n = ok ? 1.0f : 0.0f;
      if (absl::Status s = group_->world()
                               .AllReduce(&n, &n, 1, comm::DataType::kF32, comm::ReduceOp::kSum)
                               .Wait();
          !s.ok()) {
        return s;
      }
      return static_cast<int>(n) == world;
    };
  }
  std::vector<checkpoint::SkippedStep> skipped;
  absl::StatusOr<checkpoint::LoadOutcome> out =
      checkpoint::LoadLatestValid(dir, request, agree, &skipped);
  // Each rank names what it could not read itself, in its own log.
  for (const checkpoint::SkippedStep& step : skipped) {
    if (step.seen_here) {
      Warn(absl::StrFormat("checkpoint step %d skipped: %s", step.step, step.why.message()));
      if (rank() == 0) reasons[step.step] = absl::StrFormat("rank 0: %s", step.why.message());
    }
  }
  // Rank 0 needs the reason of a step only another rank could not read (for its log and
  // the authority): those ranks leave it in the group's store (one generation's keys).
  // Every rank agreed on the skipped steps, so every rank takes this branch or none.
  if (!skipped.empty() && group_ != nullptr) {
    const std::shared_ptr<comm::Store>& store = group_->store();
    auto key = [](int64_t step) { return absl::StrCat("checkpoint/skipped/", step); };
    for (const checkpoint::SkippedStep& step : skipped) {
      if (step.seen_here && rank() != 0) {
        (void)store->Set(key(step.step),
                         absl::StrFormat("rank %d: %s", rank(), step.why.message()));
      }
    }
    if (absl::Status s = Barrier(); !s.ok()) return s;
    if (rank() == 0) {
      for (const checkpoint::SkippedStep& step : skipped) {
        if (step.seen_here) continue;
        absl::StatusOr<std::string> why = store->Get(key(step.step));
        reasons[step.step] = why.ok() ? *why : std::string(step.why.message());
        Say(absl::StrFormat("colossus: checkpoint step %d skipped: %s", step.step,
                            reasons[step.step]));
      }
    }
  }
  int64_t keep_through = 0;  // steps after this one are discarded before saving again
  if (out.ok()) {
    model_->SyncComputeWeights();
    // Under tensor parallelism the shards were loaded; the full model is gathered from
    // them when next needed.
    full_model_stale_ = tp_model_ != nullptr;
    *first_step = out->loaded.meta.step;
    keep_through = *first_step;
    summary->resumed_from = *first_step;
    const int zero = out->loaded.meta.zero;
    Say(absl::StrFormat("colossus: resumed from step %d (%s, saved at dp %d x tp %d%s)",
                        *first_step, out->loaded.step_dir, out->loaded.meta.dp,
                        out->loaded.meta.tp,
                        zero == 1 ? ", ZeRO-1" : zero == 0 ? ", no ZeRO" : ""));
  } else if (absl::IsFailedPrecondition(out.status())) {
    // This run's model or optimizer differs from what was saved: a user error, never a
    // reason to fall back to an older step or to start over on top of it.
    return absl::FailedPreconditionError(absl::StrFormat(
        "checkpoint.dir %s holds a checkpoint of another configuration: %s", dir,
        out.status().message()));
  } else if (absl::IsNotFound(out.status())) {
    Say(absl::StrFormat("colossus: no committed checkpoint in %s: starting at step 0", dir));
  } else if (absl::IsDataLoss(out.status())) {
    Warn(absl::StrFormat("no committed checkpoint in %s loads (%s): starting at step 0", dir,
                         out.status().message()));
  } else {
    return out.status();
  }
  // The authority still names a newer step than the one every rank agreed on: tell it,
  // before any rank saves (the barrier below), so that its status, its next restart and
  // its journal stop naming a step that does not load.
  if (rank() == 0 && hooks_.checkpoint_fallback && authority_step > keep_through) {
    ReportFallback(out.ok() ? &out->loaded : nullptr, authority_step, authority_dir, skipped,
                   reasons);
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
  return writer_->Reserve(checkpoint::SourceBytes(PiecesToSave()));
}

void Trainer::ReportFallback(const checkpoint::LoadedCheckpoint* resumed, int64_t authority_step,
                             const std::string& authority_dir,
                             const std::vector<checkpoint::SkippedStep>& skipped,
                             const std::map<int64_t, std::string>& reasons) {
  CheckpointFallback fallback;
  if (resumed != nullptr) {
    fallback.resumed_step = resumed->meta.step;
    fallback.resumed_dir = resumed->step_dir;
    fallback.num_shards = resumed->meta.dp * resumed->meta.tp;
  }
  bool authority_listed = false;
  for (const checkpoint::SkippedStep& step : skipped) {
    auto why = reasons.find(step.step);
    fallback.invalid.push_back({step.step, step.step_dir,
                                why != reasons.end() ? why->second
                                                     : std::string(step.why.message())});
    authority_listed |= step.step == authority_step;
  }
  if (!authority_listed) {
    // The disk has no commit of the authority's latest step (or one ListCommitted did not
    // take): say so, newest first.
    auto why = reasons.find(authority_step);
    fallback.invalid.insert(
        fallback.invalid.begin(),
        {authority_step, authority_dir,
         why != reasons.end()
             ? why->second
             : absl::StrFormat("rank 0: %s/%s is missing", authority_dir,
                               checkpoint::kCommitFileName)});
  }
  if (absl::Status s = hooks_.checkpoint_fallback(fallback); !s.ok()) {
    Warn(absl::StrFormat("could not report the fallback from checkpoint step %d to step %d: %s",
                         authority_step, fallback.resumed_step, s.message()));
    return;
  }
  Say(absl::StrFormat("colossus: reported checkpoint step %d as invalid (resumed from step %d)",
                      authority_step, fallback.resumed_step));
}

absl::Status Trainer::SaveCheckpoint(int64_t done, TrainSummary* summary) {
  const TrainConfig& c = config_;
  checkpoint::SaveRequest req;
  req.meta.step = done;
  req.meta.numel = model_->num_parameters();
  req.meta.data_position =
      parallel::FirstSampleOf(done, 0, 0, dp_size(), c.batch_size, accum_);
  req.meta.dp = dp_size();
  req.meta.tp = c.tensor_parallel;
  // ZeRO-1 only shards with several data-parallel ranks.
  req.meta.zero = c.zero == 1 && dp_size() > 1 ? 1 : 0;
  req.meta.model = c.model;
  req.meta.optimizer = c.optimizer;
  if (req.meta.optimizer.total_steps == 0) req.meta.optimizer.total_steps = c.steps;
  req.pieces = PiecesToSave();
  req.backend = backend_.get();
  auto result = writer_->Save(req);
  if (!result.ok()) return result.status();
  // result->previous is the outcome of the save before this one.
  const int64_t previous_step = last_save_step_;
  last_save_step_ = done;
  ++summary->checkpoints_saved;
  summary->max_checkpoint_stall_s =
      std::max(summary->max_checkpoint_stall_s, result->stall_seconds());
  if (!result->previous.ok()) {
    // The previous committed step stays the latest; training matters more than one save.
    // Every rank names its own failure: a disk full on one node is seen only there.
    const std::string message(result->previous.message());
    const std::string shard =
        absl::StrCat(checkpoint::StepDir(c.checkpoint_dir, previous_step), "/",
                     checkpoint::ShardFileName(rank(), ranks()));
    // The writer's errors name the file; a committer's refusal may name only the step.
    Warn(absl::StrFormat("checkpoint save failed, training goes on: step %d%s: %s",
                         previous_step,
                         message.find(shard) == std::string::npos ? absl::StrCat(" (", shard, ")")
                                                                  : std::string(),
                         message));
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

}  // namespace colossus
