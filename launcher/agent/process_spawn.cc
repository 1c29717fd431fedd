#include "process_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "unique_fd.h"

extern char** environ;

namespace colossus::launcher::internal {
namespace {

// What the child reports on its error pipe when it cannot exec.
struct ChildError {
  int step;  // 1 chdir, 2 execve, 3 dup2
  int err;
};

[[noreturn]] void ChildFail(int fd, int step) {
  ChildError e{step, errno};
  // Nothing else to do if this write fails: the parent then sees the child exit 127.
  ssize_t ignored = write(fd, &e, sizeof(e));
  (void)ignored;
  _exit(127);
}

const char* StepName(int step) {
  switch (step) {
    case 1: return "chdir";
    case 2: return "execve";
    case 3: return "dup2";
    default: return "setup";
  }
}

}  // namespace

std::vector<std::string> CurrentEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  return env;
}

std::vector<std::string> MergeEnvironment(
    const std::vector<std::string>& base,
    const std::vector<std::pair<std::string, std::string>>& overrides) {
  std::map<std::string, std::string> wanted;
  for (const auto& [k, v] : overrides) wanted[k] = v;
  std::vector<std::string> out;
  out.reserve(base.size() + overrides.size());
  for (const std::string& entry : base) {
    const size_t eq = entry.find('=');
    const std::string key = entry.substr(0, eq);
    auto it = wanted.find(key);
    if (it == wanted.end()) {
      out.push_back(entry);
    } else {
      out.push_back(key + "=" + it->second);
      wanted.erase(it);
    }
  }
  // New keys in the order the caller gave them.
  for (const auto& [k, unused] : overrides) {
    auto it = wanted.find(k);
    if (it != wanted.end()) {
      out.push_back(k + "=" + it->second);
      wanted.erase(it);
    }
  }
  return out;
}

absl::StatusOr<std::string> ResolveExecutable(const std::string& program,
                                              const std::string& path_env) {
  if (program.empty()) return absl::InvalidArgumentError("empty worker command");
  if (program.find('/') != std::string::npos) return program;
  for (absl::string_view dir : absl::StrSplit(path_env, ':')) {
    // An empty PATH entry means the current directory, as for execvp.
    std::string candidate = dir.empty() ? program : absl::StrCat(dir, "/", program);
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return absl::NotFoundError(
      absl::StrCat("worker command '", program, "' not found on PATH (", path_env, ")"));
}

absl::StatusOr<pid_t> SpawnProcess(const SpawnRequest& request) {
  if (request.argv.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(request.what, ": empty argv"));
  }
  // Everything the child touches is prepared here: no allocation after fork.
  std::vector<char*> argv;
  for (const std::string& a : request.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& e : request.envp) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const char* path = request.path.c_str();
  const char* cwd = request.cwd.empty() ? nullptr : request.cwd.c_str();

  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat(request.what, ": pipe2: ", strerror(errno)));
  }
  UniqueFd err_read(err_pipe[0]);
  UniqueFd err_write(err_pipe[1]);
  const pid_t parent = getpid();
  const int in_fd = request.stdin_fd, out_fd = request.stdout_fd, errfd = request.stderr_fd;
  const int report_fd = err_write.get();

  const pid_t pid = fork();
  if (pid < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat(request.what, ": fork: ", strerror(errno)));
  }
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    // The parent may have died between fork and prctl; then no signal will ever come.
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    // Handlers are reset by execve, but ignored signals stay ignored: undo that.
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
    if (in_fd >= 0 && dup2(in_fd, 0) < 0) ChildFail(report_fd, 3);
    if (out_fd >= 0 && dup2(out_fd, 1) < 0) ChildFail(report_fd, 3);
    if (errfd >= 0 && dup2(errfd, 2) < 0) ChildFail(report_fd, 3);
    if (cwd != nullptr && chdir(cwd) != 0) ChildFail(report_fd, 1);
    // Descriptors the agent holds (gRPC sockets, other workers' pipes) must not leak
    // into the worker: mark every one above stderr close-on-exec (Linux 5.11+; on older
    // kernels the agent's own descriptors are already O_CLOEXEC).
#ifdef SYS_close_range
    syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */);
#endif
    execve(path, argv.data(), envp.data());
    ChildFail(report_fd, 2);
  }
  // Parent. Setting the group here as well closes the window in which a Stop could
  // signal a group that the child has not created yet (EACCES once it has exec'd).
  setpgid(pid, pid);
  err_write.Reset();
  ChildError child_error{0, 0};
  ssize_t n;
  do {
    n = read(err_read.get(), &child_error, sizeof(child_error));
  } while (n < 0 && errno == EINTR);
  if (n == 0) return pid;  // close-on-exec closed the pipe: execve succeeded
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof(child_error))) {
    return absl::InternalError(absl::StrCat(request.what, ": the child failed before exec"));
  }
  std::string message =
      absl::StrCat(request.what, ": ", StepName(child_error.step), " ",
                   child_error.step == 1 ? request.cwd : request.path, ": ",
                   strerror(child_error.err));
  if (child_error.err == ENOENT || child_error.err == ENOTDIR) {
    return absl::NotFoundError(message);
  }
  if (child_error.err == EACCES || child_error.err == EPERM) {
    return absl::PermissionDeniedError(message);
  }
  return absl::InternalError(message);
}

}  // namespace colossus::launcher::internal
