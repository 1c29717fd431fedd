// WorkerSupervisor: the node agent's worker processes for one generation.
//
// It spawns one process per local rank, forwards their output, reports each exit the
// moment it happens, and stops them on request. The agent creates one supervisor per
// generation; a restart destroys the old one (every worker gone) and starts a new one.
//
// Processes
//   Each worker runs in a process group of its own (setpgid), so that a stop reaches the
//   processes it started too, and terminal signals (Ctrl-C) reach only the agent, which
//   decides. Each worker is bound to the agent's life: PR_SET_PDEATHSIG(SIGKILL) is set in
//   the child, which then checks getppid() so that an agent dying between fork and prctl
//   cannot leave it running. A sentinel process (launcher/agent/group_sentinel.h) kills the
//   workers' whole groups if the agent dies without cleaning up. When a worker exits, what
//   is left of its process group is SIGKILLed: a worker's group does not outlive it.
//   stdin is /dev/null; every other descriptor of the agent is closed on exec.
//
// Output
//   Each worker's stdout and stderr go to <run_dir>/logs/gen<G>/rank<R>.out and .err
//   (R the global rank; no files when run_dir is empty) and, as whole lines prefixed
//   "[rank R] ", to the agent's own stdout and stderr for the ranks `echo` selects. The
//   last `tail_lines` lines of each stream are kept for failure summaries.
//
// Exits
//   Worker exits arrive on a pidfd per worker, polled with the output pipes by the
//   supervisor's own thread: no SIGCHLD handler, no sleeping poll loop, and no
//   waitpid(-1) that could reap the agent's other children. on_exit is called on that
//   thread, with no lock held, after the worker is reaped and its remaining output read.
//
// States (state()):
//   kStarting  Start() is spawning the workers. Not observable outside Start: a spawn
//              failure kills the workers already started and Start returns the error.
//   kRunning   every worker was spawned; at least one is still running; no stop yet.
//   kStopping  RequestStop(grace) was called: SIGTERM went to every running worker's
//              process group; SIGKILL follows for those still running after `grace`.
//   kExited    every worker has exited, been reaped and been reported. Terminal.
//   kStarting -> kRunning -> (kStopping ->) kExited. A stop in kExited does nothing.
//
// Thread safety: every public method is thread-safe, except that on_exit must not call
// Wait(), Stop() or destroy the supervisor (it runs on the thread they wait for).
//
// The process must not set SIGCHLD to SIG_IGN (children would be reaped by the kernel and
// their exit status lost). The supervisor's thread blocks every signal, so a write to a
// closed pipe there fails with EPIPE instead of raising SIGPIPE.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace colossus::launcher {

// Which ranks' output reaches the agent's own stdout/stderr (the log files get all).
enum class EchoMode { kAll, kRank0, kNone };

struct WorkerProcessSpec {
  int local_rank = 0;
  // Global rank: names the log files and the echo prefix.
  int rank = 0;
  // The command; argv[0] is looked up on the worker's PATH when it holds no '/'.
  std::vector<std::string> argv;
  // Set on top of the supervisor's base environment (replacing entries with the same key).
  std::vector<std::pair<std::string, std::string>> env;
  // Working directory; empty: the agent's.
  std::string cwd;
  // Names the log files <log_name>.out/.err; empty: "rank<R>".
  std::string log_name;
  // Put before each echoed line; unset: "[rank R] ". (colossus-launch supervises agents
  // whose lines carry their ranks' prefixes already.)
  std::optional<std::string> echo_prefix;
  // Unset: stdin is /dev/null. Set: stdin is a pipe that starts with these bytes (at most
  // 64 KiB, so they fit the pipe's buffer) and is held open, without more data, until the
  // process exits or the supervisor ends; so the process sees end-of-file exactly when
  // its supervisor is gone (colossus-launch hands an ssh'd agent its token this way).
  std::optional<std::string> stdin_data;
};

// How a worker ended.
struct WorkerExit {
  int local_rank = 0;
  int rank = 0;
  pid_t pid = -1;
  // The exit status when signal == 0.
  int exit_code = 0;
  // The signal that terminated the worker; 0 when it exited by itself.
  int signal = 0;
  // True when the supervisor had already sent it a stop signal (RequestStop).
  bool after_stop = false;
  // The last lines of its stderr and stdout (oldest first).
  std::vector<std::string> stderr_tail;
  std::vector<std::string> stdout_tail;

  bool success() const { return signal == 0 && exit_code == 0; }
  // "rank 3 (pid 1234) exited with code 1" / "rank 3 (pid 1234) killed by signal 9 (SIGKILL)".
  std::string Describe() const;
};

struct WorkerStatus {
  int local_rank = 0;
  int rank = 0;
  pid_t pid = -1;
  bool running = false;
  WorkerExit exit;  // meaningful once !running
};

struct SupervisorOptions {
  // Log files under <run_dir>/logs/gen<generation>/ (or log_dir when set); neither set:
  // no log files.
  std::string run_dir;
  int64_t generation = 0;
  std::string log_dir;
  EchoMode echo = EchoMode::kAll;
  // Where echoed lines go (not owned; must stay open for the supervisor's life).
  int echo_stdout_fd = 1;
  int echo_stderr_fd = 2;
  // Set: echoed lines go here (on the supervisor's thread) instead of the echo fds, with
  // the prefix already applied and without the '\n'. stream is 1 (stdout) or 2 (stderr).
  std::function<void(int rank, int stream, std::string_view line)> on_line;
  // Lines of each stream kept for WorkerExit's tails.
  size_t tail_lines = 20;
  // The workers' base environment, "KEY=VALUE"; empty: this process's environment.
  std::vector<std::string> base_env;
  // Called once per worker when it exits (see Exits above). May be empty.
  std::function<void(const WorkerExit&)> on_exit;
};

class WorkerSupervisor {
 public:
  enum class State { kStarting, kRunning, kStopping, kExited };

  // Spawns every worker (blocking until each has exec'd). Errors name the rank and what
  // failed: the log directory (path and errno), the command not found on PATH, a failed
  // chdir or execve. On error no worker is left running.
  static absl::StatusOr<std::unique_ptr<WorkerSupervisor>> Start(SupervisorOptions options,
                                                                 std::vector<WorkerProcessSpec> workers);

  // Kills (SIGKILL, no grace) any worker still running and waits until all are reaped.
  ~WorkerSupervisor();

  WorkerSupervisor(const WorkerSupervisor&) = delete;
  WorkerSupervisor& operator=(const WorkerSupervisor&) = delete;

  // Starts stopping (see kStopping) and returns at once. A second call can only shorten
  // the grace period. A zero grace sends SIGKILL straight away.
  void RequestStop(absl::Duration grace);
  // RequestStop(grace), then Wait().
  void Stop(absl::Duration grace);
  // Blocks until kExited.
  void Wait();
  // Blocks until kExited or `timeout` passes; returns whether it is kExited.
  bool WaitFor(absl::Duration timeout);

  State state() const;
  std::vector<WorkerStatus> Workers() const;
  // Log file of a global rank's stream ("out" or "err"), empty without a log directory.
  std::string LogPath(int rank, const std::string& stream) const;

  static const char* StateName(State state);

 private:
  class Impl;
  explicit WorkerSupervisor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Where a generation's worker logs live: <run_dir>/logs/gen<generation>.
std::string WorkerLogDir(const std::string& run_dir, int64_t generation);

}  // namespace colossus::launcher
