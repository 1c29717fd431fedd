// JobState's rendezvous: held Joins, Leave, and forming a generation.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "colossus/launcher/job_state.h"

namespace colossus::launcher {
namespace {

constexpr size_t kMaxNodeIdBytes = 256;

std::string Describe(const v1::JoinRequest& r) {
  return absl::StrCat("node ", r.node_id(), " (", r.local_world_size(), " ranks, address ",
                      r.address(), ")");
}

}  // namespace

uint64_t JobState::Join(const v1::JoinRequest& request, absl::Time now, JoinDone done) {
  Deferred deferred;
  absl::MutexLock lock(&mu_);
  auto refuse = [&](absl::Status status) {
    deferred.Add([done = std::move(done), status = std::move(status)] { done(status); });
    return uint64_t{0};
  };
  if (!shutdown_.ok()) return refuse(shutdown_);
  const std::string& node = request.node_id();
  if (node.empty()) return refuse(absl::InvalidArgumentError("JoinRequest.node_id is empty"));
  if (node.size() > kMaxNodeIdBytes) {
    return refuse(absl::InvalidArgumentError(absl::StrCat(
        "JoinRequest.node_id of ", node.size(), " bytes exceeds ", kMaxNodeIdBytes)));
  }
  if (request.address().empty()) {
    return refuse(absl::InvalidArgumentError(absl::StrCat(
        "JoinRequest.address of node ", node, " is empty (workers need a reachable address)")));
  }
  if (request.local_world_size() < 1 || request.local_world_size() > config_.max_local_world_size) {
    return refuse(absl::InvalidArgumentError(
        absl::StrCat("JoinRequest.local_world_size ", request.local_world_size(), " of node ", node,
                     " must be in [1, ", config_.max_local_world_size, "]")));
  }
  if (request.timeout_ms() < 0) {
    return refuse(absl::InvalidArgumentError(
        absl::StrCat("JoinRequest.timeout_ms ", request.timeout_ms(), " is negative")));
  }
  if (request.header().generation() > generation_) {
    return refuse(absl::FailedPreconditionError(
        absl::StrCat("Join of node ", node, " names generation ", request.header().generation(),
                     ", but the job is in generation ", generation_)));
  }
  if (IsFinalPhase(phase_)) {
    return refuse(absl::FailedPreconditionError(absl::StrCat(
        "job ", config_.job_id, " has ended (", v1::JobPhase_Name(phase_), ": ", reason_, ")")));
  }
  if (auto m = members_.find(node); formed_ && m != members_.end() && m->second.alive) {
    return refuse(absl::AlreadyExistsError(absl::StrCat(
        "node ", node, " is already a live member of generation ", generation_,
        " (node rank ", m->second.assignment.node_rank(), "); a restarted agent is admitted "
        "once the old one is declared dead (node timeout ",
        absl::FormatDuration(config_.node_timeout), ")")));
  }
  if (auto j = joiners_.find(node); j != joiners_.end()) {
    const std::string& old = j->second.request.incarnation();
    if (old.empty() || old != request.incarnation()) {
      return refuse(absl::AlreadyExistsError(absl::StrCat(
          "node ", node, " is already waiting to join generation ", generation_,
          " (incarnation '", old, "'; this Join has incarnation '", request.incarnation(), "')")));
    }
    // The same agent asking again (its earlier call timed out on its side): the newer
    // call replaces the older one.
    Joiner replaced = RemoveJoinerLocked(node);
    deferred.Add([done = std::move(replaced.done), node] {
      done(absl::AbortedError(
          absl::StrCat("Join of node ", node, " superseded by a newer Join of the same agent")));
    });
  }
  size_t capacity = static_cast<size_t>(config_.max_nodes) +
                    static_cast<size_t>(std::max(config_.max_extra_waiting_nodes, 0));
  if (joiners_.size() >= capacity) {
    return refuse(absl::ResourceExhaustedError(
        absl::StrCat("Join of node ", node, " refused: ", joiners_.size(),
                     " nodes are already waiting (max_nodes ", config_.max_nodes, ")")));
  }

  Joiner& j = joiners_[node];
  j.request = request;
  j.ticket = next_ticket_++;
  j.order = join_order_++;
  j.timeout = request.timeout_ms() > 0 ? absl::Milliseconds(request.timeout_ms())
                                       : config_.join_timeout;
  j.deadline = now + j.timeout;
  j.done = std::move(done);
  tickets_[j.ticket] = node;
  last_join_ = now;
  next_join_deadline_ = std::min(next_join_deadline_, j.deadline);
  if (expected_.contains(node)) ++expected_joined_;
  uint64_t ticket = j.ticket;

  EventLocked(v1::JobEvent::KIND_NODE_JOINED, node, -1, -1,
              absl::StrCat(Describe(request), " waits for generation ",
                           formed_ ? generation_ + 1 : generation_, " (", joiners_.size(),
                           " waiting; min_nodes ", config_.min_nodes, ", max_nodes ",
                           config_.max_nodes, ")"),
              now, &deferred);
  MaybeFormLocked(now, &deferred);
  return ticket;
}

JobState::Joiner JobState::RemoveJoinerLocked(const std::string& node_id) {
  auto it = joiners_.find(node_id);
  Joiner j = std::move(it->second);
  joiners_.erase(it);
  tickets_.erase(j.ticket);
  if (expected_.contains(node_id)) --expected_joined_;
  return j;
}

bool JobState::CancelJoin(uint64_t ticket, absl::Time now) {
  Joiner gone;  // destroyed after the unlock: its callback may own the call
  absl::MutexLock lock(&mu_);
  auto it = tickets_.find(ticket);
  if (it == tickets_.end()) return false;
  gone = RemoveJoinerLocked(std::string(it->second));
  return true;
}

absl::Status JobState::Leave(const v1::LeaveRequest& request, absl::Time now) {
  Deferred deferred;
  absl::MutexLock lock(&mu_);
  if (!shutdown_.ok()) return shutdown_;
  const std::string& node = request.node_id();
  if (node.empty()) return absl::InvalidArgumentError("LeaveRequest.node_id is empty");
  int64_t generation = request.header().generation();
  if (generation > generation_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "Leave of node ", node, " names generation ", generation, ", but the job is in generation ",
        generation_));
  }
  if (IsFinalPhase(phase_)) return absl::OkStatus();
  std::string why = request.reason().empty() ? "no reason given" : request.reason();
  if (joiners_.contains(node)) {
    Joiner j = RemoveJoinerLocked(node);
    deferred.Add([done = std::move(j.done), node, why] {
      done(absl::CancelledError(absl::StrCat("node ", node, " left: ", why)));
    });
  }
  if (expected_.erase(node) > 0) MaybeFormLocked(now, &deferred);
  auto m = members_.find(node);
  if (!formed_ || m == members_.end() || !m->second.alive) return absl::OkStatus();
  if (generation != 0 && generation != generation_) return absl::OkStatus();  // an old membership
  m->second.alive = false;
  std::string message = absl::StrCat("node ", node, " (node rank ", m->second.assignment.node_rank(),
                                     ") left: ", why);
  EventLocked(v1::JobEvent::KIND_NODE_LEFT, node, -1, -1, message, now, &deferred);
  // A drained node is not a failure: the group re-forms without spending a restart.
  if (phase_ == v1::JOB_PHASE_RUNNING) BeginGenerationLocked(message, now, &deferred);
  return absl::OkStatus();
}

void JobState::ExpireJoinsLocked(absl::Time now, Deferred* deferred) {
  if (now < next_join_deadline_) return;
  next_join_deadline_ = absl::InfiniteFuture();
  std::vector<std::string> expired;
  for (const auto& [node, j] : joiners_) {
    if (j.deadline <= now) {
      expired.push_back(node);
    } else {
      next_join_deadline_ = std::min(next_join_deadline_, j.deadline);
    }
  }
  for (const std::string& node : expired) {
    Joiner j = RemoveJoinerLocked(node);
    absl::Status status = absl::DeadlineExceededError(absl::StrCat(
        "Join of node ", node, " timed out after ", absl::FormatDuration(j.timeout),
        " waiting for generation ", formed_ ? generation_ + 1 : generation_, " (",
        joiners_.size(), " other nodes waiting; min_nodes ", config_.min_nodes, ", max_nodes ",
        config_.max_nodes, ")"));
    deferred->Add([done = std::move(j.done), status] { done(status); });
  }
}

void JobState::MaybeFormLocked(absl::Time now, Deferred* deferred) {
  if (formed_ || IsFinalPhase(phase_) || !shutdown_.ok()) return;
  if (now < form_not_before_) return;  // restart backoff: Tick forms it when it has passed
  const size_t n = joiners_.size();
  if (n == 0) return;
  const size_t min_nodes = static_cast<size_t>(config_.min_nodes);
  bool form = n >= static_cast<size_t>(config_.max_nodes);
  if (!form && n >= min_nodes) {
    const bool survivors_back =
        !expected_.empty() && static_cast<size_t>(expected_joined_) == expected_.size();
    // After a restart the survivors are stopping their workers and re-joining; forming
    // from the first min_nodes of them would leave the rest out for a whole generation.
    // They get node_timeout to come back (one that does not is as good as dead).
    const bool survivors_awaited = !expected_.empty() && !survivors_back &&
                                   now - generation_began_ < config_.node_timeout;
    const bool settled = now - last_join_ >= config_.settle;
    form = survivors_back || (settled && !survivors_awaited);
  }
  if (form) FormLocked(now, deferred);
}

void JobState::FormLocked(absl::Time now, Deferred* deferred) {
  // Choose at most max_nodes: survivors of the last generation first, then join order.
  std::vector<std::pair<std::pair<int, uint64_t>, std::string>> candidates;
  candidates.reserve(joiners_.size());
  for (const auto& [node, j] : joiners_) {
    candidates.push_back({{expected_.contains(node) ? 0 : 1, j.order}, node});
  }
  const size_t max_nodes = static_cast<size_t>(config_.max_nodes);
  if (candidates.size() > max_nodes) {
    std::nth_element(candidates.begin(), candidates.begin() + static_cast<ptrdiff_t>(max_nodes),
                     candidates.end());
    candidates.resize(max_nodes);
  }
  std::vector<std::string> chosen;
  chosen.reserve(candidates.size());
  for (auto& c : candidates) chosen.push_back(std::move(c.second));
  std::sort(chosen.begin(), chosen.end());  // rank order is node_id order
  // Members of the last generation left out (an elastic shrink): named in the event, so
  // that the lost node is not only implied by a smaller world size. Both kinds count: a
  // node declared dead, and a survivor told to restart that did not re-join in time.
  std::vector<std::string> left_out;
  for (const std::string& node : last_members_) {
    if (!std::binary_search(chosen.begin(), chosen.end(), node)) left_out.push_back(node);
  }
  std::sort(left_out.begin(), left_out.end());

  v1::JournalRecord record;
  v1::GenerationRecord* g = record.mutable_generation();
  g->set_generation(generation_);
  g->set_restarts(restarts_);
  g->set_reason(reason_);

  members_.clear();
  member_order_.clear();
  streams_.clear();
  members_.reserve(chosen.size());
  int32_t first_rank = 0;
  std::vector<Joiner> joined;
  joined.reserve(chosen.size());
  for (size_t i = 0; i < chosen.size(); ++i) {
    Joiner j = RemoveJoinerLocked(chosen[i]);
    Member& m = members_[chosen[i]];
    m.assignment.set_node_id(chosen[i]);
    m.assignment.set_address(j.request.address());
    m.assignment.set_node_rank(static_cast<int32_t>(i));
    m.assignment.set_first_rank(first_rank);
    m.assignment.set_local_world_size(j.request.local_world_size());
    m.incarnation = j.request.incarnation();
    m.alive = true;
    m.last_beat = now;  // node_timeout from now to open the health stream
    m.ranks.resize(static_cast<size_t>(j.request.local_world_size()));
    for (size_t r = 0; r < m.ranks.size(); ++r) {
      m.ranks[r].health.set_local_rank(static_cast<int32_t>(r));
      m.ranks[r].health.set_step(-1);
    }
    *g->add_nodes() = m.assignment;
    member_order_.push_back(chosen[i]);
    first_rank += j.request.local_world_size();
    joined.push_back(std::move(j));
  }
  world_size_ = first_rank;
  ranks_succeeded_ = 0;
  formed_ = true;
  phase_ = v1::JOB_PHASE_RUNNING;
  expected_.clear();
  expected_joined_ = 0;
  last_members_.clear();
  next_health_scan_ = now;

  // Durable before any member hears of it: a coordinator restarted after a Join returned
  // knows the generation that Join named.
  absl::Status journaled = JournalLocked(record);

  v1::JoinResponse common;
  common.set_generation(generation_);
  common.set_num_nodes(static_cast<int32_t>(chosen.size()));
  common.set_world_size(world_size_);
  common.set_master_address(members_.at(member_order_.front()).assignment.address());
  *common.mutable_resume_from() = latest_;
  common.set_restarts(restarts_);
  common.set_max_restarts(config_.max_restarts);
  common.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(config_.heartbeat_interval));
  common.set_node_timeout_ms(absl::ToInt64Milliseconds(config_.node_timeout));
  for (size_t i = 0; i < joined.size(); ++i) {
    v1::JoinResponse response = common;
    *response.mutable_assignment() = members_.at(chosen[i]).assignment;
    deferred->Add([done = std::move(joined[i].done), response = std::move(response)]() mutable {
      done(std::move(response));
    });
  }

  EventLocked(v1::JobEvent::KIND_GENERATION_FORMED, "", -1, latest_.step(),
              absl::StrCat("generation ", generation_, " formed: ", chosen.size(),
                           " nodes, world size ", world_size_,
                           left_out.empty() ? ""
                                            : absl::StrCat(" without node ", absl::StrJoin(left_out, ", node "),
                                                           " of the last generation"),
                           ", resume from step ",
                           latest_.step(), ", restarts ", restarts_, " of ", config_.max_restarts,
                           journaled.ok() ? "" : absl::StrCat(" [journal: ", journaled.message(), "]")),
              now, deferred);
}

}  // namespace colossus::launcher
