// JobState: construction, replay, the lifecycle transitions (failure -> restart or end),
// status and time. Rendezvous, health and checkpoints live in job_rendezvous.cc,
// job_health.cc and job_checkpoint.cc.
#include "colossus/launcher/job_state.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "colossus/check.h"

namespace colossus::launcher {
absl::Status ValidateJobConfig(const JobConfig& c) {
  if (c.job_id.empty()) return absl::InvalidArgumentError("job id is empty");
  if (c.min_nodes < 1) {
    return absl::InvalidArgumentError(absl::StrCat("min_nodes ", c.min_nodes, " must be >= 1"));
  }
  if (c.max_nodes < c.min_nodes) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_nodes ", c.max_nodes, " must be >= min_nodes ", c.min_nodes));
  }
  if (c.settle < absl::ZeroDuration()) return absl::InvalidArgumentError("settle is negative");
  if (c.restart_backoff < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("restart_backoff is negative");
  }
  auto positive = [](absl::Duration d, const char* name) -> absl::Status {
    if (d <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " ", absl::FormatDuration(d), " must be positive"));
    }
    return absl::OkStatus();
  };
  for (auto [d, name] : {std::pair{c.join_timeout, "join_timeout"},
                         std::pair{c.heartbeat_interval, "heartbeat_interval"},
                         std::pair{c.node_timeout, "node_timeout"},
                         std::pair{c.hang_timeout, "hang_timeout"}}) {
    if (absl::Status s = positive(d, name); !s.ok()) return s;
  }
  if (c.node_timeout <= c.heartbeat_interval) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node_timeout ", absl::FormatDuration(c.node_timeout), " must exceed heartbeat_interval ",
        absl::FormatDuration(c.heartbeat_interval)));
  }
  if (c.max_restarts < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_restarts ", c.max_restarts, " is negative"));
  }
  if (c.max_pending_steps < 1) return absl::InvalidArgumentError("max_pending_steps must be >= 1");
  return absl::OkStatus();
}

JobState::JobState(JobConfig config, JournalSink* journal, JobStore* store, JobEvents* events)
    : config_(std::move(config)), journal_(journal), store_(store), events_(events) {
  CHECK(ValidateJobConfig(config_).ok()) << ValidateJobConfig(config_);
}

JobState::~JobState() = default;

absl::StatusOr<std::string> JobState::Restore(const std::vector<v1::JournalRecord>& records,
                                              absl::Time now, bool relaunch_ended) {
  Deferred deferred;
  absl::MutexLock lock(&mu_);
  const v1::GenerationRecord* last_generation = nullptr;
  const v1::JobEndRecord* end = nullptr;
  std::vector<const v1::ShardReport*> shards;
  int64_t unknown = 0;
  for (const v1::JournalRecord& record : records) {
    switch (record.record_case()) {
      case v1::JournalRecord::kGeneration:
        last_generation = &record.generation();
        end = nullptr;  // a generation after an end: the job was launched again
        break;
      case v1::JournalRecord::kCommitted:
        ++commits_;
        RecordCommitLocked(record.committed());
        break;
      case v1::JournalRecord::kInvalidated:
        ApplyInvalidationLocked(record.invalidated());
        break;
      case v1::JournalRecord::kJobEnd:
        end = &record.job_end();
        break;
      case v1::JournalRecord::kShards:
        for (const v1::ShardReport& s : record.shards().shards()) shards.push_back(&s);
        break;
      default:
        ++unknown;  // written by a newer coordinator: nothing we can act on
        break;
    }
  }

  std::string relaunched;
  if (end != nullptr && relaunch_ended) {
    // Launched again: everything of the ended run is history except the generation count
    // (fencing stays monotonic across launches) and the committed checkpoints.
    relaunched = absl::StrCat("; it had ended (", v1::JobPhase_Name(end->phase()), ": ",
                              end->reason(), ") and is launched again");
    generation_ = (last_generation != nullptr ? last_generation->generation() : 0) + 1;
    last_generation = nullptr;
    end = nullptr;
    shards.clear();
    restarts_ = 0;
    reason_ = "launched again after the job had ended";
    v1::JournalRecord record;
    v1::GenerationRecord* g = record.mutable_generation();
    g->set_generation(generation_);
    g->set_restarts(restarts_);
    g->set_reason(reason_);
    absl::Status journaled = JournalLocked(record);
    if (!journaled.ok()) return journaled;
  }

  std::string where = "fresh job";
  if (last_generation != nullptr) {
    generation_ = last_generation->generation();
    restarts_ = last_generation->restarts();
    reason_ = last_generation->reason();
    if (last_generation->nodes_size() > 0) {
      formed_ = true;
      phase_ = v1::JOB_PHASE_RUNNING;
      world_size_ = 0;
      for (const v1::NodeAssignment& a : last_generation->nodes()) {
        Member& m = members_[a.node_id()];
        m.assignment = a;
        m.alive = true;
        m.last_beat = now;  // node_timeout from now to reconnect
        m.ranks.resize(static_cast<size_t>(std::max(a.local_world_size(), 0)));
        for (RankSlot& slot : m.ranks) slot.health.set_step(-1);
        for (int i = 0; i < a.local_world_size(); ++i) m.ranks[i].health.set_local_rank(i);
        member_order_.push_back(a.node_id());
        world_size_ += a.local_world_size();
      }
      next_health_scan_ = now;
      where = absl::StrCat("generation ", generation_, " RUNNING, ", members_.size(),
                           " nodes to re-adopt within the node timeout");
    } else {
      phase_ = v1::JOB_PHASE_RESTARTING;
      where = absl::StrCat("generation ", generation_, " RESTARTING (re-forming)");
    }
  }
  if (store_ != nullptr) store_->AdvanceGeneration(generation_, &deferred);

  // Partial steps of the restored generation: their shards were acknowledged, so they
  // count. A step found complete was interrupted between its last shard and its commit.
  int64_t restored_shards = 0;
  if (formed_) {
    for (const v1::ShardReport* s : shards) {
      if (s->header().generation() != generation_ || s->step() <= latest_.step()) continue;
      if (!ValidateShardLocked(*s).ok()) continue;
      int32_t received = 0;
      if (ApplyShardLocked(*s, &received).ok()) ++restored_shards;
    }
    std::vector<int64_t> complete;
    for (const auto& [step, p] : pending_steps_) {
      if (p.received == p.num_shards) complete.push_back(step);
    }
    for (int64_t step : complete) {
      if (step > latest_.step()) (void)CommitLocked(step, now, &deferred);
    }
  }
  if (end != nullptr) {
    phase_ = end->phase();
    reason_ = end->reason();
    for (auto& [id, m] : members_) m.alive = false;
    if (store_ != nullptr) {
      store_->Close(absl::FailedPreconditionError(absl::StrCat(
                        "job ", config_.job_id, " has ended (", v1::JobPhase_Name(phase_), ")")),
                    &deferred);
    }
    where = absl::StrCat("job ended ", v1::JobPhase_Name(phase_), ": ", reason_);
  }
  return absl::StrCat("replayed ", records.size(), " journal records: ", where, "; restarts ",
                      restarts_, " of ", config_.max_restarts, "; latest checkpoint step ",
                      latest_.step(), relaunched,
                      restored_shards > 0 ? absl::StrCat("; ", restored_shards,
                                                         " shard reports of unfinished steps")
                                          : "",
                      unknown > 0 ? absl::StrCat("; ", unknown, " unknown records skipped") : "");
}

absl::Status JobState::CheckCurrentLocked(int64_t generation, const char* rpc) const {
  if (generation == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        rpc, ".header.generation is 0: name the generation Join returned (the job is in "
             "generation ", generation_, ")"));
  }
  if (generation < generation_) {
    return absl::FailedPreconditionError(absl::StrCat(rpc, " from generation ", generation,
                                                      " refused: the job is in generation ",
                                                      generation_, " (fenced)"));
  }
  if (generation > generation_) {
    return absl::FailedPreconditionError(absl::StrCat(
        rpc, " names generation ", generation, ", but the job is in generation ", generation_));
  }
  if (!formed_) {
    return absl::FailedPreconditionError(
        absl::StrCat(rpc, ": generation ", generation_, " has not formed yet"));
  }
  return absl::OkStatus();
}

void JobState::EventLocked(v1::JobEvent::Kind kind, const std::string& node_id, int32_t rank,
                           int64_t step, const std::string& message, absl::Time now,
                           Deferred* deferred) {
  if (events_ == nullptr) return;
  v1::JobEvent e;
  e.set_unix_ms(absl::ToUnixMillis(now));
  e.set_generation(generation_);
  e.set_kind(kind);
  e.set_node_id(node_id);
  e.set_rank(rank);
  e.set_step(step);
  e.set_message(message);
  events_->Append(std::move(e));
  deferred->Add([events = events_] { events->Flush(); });
}

absl::Status JobState::JournalLocked(const v1::JournalRecord& record) {
  if (journal_ == nullptr) return absl::OkStatus();
  absl::MutexLock lock(&journal_mu_);
  return journal_->Append(record);
}

void JobState::FailureLocked(const std::string& cause, absl::Time now, Deferred* deferred) {
  CHECK(formed_ && phase_ == v1::JOB_PHASE_RUNNING) << "failure outside RUNNING: " << cause;
  if (restarts_ >= config_.max_restarts) {
    EndLocked(v1::JOB_PHASE_FAILED,
              absl::StrCat("restart budget spent (", restarts_, " of ", config_.max_restarts,
                           " restarts used): ", cause),
              now, deferred);
    return;
  }
  ++restarts_;
  // Backoff only for a crash loop: a generation that failed before any rank completed a
  // step. One that trained restarts at once (its survivors' time is the job's goodput).
  absl::Duration wait = absl::ZeroDuration();
  failures_without_progress_ = generation_progressed_ ? 0 : failures_without_progress_ + 1;
  if (failures_without_progress_ > 0 && config_.restart_backoff > absl::ZeroDuration()) {
    wait = config_.restart_backoff * (1 << std::min(failures_without_progress_ - 1, 4));
  }
  std::string reason = absl::StrCat("restart ", restarts_, " of ", config_.max_restarts, ": ", cause);
  if (wait > absl::ZeroDuration()) {
    absl::StrAppend(&reason, " (no rank completed a step in generation ", generation_,
                    failures_without_progress_ > 1
                        ? absl::StrCat(", ", failures_without_progress_, " generations in a row")
                        : std::string(),
                    ": forming the next one after a backoff of ", absl::FormatDuration(wait), ")");
  }
  BeginGenerationLocked(reason, now, deferred);
  form_not_before_ = now + wait;
}

void JobState::BeginGenerationLocked(const std::string& reason, absl::Time now,
                                     Deferred* deferred) {
  expected_.clear();
  expected_joined_ = 0;
  last_members_.clear();
  for (const auto& [id, m] : members_) {
    last_members_.insert(id);
    if (!m.alive) continue;
    expected_.insert(id);
    if (joiners_.contains(id)) ++expected_joined_;
  }
  generation_ += 1;
  generation_began_ = now;
  formed_ = false;
  generation_progressed_ = false;
  form_not_before_ = absl::InfinitePast();  // FailureLocked sets a backoff after this
  phase_ = v1::JOB_PHASE_RESTARTING;
  reason_ = reason;

  v1::JournalRecord record;
  v1::GenerationRecord* g = record.mutable_generation();
  g->set_generation(generation_);
  g->set_restarts(restarts_);
  g->set_reason(reason);
  absl::Status journaled = JournalLocked(record);

  if (store_ != nullptr) store_->AdvanceGeneration(generation_, deferred);
  pending_steps_.clear();

  v1::Command restart;
  restart.set_kind(v1::Command::KIND_RESTART);
  restart.set_generation(generation_);
  restart.set_grace_ms(absl::ToInt64Milliseconds(config_.stop_grace));
  restart.set_reason(reason);
  absl::Status dead = absl::FailedPreconditionError(
      absl::StrCat("node declared dead; the job moved to generation ", generation_));
  for (auto& [id, m] : members_) {
    if (m.sink == nullptr) continue;
    if (m.alive) {
      deferred->Add([sink = m.sink, restart] {
        sink->Send(restart);
        sink->Close(absl::OkStatus());
      });
    } else {
      deferred->Add([sink = m.sink, dead] { sink->Close(dead); });
    }
  }
  members_.clear();
  member_order_.clear();
  streams_.clear();
  world_size_ = 0;
  ranks_succeeded_ = 0;

  EventLocked(v1::JobEvent::KIND_RESTART, "", -1, latest_.step(),
              absl::StrCat("generation ", generation_, " begins (", expected_.size(),
                           " surviving nodes told to restart; resume from step ", latest_.step(),
                           "): ", reason,
                           journaled.ok() ? "" : absl::StrCat(" [journal: ", journaled.message(), "]")),
              now, deferred);
  MaybeFormLocked(now, deferred);
}

void JobState::EndLocked(v1::JobPhase phase, const std::string& reason, absl::Time now,
                         Deferred* deferred) {
  if (IsFinalPhase(phase_)) return;
  phase_ = phase;
  reason_ = reason;

  v1::JournalRecord record;
  record.mutable_job_end()->set_phase(phase);
  record.mutable_job_end()->set_reason(reason);
  absl::Status journaled = JournalLocked(record);

  v1::Command exit;
  exit.set_kind(v1::Command::KIND_EXIT);
  exit.set_generation(generation_);
  exit.set_grace_ms(absl::ToInt64Milliseconds(config_.stop_grace));
  exit.set_reason(reason);
  exit.set_success(phase == v1::JOB_PHASE_SUCCEEDED);
  for (auto& [id, m] : members_) {
    if (m.sink != nullptr) {
      deferred->Add([sink = std::move(m.sink), exit] {
        sink->Send(exit);
        sink->Close(absl::OkStatus());
      });
    }
    m.stream_id = 0;
  }
  streams_.clear();

  absl::Status ended = absl::FailedPreconditionError(absl::StrCat(
      "job ", config_.job_id, " has ended (", v1::JobPhase_Name(phase), ": ", reason, ")"));
  for (auto& [node, j] : joiners_) {
    deferred->Add([done = std::move(j.done), ended] { done(ended); });
  }
  joiners_.clear();
  tickets_.clear();
  if (store_ != nullptr) store_->Close(ended, deferred);

  EventLocked(v1::JobEvent::KIND_JOB_ENDED, "", -1, latest_.step(),
              absl::StrCat("job ", config_.job_id, " ", v1::JobPhase_Name(phase), ": ", reason,
                           journaled.ok() ? "" : absl::StrCat(" [journal: ", journaled.message(), "]")),
              now, deferred);
}

v1::JobStatus JobState::StatusLocked(absl::Time now) const {
  v1::JobStatus s;
  s.set_job_id(config_.job_id);
  s.set_phase(phase_);
  s.set_generation(generation_);
  s.set_restarts(restarts_);
  s.set_max_restarts(config_.max_restarts);
  s.set_world_size(world_size_);
  *s.mutable_latest_checkpoint() = latest_;
  for (const v1::InvalidCheckpoint& bad : invalid_) *s.add_invalid_checkpoints() = bad;
  s.set_reason(reason_);
  int64_t min_step = -1;
  int64_t max_step = -1;
  int32_t alive = 0;
  if (formed_ || IsFinalPhase(phase_)) {
    s.set_nodes_joined(static_cast<int32_t>(members_.size()));
    for (const std::string& id : member_order_) {
      const Member& m = members_.at(id);
      if (m.alive) ++alive;
      v1::NodeStatus* n = s.add_nodes();
      *n->mutable_assignment() = m.assignment;
      n->set_alive(m.alive);
      n->set_last_heartbeat_age_ms(absl::ToInt64Milliseconds(now - m.last_beat));
      for (const RankSlot& slot : m.ranks) {
        *n->add_ranks() = slot.health;
        if (slot.health.state() != v1::RANK_STATE_RUNNING) continue;
        int64_t step = slot.health.step();
        min_step = min_step < 0 ? step : std::min(min_step, step);
        max_step = std::max(max_step, step);
      }
    }
  } else {
    s.set_nodes_joined(static_cast<int32_t>(joiners_.size()));
    for (const auto& [id, j] : joiners_) {
      v1::NodeStatus* n = s.add_nodes();
      n->mutable_assignment()->set_node_id(id);
      n->mutable_assignment()->set_address(j.request.address());
      n->mutable_assignment()->set_local_world_size(j.request.local_world_size());
      n->mutable_assignment()->set_node_rank(-1);
      n->mutable_assignment()->set_first_rank(-1);
      n->set_alive(true);
      ++alive;
    }
  }
  s.set_nodes_alive(alive);
  s.set_min_step(min_step);
  s.set_max_step(max_step);
  return s;
}

v1::JobStatus JobState::Status(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  return StatusLocked(now);
}

v1::JobStatus JobState::Stop(const std::string& reason, absl::Time now) {
  Deferred deferred;
  absl::MutexLock lock(&mu_);
  if (shutdown_.ok()) {
    EndLocked(v1::JOB_PHASE_STOPPED, reason.empty() ? "stopped by request" : reason, now,
              &deferred);
  }
  return StatusLocked(now);
}

void JobState::Tick(absl::Time now) {
  Deferred deferred;
  absl::MutexLock lock(&mu_);
  if (!shutdown_.ok() || IsFinalPhase(phase_)) return;
  ExpireJoinsLocked(now, &deferred);
  MaybeFormLocked(now, &deferred);
  if (formed_ && phase_ == v1::JOB_PHASE_RUNNING && now >= next_health_scan_) {
    // A tenth of the shortest timeout: detection within 10% late, and a scan over every
    // rank at most a few times a second at scale.
    absl::Duration period = std::min(config_.node_timeout, config_.hang_timeout) / 10;
    period = std::clamp(period, absl::Milliseconds(1), absl::Seconds(1));
    next_health_scan_ = now + period;
    ScanHealthLocked(now, &deferred);
  }
}

void JobState::Shutdown(const absl::Status& status) {
  Deferred deferred;
  absl::MutexLock lock(&mu_);
  if (!shutdown_.ok()) return;
  shutdown_ = status.ok() ? absl::UnavailableError("coordinator shutting down") : status;
  for (auto& [node, j] : joiners_) {
    deferred.Add([done = std::move(j.done), s = shutdown_] { done(s); });
  }
  joiners_.clear();
  tickets_.clear();
  for (auto& [id, m] : members_) {
    if (m.sink != nullptr) deferred.Add([sink = std::move(m.sink), s = shutdown_] { sink->Close(s); });
    m.stream_id = 0;
  }
  streams_.clear();
}

v1::JobPhase JobState::phase() const {
  absl::MutexLock lock(&mu_);
  return phase_;
}

int64_t JobState::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

bool JobState::ended() const {
  absl::MutexLock lock(&mu_);
  return IsFinalPhase(phase_);
}

bool JobState::AwaitEnd(absl::Time deadline) const {
  auto ended = [](const JobState* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return IsFinalPhase(s->phase_) || !s->shutdown_.ok();
  };
  bool done = mu_.LockWhenWithDeadline(absl::Condition(+ended, this), deadline);
  bool final = IsFinalPhase(phase_);
  mu_.Unlock();
  return done && final;
}

JobMetrics JobState::Metrics(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  JobMetrics m;
  m.generation = generation_;
  m.phase = phase_;
  m.restarts = restarts_;
  m.nodes_waiting = static_cast<int32_t>(joiners_.size());
  m.nodes_joined = formed_ ? static_cast<int32_t>(members_.size()) : m.nodes_waiting;
  m.world_size = world_size_;
  m.commits = commits_;
  m.latest_step = latest_.step();
  for (const auto& [id, member] : members_) {
    if (!member.alive) continue;
    ++m.nodes_alive;
    m.max_heartbeat_lag_s = std::max(m.max_heartbeat_lag_s, absl::ToDoubleSeconds(now - member.last_beat));
  }
  return m;
}

}  // namespace colossus::launcher
