// NodeAgent: `colossus-launch --agent`, one per node. It joins the coordinator, spawns the
// node's workers with their assignment (WorkerSupervisor), beats on its health stream
// with each rank's state, and follows the coordinator's commands until the job ends.
//
// The decisions are AgentCore's (agent_state.h: states, commands, reconnects, exit
// codes); this class carries them out on one event thread (the caller of Run): it makes
// the gRPC calls, spawns and stops the workers, and turns worker exits, commands,
// stream ends and interrupts into AgentCore events.
//
// Beats carry every local rank: STARTING until the rank writes its status file
// (status_file.h), then RUNNING with its step, loss, tokens/s and collective; SUCCEEDED
// (exit 0), STOPPED (ended after a stop signal), or FAILED with the exit code or signal
// and a detail holding the exit and the last lines of the rank's stderr. A worker exit is
// sent at once, not at the next beat.
//
// MASTER_PORT: with several nodes, node 0's agent picks a free port on its machine (or
// uses master_port when given) and publishes it in the coordinator's store (generation
// scope, key "colossus/master_port"); the other agents wait for it before they spawn.
//
// Thread safety: Run() once, from one thread. Interrupt() from any thread (a signal
// handling thread); it is not async-signal-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "colossus/launcher/agent_state.h"
#include "colossus/launcher/coordinator_client.h"
#include "colossus/launcher/node_identity.h"
#include "colossus/launcher/worker_supervisor.h"

namespace colossus::launcher {

struct AgentOptions {
  // The coordinator (target, token, job id, TLS). The agent's client retries idempotent
  // calls for at most client.retry.max_elapsed. client.channel.keepalive_time is how soon
  // a silent link is noticed (the coordinator answers beats only with commands, so a cut
  // link shows only through keepalive pings or TCP giving up).
  CoordinatorClientOptions client;
  NodeIdentity identity;
  // The worker command (argv) and its environment (the manifest's worker env, then the
  // node's); the torchrun/COLOSSUS_* variables are added on top.
  std::vector<std::string> command;
  std::vector<std::pair<std::string, std::string>> env;
  std::string cwd;
  // Logs (<run_dir>/logs/gen<G>/rank<R>.{out,err}) and status files.
  std::string run_dir;
  // The file the workers get as COLOSSUS_TOKEN_FILE.
  std::string token_file;
  EchoMode echo = EchoMode::kAll;
  int echo_stdout_fd = 1;
  int echo_stderr_fd = 2;
  // Stop grace when a command gives none, and for interrupts.
  absl::Duration stop_grace = absl::Seconds(10);
  // How long a Join is held (zero: the coordinator's join timeout).
  absl::Duration join_timeout = absl::ZeroDuration();
  // MASTER_PORT for the workers; 0: node 0's agent picks one (see above).
  int master_port = 0;
  // Lines of stderr in a FAILED rank's detail.
  int detail_lines = 10;
  // The agent's own log lines ("[agent NODE] joined generation 1 ..."); default: stderr.
  std::function<void(const std::string&)> log;
};

class NodeAgent {
 public:
  static absl::StatusOr<std::unique_ptr<NodeAgent>> Create(AgentOptions options);
  ~NodeAgent();
  NodeAgent(const NodeAgent&) = delete;
  NodeAgent& operator=(const NodeAgent&) = delete;

  // Runs until the agent is done; returns its exit code (exit_codes.h).
  int Run();
  // Stop the workers, leave the job and exit with kExitInterrupted.
  void Interrupt(int signal);

  AgentCore::State state() const;
  std::string exit_message() const;

 private:
  class Impl;
  explicit NodeAgent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace colossus::launcher
