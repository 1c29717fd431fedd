#include "job_view.h"

#include <algorithm>
#include <fstream>
#include <deque>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace colossus::launcher {
namespace {

std::string Rate(double tokens_per_s) {
  if (tokens_per_s >= 1e6) return absl::StrFormat("%.1fM tok/s", tokens_per_s / 1e6);
  if (tokens_per_s >= 1e3) return absl::StrFormat("%.1fk tok/s", tokens_per_s / 1e3);
  return absl::StrFormat("%.0f tok/s", tokens_per_s);
}

std::string Elapsed(absl::Duration d) {
  const int64_t s = absl::ToInt64Seconds(d);
  if (s >= 3600) return absl::StrFormat("%dh%02dm%02ds", s / 3600, s / 60 % 60, s % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

std::deque<std::string> LastLines(const std::string& path, size_t n) {
  std::deque<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > n) lines.pop_front();
  }
  return lines;
}

}  // namespace

std::string PhaseName(v1::JobPhase phase) {
  switch (phase) {
    case v1::JOB_PHASE_WAITING: return "waiting";
    case v1::JOB_PHASE_RUNNING: return "running";
    case v1::JOB_PHASE_RESTARTING: return "restarting";
    case v1::JOB_PHASE_SUCCEEDED: return "succeeded";
    case v1::JOB_PHASE_FAILED: return "failed";
    case v1::JOB_PHASE_STOPPED: return "stopped";
    default: return "unknown";
  }
}

int64_t StepsDone(const v1::JobStatus& s) { return s.max_step() >= 0 ? s.min_step() + 1 : 0; }

int64_t TotalSteps(const v1::JobStatus& s) {
  int64_t total = 0;
  for (const v1::NodeStatus& n : s.nodes()) {
    for (const v1::RankHealth& r : n.ranks()) {
      if (r.state() == v1::RANK_STATE_RUNNING) total = std::max(total, r.total_steps());
    }
  }
  return total;
}

void EtaEstimator::Observe(const v1::JobStatus& s, absl::Time now) {
  if (s.phase() != v1::JOB_PHASE_RUNNING || s.max_step() < 0) return;
  const int64_t done = StepsDone(s);
  // A new generation resumes from a checkpoint: its first steps re-do work, and the gap
  // before them is recovery, not step time.
  if (s.generation() != generation_ || (!samples_.empty() && done < samples_.back().done)) {
    samples_.clear();
    generation_ = s.generation();
  }
  total_ = TotalSteps(s);
  samples_.push_back({now, done});
  while (samples_.size() > 2 && now - samples_[1].at >= window_) samples_.pop_front();
}

std::optional<absl::Duration> EtaEstimator::Remaining() const {
  if (samples_.size() < 2 || total_ <= 0) return std::nullopt;
  const Sample& a = samples_.front();
  const Sample& b = samples_.back();
  const int64_t steps = b.done - a.done;
  if (steps <= 0 || b.at - a.at < absl::Seconds(2)) return std::nullopt;
  const int64_t left = std::max<int64_t>(0, total_ - b.done);
  return (b.at - a.at) * (static_cast<double>(left) / static_cast<double>(steps));
}

std::string StatusLine(const v1::JobStatus& s, absl::Duration elapsed,
                       std::optional<absl::Duration> eta) {
  std::string line = absl::StrCat("gen ", s.generation(), " | ", PhaseName(s.phase()));
  const int nodes = s.nodes_size();
  absl::StrAppend(&line, " | nodes ", s.nodes_alive(), "/", nodes > 0 ? nodes : s.nodes_joined());
  if (s.world_size() > 0) absl::StrAppend(&line, " | ranks ", s.world_size());
  double loss_sum = 0, tokens = 0;
  int losses = 0;
  for (const v1::NodeStatus& n : s.nodes()) {
    for (const v1::RankHealth& r : n.ranks()) {
      if (r.state() != v1::RANK_STATE_RUNNING) continue;
      if (r.loss() != 0) {
        loss_sum += r.loss();
        ++losses;
      }
      tokens += r.tokens_per_s();
    }
  }
  if (s.phase() == v1::JOB_PHASE_RUNNING && s.max_step() >= 0) {
    absl::StrAppend(&line, " | step ", StepsDone(s));
    if (const int64_t total = TotalSteps(s); total > 0) absl::StrAppend(&line, "/", total);
  }
  if (losses > 0) absl::StrAppend(&line, absl::StrFormat(" | loss %.3f", loss_sum / losses));
  if (tokens > 0) absl::StrAppend(&line, " | ", Rate(tokens));
  if (eta.has_value()) absl::StrAppend(&line, " | ETA ", Elapsed(*eta));
  absl::StrAppend(&line, " | restarts ", s.restarts(), "/", s.max_restarts(), " | ", Elapsed(elapsed));
  return line;
}

std::string EventLine(const v1::JobEvent& e) {
  // The coordinator's messages are whole sentences naming node, rank and cause.
  if (!e.message().empty()) return e.message();
  switch (e.kind()) {
    case v1::JobEvent::KIND_NODE_JOINED: return absl::StrCat("node ", e.node_id(), " joined");
    case v1::JobEvent::KIND_GENERATION_FORMED: return absl::StrCat("generation ", e.generation(), " formed");
    case v1::JobEvent::KIND_NODE_DEAD: return absl::StrCat("node ", e.node_id(), " lost");
    case v1::JobEvent::KIND_RANK_FAILED: return absl::StrCat("rank ", e.rank(), " on ", e.node_id(), " failed");
    case v1::JobEvent::KIND_RANK_STUCK: return absl::StrCat("rank ", e.rank(), " on ", e.node_id(), " stuck");
    case v1::JobEvent::KIND_RESTART: return absl::StrCat("restart into generation ", e.generation());
    case v1::JobEvent::KIND_CHECKPOINT_COMMITTED: return absl::StrCat("checkpoint at step ", e.step(), " committed");
    case v1::JobEvent::KIND_JOB_ENDED: return "job ended";
    case v1::JobEvent::KIND_NODE_LEFT: return absl::StrCat("node ", e.node_id(), " left");
    default: return "";
  }
}

std::string FailureSummary(const v1::JobStatus& s, const std::string& run_dir) {
  std::string out = absl::StrCat("job ", s.job_id(), " ", PhaseName(s.phase()), " in generation ",
                                 s.generation(), " after ", s.restarts(), " restart(s)");
  if (!s.reason().empty()) absl::StrAppend(&out, ": ", s.reason());
  absl::StrAppend(&out, "\n");
  for (const v1::NodeStatus& n : s.nodes()) {
    for (const v1::RankHealth& r : n.ranks()) {
      if (r.state() != v1::RANK_STATE_FAILED) continue;
      const int rank = n.assignment().first_rank() + r.local_rank();
      std::string how = r.signal() != 0 ? absl::StrCat("killed by signal ", r.signal())
                                        : absl::StrCat("exit code ", r.exit_code());
      absl::StrAppend(&out, "  node ", n.assignment().node_id(), ", rank ", rank, ": ", how, "\n");
      // The detail's first line repeats the exit; the rest are the rank's last lines.
      std::vector<std::string> lines = absl::StrSplit(r.detail(), '\n');
      if (lines.size() > 1) {
        for (size_t i = 1; i < lines.size(); ++i) absl::StrAppend(&out, "    | ", lines[i], "\n");
      } else if (!run_dir.empty()) {
        const std::string log = absl::StrCat(run_dir, "/logs/gen", s.generation(), "/rank", rank, ".err");
        for (const std::string& line : LastLines(log, 10)) absl::StrAppend(&out, "    | ", line, "\n");
      }
      if (!run_dir.empty()) {
        absl::StrAppend(&out, "    log: ", run_dir, "/logs/gen", s.generation(), "/rank", rank,
                        ".{out,err} on ", n.assignment().node_id(), "\n");
      }
    }
  }
  return out;
}

}  // namespace colossus::launcher
