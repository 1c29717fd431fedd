#include "agent_fleet.h"

#include "absl/strings/str_cat.h"

namespace colossus::launcher {

AgentFleet::AgentFleet(std::vector<AgentLaunch> plan, std::string token, std::string log_dir,
                       std::function<void(int, std::string_view)> on_line,
                       std::function<void(const WorkerExit&)> on_exit)
    : plan_(std::move(plan)),
      token_(std::move(token)),
      log_dir_(std::move(log_dir)),
      on_line_(std::move(on_line)),
      on_exit_(std::move(on_exit)),
      agents_(plan_.size()),
      starts_(plan_.size(), 0) {}

AgentFleet::~AgentFleet() {
  // Agents still running are killed (and reaped) by their supervisors' destructors.
  agents_.clear();
}

absl::Status AgentFleet::Start(int node) {
  const AgentLaunch& launch = plan_[node];
  WorkerProcessSpec spec;
  spec.local_rank = spec.rank = node;
  spec.argv = launch.argv;
  // A restarted agent gets log files of its own: the first one's hold why it ended.
  spec.log_name = starts_[node] == 0 ? absl::StrCat("agent-", launch.node)
                                     : absl::StrCat("agent-", launch.node, ".", starts_[node]);
  ++starts_[node];
  spec.echo_prefix = "";
  // Remote agents read the token from stdin; its end-of-file tells them we are gone.
  if (launch.remote) spec.stdin_data = token_ + "\n";
  SupervisorOptions options;
  options.log_dir = log_dir_;
  options.echo = EchoMode::kAll;
  options.tail_lines = 10;
  options.on_line = [this](int, int stream, std::string_view line) { on_line_(stream, line); };
  options.on_exit = on_exit_;
  if (agents_[node]) agents_[node].reset();
  absl::StatusOr<std::unique_ptr<WorkerSupervisor>> s = WorkerSupervisor::Start(options, {spec});
  if (!s.ok()) {
    return absl::Status(s.status().code(),
                        absl::StrCat("agent of node ", launch.node, ": ", s.status().message()));
  }
  agents_[node] = *std::move(s);
  return absl::OkStatus();
}

absl::Status AgentFleet::StartAll() {
  for (size_t i = 0; i < plan_.size(); ++i) {
    absl::Status s = Start(static_cast<int>(i));
    if (!s.ok()) {
      StopAll(absl::ZeroDuration());
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status AgentFleet::Restart(int node) { return Start(node); }

void AgentFleet::StopAll(absl::Duration grace) {
  for (auto& a : agents_) {
    if (a) a->RequestStop(grace);
  }
}

void AgentFleet::Reap(int node) { agents_[node].reset(); }

}  // namespace colossus::launcher
