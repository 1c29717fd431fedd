// colossus-coordinator: the job's control-plane server as a process.
//
// Prints one line to stdout when it listens (scripts read the port from it):
//   colossus-coordinator: listening on HOST:PORT job=ID generation=G
// and logs each job event to stderr, one line each (node, rank, step named).
// Exit status: 0 the job succeeded, 1 it failed, 3 it was stopped, 2 bad flags or
// options, 4 the coordinator itself stopped without the job ending (it could not start,
// or SIGINT/SIGTERM: a coordinator started on the same run directory resumes the job).
#include <csignal>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "colossus/launcher/coordinator.h"

namespace {

namespace v1 = ::colossus::coordinator::v1;
using colossus::launcher::CoordinatorOptions;
using colossus::launcher::CoordinatorServer;

constexpr int kExitSucceeded = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitStopped = 3;
constexpr int kExitNotEnded = 4;

// Writes event lines to stderr from its own thread, so that a slow or full stderr never
// holds up the coordinator; beyond 100,000 queued lines they are dropped and counted.
class EventLog {
 public:
  EventLog() : thread_([this] { Loop(); }) {}
  ~EventLog() {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    thread_.join();
  }
  void Add(std::string line) {
    absl::MutexLock lock(&mu_);
    if (lines_.size() >= 100'000) {
      ++dropped_;
      return;
    }
    lines_.push_back(std::move(line));
  }

 private:
  void Loop() {
    while (true) {
      std::deque<std::string> lines;
      int64_t dropped = 0;
      bool done = false;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ || !lines_.empty(); };
        mu_.Await(absl::Condition(&ready));
        lines.swap(lines_);
        std::swap(dropped, dropped_);
        done = done_;
      }
      std::string out;
      for (const std::string& l : lines) absl::StrAppend(&out, l, "\n");
      if (dropped > 0) absl::StrAppend(&out, "colossus-coordinator: ", dropped, " event lines dropped (stderr too slow)\n");
      if (!out.empty()) {
        std::fwrite(out.data(), 1, out.size(), stderr);
        std::fflush(stderr);
      }
      if (done && lines.empty()) return;
    }
  }

  absl::Mutex mu_;
  std::deque<std::string> lines_ ABSL_GUARDED_BY(mu_);
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

std::string EventLine(const v1::JobEvent& e) {
  std::string kind = v1::JobEvent::Kind_Name(e.kind());
  if (kind.rfind("KIND_", 0) == 0) kind = kind.substr(5);
  std::string line = absl::StrCat("colossus-coordinator: event ", kind, " generation=", e.generation());
  if (!e.node_id().empty()) absl::StrAppend(&line, " node=", e.node_id());
  if (e.rank() >= 0) absl::StrAppend(&line, " rank=", e.rank());
  if (e.step() >= 0) absl::StrAppend(&line, " step=", e.step());
  absl::StrAppend(&line, ": ", e.message());
  return line;
}

int ExitCodeFor(v1::JobPhase phase) {
  switch (phase) {
    case v1::JOB_PHASE_SUCCEEDED: return kExitSucceeded;
    case v1::JOB_PHASE_FAILED: return kExitFailed;
    case v1::JOB_PHASE_STOPPED: return kExitStopped;
    default: return kExitNotEnded;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "colossus-coordinator: the job's control plane (rendezvous, store, health, restarts, "
      "checkpoint commit, journal). Exit status: 0 job succeeded, 1 failed, 3 stopped, 2 bad "
      "flags, 4 the coordinator stopped without the job ending (start failure or signal)."};
  CoordinatorOptions o;
  std::string token_file;
  int64_t settle_ms = 0, join_timeout_ms = 600'000, heartbeat_ms = 1'000, node_timeout_ms = 30'000,
          hang_timeout_ms = 600'000, restart_backoff_ms = 0, stop_grace_ms = 10'000, store_wait_timeout_ms = 600'000,
          first_message_timeout_ms = 5'000, linger_ms = 1'000;
  int64_t store_max_bytes = o.store_limits.max_total_bytes;
  int max_nodes = 0;
  bool log_joins = true;
  app.add_option("--job-id", o.job_id, "The job's id (every request's header must name it)")->required();
  app.add_option("--listen", o.listen_address, "host:port to serve on (port 0 picks one)")
      ->capture_default_str();
  app.add_option("--run-dir", o.run_dir, "Directory of the journal (coordinator.journal)")->required();
  auto* token = app.add_option("--token", o.token, "The job's secret (prefer --token-file)");
  auto* token_path = app.add_option("--token-file", token_file, "File holding the job's secret");
  token->excludes(token_path);
  app.add_option("--min-nodes", o.min_nodes, "Nodes needed to form a generation")->capture_default_str();
  app.add_option("--max-nodes", max_nodes, "Nodes that form a generation at once (default: min-nodes)");
  app.add_option("--settle-ms", settle_ms, "Quiet time after the last join before forming with >= min-nodes")
      ->capture_default_str();
  app.add_option("--join-timeout-ms", join_timeout_ms, "Default hold of a Join")->capture_default_str();
  app.add_option("--heartbeat-interval-ms", heartbeat_ms, "Beat interval told to agents")->capture_default_str();
  app.add_option("--node-timeout-ms", node_timeout_ms, "Silence after which a node is dead")->capture_default_str();
  app.add_option("--hang-timeout-ms", hang_timeout_ms, "A RUNNING rank whose step does not advance this long is stuck")
      ->capture_default_str();
  app.add_option("--max-restarts", o.max_restarts, "Restart budget")->capture_default_str();
  app.add_option("--restart-backoff-ms", restart_backoff_ms,
                 "Wait before re-forming after a generation in which no rank completed a step "
                 "(doubles per such failure in a row, at most 16x; a generation that trained "
                 "restarts at once)")
      ->capture_default_str();
  app.add_option("--stop-grace-ms", stop_grace_ms, "SIGTERM-to-SIGKILL grace told to agents")->capture_default_str();
  app.add_option("--tls-cert", o.tls_cert_path, "Server certificate (PEM); with --tls-key turns TLS on");
  app.add_option("--tls-key", o.tls_key_path, "Server private key (PEM)");
  app.add_option("--tls-client-ca", o.tls_client_ca_path, "CA (PEM) that client certificates must chain to (required when set)");
  app.add_option("--metrics-host", o.metrics_host, "Host of /metrics")->capture_default_str();
  app.add_option("--metrics-port", o.metrics_port, "Port of /metrics (-1 off, 0 pick)")->capture_default_str();
  app.add_option("--cq-threads", o.cq_threads, "Completion queues, one thread each (0: one per core, >= 2)")
      ->capture_default_str();
  app.add_option("--store-max-bytes", store_max_bytes, "Total bytes of keys and values the store holds")
      ->capture_default_str();
  app.add_option("--store-wait-timeout-ms", store_wait_timeout_ms, "Hold of a StoreWait with timeout_ms 0")
      ->capture_default_str();
  app.add_option("--first-message-timeout-ms", first_message_timeout_ms,
                 "A Health stream silent this long after opening is cut off")->capture_default_str();
  app.add_option("--linger-ms", linger_ms, "Keep serving this long after the job ends (status, EXIT delivery)")
      ->capture_default_str();
  app.add_flag("--log-joins,!--no-log-joins", log_joins, "Log a line per joining node (default on)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }

  if (!token_file.empty()) {
    std::ifstream in(token_file, std::ios::binary);
    if (!in) {
      std::cerr << "colossus-coordinator: cannot read --token-file " << token_file << std::endl;
      return kExitUsage;
    }
    std::stringstream buffer;
    buffer << in.rdbuf();
    o.token = buffer.str();
    while (!o.token.empty() && (o.token.back() == '\n' || o.token.back() == '\r' ||
                                o.token.back() == ' ' || o.token.back() == '\t')) {
      o.token.pop_back();
    }
  }
  o.max_nodes = max_nodes > 0 ? max_nodes : o.min_nodes;
  o.settle = absl::Milliseconds(settle_ms);
  o.join_timeout = absl::Milliseconds(join_timeout_ms);
  o.heartbeat_interval = absl::Milliseconds(heartbeat_ms);
  o.node_timeout = absl::Milliseconds(node_timeout_ms);
  o.hang_timeout = absl::Milliseconds(hang_timeout_ms);
  o.restart_backoff = absl::Milliseconds(restart_backoff_ms);
  o.stop_grace = absl::Milliseconds(stop_grace_ms);
  o.store_wait_timeout = absl::Milliseconds(store_wait_timeout_ms);
  o.first_message_timeout = absl::Milliseconds(first_message_timeout_ms);
  o.store_limits.max_total_bytes = store_max_bytes;
  if (absl::Status s = colossus::launcher::ValidateCoordinatorOptions(o); !s.ok()) {
    std::cerr << "colossus-coordinator: " << s.message() << std::endl;
    return kExitUsage;
  }

  // Signals are taken synchronously by the main loop below; block them before any thread
  // starts so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto log = std::make_shared<EventLog>();
  o.on_event = [log, log_joins](const v1::JobEvent& e) {
    if (!log_joins && e.kind() == v1::JobEvent::KIND_NODE_JOINED) return;
    log->Add(EventLine(e));
  };
  o.log = [log](const std::string& line) { log->Add(absl::StrCat("colossus-coordinator: ", line)); };

  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server = CoordinatorServer::Start(o);
  if (!server.ok()) {
    std::cerr << "colossus-coordinator: " << server.status().message() << std::endl;
    return kExitNotEnded;
  }
  std::printf("colossus-coordinator: listening on %s job=%s generation=%lld\n",
              (*server)->address().c_str(), o.job_id.c_str(),
              static_cast<long long>((*server)->generation()));
  std::fflush(stdout);

  bool interrupted = false;
  while (!(*server)->WaitFor(absl::Milliseconds(100))) {
    struct timespec zero = {0, 0};
    int sig = sigtimedwait(&signals, nullptr, &zero);
    if (sig == SIGINT || sig == SIGTERM) {
      log->Add(absl::StrCat("colossus-coordinator: signal ", sig,
                            ": shutting down (the job continues with a successor on ", o.run_dir, ")"));
      interrupted = true;
      break;
    }
  }
  v1::JobPhase phase = (*server)->Status().phase();
  if (!interrupted) {
    // Serve a little longer: agents reconnecting get EXIT, colossus-launch reads the status.
    absl::Time until = absl::Now() + absl::Milliseconds(linger_ms);
    while (absl::Now() < until) {
      struct timespec wait = {0, 50'000'000};
      int sig = sigtimedwait(&signals, nullptr, &wait);
      if (sig == SIGINT || sig == SIGTERM) break;
    }
  }
  (*server)->Shutdown();
  server->reset();
  log.reset();
  return interrupted ? kExitNotEnded : ExitCodeFor(phase);
}
