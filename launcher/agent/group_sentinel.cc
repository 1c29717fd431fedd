#include "group_sentinel.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace colossus::launcher::internal {
namespace {

// Far more local workers than any node runs; a pgid past this is simply not watched
// (its worker still dies by PDEATHSIG).
constexpr int kMaxGroups = 4096;

// The sentinel's whole life, after fork: async-signal-safe calls and stack memory only.
[[noreturn]] void SentinelMain(int read_fd) {
  setpgid(0, 0);
  struct sigaction ignore;
  std::memset(&ignore, 0, sizeof(ignore));
  ignore.sa_handler = SIG_IGN;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) sigaction(sig, &ignore, nullptr);
  // Hold nothing of the agent's open (sockets, the launcher's pipes): only our pipe.
  for (int fd = 0; fd < read_fd; ++fd) close(fd);
#ifdef SYS_close_range
  syscall(SYS_close_range, static_cast<unsigned>(read_fd) + 1, ~0U, 0U);
#endif
  pid_t groups[kMaxGroups];
  int count = 0;
  for (;;) {
    int32_t message = 0;
    ssize_t n = read(read_fd, &message, sizeof(message));
    if (n < 0 && errno == EINTR) continue;
    if (n != static_cast<ssize_t>(sizeof(message))) break;  // EOF: the agent is gone
    if (message == 0) _exit(0);                           // clean shutdown
    if (message > 0) {
      if (count < kMaxGroups) groups[count++] = message;
    } else {
      for (int i = 0; i < count; ++i) {
        if (groups[i] == -message) {
          groups[i] = groups[--count];
          break;
        }
      }
    }
  }
  for (int i = 0; i < count; ++i) kill(-groups[i], SIGKILL);
  _exit(0);
}

}  // namespace

absl::StatusOr<std::unique_ptr<GroupSentinel>> GroupSentinel::Start() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("group sentinel: pipe2: ", strerror(errno)));
  }
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  const pid_t pid = fork();
  if (pid < 0) {
    return absl::ResourceExhaustedError(absl::StrCat("group sentinel: fork: ", strerror(errno)));
  }
  if (pid == 0) {
    close(write_end.get());
    SentinelMain(read_end.get());
  }
  return std::unique_ptr<GroupSentinel>(new GroupSentinel(pid, std::move(write_end)));
}

GroupSentinel::~GroupSentinel() {
  Send(0);
  pipe_.Reset();
  while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
}

void GroupSentinel::Watch(pid_t pgid) { Send(static_cast<int32_t>(pgid)); }
void GroupSentinel::Forget(pid_t pgid) { Send(-static_cast<int32_t>(pgid)); }

void GroupSentinel::Send(int32_t message) {
  // 4 bytes to a pipe are written atomically or not at all; a dead sentinel (EPIPE) only
  // loses the orphan protection, never the agent. MSG_NOSIGNAL does not exist for
  // pipes, so SIGPIPE must be ignored by the agent (colossus-launch does).
  ssize_t n;
  do {
    n = write(pipe_.get(), &message, sizeof(message));
  } while (n < 0 && errno == EINTR);
}

}  // namespace colossus::launcher::internal
