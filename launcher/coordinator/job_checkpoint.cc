// JobState's checkpoint commit: shard reports made durable in batches, then counted; a
// complete step journaled as committed, and only then the latest. Invalidation: committed
// steps the workers could not load, journaled, and the step they resumed from latest again.
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "colossus/launcher/job_state.h"

namespace colossus::launcher {
namespace {

constexpr int32_t kMaxShards = 1 << 24;
// Commits remembered for invalidation to fall back to (a ref is ~100 bytes), and
// invalidated steps shown in JobStatus.
constexpr size_t kMaxCommitHistory = 4096;
constexpr size_t kMaxInvalidShown = 16;

// Whether `r` is another generation's save of the step `latest` committed (after a
// resume that fell back past it), rather than a retry of a report that committed it.
bool SavesCommittedStepAgain(const v1::ShardReport& r, const v1::CheckpointRef& latest) {
  return r.step() == latest.step() && r.header().generation() > latest.generation();
}

std::string ShardName(const v1::ShardReport& r) {
  return absl::StrCat("shard of step ", r.step(), " rank ", r.rank());
}

}  // namespace

absl::Status JobState::ValidateShardLocked(const v1::ShardReport& r) const {
  if (r.step() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ShardReport.step ", r.step(), " must be positive (step 0 is no checkpoint)"));
  }
  if (r.num_shards() < 1 || r.num_shards() > kMaxShards) {
    return absl::InvalidArgumentError(absl::StrCat("ShardReport.num_shards ", r.num_shards(),
                                                   " of step ", r.step(), " must be in [1, ",
                                                   kMaxShards, "]"));
  }
  if (r.rank() < 0 || r.rank() >= r.num_shards()) {
    return absl::InvalidArgumentError(absl::StrCat("ShardReport.rank ", r.rank(), " of step ",
                                                   r.step(), " is outside [0, ", r.num_shards(),
                                                   ") (num_shards)"));
  }
  if (r.directory().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ShardReport.directory of ", ShardName(r), " is empty"));
  }
  if (r.path().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("ShardReport.path of ", ShardName(r), " is empty"));
  }
  if (r.bytes() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ShardReport.bytes ", r.bytes(), " of ", ShardName(r), " is negative"));
  }
  if (auto p = pending_steps_.find(r.step()); p != pending_steps_.end()) {
    if (p->second.num_shards != r.num_shards()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ShardReport.num_shards ", r.num_shards(), " of ", ShardName(r),
          " does not match the ", p->second.num_shards, " its step's earlier shards reported"));
    }
    if (p->second.directory != r.directory()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ShardReport.directory ", r.directory(), " of ", ShardName(r),
          " differs from the step's directory ", p->second.directory));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> JobState::ApplyShardLocked(const v1::ShardReport& r, int32_t* received) {
  if (absl::Status s = ValidateShardLocked(r); !s.ok()) return s;
  auto [it, inserted] = pending_steps_.try_emplace(r.step());
  PendingStep& p = it->second;
  if (inserted) {
    p.num_shards = r.num_shards();
    p.directory = r.directory();
    p.have.assign(static_cast<size_t>(r.num_shards()), false);
    // Bound the memory of steps that never complete (a save that crashed half-way).
    while (pending_steps_.size() > static_cast<size_t>(config_.max_pending_steps)) {
      auto oldest = pending_steps_.begin();
      if (oldest == it) ++oldest;
      pending_steps_.erase(oldest);
    }
  }
  if (!p.have[static_cast<size_t>(r.rank())]) {  // a duplicate counts once
    p.have[static_cast<size_t>(r.rank())] = true;
    ++p.received;
  }
  *received = p.received;
  return p.received == p.num_shards;
}

absl::Status JobState::CommitLocked(int64_t step, absl::Time now, Deferred* deferred) {
  const PendingStep& p = pending_steps_.at(step);
  v1::JournalRecord record;
  v1::CheckpointRef* ref = record.mutable_committed();
  ref->set_step(step);
  ref->set_directory(p.directory);
  ref->set_num_shards(p.num_shards);
  ref->set_generation(generation_);
  if (absl::Status s = JournalLocked(record); !s.ok()) {
    // Not latest; the step stays complete in memory, so any shard's retry commits it.
    return absl::Status(s.code(), absl::StrCat("step ", step, " has every shard but was not "
                                               "committed: journal append failed: ",
                                               s.message()));
  }
  RecordCommitLocked(*ref);
  ++commits_;
  pending_steps_.erase(pending_steps_.begin(), pending_steps_.upper_bound(step));
  EventLocked(v1::JobEvent::KIND_CHECKPOINT_COMMITTED, "", -1, step,
              absl::StrCat("checkpoint step ", step, " committed: ", ref->num_shards(),
                           " shards in ", ref->directory(), " (generation ", generation_, ")"),
              now, deferred);
  return absl::OkStatus();
}

v1::ShardAck JobState::AckLocked(int64_t step, int32_t received, bool committed) const {
  v1::ShardAck ack;
  ack.set_committed(committed);
  ack.set_received(received);
  *ack.mutable_latest() = latest_;
  return ack;
}

void JobState::RecordCommitLocked(const v1::CheckpointRef& ref) {
  committed_[ref.step()] = ref;
  while (committed_.size() > kMaxCommitHistory) committed_.erase(committed_.begin());
  // >=: a later generation may commit the same step again (after an invalidation, or an
  // older worker's fallback that did not report one).
  if (ref.step() >= latest_.step()) latest_ = ref;
}

void JobState::ApplyInvalidationLocked(const v1::InvalidationRecord& record) {
  latest_ = record.latest();
  committed_.erase(committed_.upper_bound(latest_.step()), committed_.end());
  // Known from now on even when the workers told it (a later invalidation may pass it).
  if (latest_.step() > 0) committed_[latest_.step()] = latest_;
  // Oldest first: the record lists the newest first.
  for (auto it = record.invalid().rbegin(); it != record.invalid().rend(); ++it) {
    invalid_.push_back(*it);
  }
  if (invalid_.size() > kMaxInvalidShown) {
    invalid_.erase(invalid_.begin(), invalid_.end() - static_cast<ptrdiff_t>(kMaxInvalidShown));
  }
}

absl::StatusOr<v1::CheckpointRef> JobState::InvalidateCheckpoints(
    const v1::InvalidateCheckpointsRequest& request, absl::Time now) {
  Deferred deferred;
  absl::MutexLock lock(&mu_);
  if (!shutdown_.ok()) return shutdown_;
  if (IsFinalPhase(phase_)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", config_.job_id, " has ended (", v1::JobPhase_Name(phase_), ")"));
  }
  if (absl::Status s = CheckCurrentLocked(request.header().generation(), "InvalidateCheckpoints");
      !s.ok()) {
    return s;
  }
  const int64_t resumed = request.resumed().step();
  if (resumed < 0 || resumed > latest_.step()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "InvalidateCheckpoints.resumed.step ", resumed, " must be in [0, ", latest_.step(),
        "] (the latest committed step)"));
  }
  if (resumed == latest_.step()) return latest_;  // nothing newer: a repeat, or no fallback

  v1::JournalRecord journal_record;
  v1::InvalidationRecord* record = journal_record.mutable_invalidated();
  // The coordinator's own record of the resumed step, when it has one (generation and
  // all); otherwise what the workers loaded (a commit older than the history, or one
  // made before this job had a coordinator).
  if (resumed > 0) {
    auto known = committed_.find(resumed);
    if (known != committed_.end()) {
      *record->mutable_latest() = known->second;
    } else {
      v1::CheckpointRef* ref = record->mutable_latest();
      ref->set_step(resumed);
      ref->set_directory(request.resumed().directory());
      ref->set_num_shards(request.resumed().num_shards());
    }
  }
  std::vector<int64_t> steps;
  for (auto it = committed_.rbegin(); it != committed_.rend() && it->first > resumed; ++it) {
    v1::InvalidCheckpoint* bad = record->add_invalid();
    bad->set_step(it->first);
    bad->set_directory(it->second.directory());
    bad->set_generation(generation_);
    for (const v1::InvalidCheckpoint& told : request.invalid()) {
      if (told.step() == it->first) {
        bad->set_reason(told.reason());
        break;
      }
    }
    if (bad->reason().empty()) {
      bad->set_reason(absl::StrCat("not loaded by the workers of generation ", generation_,
                                   " (they resumed from step ", resumed, ")"));
    }
    steps.push_back(it->first);
  }
  if (absl::Status s = JournalLocked(journal_record); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("checkpoint steps after ", resumed,
                                               " not invalidated: journal append failed: ",
                                               s.message()));
  }
  ApplyInvalidationLocked(*record);
  const v1::InvalidCheckpoint& newest = record->invalid(0);
  EventLocked(v1::JobEvent::KIND_CHECKPOINT_INVALIDATED, "", -1, newest.step(),
              absl::StrCat("checkpoint step ", newest.step(), " invalid: ", newest.reason(),
                           "; the workers resumed from step ", resumed,
                           resumed > 0 ? ", now the latest" : " (none loaded: started over)",
                           steps.size() > 1 ? absl::StrCat(" (steps ", absl::StrJoin(steps, ", "),
                                                           " invalidated)")
                                            : ""),
              now, &deferred);
  return latest_;
}

v1::CheckpointRef JobState::LatestCheckpoint() const {
  absl::MutexLock lock(&mu_);
  return latest_;
}

void JobState::ReportShard(const v1::ShardReport& report, absl::Time now, ShardDone done) {
  {
    Deferred deferred;
    absl::MutexLock lock(&mu_);
    auto refuse = [&](absl::Status status) {
      deferred.Add([done = std::move(done), status = std::move(status)] { done(status); });
    };
    if (!shutdown_.ok()) return refuse(shutdown_);
    if (IsFinalPhase(phase_)) {
      return refuse(absl::FailedPreconditionError(
          absl::StrCat("job ", config_.job_id, " has ended (", v1::JobPhase_Name(phase_), ")")));
    }
    if (absl::Status s = CheckCurrentLocked(report.header().generation(), "ReportShard"); !s.ok()) {
      return refuse(std::move(s));
    }
    if (absl::Status s = ValidateShardLocked(report); !s.ok()) return refuse(std::move(s));
    // A later generation saving the latest step again fell back past it (its shards did
    // not load): that is a new save of the step, committed only when all of it is in.
    if (report.step() <= latest_.step() && !SavesCommittedStepAgain(report, latest_)) {
      if (report.step() == latest_.step()) {  // a retry after the commit
        v1::ShardAck ack = AckLocked(report.step(), latest_.num_shards(), true);
        deferred.Add([done = std::move(done), ack] { done(ack); });
        return;
      }
      return refuse(absl::FailedPreconditionError(
          absl::StrCat(ShardName(report), " is older than the latest committed step ",
                       latest_.step())));
    }
    staged_shards_.push_back(StagedShard{report, std::move(done), now});
    if (shard_writer_active_) return;  // the active writer takes this one with its next batch
    shard_writer_active_ = true;
  }
  DrainShardJournal();
}

// Group commit: the thread that found no writer active appends every staged report as one
// record, counts them, commits completed steps, and repeats until nothing is staged.
// Reports staged meanwhile by other threads ride along; those threads return at once.
void JobState::DrainShardJournal() {
  while (true) {
    Deferred deferred;  // acks of this batch, run at the end of the iteration
    std::vector<StagedShard> batch;
    {
      absl::MutexLock lock(&mu_);
      if (staged_shards_.empty()) {
        shard_writer_active_ = false;
        return;
      }
      batch.swap(staged_shards_);
    }

    v1::JournalRecord record;
    for (const StagedShard& s : batch) *record.mutable_shards()->add_shards() = s.report;
    absl::Status journaled = absl::OkStatus();
    if (journal_ != nullptr) {
      absl::MutexLock lock(&journal_mu_);
      journaled = journal_->Append(record);
    }

    absl::MutexLock lock(&mu_);
    for (StagedShard& s : batch) {
      const v1::ShardReport& r = s.report;
      auto reply = [&](absl::StatusOr<v1::ShardAck> result) {
        deferred.Add([done = std::move(s.done), result = std::move(result)] { done(result); });
      };
      if (!journaled.ok()) {
        reply(absl::Status(journaled.code(), absl::StrCat(ShardName(r), " not acknowledged: "
                                                          "journal append failed: ",
                                                          journaled.message())));
        continue;
      }
      // The world may have moved while the append ran.
      if (!shutdown_.ok()) {
        reply(shutdown_);
        continue;
      }
      if (IsFinalPhase(phase_)) {
        reply(absl::FailedPreconditionError(absl::StrCat("job ", config_.job_id, " has ended")));
        continue;
      }
      if (absl::Status st = CheckCurrentLocked(r.header().generation(), "ReportShard"); !st.ok()) {
        reply(std::move(st));
        continue;
      }
      if (r.step() <= latest_.step() && !SavesCommittedStepAgain(r, latest_)) {
        reply(AckLocked(r.step(), r.num_shards(), r.step() == latest_.step()));
        continue;
      }
      int32_t received = 0;
      absl::StatusOr<bool> complete = ApplyShardLocked(r, &received);
      if (!complete.ok()) {
        reply(complete.status());
        continue;
      }
      if (!*complete) {
        reply(AckLocked(r.step(), received, false));
        continue;
      }
      absl::Status committed = CommitLocked(r.step(), s.now, &deferred);
      if (!committed.ok()) {
        reply(committed);
      } else {
        reply(AckLocked(r.step(), received, true));
      }
    }
  }
}

}  // namespace colossus::launcher
