#include "coordinator_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace colossus::bench {

absl::StatusOr<ProcSample> SampleProcess(pid_t pid) {
  const std::string dir = pid == 0 ? "/proc/self" : absl::StrCat("/proc/", pid);
  ProcSample s;
  s.when = absl::Now();
  std::ifstream stat(dir + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces; fields after its closing ')' are fixed.
  const size_t close = text.rfind(')');
  if (close == std::string::npos) {
    return absl::NotFoundError(absl::StrCat("cannot read ", dir, "/stat (process gone?)"));
  }
  std::vector<std::string> f = absl::StrSplit(text.substr(close + 2), ' ', absl::SkipEmpty());
  // After ')': state(3) ... utime is field 14, stime 15, num_threads 20 (1-based in proc(5)).
  if (f.size() < 18) return absl::InternalError(absl::StrCat("short ", dir, "/stat"));
  int64_t utime = 0, stime = 0;
  if (!absl::SimpleAtoi(f[14 - 3], &utime) || !absl::SimpleAtoi(f[15 - 3], &stime) ||
      !absl::SimpleAtoi(f[20 - 3], &s.threads)) {
    return absl::InternalError(absl::StrCat("unparsable ", dir, "/stat"));
  }
  s.cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream status(dir + "/status");
  for (std::string line; std::getline(status, line);) {
    auto kib = [&](const char* name, int64_t* out) {
      if (line.rfind(name, 0) != 0) return;
      std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
      int64_t v = 0;
      if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &v)) *out = v * 1024;
    };
    kib("VmRSS:", &s.rss_bytes);
    kib("VmHWM:", &s.hwm_bytes);
  }
  return s;
}

absl::StatusOr<std::unique_ptr<CoordinatorProcess>> CoordinatorProcess::Start(
    const std::string& binary, const std::vector<std::string>& args,
    const std::string& stderr_path, absl::Duration timeout) {
  if (access(binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("coordinator binary '", binary,
                                            "' is not executable: ", std::strerror(errno)));
  }
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
  const int err_fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (err_fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create '", stderr_path, "': ", std::strerror(errno)));
  }
  std::vector<std::string> argv_s = {binary};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err_fd, 2);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  close(err_fd);
  std::unique_ptr<CoordinatorProcess> p(new CoordinatorProcess(pid, out[0]));

  // Read the listening line.
  const absl::Time deadline = absl::Now() + timeout;
  std::string buffer;
  for (;;) {
    const size_t nl = buffer.find('\n');
    if (nl != std::string::npos) {
      p->line_ = buffer.substr(0, nl);
      break;
    }
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    pollfd pfd{out[0], POLLIN, 0};
    if (left_ms <= 0 || poll(&pfd, 1, static_cast<int>(left_ms)) <= 0) {
      return absl::DeadlineExceededError(absl::StrCat(
          "coordinator '", binary, "' printed no listening line within ",
          absl::FormatDuration(timeout), " (stderr: ", stderr_path, ")"));
    }
    char chunk[512];
    const ssize_t n = read(out[0], chunk, sizeof chunk);
    if (n <= 0) {
      return absl::UnavailableError(absl::StrCat("coordinator '", binary,
                                                 "' exited before listening (stderr: ",
                                                 stderr_path, ")"));
    }
    buffer.append(chunk, static_cast<size_t>(n));
  }
  constexpr std::string_view kPrefix = "colossus-coordinator: listening on ";
  const size_t at = p->line_.find(kPrefix);
  if (at == std::string::npos) {
    return absl::InternalError(absl::StrCat("unexpected first line from the coordinator: '",
                                            p->line_, "'"));
  }
  std::string rest = p->line_.substr(at + kPrefix.size());
  p->address_ = rest.substr(0, rest.find(' '));
  const int fd = out[0];
  p->drain_ = std::thread([fd] {
    char chunk[4096];
    while (read(fd, chunk, sizeof chunk) > 0) {
    }
  });
  return p;
}

bool CoordinatorProcess::Alive() {
  if (reaped_) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    reaped_ = true;
    return false;
  }
  return true;
}

CoordinatorProcess::~CoordinatorProcess() {
  if (!reaped_) {
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 200; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        break;
      }
      usleep(10000);
    }
    if (!reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
  }
  if (drain_.joinable()) drain_.join();
  close(stdout_fd_);
}

}  // namespace colossus::bench
