#include "colossus/launcher/worker_supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>

#include "absl/strings/str_cat.h"
#include "colossus/check.h"
#include "group_sentinel.h"
#include "line_splitter.h"
#include "process_spawn.h"
#include "unique_fd.h"

namespace colossus::launcher {

using internal::UniqueFd;

namespace {

// Bytes read from a worker's pipe per read(2).
constexpr size_t kReadChunk = 64 * 1024;
// A tail line is cut here: it is for a summary, not for the log.
constexpr size_t kTailLineMax = 1024;

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a full disk or a closed reader loses output, never the job
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Signals a worker's process group; falls back to the process itself if the group is
// not there (the child had not reached setpgid and the parent's setpgid lost the race).
void SignalGroup(pid_t pid, int sig) {
  if (kill(-pid, sig) != 0 && errno == ESRCH) kill(pid, sig);
}

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

// One stream (stdout or stderr) of a worker.
struct Stream {
  int number = 1;  // 1 stdout, 2 stderr
  UniqueFd pipe;  // read end, non-blocking; invalid once closed
  UniqueFd log;   // log file; invalid without a run_dir
  internal::LineSplitter lines;
  std::deque<std::string> tail;
  bool echo = false;
  int echo_fd = -1;
  std::string prefix;
};

}  // namespace

std::string WorkerLogDir(const std::string& run_dir, int64_t generation) {
  return absl::StrCat(run_dir, "/logs/gen", generation);
}

std::string WorkerExit::Describe() const {
  if (signal != 0) {
    const char* name = sigabbrev_np(signal);
    return absl::StrCat("rank ", rank, " (pid ", pid, ") killed by signal ", signal,
                        name != nullptr ? absl::StrCat(" (SIG", name, ")") : "");
  }
  return absl::StrCat("rank ", rank, " (pid ", pid, ") exited with code ", exit_code);
}

const char* WorkerSupervisor::StateName(State state) {
  switch (state) {
    case State::kStarting: return "starting";
    case State::kRunning: return "running";
    case State::kStopping: return "stopping";
    case State::kExited: return "exited";
  }
  return "?";
}

class WorkerSupervisor::Impl {
 public:
  Impl(SupervisorOptions options, std::vector<WorkerProcessSpec> specs)
      : options_(std::move(options)), specs_(std::move(specs)) {
    statuses_.resize(specs_.size());
    for (size_t i = 0; i < specs_.size(); ++i) {
      statuses_[i].local_rank = specs_[i].local_rank;
      statuses_[i].rank = specs_[i].rank;
    }
  }

  ~Impl() {
    if (thread_.joinable()) {
      RequestStop(absl::ZeroDuration());
      thread_.join();
    }
  }

  absl::Status Start() {
    wake_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_.valid()) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
    // The workers are forked by this thread, which lives until the last one is reaped:
    // PR_SET_PDEATHSIG follows the forking thread, not the process.
    thread_ = std::thread([this] { Run(); });
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return start_status_.has_value(); });
    if (!start_status_->ok()) {
      lock.unlock();
      thread_.join();
    }
    return *start_status_;
  }

  void RequestStop(absl::Duration grace) {
    {
      std::lock_guard lock(mu_);
      if (state_ == State::kExited) return;
      if (stop_grace_.has_value() && *stop_grace_ <= grace) return;
      stop_grace_ = grace;
      // Visible at once; the thread sends the signals.
      if (state_ == State::kRunning) state_ = State::kStopping;
    }
    Wake();
  }

  void Wait() {
    CHECK(std::this_thread::get_id() != thread_.get_id())
        << "WorkerSupervisor::Wait called from on_exit";
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return state_ == State::kExited; });
  }

  bool WaitFor(absl::Duration timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [this] { return state_ == State::kExited; });
  }

  State state() const {
    std::lock_guard lock(mu_);
    return state_;
  }

  std::vector<WorkerStatus> Workers() const {
    std::lock_guard lock(mu_);
    return statuses_;
  }

  std::string LogDir() const {
    if (!options_.log_dir.empty()) return options_.log_dir;
    if (options_.run_dir.empty()) return "";
    return WorkerLogDir(options_.run_dir, options_.generation);
  }

  std::string LogPathOf(const WorkerProcessSpec& spec, const std::string& stream) const {
    const std::string dir = LogDir();
    if (dir.empty()) return "";
    return absl::StrCat(dir, "/", spec.log_name.empty() ? absl::StrCat("rank", spec.rank) : spec.log_name,
                        ".", stream);
  }

  std::string LogPath(int rank, const std::string& stream) const {
    for (const WorkerProcessSpec& spec : specs_) {
      if (spec.rank == rank) return LogPathOf(spec, stream);
    }
    return "";
  }

 private:
  struct Worker {
    pid_t pid = -1;
    UniqueFd pidfd;
    UniqueFd stdin_pipe;  // write end, held open while the process runs (stdin_data)
    Stream out, err;
    bool running = false;
    bool stop_signalled = false;
  };

  void Wake() {
    const uint64_t one = 1;
    ssize_t ignored = write(wake_.get(), &one, sizeof(one));
    (void)ignored;
  }

  void SetState(State s) {
    std::lock_guard lock(mu_);
    state_ = s;
    cv_.notify_all();
  }

  // The supervisor's thread: spawns, then serves pidfds, pipes and stop requests until
  // every worker is reaped.
  void Run() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    absl::Status status = SpawnAll();
    {
      std::lock_guard lock(mu_);
      if (status.ok()) state_ = State::kRunning;
    }
    if (!status.ok()) {
      // Kill what was started; the caller gets the spawn error, not these exits.
      for (Worker& w : workers_) {
        if (!w.running) continue;
        SignalGroup(w.pid, SIGKILL);
        while (waitpid(w.pid, nullptr, 0) < 0 && errno == EINTR) {
        }
        if (sentinel_) sentinel_->Forget(w.pid);
        w.running = false;
      }
      sentinel_.reset();
      std::lock_guard lock(mu_);
      state_ = State::kExited;
      start_status_ = status;
      cv_.notify_all();
      return;
    }
    {
      std::lock_guard lock(mu_);
      start_status_ = absl::OkStatus();
      cv_.notify_all();
    }
    Serve();
    sentinel_.reset();
    SetState(State::kExited);
  }

  absl::Status SpawnAll() {
    if (const std::string dir = LogDir(); !dir.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      if (ec) {
        return absl::PermissionDeniedError(
            absl::StrCat("cannot create the worker log directory ", dir, ": ", ec.message()));
      }
    }
    auto sentinel = internal::GroupSentinel::Start();
    if (!sentinel.ok()) return sentinel.status();
    sentinel_ = std::move(*sentinel);

    UniqueFd dev_null(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!dev_null.valid()) {
      return absl::InternalError(absl::StrCat("open /dev/null: ", strerror(errno)));
    }
    const std::vector<std::string> base =
        options_.base_env.empty() ? internal::CurrentEnvironment() : options_.base_env;
    workers_.resize(specs_.size());
    for (size_t i = 0; i < specs_.size(); ++i) {
      const WorkerProcessSpec& spec = specs_[i];
      Worker& w = workers_[i];
      const std::string what = absl::StrCat("rank ", spec.rank);
      if (spec.argv.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": empty worker command"));
      }
      internal::SpawnRequest request;
      request.what = what;
      request.argv = spec.argv;
      request.envp = internal::MergeEnvironment(base, spec.env);
      request.cwd = spec.cwd;
      std::string path_env;
      for (const std::string& e : request.envp) {
        if (e.rfind("PATH=", 0) == 0) path_env = e.substr(5);
      }
      auto path = internal::ResolveExecutable(spec.argv[0], path_env);
      if (!path.ok()) return absl::Status(path.status().code(), absl::StrCat(what, ": ", path.status().message()));
      request.path = *path;

      UniqueFd out_write, err_write;
      for (auto [stream, write_end, name] :
           {std::tuple{&w.out, &out_write, "out"}, std::tuple{&w.err, &err_write, "err"}}) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0) {
          return absl::ResourceExhaustedError(absl::StrCat(what, ": pipe2: ", strerror(errno)));
        }
        stream->pipe.Reset(fds[0]);
        write_end->Reset(fds[1]);
        fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
        const std::string log_path = LogPathOf(spec, name);
        if (!log_path.empty()) {
          stream->log.Reset(open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
          if (!stream->log.valid()) {
            return absl::PermissionDeniedError(
                absl::StrCat(what, ": cannot open log file ", log_path, ": ", strerror(errno)));
          }
        }
        const bool echo = options_.echo == EchoMode::kAll ||
                          (options_.echo == EchoMode::kRank0 && spec.rank == 0);
        stream->number = stream == &w.out ? 1 : 2;
        stream->echo = echo;
        stream->echo_fd = stream == &w.out ? options_.echo_stdout_fd : options_.echo_stderr_fd;
        stream->prefix = spec.echo_prefix.value_or(absl::StrCat("[rank ", spec.rank, "] "));
      }
      UniqueFd stdin_read;
      if (spec.stdin_data.has_value()) {
        if (spec.stdin_data->size() > 64 * 1024) {
          return absl::InvalidArgumentError(absl::StrCat(what, ": stdin data over 64 KiB"));
        }
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0) {
          return absl::ResourceExhaustedError(absl::StrCat(what, ": pipe2: ", strerror(errno)));
        }
        stdin_read.Reset(fds[0]);
        w.stdin_pipe.Reset(fds[1]);
        // Fits the pipe's buffer (64 KiB on Linux): this write does not block.
        WriteAll(w.stdin_pipe.get(), *spec.stdin_data);
      }
      request.stdin_fd = stdin_read.valid() ? stdin_read.get() : dev_null.get();
      request.stdout_fd = out_write.get();
      request.stderr_fd = err_write.get();
      auto pid = internal::SpawnProcess(request);
      if (!pid.ok()) return pid.status();
      w.pid = *pid;
      w.running = true;
      sentinel_->Watch(w.pid);
      w.pidfd.Reset(PidfdOpen(w.pid));
      if (!w.pidfd.valid()) {
        return absl::InternalError(absl::StrCat(what, ": pidfd_open: ", strerror(errno)));
      }
      std::lock_guard lock(mu_);
      statuses_[i].pid = w.pid;
      statuses_[i].running = true;
    }
    return absl::OkStatus();
  }

  void Serve() {
    std::optional<absl::Time> kill_at;  // SIGKILL deadline while stopping
    bool stop_seen = false;
    absl::Duration grace_seen;
    for (;;) {
      size_t running = 0;
      for (const Worker& w : workers_) running += w.running ? 1 : 0;
      if (running == 0) return;

      std::optional<absl::Duration> grace;
      {
        std::lock_guard lock(mu_);
        grace = stop_grace_;
      }
      if (grace.has_value() && (!stop_seen || *grace < grace_seen)) {
        const bool first = !stop_seen;
        stop_seen = true;
        grace_seen = *grace;
        const int sig = *grace <= absl::ZeroDuration() ? SIGKILL : SIGTERM;
        for (Worker& w : workers_) {
          if (!w.running) continue;
          if (first || sig == SIGKILL) SignalGroup(w.pid, sig);
          w.stop_signalled = true;
        }
        const absl::Time deadline = absl::Now() + *grace;
        if (!kill_at.has_value() || deadline < *kill_at) kill_at = deadline;
      }
      if (kill_at.has_value() && absl::Now() >= *kill_at) {
        for (Worker& w : workers_) {
          if (w.running) SignalGroup(w.pid, SIGKILL);
        }
        kill_at.reset();  // once; the pidfds tell when they are gone
      }

      std::vector<pollfd> fds;
      std::vector<std::pair<size_t, int>> owners;  // (worker, 0 pidfd / 1 out / 2 err)
      fds.push_back({wake_.get(), POLLIN, 0});
      owners.push_back({0, -1});
      for (size_t i = 0; i < workers_.size(); ++i) {
        Worker& w = workers_[i];
        if (w.running) {
          fds.push_back({w.pidfd.get(), POLLIN, 0});
          owners.push_back({i, 0});
        }
        if (w.out.pipe.valid()) {
          fds.push_back({w.out.pipe.get(), POLLIN, 0});
          owners.push_back({i, 1});
        }
        if (w.err.pipe.valid()) {
          fds.push_back({w.err.pipe.get(), POLLIN, 0});
          owners.push_back({i, 2});
        }
      }
      int timeout_ms = -1;
      if (kill_at.has_value()) {
        const absl::Duration left = *kill_at - absl::Now();
        timeout_ms = static_cast<int>(
            std::max<int64_t>(0, absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1)))));
      }
      const int n = poll(fds.data(), fds.size(), timeout_ms);
      if (n < 0) {
        CHECK(errno == EINTR) << "poll: " << strerror(errno);
        continue;
      }
      if (fds[0].revents != 0) {
        uint64_t count;
        ssize_t ignored = read(wake_.get(), &count, sizeof(count));
        (void)ignored;
      }
      // Output first, then exits: an exit drains what is left anyway.
      for (size_t k = 1; k < fds.size(); ++k) {
        if (fds[k].revents == 0) continue;
        auto [i, what] = owners[k];
        if (what == 1) ReadStream(workers_[i], workers_[i].out, /*drain=*/false);
        if (what == 2) ReadStream(workers_[i], workers_[i].err, /*drain=*/false);
      }
      for (size_t k = 1; k < fds.size(); ++k) {
        if (fds[k].revents == 0 || owners[k].second != 0) continue;
        Reap(owners[k].first);
      }
    }
  }

  // Reads what the pipe holds: one chunk, or (drain) until it is empty. Closes the pipe
  // at end-of-file.
  void ReadStream(Worker& w, Stream& s, bool drain) {
    char buf[kReadChunk];
    const int rank = specs_[&w - workers_.data()].rank;
    do {
      if (!s.pipe.valid()) return;
      const ssize_t n = read(s.pipe.get(), buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) {
        FinishStream(rank, s);
        return;
      }
      const std::string_view data(buf, static_cast<size_t>(n));
      if (s.log.valid()) WriteAll(s.log.get(), data);
      s.lines.Append(data, [&](std::string_view line) { OnLine(rank, s, line); });
    } while (drain);
  }

  void FinishStream(int rank, Stream& s) {
    s.lines.Flush([&](std::string_view line) { OnLine(rank, s, line); });
    s.pipe.Reset();
    s.log.Reset();
  }

  void OnLine(int rank, Stream& s, std::string_view line) {
    if (options_.tail_lines > 0) {
      s.tail.emplace_back(line.substr(0, kTailLineMax));
      if (s.tail.size() > options_.tail_lines) s.tail.pop_front();
    }
    if (!s.echo) return;
    std::string text = s.prefix;
    text.append(line);
    if (options_.on_line) {
      options_.on_line(rank, s.number, text);
      return;
    }
    // One write per line: lines of different ranks never interleave.
    text.push_back('\n');
    WriteAll(s.echo_fd, text);
  }

  void Reap(size_t i) {
    Worker& w = workers_[i];
    // The worker is a zombie now, which keeps its pgid reserved: clean up what is left of
    // its group before reaping, so the kill cannot reach a recycled pgid.
    kill(-w.pid, SIGKILL);
    sentinel_->Forget(w.pid);
    int status = 0;
    pid_t got;
    do {
      got = waitpid(w.pid, &status, 0);
    } while (got < 0 && errno == EINTR);
    CHECK(got == w.pid) << "waitpid(" << w.pid << "): " << strerror(errno)
                        << " (is SIGCHLD ignored?)";
    w.running = false;
    w.pidfd.Reset();
    w.stdin_pipe.Reset();
    // Everything the worker wrote before it died is in the pipes: read it before the
    // report, so that the tail holds its last words.
    ReadStream(w, w.out, /*drain=*/true);
    ReadStream(w, w.err, /*drain=*/true);
    FinishStream(specs_[i].rank, w.out);
    FinishStream(specs_[i].rank, w.err);

    WorkerExit exit;
    exit.local_rank = specs_[i].local_rank;
    exit.rank = specs_[i].rank;
    exit.pid = w.pid;
    if (WIFSIGNALED(status)) {
      exit.signal = WTERMSIG(status);
    } else {
      exit.exit_code = WEXITSTATUS(status);
    }
    exit.after_stop = w.stop_signalled;
    exit.stderr_tail.assign(w.err.tail.begin(), w.err.tail.end());
    exit.stdout_tail.assign(w.out.tail.begin(), w.out.tail.end());
    {
      std::lock_guard lock(mu_);
      statuses_[i].running = false;
      statuses_[i].exit = exit;
    }
    if (options_.on_exit) options_.on_exit(exit);
  }

  const SupervisorOptions options_;
  const std::vector<WorkerProcessSpec> specs_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  State state_ = State::kStarting;                // guarded by mu_
  std::vector<WorkerStatus> statuses_;            // guarded by mu_
  std::optional<absl::Status> start_status_;      // guarded by mu_
  std::optional<absl::Duration> stop_grace_;      // guarded by mu_

  UniqueFd wake_;  // eventfd: RequestStop wakes the thread
  std::thread thread_;
  // The thread's own.
  std::vector<Worker> workers_;
  std::unique_ptr<internal::GroupSentinel> sentinel_;
};

WorkerSupervisor::WorkerSupervisor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
WorkerSupervisor::~WorkerSupervisor() = default;

absl::StatusOr<std::unique_ptr<WorkerSupervisor>> WorkerSupervisor::Start(
    SupervisorOptions options, std::vector<WorkerProcessSpec> workers) {
  if (workers.empty()) return absl::InvalidArgumentError("no workers to start");
  auto impl = std::make_unique<Impl>(std::move(options), std::move(workers));
  absl::Status status = impl->Start();
  if (!status.ok()) return status;
  return std::unique_ptr<WorkerSupervisor>(new WorkerSupervisor(std::move(impl)));
}

void WorkerSupervisor::RequestStop(absl::Duration grace) { impl_->RequestStop(grace); }
void WorkerSupervisor::Stop(absl::Duration grace) {
  impl_->RequestStop(grace);
  impl_->Wait();
}
void WorkerSupervisor::Wait() { impl_->Wait(); }
bool WorkerSupervisor::WaitFor(absl::Duration timeout) { return impl_->WaitFor(timeout); }
WorkerSupervisor::State WorkerSupervisor::state() const { return impl_->state(); }
std::vector<WorkerStatus> WorkerSupervisor::Workers() const { return impl_->Workers(); }
std::string WorkerSupervisor::LogPath(int rank, const std::string& stream) const {
  return impl_->LogPath(rank, stream);
}

}  // namespace colossus::launcher
