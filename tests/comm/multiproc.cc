#include "multiproc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <exception>

#include "absl/strings/str_cat.h"
#include "colossus/comm/tcp_store.h"
#include "gtest/gtest.h"

namespace colossus::comm::testing {
namespace {

// Child side: never returns.
[[noreturn]] void RunChild(int rank, int size, int port, int report_fd, pid_t parent,
                           const RankFn& fn) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(3);  // the parent died before prctl took effect
  // Drop every descriptor inherited from the parent (its store server's sockets, other
  // children's pipes) so that only this child's own connections exist in it.
  if (dup2(report_fd, 3) < 0) _exit(4);
  close_range(4, ~0u, 0);
  absl::Status status;
  try {
    RankEnv env;
    env.rank = rank;
    env.size = size;
    absl::StatusOr<std::unique_ptr<TcpStore>> store = TcpStore::Connect("127.0.0.1", port);
    if (!store.ok()) {
      status = store.status();
    } else {
      env.store = *std::move(store);
      status = fn(env);
    }
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat("exception escaped: ", e.what()));
  }
  const std::string text = status.ToString();
  size_t off = 0;
  while (off < text.size()) {
    const ssize_t w = write(3, text.data() + off, text.size() - off);
    if (w <= 0) break;
    off += static_cast<size_t>(w);
  }
  _exit(status.ok() ? 0 : 1);
}

struct Child {
  pid_t pid = -1;
  int fd = -1;  // read end of the report pipe
  bool reaped = false;
  ChildResult result;
};

// Owns the children: whatever happens in the parent, they are killed and reaped.
class ChildSet {
 public:
  ~ChildSet() {
    if (server > 0) {
      kill(server, SIGKILL);
      waitpid(server, nullptr, 0);
    }
    for (Child& c : children) {
      if (!c.reaped && c.pid > 0) {
        kill(c.pid, SIGKILL);
        waitpid(c.pid, nullptr, 0);
      }
      if (c.fd >= 0) close(c.fd);
    }
  }
  std::vector<Child> children;
  pid_t server = -1;
};

void Drain(Child& c) {
  char buf[4096];
  for (;;) {
    const ssize_t r = read(c.fd, buf, sizeof(buf));
    if (r > 0) {
      c.result.report.append(buf, static_cast<size_t>(r));
      continue;
    }
    return;  // EAGAIN or EOF
  }
}

// Stack traces of a hung child, for the failure message (empty without gdb).
std::string Stacks(pid_t pid) {
  if (access("/usr/bin/gdb", X_OK) != 0) return "";
  const std::string cmd = absl::StrCat("/usr/bin/gdb -p ", pid,
                                       " -batch -nx -ex 'thread apply all bt 25' 2>/dev/null");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0 && out.size() < (64u << 10)) out.append(buf, n);
  pclose(p);
  return out;
}

void Record(Child& c, int wstatus) {
  c.reaped = true;
  if (WIFEXITED(wstatus)) {
    c.result.exited = true;
    c.result.exit_code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    c.result.signal = WTERMSIG(wstatus);
  }
}

}  // namespace

std::string ChildResult::Describe() const {
  std::string how = exited ? absl::StrCat("exit code ", exit_code)
                           : absl::StrCat("killed by signal ", signal);
  if (timed_out) how += " (still running at the deadline)";
  return absl::StrCat("rank ", rank, ": ", how, ": ", report.empty() ? "(no report)" : report);
}

namespace {

// Runs a TcpStoreServer in a child process and returns its pid and port. The server
// gets a process of its own so that the test process stays single-threaded when it
// forks the ranks: a fork taken while another thread holds an allocator lock leaves
// the child deadlocked (glibc's malloc guards against it, ASan's allocator in GCC 12
// does not).
bool StartServerProcess(pid_t* pid, int* port) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  const pid_t parent = getpid();
  *pid = fork();
  if (*pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(3);
    close(fds[0]);
    auto server = TcpStoreServer::Start("127.0.0.1", 0);
    const int p = server.ok() ? (*server)->port() : -1;
    if (write(fds[1], &p, sizeof(p)) != sizeof(p)) _exit(4);
    close(fds[1]);
    for (;;) pause();  // serves from its thread until the parent kills it
  }
  close(fds[1]);
  if (*pid < 0) {
    close(fds[0]);
    return false;
  }
  pollfd pf{fds[0], POLLIN, 0};
  const bool ready = poll(&pf, 1, 10000) == 1 && read(fds[0], port, sizeof(*port)) == sizeof(*port);
  close(fds[0]);
  return ready && *port > 0;
}

}  // namespace

std::vector<ChildResult> RunRanks(int n, const RankFn& fn, absl::Duration deadline) {
  // Flush before forking, or buffered gtest output would be printed once per child.
  fflush(stdout);
  fflush(stderr);
  ChildSet set;
  int port = 0;
  if (!StartServerProcess(&set.server, &port)) {
    ADD_FAILURE() << "could not start the store server process";
    return {};
  }
  const pid_t parent = getpid();
  for (int r = 0; r < n; ++r) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2: " << strerror(errno);
      return {};
    }
    const pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      RunChild(r, n, port, fds[1], parent, fn);
    }
    close(fds[1]);
    if (pid < 0) {
      close(fds[0]);
      ADD_FAILURE() << "fork: " << strerror(errno);
      return {};
    }
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    Child c;
    c.pid = pid;
    c.fd = fds[0];
    c.result.rank = r;
    set.children.push_back(c);
  }

  const absl::Time end = absl::Now() + deadline;
  int remaining = n;
  while (remaining > 0) {
    for (Child& c : set.children) {
      Drain(c);
      if (c.reaped) continue;
      int wstatus = 0;
      if (waitpid(c.pid, &wstatus, WNOHANG) == c.pid) {
        Record(c, wstatus);
        --remaining;
      }
    }
    if (remaining == 0) break;
    if (absl::Now() >= end) {
      for (Child& c : set.children) {
        if (c.reaped) continue;
        c.result.timed_out = true;
        c.result.report += "\n--- stacks at the deadline ---\n" + Stacks(c.pid);
        kill(c.pid, SIGKILL);
        int wstatus = 0;
        waitpid(c.pid, &wstatus, 0);
        Record(c, wstatus);
      }
      break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  std::vector<ChildResult> results;
  for (Child& c : set.children) {
    Drain(c);
    results.push_back(c.result);
  }
  return results;
}

void ExpectAllOk(const std::vector<ChildResult>& results) {
  EXPECT_FALSE(results.empty());
  for (const ChildResult& r : results) EXPECT_TRUE(r.ok()) << r.Describe();
}

}  // namespace colossus::comm::testing
