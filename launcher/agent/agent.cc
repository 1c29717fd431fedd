#include "colossus/launcher/agent.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "colossus/check.h"
#include "colossus/launcher/exit_codes.h"
#include "colossus/launcher/status_file.h"
#include "colossus/launcher/store_relay.h"
#include "colossus/launcher/worker_env.h"

namespace colossus::launcher {
namespace {

constexpr char kMasterPortKey[] = "colossus/master_port";
constexpr size_t kDetailMaxBytes = 4096;

std::string RandomIncarnation() {
  std::random_device rd;
  return absl::StrCat(absl::Hex(rd()), absl::Hex(rd()), "-", getpid());
}

// A free TCP port on this machine (bound on every address, then released for rank 0's
// store to take). Another process could take it in between; rank 0 then fails naming
// the port, and the coordinator restarts the group with a fresh one.
absl::StatusOr<int> PickFreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string err = strerror(errno);
    close(fd);
    return absl::InternalError(absl::StrCat("cannot pick a free port for MASTER_PORT: ", err));
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

// Where the node's store relay listens: <run_dir>/relay/<node>.sock in a 0700 directory,
// or, when that path is too long for a unix socket (107 bytes), a short one under the
// temp directory.
absl::StatusOr<std::string> RelaySocketPath(const std::string& run_dir, const std::string& node) {
  constexpr size_t kMaxPath = 107;
  std::error_code ec;
  std::string dir = (std::filesystem::absolute(run_dir.empty() ? "." : run_dir, ec) / "relay").string();
  std::string path = absl::StrCat(dir, "/", node, ".sock");
  if (path.size() > kMaxPath) {
    dir = (std::filesystem::temp_directory_path(ec) / absl::StrCat("colossus-relay-", getuid())).string();
    path = absl::StrCat(dir, "/", absl::Hex(std::hash<std::string>{}(run_dir + "\n" + node)), "-",
                        getpid(), ".sock");
  }
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create '", dir, "': ", ec.message()));
  if (chmod(dir.c_str(), 0700) != 0) {
    return absl::InternalError(absl::StrCat("chmod 0700 '", dir, "': ", strerror(errno)));
  }
  return path;
}

v1::RankState ExitState(const WorkerExit& e) {
  if (e.after_stop) return v1::RANK_STATE_STOPPED;
  return e.success() ? v1::RANK_STATE_SUCCEEDED : v1::RANK_STATE_FAILED;
}

}  // namespace

class NodeAgent::Impl {
 public:
  Impl(AgentOptions options, std::unique_ptr<CoordinatorClient> client,
       std::unique_ptr<CoordinatorClient> health_client)
      : options_(std::move(options)),
        client_(std::move(client)),
        health_client_(std::move(health_client)),
        core_(AgentCore::Options{.default_grace = options_.stop_grace}),
        incarnation_(RandomIncarnation()) {
    if (!options_.log) {
      const std::string prefix = absl::StrCat("[agent ", options_.identity.node_id, "] ");
      options_.log = [prefix](const std::string& line) {
        const std::string text = prefix + line + "\n";
        ssize_t ignored = write(2, text.data(), text.size());
        (void)ignored;
      };
    }
  }

  ~Impl() {
    // The supervisor and the stream call back into this object: end them first.
    supervisor_.reset();
    stream_.reset();
    relay_.reset();
  }

  int Run() {
    StartRelay();
    Apply(core_.Begin(absl::Now()));
    while (core_.state() != AgentCore::State::kDone) {
      std::optional<Event> event;
      {
        std::unique_lock lock(mu_);
        const absl::Time wake = core_.NextWakeup();
        auto ready = [this] { return !events_.empty(); };
        if (wake == absl::InfiniteFuture()) {
          cv_.wait(lock, ready);
        } else {
          cv_.wait_for(lock, absl::ToChronoNanoseconds(std::max(wake - absl::Now(), absl::ZeroDuration())),
                       ready);
        }
        if (!events_.empty()) {
          event = std::move(events_.front());
          events_.pop_front();
        }
      }
      if (event.has_value()) {
        Dispatch(*event);
      } else {
        Apply(core_.OnTick(absl::Now()));
      }
    }
    supervisor_.reset();
    stream_.reset();
    relay_.reset();
    {
      std::lock_guard lock(mu_);
      exit_message_ = core_.exit_message();
    }
    if (exit_code_ == kExitSuccess) {
      Log("job succeeded");
    } else {
      Log(absl::StrCat("exiting with code ", exit_code_, ": ", core_.exit_message()));
    }
    return exit_code_;
  }

  void Interrupt(int signal) {
    bool cancel;
    {
      std::lock_guard lock(mu_);
      events_.push_back(Event{.kind = Event::Kind::kInterrupt, .signal = signal});
      cv_.notify_all();
      cancel = in_blocking_call_;
    }
    // A held Join or store wait would keep the interrupt waiting: cancel it. (Shutdown
    // cancels the health stream too, whose end callback takes mu_: not under it.)
    if (cancel) {
      client_->Shutdown();
      health_client_->Shutdown();
    }
  }

  AgentCore::State state() const {
    std::lock_guard lock(mu_);
    return published_state_;
  }

  std::string exit_message() const {
    std::lock_guard lock(mu_);
    return exit_message_;
  }

 private:
  struct Event {
    enum class Kind { kWorkerExit, kAllExited, kCommand, kHealthEnded, kInterrupt } kind;
    int64_t serial = 0;  // the supervisor's or the stream's: stale ones are dropped
    WorkerExit exit = {};
    v1::Command command = {};
    absl::Status status = {};
    int signal = 0;
  };

  void Post(Event event) {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(event));
    cv_.notify_all();
  }

  void Log(const std::string& line) { options_.log(line); }

  void Dispatch(const Event& e) {
    const absl::Time now = absl::Now();
    switch (e.kind) {
      case Event::Kind::kWorkerExit:
        if (e.serial != supervisor_serial_) return;
        if (!e.exit.success() && !e.exit.after_stop) {
          Log(absl::StrCat(e.exit.Describe(), e.exit.stderr_tail.empty() ? "" : ": ",
                           e.exit.stderr_tail.empty() ? "" : e.exit.stderr_tail.back()));
        }
        Apply(core_.OnWorkerExited(now));
        return;
      case Event::Kind::kAllExited:
        if (e.serial != supervisor_serial_) return;
        Apply(core_.OnAllWorkersExited(now));
        return;
      case Event::Kind::kCommand: {
        if (e.serial != stream_serial_) return;
        const v1::Command& c = e.command;
        AgentCore::CommandKind kind;
        switch (c.kind()) {
          case v1::Command::KIND_STOP_WORKERS: kind = AgentCore::CommandKind::kStopWorkers; break;
          case v1::Command::KIND_RESTART: kind = AgentCore::CommandKind::kRestart; break;
          case v1::Command::KIND_EXIT: kind = AgentCore::CommandKind::kExit; break;
          default: return;
        }
        Log(absl::StrCat("command ", v1::Command::Kind_Name(c.kind()).substr(5), " (generation ", c.generation(),
                         c.reason().empty() ? "" : "): ", c.reason(), c.reason().empty() ? ")" : ""));
        Apply(core_.OnCommand(kind, c.generation(), absl::Milliseconds(c.grace_ms()), c.success(),
                              c.reason(), now));
        return;
      }
      case Event::Kind::kHealthEnded:
        if (e.serial != stream_serial_) return;
        if (!e.status.ok()) Log(absl::StrCat("health stream ended: ", e.status.ToString()));
        stream_.reset();
        Apply(core_.OnHealthEnded(e.status, now));
        return;
      case Event::Kind::kInterrupt:
        Log(absl::StrCat("interrupted (signal ", e.signal, "): stopping the workers"));
        Apply(core_.OnInterrupt(e.signal, now));
        return;
    }
  }

  void Apply(const std::vector<AgentAction>& actions) {
    {
      std::lock_guard lock(mu_);
      published_state_ = core_.state();
    }
    for (const AgentAction& a : actions) {
      switch (a.kind) {
        case AgentAction::Kind::kJoin: DoJoin(a.generation); break;
        case AgentAction::Kind::kStartWorkers:
          Apply(core_.OnWorkersStarted(StartWorkers(), absl::Now()));
          break;
        case AgentAction::Kind::kOpenHealth:
          Apply(core_.OnHealthOpened(OpenHealth(), absl::Now()));
          break;
        case AgentAction::Kind::kSendBeat:
          // A failure shows up as the stream's end (on_end): nothing to do here.
          if (stream_) (void)stream_->Send(BuildBeat());
          break;
        case AgentAction::Kind::kStopWorkers:
          if (supervisor_) supervisor_->RequestStop(a.grace);
          break;
        case AgentAction::Kind::kCloseHealth:
          if (stream_) {
            ++stream_serial_;  // its end is ours, not news
            (void)stream_->Close();
            stream_.reset();
          }
          break;
        case AgentAction::Kind::kLeave:
          if (absl::Status s = client_->Leave(options_.identity.node_id, a.message); !s.ok()) {
            Log(absl::StrCat("leave: ", s.ToString()));
          }
          break;
        case AgentAction::Kind::kExitJobEnded:
          exit_code_ = ExitCodeOfEndedJob(a.success);
          break;
        case AgentAction::Kind::kExit:
          exit_code_ = a.exit_code;
          break;
      }
    }
    std::lock_guard lock(mu_);
    published_state_ = core_.state();
  }

  // Runs a call that may be held for long; Interrupt cancels it.
  template <typename F>
  auto Cancellable(F&& call) {
    bool interrupted = false;
    {
      std::lock_guard lock(mu_);
      in_blocking_call_ = true;
      for (const Event& e : events_) interrupted = interrupted || e.kind == Event::Kind::kInterrupt;
    }
    if (interrupted) {
      client_->Shutdown();
      health_client_->Shutdown();
    }
    auto result = call();
    std::lock_guard lock(mu_);
    in_blocking_call_ = false;
    return result;
  }

  void DoJoin(int64_t generation) {
    supervisor_.reset();
    if (generation > 0) client_->set_generation(generation);
    v1::JoinRequest request;
    request.set_node_id(options_.identity.node_id);
    request.set_address(options_.identity.address);
    request.set_local_world_size(options_.identity.workers);
    request.set_incarnation(incarnation_);
    request.set_timeout_ms(absl::ToInt64Milliseconds(options_.join_timeout));
    Log(generation > 0 ? absl::StrCat("joining generation ", generation)
                       : absl::StrCat("joining job ", options_.client.job_id, " at ",
                                      options_.client.channel.target));
    absl::StatusOr<v1::JoinResponse> response =
        Cancellable([&] { return client_->Join(request); });
    if (!response.ok()) {
      Apply(core_.OnJoinFailed(response.status(), absl::Now()));
      return;
    }
    joined_ = *response;
    const v1::NodeAssignment& a = joined_.assignment();
    Log(absl::StrCat("joined generation ", joined_.generation(), ": node ", a.node_rank(), " of ",
                     joined_.num_nodes(), ", ranks ", a.first_rank(), "-",
                     a.first_rank() + a.local_world_size() - 1, " of ", joined_.world_size(),
                     ", restarts ", joined_.restarts(), "/", joined_.max_restarts()));
    Apply(core_.OnJoined(joined_.generation(), absl::Milliseconds(joined_.heartbeat_interval_ms()),
                         absl::Milliseconds(joined_.node_timeout_ms()), absl::Now()));
  }

  // The node's store relay (store_relay.h): the workers' store calls go through it, so
  // that the coordinator holds one StoreWait per node. It lives as long as the agent's
  // run (workers of every generation use it: requests carry their own generation). If it
  // cannot start, the workers talk to the coordinator directly, as before.
  void StartRelay() {
    absl::StatusOr<std::string> path = RelaySocketPath(options_.run_dir, options_.identity.node_id);
    absl::StatusOr<std::unique_ptr<StoreRelay>> relay = absl::UnknownError("no socket path");
    if (!path.ok()) {
      relay = path.status();
    } else {
      StoreRelayOptions ro;
      ro.socket_path = *path;
      ro.upstream = client_->channel();
      ro.token = options_.client.token;
      ro.call_timeout = options_.client.call_timeout;
      relay = StoreRelay::Start(std::move(ro));
    }
    if (!relay.ok()) {
      Log(absl::StrCat("store relay not started (", relay.status().ToString(),
                       "): the workers use the coordinator's store directly"));
      return;
    }
    relay_ = *std::move(relay);
    Log(absl::StrCat("store relay for the workers at ", relay_->target()));
  }

  absl::StatusOr<int> MasterPort() {
    if (options_.master_port > 0) return options_.master_port;
    if (joined_.assignment().node_rank() == 0) {
      absl::StatusOr<int> port = PickFreePort();
      if (!port.ok()) return port.status();
      if (joined_.num_nodes() > 1) {
        absl::Status s = client_->StoreSet(kMasterPortKey, absl::StrCat(*port));
        if (!s.ok()) return s;
      }
      return *port;
    }
    absl::StatusOr<std::vector<std::string>> values = Cancellable([&] {
      return client_->StoreWait({kMasterPortKey}, absl::Milliseconds(std::max<int64_t>(
                                                      60'000, joined_.node_timeout_ms())));
    });
    if (!values.ok()) return values.status();
    int port = 0;
    if (values->size() != 1 || !absl::SimpleAtoi((*values)[0], &port)) {
      return absl::InternalError("node 0 published a malformed MASTER_PORT");
    }
    return port;
  }

  absl::Status StartWorkers() {
    spawn_error_ = absl::OkStatus();
    absl::Status status = SpawnWorkers();
    if (!status.ok()) {
      spawn_error_ = status;
      Log(absl::StrCat("could not start the workers: ", status.ToString()));
    }
    return status;
  }

  absl::Status SpawnWorkers() {
    absl::StatusOr<int> port = MasterPort();
    if (!port.ok()) return port.status();
    const v1::NodeAssignment& a = joined_.assignment();
    const int64_t g = joined_.generation();
    bool omp_set = std::getenv("OMP_NUM_THREADS") != nullptr;
    for (const auto& [k, v] : options_.env) omp_set = omp_set || k == "OMP_NUM_THREADS";
    std::vector<WorkerProcessSpec> specs;
    status_paths_.clear();
    for (int local = 0; local < a.local_world_size(); ++local) {
      WorkerEnvInputs in;
      in.rank = a.first_rank() + local;
      in.local_rank = local;
      in.world_size = joined_.world_size();
      in.local_world_size = a.local_world_size();
      in.group_rank = a.node_rank();
      in.num_nodes = joined_.num_nodes();
      in.master_addr = joined_.master_address();
      in.master_port = *port;
      in.coordinator = options_.client.channel.target;
      in.job_id = options_.client.job_id;
      in.generation = g;
      in.restarts = joined_.restarts();
      in.max_restarts = joined_.max_restarts();
      in.token_file = options_.token_file;
      in.run_dir = options_.run_dir;
      in.node_id = options_.identity.node_id;
      in.status_file = RankStatusPath(options_.run_dir, g, in.rank);
      in.gpu_index = options_.identity.gpus.empty() ? -1 : options_.identity.gpus[local];
      in.store = relay_ != nullptr ? relay_->target() : "";
      in.omp_threads_set = omp_set;
      status_paths_.push_back(in.status_file);
      WorkerProcessSpec spec;
      spec.local_rank = local;
      spec.rank = in.rank;
      spec.argv = options_.command;
      spec.env = options_.env;
      for (auto& kv : WorkerEnvironment(in)) spec.env.push_back(std::move(kv));
      spec.cwd = options_.cwd;
      specs.push_back(std::move(spec));
    }
    SupervisorOptions so;
    so.run_dir = options_.run_dir;
    so.generation = g;
    so.echo = options_.echo;
    so.echo_stdout_fd = options_.echo_stdout_fd;
    so.echo_stderr_fd = options_.echo_stderr_fd;
    so.tail_lines = static_cast<size_t>(std::max(options_.detail_lines, 1));
    const int64_t serial = ++supervisor_serial_;
    auto exited = std::make_shared<int>(0);
    const int total = a.local_world_size();
    so.on_exit = [this, serial, exited, total](const WorkerExit& e) {
      Post(Event{.kind = Event::Kind::kWorkerExit, .serial = serial, .exit = e});
      if (++*exited == total) Post(Event{.kind = Event::Kind::kAllExited, .serial = serial});
    };
    auto supervisor = WorkerSupervisor::Start(std::move(so), std::move(specs));
    if (!supervisor.ok()) return supervisor.status();
    supervisor_ = *std::move(supervisor);
    Log(absl::StrCat("started ", total, " worker(s), MASTER_ADDR=", joined_.master_address(),
                     " MASTER_PORT=", *port));
    return absl::OkStatus();
  }

  absl::Status OpenHealth() {
    stream_.reset();
    const int64_t serial = ++stream_serial_;
    auto stream = health_client_->OpenHealthStream(
        options_.identity.node_id, core_.generation(), BuildBeat(),
        [this, serial](const v1::Command& c) {
          Post(Event{.kind = Event::Kind::kCommand, .serial = serial, .command = c});
        },
        [this, serial](const absl::Status& s) {
          Post(Event{.kind = Event::Kind::kHealthEnded, .serial = serial, .status = s});
        });
    if (!stream.ok()) return stream.status();
    stream_ = *std::move(stream);
    return absl::OkStatus();
  }

  v1::NodeHealth BuildBeat() {
    v1::NodeHealth beat;
    beat.set_sent_unix_ms(absl::ToUnixMillis(absl::Now()));
    const int n = options_.identity.workers;
    std::vector<WorkerStatus> workers;
    if (supervisor_) workers = supervisor_->Workers();
    for (int local = 0; local < n; ++local) {
      v1::RankHealth* r = beat.add_ranks();
      r->set_local_rank(local);
      r->set_step(-1);
      if (!spawn_error_.ok() || local >= static_cast<int>(workers.size())) {
        r->set_state(v1::RANK_STATE_FAILED);
        r->set_exit_code(127);
        r->set_detail(spawn_error_.ok() ? "worker not started" : std::string(spawn_error_.message()));
        continue;
      }
      const WorkerStatus& w = workers[local];
      std::optional<RankStatusReport> report;
      if (local < static_cast<int>(status_paths_.size())) report = ReadRankStatus(status_paths_[local]);
      if (report.has_value()) {
        r->set_step(report->step);
        r->set_total_steps(report->total_steps);
        r->set_loss(report->loss);
        r->set_tokens_per_s(report->tokens_per_s);
        r->set_collective_seq(report->collective_seq);
        r->set_collective(report->collective);
      }
      if (w.running) {
        r->set_state(report.has_value() && report->step >= 0 ? v1::RANK_STATE_RUNNING
                                                             : v1::RANK_STATE_STARTING);
        continue;
      }
      r->set_state(ExitState(w.exit));
      r->set_exit_code(w.exit.exit_code);
      r->set_signal(w.exit.signal);
      if (r->state() == v1::RANK_STATE_FAILED) r->set_detail(Detail(w.exit));
    }
    return beat;
  }

  // "rank 3 (pid 77) exited with code 1" and the last lines of its stderr (its stdout
  // when stderr is empty), for the launcher's failure summary.
  std::string Detail(const WorkerExit& e) const {
    std::string detail = absl::StrCat(e.Describe(), " on node ", options_.identity.node_id);
    const std::vector<std::string>& tail = e.stderr_tail.empty() ? e.stdout_tail : e.stderr_tail;
    const size_t first = tail.size() > static_cast<size_t>(options_.detail_lines)
                             ? tail.size() - options_.detail_lines
                             : 0;
    for (size_t i = first; i < tail.size(); ++i) absl::StrAppend(&detail, "\n", tail[i]);
    if (detail.size() > kDetailMaxBytes) detail = detail.substr(detail.size() - kDetailMaxBytes);
    return detail;
  }

  int ExitCodeOfEndedJob(bool success) {
    absl::StatusOr<v1::JobStatus> status = client_->GetJobStatus();
    if (status.ok()) {
      switch (status->phase()) {
        case v1::JOB_PHASE_SUCCEEDED: return kExitSuccess;
        case v1::JOB_PHASE_STOPPED: return kExitStopped;
        case v1::JOB_PHASE_FAILED: return kExitJobFailed;
        default: break;
      }
    }
    return success ? kExitSuccess : kExitJobFailed;
  }

  AgentOptions options_;
  std::unique_ptr<CoordinatorClient> client_;
  // The same connection, without retries: a stream that cannot be opened is reported at
  // once, and AgentCore decides when to try again (and when to give up).
  std::unique_ptr<CoordinatorClient> health_client_;
  AgentCore core_;
  const std::string incarnation_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;                                     // guarded by mu_
  bool in_blocking_call_ = false;                                // guarded by mu_
  AgentCore::State published_state_ = AgentCore::State::kJoining;  // guarded by mu_
  std::string exit_message_;                                     // guarded by mu_

  // The event thread's own.
  v1::JoinResponse joined_;
  std::unique_ptr<WorkerSupervisor> supervisor_;
  int64_t supervisor_serial_ = 0;
  std::unique_ptr<HealthStream> stream_;
  int64_t stream_serial_ = 0;
  std::unique_ptr<StoreRelay> relay_;  // null when it could not start
  absl::Status spawn_error_;
  std::vector<std::string> status_paths_;
  int exit_code_ = kExitJobFailed;
};

absl::StatusOr<std::unique_ptr<NodeAgent>> NodeAgent::Create(AgentOptions options) {
  if (options.command.empty()) return absl::InvalidArgumentError("no worker command");
  if (!options.identity.gpus.empty() &&
      options.identity.gpus.size() != static_cast<size_t>(options.identity.workers)) {
    return absl::InvalidArgumentError("a GPU node runs one worker per GPU");
  }
  auto client = CoordinatorClient::Create(options.client);
  if (!client.ok()) return client.status();
  CoordinatorClientOptions health_options = options.client;
  health_options.retry.max_elapsed = absl::ZeroDuration();
  std::unique_ptr<CoordinatorClient> health =
      CoordinatorClient::Create(health_options, (*client)->channel());
  return std::unique_ptr<NodeAgent>(new NodeAgent(
      std::make_unique<Impl>(std::move(options), *std::move(client), std::move(health))));
}

NodeAgent::NodeAgent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NodeAgent::~NodeAgent() = default;
int NodeAgent::Run() { return impl_->Run(); }
void NodeAgent::Interrupt(int signal) { impl_->Interrupt(signal); }
AgentCore::State NodeAgent::state() const { return impl_->state(); }
std::string NodeAgent::exit_message() const { return impl_->exit_message(); }

}  // namespace colossus::launcher
