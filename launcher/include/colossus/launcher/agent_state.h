// AgentCore: the node agent's decisions as an explicit state machine, free of processes
// and gRPC. NodeAgent (agent.h) feeds it events and carries out the actions it returns;
// tests drive it with scripted events and a fake clock.
//
// States:
//   kJoining   a Join for generation g is held at the coordinator (g = 0 at first, the
//              RESTART's generation later). -> kStarting when it returns.
//   kStarting  joined: the workers are being spawned. -> kRunning, or kIdle when the
//              spawn failed (the ranks are reported FAILED with the error).
//   kRunning   workers up; the health stream beats every heartbeat interval, and at once
//              when a worker exits. -> kIdle when every worker has exited by itself.
//   kStopping  stopping the workers (SIGTERM, SIGKILL after the grace period) for a
//              STOP_WORKERS, a RESTART, an EXIT, an interrupt or a lost coordinator;
//              still beating. When they are gone, what asked for the stop continues.
//   kIdle      no workers; still beating; waits for the coordinator's next command.
//   kDone      terminal: exit_code() and exit_message() hold the outcome.
//
// Commands: STOP_WORKERS stops the workers and stays; RESTART(g) stops them, closes the
// stream and joins g; EXIT stops them, closes the stream and ends with the job's outcome.
// An interrupt (SIGINT/SIGTERM to the agent) stops the workers, leaves the job (the
// coordinator re-forms without this node instead of waiting for its timeout) and ends
// with kExitInterrupted.
//
// A broken health stream is reopened (every `reconnect_backoff`) for the same generation:
// a restarted coordinator re-adopts the agents that come back within the node timeout.
// Refused as stale (FAILED_PRECONDITION: the job moved on without this node), the agent
// stops its workers and joins again. Unreachable for longer than the node timeout: the
// agent stops its workers and ends with kExitCoordinatorUnreachable.
//
// Thread safety: none; NodeAgent calls it from its one event thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace colossus::launcher {

struct AgentAction {
  enum class Kind {
    kJoin,          // Join `generation` (held); report with OnJoined / OnJoinFailed
    kStartWorkers,  // spawn the workers of `generation`; report with OnWorkersStarted
    kOpenHealth,    // open the health stream for `generation` (its first message is a
                    // beat); report with OnHealthOpened
    kSendBeat,      // send one beat on the open stream
    kStopWorkers,   // stop the workers with `grace`; report with OnAllWorkersExited
    kCloseHealth,   // close the health stream (no report)
    kLeave,         // tell the coordinator this node leaves (`message` is the reason)
    kExitJobEnded,  // the job ended (`success`): look up its phase for the exit code
    kExit,          // end with exit_code and message
  };
  Kind kind;
  int64_t generation = 0;
  absl::Duration grace = absl::ZeroDuration();
  bool success = false;
  int exit_code = 0;
  std::string message = {};

  std::string DebugString() const;
};

class AgentCore {
 public:
  enum class State { kJoining, kStarting, kRunning, kStopping, kIdle, kDone };
  static const char* StateName(State state);

  struct Options {
    absl::Duration default_grace = absl::Seconds(10);  // when a command gives none
    absl::Duration reconnect_backoff = absl::Seconds(1);
  };
  explicit AgentCore(Options options);

  // Starts: -> kJoining, [Join(0)].
  std::vector<AgentAction> Begin(absl::Time now);

  // Results of actions.
  std::vector<AgentAction> OnJoined(int64_t generation, absl::Duration heartbeat_interval,
                                    absl::Duration node_timeout, absl::Time now);
  std::vector<AgentAction> OnJoinFailed(const absl::Status& status, absl::Time now);
  std::vector<AgentAction> OnWorkersStarted(const absl::Status& status, absl::Time now);
  std::vector<AgentAction> OnHealthOpened(const absl::Status& status, absl::Time now);
  std::vector<AgentAction> OnAllWorkersExited(absl::Time now);

  // Events.
  std::vector<AgentAction> OnWorkerExited(absl::Time now);
  // A command from the coordinator (the proto's Command, flattened).
  enum class CommandKind { kStopWorkers, kRestart, kExit };
  std::vector<AgentAction> OnCommand(CommandKind kind, int64_t generation,
                                     absl::Duration grace, bool success,
                                     const std::string& reason, absl::Time now);
  std::vector<AgentAction> OnHealthEnded(const absl::Status& status, absl::Time now);
  std::vector<AgentAction> OnInterrupt(int signal, absl::Time now);
  // Time passes: beats, stream reopening, the reconnect deadline.
  std::vector<AgentAction> OnTick(absl::Time now);

  // When OnTick next has something to do (InfiniteFuture: nothing scheduled).
  absl::Time NextWakeup() const;

  State state() const { return state_; }
  int64_t generation() const { return generation_; }
  bool workers_running() const { return workers_running_; }
  bool health_open() const { return health_open_; }
  int exit_code() const { return exit_code_; }
  const std::string& exit_message() const { return exit_message_; }

 private:
  // What to do once the workers are gone (kStopping).
  struct Then {
    enum class Kind { kStay, kRejoin, kJobEnded, kExit } kind = Kind::kStay;
    int64_t generation = 0;
    bool success = false;
    bool leave = false;
    int exit_code = 0;
    std::string message = {};
  };
  std::vector<AgentAction> StopThen(Then then, absl::Duration grace, absl::Time now);
  std::vector<AgentAction> Continue(absl::Time now);
  void Rejoin(int64_t generation, std::vector<AgentAction>* out);
  void Finish(std::vector<AgentAction>* out, const Then& then);

  Options options_;
  State state_ = State::kJoining;
  int64_t generation_ = 0;
  absl::Duration heartbeat_interval_ = absl::Seconds(1);
  absl::Duration node_timeout_ = absl::Seconds(30);
  bool workers_running_ = false;
  bool health_open_ = false;
  bool interrupted_ = false;
  Then then_;
  absl::Time next_beat_ = absl::InfiniteFuture();
  // While the stream is broken: when to try again, and when to give up.
  absl::Time reopen_at_ = absl::InfiniteFuture();
  absl::Time give_up_at_ = absl::InfiniteFuture();
  std::string last_stream_error_;
  int exit_code_ = 0;
  std::string exit_message_;
};

}  // namespace colossus::launcher
