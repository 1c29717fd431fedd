// `colossus-launch manifest.yaml [--dry-run] [--log MODE] [--no-status] [-- worker args]`:
// validates the manifest, starts the coordinator in-process (or connects to the one the
// manifest names), starts one agent per node (a child process here, over ssh for remote
// nodes), relays their output, shows the job's events and a live status line, and exits
// with the job's outcome (exit_codes.h). Ctrl-C stops the job on every node.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "colossus/launcher/coordinator.h"
#include "colossus/launcher/coordinator_client.h"
#include "colossus/launcher/exit_codes.h"
#include "colossus/launcher/manifest.h"
#include "colossus/launcher/worker_supervisor.h"
#include "agent_fleet.h"
#include "console.h"
#include "job_view.h"
#include "launch_main.h"
#include "launch_plan.h"

namespace colossus::launcher {
namespace {

// How long agents get to exit after the job ended (they stop their workers first).
constexpr absl::Duration kAgentExitGrace = absl::Seconds(30);

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "colossus-launch: %s\n", message.c_str());
  return code;
}

std::string SelfPath() {
  std::error_code ec;
  const auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "colossus-launch" : p.string();
}

std::string RandomToken() {
  std::random_device rd;
  std::string token;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&token, absl::Hex(rd(), absl::kZeroPad8));
  return token;
}

absl::Status WritePrivateFile(const std::string& path, const std::string& text) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path, ": ", strerror(errno)));
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok ? absl::OkStatus() : absl::InternalError(absl::StrCat("cannot write ", path));
}

// The token file the agents and workers read: the manifest's, or <run_dir>/token holding
// the inline or generated token (a generated one is kept, so a relaunch of the same run
// directory resumes with the same token).
absl::StatusOr<std::pair<std::string, std::string>> ResolveToken(const Manifest& m) {
  if (!m.auth.token_file.empty()) return std::make_pair(m.auth.token, m.auth.token_file);
  const std::string path = m.run_dir + "/token";
  std::string token = m.auth.token;
  if (m.auth.generate) {
    std::ifstream in(path);
    std::getline(in, token);
    token = std::string(absl::StripAsciiWhitespace(token));
    if (token.empty()) token = RandomToken();
  }
  absl::Status s = WritePrivateFile(path, token + "\n");
  if (!s.ok()) return s;
  return std::make_pair(token, path);
}

// Everything that wakes the main loop besides signals: job events and agent exits.
class Inbox {
 public:
  Inbox() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~Inbox() { close(fd_); }
  int fd() const { return fd_; }
  void Push(v1::JobEvent e) {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(e));
    Wake();
  }
  void Push(WorkerExit e) {
    std::lock_guard lock(mu_);
    exits_.push_back(std::move(e));
    Wake();
  }
  void Take(std::deque<v1::JobEvent>* events, std::deque<WorkerExit>* exits) {
    uint64_t n;
    ssize_t ignored = read(fd_, &n, sizeof(n));
    (void)ignored;
    std::lock_guard lock(mu_);
    events->swap(events_);
    exits->swap(exits_);
  }

 private:
  void Wake() {
    const uint64_t one = 1;
    ssize_t ignored = write(fd_, &one, sizeof(one));
    (void)ignored;
  }
  const int fd_;
  std::mutex mu_;
  std::deque<v1::JobEvent> events_;
  std::deque<WorkerExit> exits_;
};

bool Terminal(v1::JobPhase p) {
  return p == v1::JOB_PHASE_SUCCEEDED || p == v1::JOB_PHASE_FAILED || p == v1::JOB_PHASE_STOPPED;
}

}  // namespace

std::vector<std::string> CommandAfterDoubleDash(int* argc, char** argv) {
  std::vector<std::string> rest;
  for (int i = 1; i < *argc; ++i) {
    if (std::string_view(argv[i]) == "--") {
      for (int j = i + 1; j < *argc; ++j) rest.emplace_back(argv[j]);
      *argc = i;
      break;
    }
  }
  return rest;
}

int LaunchMain(int argc, char** argv) {
  const std::vector<std::string> extra_args = CommandAfterDoubleDash(&argc, argv);
  CLI::App app{"colossus-launch: run a Colossus job from a cluster manifest"};
  std::string manifest_path, log;
  bool dry_run = false, no_status = false;
  app.add_option("manifest", manifest_path, "the job's manifest (launcher/MANIFEST.md)")->required();
  app.add_flag("--dry-run", dry_run, "print the plan (layout, coordinator, agent commands) and exit");
  app.add_option("--log", log, "override worker.log: all, rank0 or none");
  app.add_flag("--no-status", no_status, "no live status line even on a terminal");
  app.footer(
      "Also: colossus-launch --agent ... (one node agent), colossus-launch status|stop ...\n"
      "Exit codes: 0 success, 1 job failed, 2 bad manifest or flags, 3 stopped by a user,\n"
      "4 coordinator unreachable, 130 interrupted (Ctrl-C).");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitBadManifest;
  }
  if (!log.empty() && log != "all" && log != "rank0" && log != "none") {
    return Fail(kExitBadManifest, absl::StrCat("--log ", log, ": expected all, rank0 or none"));
  }

  // 1. The manifest: any error ends here, before anything is started.
  absl::StatusOr<Manifest> loaded = LoadManifest(manifest_path);
  if (!loaded.ok()) return Fail(kExitBadManifest, std::string(loaded.status().message()));
  const Manifest& m = *loaded;
  for (const std::string& w : m.warnings) std::fprintf(stderr, "colossus-launch: warning: %s\n", w.c_str());

  LaunchPlanInputs inputs;
  inputs.self = SelfPath();
  inputs.extra_worker_args = extra_args;
  inputs.log = log;
  if (dry_run) {
    std::printf("%s", DescribeManifest(m).c_str());
    inputs.coordinator = m.coordinator.start_here
                             ? absl::StrCat(m.coordinator.advertise, ":",
                                            m.coordinator.listen.port == 0 ? std::string("<port>")
                                                                           : absl::StrCat(m.coordinator.listen.port))
                             : m.coordinator.address.ToString();
    inputs.token_file = m.auth.token_file.empty() ? m.run_dir + "/token" : m.auth.token_file;
    std::printf("agents:\n");
    for (const AgentLaunch& a : PlanAgents(m, inputs)) {
      std::printf("  %s%s: %s\n", a.node.c_str(), a.remote ? " (token on stdin)" : "",
                  ShellJoin(a.argv).c_str());
    }
    return kExitSuccess;
  }

  std::error_code ec;
  std::filesystem::create_directories(m.run_dir + "/logs", ec);
  if (ec) return Fail(kExitBadManifest, absl::StrCat("cannot create the run directory ", m.run_dir, ": ", ec.message()));
  absl::StatusOr<std::pair<std::string, std::string>> token = ResolveToken(m);
  if (!token.ok()) return Fail(kExitBadManifest, std::string(token.status().message()));
  inputs.token_file = token->second;

  // 2. Signals: one signalfd in the main loop. Blocked before any thread starts, so
  // every thread inherits the mask (and workers get theirs reset at spawn).
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  const int sig_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);

  Console console(!no_status && isatty(2));
  Inbox inbox;

  // 3. The coordinator.
  std::unique_ptr<CoordinatorServer> server;
  if (m.coordinator.start_here) {
    CoordinatorOptions o = CoordinatorOptionsFor(m, token->first);
    o.on_event = [&inbox](const v1::JobEvent& e) { inbox.Push(e); };
    o.log = [&console](const std::string& line) { console.Info(absl::StrCat("coordinator: ", line)); };
    absl::StatusOr<std::unique_ptr<CoordinatorServer>> started = CoordinatorServer::Start(o);
    if (!started.ok()) {
      return Fail(kExitCoordinatorUnreachable,
                  absl::StrCat("cannot start the coordinator: ", started.status().message()));
    }
    server = *std::move(started);
    inputs.coordinator = absl::StrCat(m.coordinator.advertise, ":", server->port());
    (void)WritePrivateFile(m.run_dir + "/coordinator.address", inputs.coordinator + "\n");
  } else {
    inputs.coordinator = m.coordinator.address.ToString();
  }
  CoordinatorClientOptions co;
  co.channel.target = inputs.coordinator;
  co.channel.tls.ca_cert_file = m.coordinator.tls.ca;
  co.channel.tls.client_cert_file = m.coordinator.tls.client_cert;
  co.channel.tls.client_key_file = m.coordinator.tls.client_key;
  co.token = token->first;
  co.job_id = m.name;
  co.retry.max_elapsed = absl::Seconds(10);
  co.call_timeout = absl::Seconds(10);
  absl::StatusOr<std::unique_ptr<CoordinatorClient>> client = CoordinatorClient::Create(co);
  if (!client.ok()) return Fail(kExitBadManifest, std::string(client.status().message()));
  std::thread watcher;
  if (!server) {
    absl::StatusOr<v1::JobStatus> st = (*client)->GetJobStatus();
    if (!st.ok()) {
      const bool unreachable = st.status().code() == absl::StatusCode::kUnavailable ||
                               st.status().code() == absl::StatusCode::kDeadlineExceeded;
      return Fail(unreachable ? kExitCoordinatorUnreachable : kExitBadManifest,
                  std::string(st.status().message()));
    }
    CoordinatorClient* raw = client->get();
    watcher = std::thread([raw, &inbox] {
      (void)raw->WatchEvents([&inbox](const v1::JobEvent& e) {
        inbox.Push(e);
        return true;
      });
    });
  }

  // 4. The agents, supervised like workers: own process groups, bound to this process,
  // output relayed line by line.
  AgentFleet fleet(
      PlanAgents(m, inputs), token->first, m.run_dir + "/logs",
      [&console](int stream, std::string_view line) { console.Line(stream, line); },
      [&inbox](const WorkerExit& e) { inbox.Push(e); });
  if (absl::Status s = fleet.StartAll(); !s.ok()) {
    if (server) (void)(*client)->StopJob("colossus-launch could not start the agents");
    return Fail(kExitJobFailed, absl::StrCat("cannot start the agents: ", s.message()));
  }
  console.Info(absl::StrCat("job ", m.name, ": ", m.nodes.size(), " node(s), ", m.world_size,
                            " rank(s), coordinator ", inputs.coordinator, ", logs in ", m.run_dir,
                            "/logs"));

  // 5. Until the job ends and the agents are gone.
  const absl::Time start = absl::Now();
  std::map<std::string, int> agent_codes;           // node -> exit code
  std::map<std::string, WorkerExit> agent_exits;
  size_t running = fleet.size();
  int agent_restarts = 0;
  bool interrupted = false, ended = false;
  absl::Time give_up = absl::InfiniteFuture();      // then the agents are stopped by us
  bool agents_stopped = false;
  v1::JobStatus last;
  EtaEstimator eta;  // the status line's time left, from the recent step rate
  while (running > 0) {
    pollfd fds[2] = {{sig_fd, POLLIN, 0}, {inbox.fd(), POLLIN, 0}};
    const int n = poll(fds, 2, 1000);
    if (n < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info;
      while (read(sig_fd, &info, sizeof(info)) == sizeof(info)) {
        const char* name = sigabbrev_np(static_cast<int>(info.ssi_signo));
        if (!interrupted) {
          interrupted = true;
          console.Info(absl::StrCat("SIG", name ? name : "?", ": stopping the job on every node (again to kill)"));
          absl::StatusOr<v1::StopJobResponse> stopped =
              (*client)->StopJob(absl::StrCat("interrupted by SIG", name ? name : "?", " on colossus-launch"));
          if (!stopped.ok()) {
            console.Info(absl::StrCat("could not stop the job through the coordinator (",
                                      stopped.status().message(), "): stopping the agents"));
            fleet.StopAll(absl::Seconds(10));
            agents_stopped = true;
          }
          give_up = absl::Now() + kAgentExitGrace;
        } else {
          console.Info("killing the agents");
          fleet.StopAll(absl::ZeroDuration());
          agents_stopped = true;
        }
      }
    }
    std::deque<v1::JobEvent> events;
    std::deque<WorkerExit> exits;
    inbox.Take(&events, &exits);
    for (const v1::JobEvent& e : events) {
      const std::string line = EventLine(e);
      if (!line.empty()) console.Info(line);
      if (e.kind() == v1::JobEvent::KIND_JOB_ENDED && !ended) {
        ended = true;
        give_up = std::min(give_up, absl::Now() + kAgentExitGrace);
      }
    }
    for (const WorkerExit& e : exits) {
      const int node_index = e.rank;
      const std::string& node = fleet.launch(node_index).node;
      fleet.Reap(node_index);
      --running;
      agent_exits[node] = e;
      agent_codes[node] = e.signal != 0 ? 128 + e.signal : e.exit_code;
      // After the job ended agents exit with its outcome (3 when stopped): not news.
      if (e.success() || ((ended || interrupted) && e.signal == 0)) continue;
      console.Info(absl::StrCat("agent of node ", node, " ",
                                e.signal != 0 ? absl::StrCat("killed by signal ", e.signal)
                                              : absl::StrCat("exited with code ", e.exit_code)));
      // An agent killed while the job runs (the OOM killer, a stray kill -9) took its
      // workers with it. Its node leaves the generation (the others restart without
      // waiting for its timeout) and a fresh agent joins the next one, within the
      // job's restart budget.
      if (e.signal != 0 && !e.after_stop && !ended && !interrupted &&
          agent_restarts < m.restart.max_restarts) {
        ++agent_restarts;
        (*client)->set_generation(last.generation());
        if (absl::Status s = (*client)->Leave(
                node, absl::StrCat("its agent (pid ", e.pid, ") was killed by signal ", e.signal));
            !s.ok()) {
          console.Info(absl::StrCat("leave for node ", node, ": ", s.message()));
        }
        console.Info(absl::StrCat("starting the agent of node ", node, " again (", agent_restarts,
                                  " of ", m.restart.max_restarts, ")"));
        if (absl::Status s = fleet.Restart(node_index); s.ok()) {
          ++running;
          agent_exits.erase(node);
          agent_codes.erase(node);
        } else {
          console.Info(std::string(s.message()));
        }
      }
    }
    absl::StatusOr<v1::JobStatus> st =
        server ? absl::StatusOr<v1::JobStatus>(server->Status()) : (*client)->GetJobStatus();
    if (st.ok()) {
      last = *st;
      eta.Observe(last, absl::Now());
      console.Status(StatusLine(last, absl::Now() - start, eta.Remaining()));
      if (Terminal(last.phase()) && !ended) {
        ended = true;
        give_up = std::min(give_up, absl::Now() + kAgentExitGrace);
      }
    }
    if (absl::Now() > give_up && !agents_stopped) {
      console.Info("agents still running after the job ended: stopping them");
      fleet.StopAll(absl::Seconds(10));
      agents_stopped = true;
    }
  }

  // 6. The outcome.
  if (server) {
    last = server->Status();
  } else if (absl::StatusOr<v1::JobStatus> st = (*client)->GetJobStatus(); st.ok()) {
    last = *st;
  }
  console.ClearStatus();
  int code;
  if (interrupted) {
    code = kExitInterrupted;
    console.Info(absl::StrCat("interrupted; job ", PhaseName(last.phase())));
  } else if (last.phase() == v1::JOB_PHASE_SUCCEEDED) {
    code = kExitSuccess;
    console.Info(absl::StrCat("job ", m.name, " succeeded in ", absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Seconds(1))),
                              " (generation ", last.generation(), ", ", last.restarts(), " restart(s))"));
  } else if (last.phase() == v1::JOB_PHASE_STOPPED) {
    code = kExitStopped;
    console.Info(absl::StrCat("job stopped: ", last.reason()));
  } else if (last.phase() == v1::JOB_PHASE_FAILED) {
    code = kExitJobFailed;
    std::fprintf(stderr, "%s", FailureSummary(last, m.run_dir).c_str());
  } else {
    // Every agent is gone but the job did not end: they could not take part.
    bool all_unreachable = !agent_codes.empty();
    bool bad_config = false;
    for (const auto& [node, c] : agent_codes) {
      all_unreachable = all_unreachable && c == kExitCoordinatorUnreachable;
      bad_config = bad_config || c == kExitBadManifest;
    }
    code = all_unreachable ? kExitCoordinatorUnreachable : bad_config ? kExitBadManifest : kExitJobFailed;
    std::string summary = "the agents exited before the job ended:\n";
    for (const auto& [node, e] : agent_exits) {
      absl::StrAppend(&summary, "  node ", node, ": ", e.Describe(), "\n");
      for (const std::string& line : e.stderr_tail) absl::StrAppend(&summary, "    | ", line, "\n");
    }
    std::fprintf(stderr, "%s", summary.c_str());
    if (server) (void)(*client)->StopJob("every agent exited");
  }
  if (watcher.joinable()) {
    (*client)->Shutdown();
    watcher.join();
  }
  if (server) server->Shutdown();
  return code;
}

}  // namespace colossus::launcher
