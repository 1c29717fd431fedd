// CoordinatorProcess: colossus-coordinator run as a child process for the load benchmark,
// so that its CPU time and memory can be read from /proc/<pid>/ apart from the load's.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace colossus::bench {

// CPU time and memory of one process, read from /proc/<pid>/stat and /proc/<pid>/status.
struct ProcSample {
  absl::Time when;
  double cpu_seconds = 0;   // utime + stime
  int64_t rss_bytes = 0;    // VmRSS
  int64_t hwm_bytes = 0;    // VmHWM (peak RSS)
  int64_t threads = 0;
};
absl::StatusOr<ProcSample> SampleProcess(pid_t pid);  // pid 0: this process

// Cores used between two samples of one process.
inline double CoresBetween(const ProcSample& a, const ProcSample& b) {
  const double wall = absl::ToDoubleSeconds(b.when - a.when);
  return wall > 0 ? (b.cpu_seconds - a.cpu_seconds) / wall : 0;
}

class CoordinatorProcess {
 public:
  // Starts `binary` with `args` (stdout read for the listening line; stderr to
  // `stderr_path`) and waits up to `timeout` for
  // "colossus-coordinator: listening on HOST:PORT ...". The token is written to a file
  // and passed with --token-file by the caller's args.
  static absl::StatusOr<std::unique_ptr<CoordinatorProcess>> Start(
      const std::string& binary, const std::vector<std::string>& args,
      const std::string& stderr_path, absl::Duration timeout);
  // SIGTERM, then SIGKILL after two seconds; reaps the child.
  ~CoordinatorProcess();
  CoordinatorProcess(const CoordinatorProcess&) = delete;
  CoordinatorProcess& operator=(const CoordinatorProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& address() const { return address_; }  // "HOST:PORT"
  const std::string& listening_line() const { return line_; }
  // Whether the child is still running (it may have crashed under load).
  bool Alive();

 private:
  CoordinatorProcess(pid_t pid, int stdout_fd) : pid_(pid), stdout_fd_(stdout_fd) {}
  pid_t pid_;
  int stdout_fd_;
  bool reaped_ = false;
  std::thread drain_;  // reads the child's stdout after the listening line (EOF at exit)
  std::string address_;
  std::string line_;
};

}  // namespace colossus::bench
