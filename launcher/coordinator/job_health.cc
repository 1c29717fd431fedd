// JobState's health: node streams, beats, and the scan for dead nodes and stuck ranks.
#include <utility>

#include "absl/strings/str_cat.h"
#include "colossus/launcher/job_state.h"

namespace colossus::launcher {
namespace {

std::string RankName(int32_t rank, const std::string& node, int32_t local_rank) {
  return absl::StrCat("rank ", rank, " (node ", node, ", local rank ", local_rank, ")");
}

std::string Collective(const v1::RankHealth& h) {
  if (h.collective().empty() && h.collective_seq() == 0) return "no collective reported";
  return absl::StrCat("collective ", h.collective().empty() ? "?" : h.collective(), " #",
                      h.collective_seq());
}

}  // namespace

absl::StatusOr<uint64_t> JobState::OpenHealthStream(const v1::NodeHealth& first,
                                                    std::shared_ptr<CommandSink> sink,
                                                    absl::Time now) {
  Deferred deferred;
  absl::MutexLock lock(&mu_);
  if (!shutdown_.ok()) return shutdown_;
  const std::string& node = first.node_id();
  if (node.empty()) {
    return absl::InvalidArgumentError(
        "NodeHealth.node_id is empty (the first message of a health stream names its node)");
  }
  if (IsFinalPhase(phase_)) {
    // The agent missed the end (its stream was down): tell it now.
    v1::Command exit;
    exit.set_kind(v1::Command::KIND_EXIT);
    exit.set_generation(generation_);
    exit.set_grace_ms(absl::ToInt64Milliseconds(config_.stop_grace));
    exit.set_reason(reason_);
    exit.set_success(phase_ == v1::JOB_PHASE_SUCCEEDED);
    deferred.Add([sink = std::move(sink), exit] {
      sink->Send(exit);
      sink->Close(absl::OkStatus());
    });
    return uint64_t{0};
  }
  if (absl::Status s = CheckCurrentLocked(first.header().generation(), "Health"); !s.ok()) return s;
  auto it = members_.find(node);
  if (it == members_.end() || !it->second.alive) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node ", node, " is not a member of generation ", generation_, " (Join first)"));
  }
  Member& m = it->second;
  if (absl::Status s = ValidateHealthLocked(node, m, first); !s.ok()) return s;
  if (m.sink != nullptr) {
    deferred.Add([old = std::move(m.sink), node] {
      old->Close(absl::AbortedError(
          absl::StrCat("health stream of node ", node, " replaced by a newer one")));
    });
    streams_.erase(m.stream_id);
  }
  uint64_t id = next_stream_++;
  streams_[id] = node;
  m.stream_id = id;
  m.sink = std::move(sink);
  ApplyHealthLocked(node, m, first, now, &deferred);
  return id;
}

absl::Status JobState::Beat(uint64_t stream_id, const v1::NodeHealth& message, absl::Time now) {
  Deferred deferred;
  absl::MutexLock lock(&mu_);
  if (!shutdown_.ok()) return shutdown_;
  if (IsFinalPhase(phase_)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", config_.job_id, " has ended (", v1::JobPhase_Name(phase_), ")"));
  }
  auto s = streams_.find(stream_id);
  if (s == streams_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "this health stream is no longer current (its generation ended or a newer stream "
        "replaced it); the job is in generation ", generation_));
  }
  const std::string node = s->second;
  if (message.header().generation() != 0) {
    if (absl::Status st = CheckCurrentLocked(message.header().generation(), "Health"); !st.ok()) {
      return st;
    }
  }
  if (!message.node_id().empty() && message.node_id() != node) {
    return absl::InvalidArgumentError(absl::StrCat("NodeHealth.node_id ", message.node_id(),
                                                   " differs from the stream's node ", node));
  }
  Member& m = members_.at(node);
  if (absl::Status st = ValidateHealthLocked(node, m, message); !st.ok()) return st;
  ApplyHealthLocked(node, m, message, now, &deferred);
  return absl::OkStatus();
}

void JobState::CloseHealthStream(uint64_t stream_id) {
  std::shared_ptr<CommandSink> gone;  // released after the unlock
  absl::MutexLock lock(&mu_);
  auto s = streams_.find(stream_id);
  if (s == streams_.end()) return;
  auto m = members_.find(s->second);
  if (m != members_.end() && m->second.stream_id == stream_id) {
    gone = std::move(m->second.sink);
    m->second.stream_id = 0;
  }
  streams_.erase(s);
}

absl::Status JobState::ValidateHealthLocked(const std::string& node_id, const Member& member,
                                            const v1::NodeHealth& message) const {
  const int32_t n = static_cast<int32_t>(member.ranks.size());
  for (int i = 0; i < message.ranks_size(); ++i) {
    const v1::RankHealth& r = message.ranks(i);
    if (r.local_rank() < 0 || r.local_rank() >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat("NodeHealth.ranks[", i, "].local_rank ", r.local_rank(), " of node ",
                       node_id, " is outside [0, ", n, ")"));
    }
    if (!v1::RankState_IsValid(r.state())) {
      return absl::InvalidArgumentError(absl::StrCat("NodeHealth.ranks[", i, "].state ",
                                                     static_cast<int>(r.state()),
                                                     " is not a RankState"));
    }
  }
  return absl::OkStatus();
}

void JobState::ApplyHealthLocked(const std::string& node_id, Member& member,
                                 const v1::NodeHealth& message, absl::Time now,
                                 Deferred* deferred) {
  member.last_beat = now;
  std::string failure;
  for (const v1::RankHealth& r : message.ranks()) {
    RankSlot& slot = member.ranks[static_cast<size_t>(r.local_rank())];
    const v1::RankState before = slot.health.state();
    const int64_t step_before = slot.health.step();
    if (r.state() == v1::RANK_STATE_RUNNING &&
        (before != v1::RANK_STATE_RUNNING || r.step() > step_before)) {
      slot.step_advanced_at = now;
    }
    if (r.state() == v1::RANK_STATE_SUCCEEDED && before != v1::RANK_STATE_SUCCEEDED) {
      ++ranks_succeeded_;
    } else if (r.state() != v1::RANK_STATE_SUCCEEDED && before == v1::RANK_STATE_SUCCEEDED) {
      --ranks_succeeded_;
    }
    // A step completed in this generation (status files are per generation: -1 until one
    // ends), whether the rank is still running or has failed since.
    if (r.step() >= 0) generation_progressed_ = true;
    slot.health = r;
    if (r.state() == v1::RANK_STATE_FAILED && before != v1::RANK_STATE_FAILED) {
      const int32_t rank = member.assignment.first_rank() + r.local_rank();
      std::string how = r.signal() != 0 ? absl::StrCat("killed by signal ", r.signal())
                                        : absl::StrCat("exit code ", r.exit_code());
      std::string message_text =
          absl::StrCat(RankName(rank, node_id, r.local_rank()), " failed at step ", r.step(),
                       ": ", how, r.detail().empty() ? "" : absl::StrCat(": ", r.detail()));
      EventLocked(v1::JobEvent::KIND_RANK_FAILED, node_id, rank, r.step(), message_text, now,
                  deferred);
      if (failure.empty()) failure = std::move(message_text);
    }
  }
  if (!failure.empty()) {
    FailureLocked(failure, now, deferred);  // `member` is gone from here on
    return;
  }
  if (world_size_ > 0 && ranks_succeeded_ == world_size_) {
    EndLocked(v1::JOB_PHASE_SUCCEEDED,
              absl::StrCat("all ", world_size_, " ranks of generation ", generation_, " succeeded"),
              now, deferred);
  }
}

void JobState::ScanHealthLocked(absl::Time now, Deferred* deferred) {
  // A collective hang stalls every rank at once: name the first few, count the rest.
  constexpr int kMaxEventsPerScan = 16;
  int found = 0;
  std::string failure;
  auto report = [&](v1::JobEvent::Kind kind, const std::string& node, int32_t rank, int64_t step,
                    std::string text) {
    if (found++ < kMaxEventsPerScan) EventLocked(kind, node, rank, step, text, now, deferred);
    if (failure.empty()) failure = std::move(text);
  };
  for (const std::string& node_id : member_order_) {
    Member& m = members_.at(node_id);
    if (!m.alive) continue;
    const absl::Duration silent = now - m.last_beat;
    if (silent > config_.node_timeout) {
      m.alive = false;
      const int32_t first = m.assignment.first_rank();
      std::string text = absl::StrCat(
          "node ", node_id, " (ranks ", first, "..", first + m.assignment.local_world_size() - 1,
          ") silent for ", absl::FormatDuration(absl::Trunc(silent, absl::Milliseconds(1))),
          ", past the node timeout of ", absl::FormatDuration(config_.node_timeout), ": dead");
      report(v1::JobEvent::KIND_NODE_DEAD, node_id, -1, -1, std::move(text));
      continue;
    }
    for (const RankSlot& slot : m.ranks) {
      const v1::RankHealth& h = slot.health;
      if (h.state() != v1::RANK_STATE_RUNNING) continue;
      const absl::Duration still = now - slot.step_advanced_at;
      if (still <= config_.hang_timeout) continue;
      const int32_t rank = m.assignment.first_rank() + h.local_rank();
      std::string text = absl::StrCat(
          RankName(rank, node_id, h.local_rank()), " stuck at step ", h.step(), " for ",
          absl::FormatDuration(absl::Trunc(still, absl::Milliseconds(1))), " (hang timeout ",
          absl::FormatDuration(config_.hang_timeout), "), waiting in ", Collective(h));
      report(v1::JobEvent::KIND_RANK_STUCK, node_id, rank, h.step(), std::move(text));
    }
  }
  if (failure.empty()) return;
  if (found > 1) absl::StrAppend(&failure, " (and ", found - 1, " more dead nodes or stuck ranks)");
  FailureLocked(failure, now, deferred);
}

}  // namespace colossus::launcher
