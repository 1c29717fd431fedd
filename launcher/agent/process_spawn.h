// Spawning one worker process: fork + execve with the child put in its own process group
// and bound to the life of the thread that forks it.
//
// Everything the child needs (argv, envp, the resolved program path) is built in the
// parent before fork: the agent has gRPC threads, and after fork only async-signal-safe
// calls are allowed in the child until execve.
//
// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process.
// Callers must fork from a thread that outlives the child (WorkerSupervisor forks from
// its own event thread, which reaps every worker before it ends).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace colossus::launcher::internal {

struct SpawnRequest {
  // Absolute or cwd-relative path of the program (see ResolveExecutable).
  std::string path;
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> envp;  // "KEY=VALUE", the child's whole environment
  std::string cwd;                // empty: the caller's
  // Descriptors the child gets as 0, 1, 2 (the caller keeps ownership).
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  // A name for messages ("rank 3").
  std::string what;
};

// Forks and execs. In the child: setpgid(0, 0); PR_SET_PDEATHSIG(SIGKILL), then exits
// at once if the parent already died (getppid() changed: the race that prctl alone
// misses); every signal unblocked and back to its default action; fds 0-2 from the
// request, every other descriptor closed on exec. Returns the child's pid once it has
// exec'd; a failed chdir or execve is reported as an error naming `what`, the step and
// the errno (the child is reaped then).
absl::StatusOr<pid_t> SpawnProcess(const SpawnRequest& request);

// Finds `program` the way execvp would: as given when it holds a '/', else in the
// directories of `path_env` (the worker's PATH). NotFound naming the program and PATH
// when no executable file matches.
absl::StatusOr<std::string> ResolveExecutable(const std::string& program,
                                              const std::string& path_env);

// Builds a child's environment: `base` ("KEY=VALUE" entries) with `overrides` applied
// (a key in overrides replaces the base's entry; order of base kept, new keys appended).
std::vector<std::string> MergeEnvironment(
    const std::vector<std::string>& base,
    const std::vector<std::pair<std::string, std::string>>& overrides);

// This process's environment as "KEY=VALUE" entries.
std::vector<std::string> CurrentEnvironment();

}  // namespace colossus::launcher::internal
