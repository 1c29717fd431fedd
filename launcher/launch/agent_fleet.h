// AgentFleet: colossus-launch's node agents, one supervised process per node (a local
// `colossus-launch --agent`, or the ssh that runs it remotely), each in a WorkerSupervisor
// of its own so that one agent can be started again without touching the others.
//
// Agents' output is relayed whole lines at a time through on_line (their lines carry the
// ranks' "[rank R] " prefixes already); each agent's own output is also kept in
// <log_dir>/agent-<node>.{out,err}. Exits are reported through on_exit (with the node's
// index as WorkerExit::rank), on the supervisor's thread.
//
// Thread safety: Start, Restart, Stop and Reap are called from one thread (the
// launcher's main loop); on_exit and on_line run on supervisor threads.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "colossus/launcher/worker_supervisor.h"
#include "launch_plan.h"

namespace colossus::launcher {

class AgentFleet {
 public:
  AgentFleet(std::vector<AgentLaunch> plan, std::string token, std::string log_dir,
             std::function<void(int stream, std::string_view line)> on_line,
             std::function<void(const WorkerExit&)> on_exit);
  ~AgentFleet();

  // Starts every agent; on error none is left running.
  absl::Status StartAll();
  // Starts node i's agent again (after it exited).
  absl::Status Restart(int node);
  // Stops every running agent (SIGTERM to its process group, SIGKILL after grace).
  void StopAll(absl::Duration grace);
  // Frees the supervisor of an agent that has exited (not from on_exit).
  void Reap(int node);

  size_t size() const { return plan_.size(); }
  const AgentLaunch& launch(int node) const { return plan_[node]; }

 private:
  absl::Status Start(int node);

  const std::vector<AgentLaunch> plan_;
  const std::string token_;
  const std::string log_dir_;
  std::function<void(int, std::string_view)> on_line_;
  std::function<void(const WorkerExit&)> on_exit_;
  std::vector<std::unique_ptr<WorkerSupervisor>> agents_;
  std::vector<int> starts_;
};

}  // namespace colossus::launcher
