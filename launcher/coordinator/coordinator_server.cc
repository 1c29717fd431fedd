// CoordinatorServer: journal + replay, the gRPC server and its queue threads, the ticker,
// /metrics, and an orderly shutdown.
#include "colossus/launcher/coordinator.h"

#include <malloc.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "colossus/launcher/journal.h"
#include "colossus/launcher/metrics_http.h"
#include "colossus/launcher/prometheus_text.h"
#include "service.h"

namespace colossus::launcher {
namespace {

namespace v1 = ::colossus::coordinator::v1;

// JobState's journal: serialized JournalRecords in the Journal file.
class JournalFile : public JournalSink {
 public:
  explicit JournalFile(Journal* journal) : journal_(journal) {}
  absl::Status Append(const v1::JournalRecord& record) override {
    std::string bytes;
    if (!record.SerializeToString(&bytes)) {
      return absl::InternalError("cannot serialize a journal record");
    }
    return journal_->Append(bytes);
  }

 private:
  Journal* const journal_;
};

class CallbackSink : public EventSink {
 public:
  explicit CallbackSink(std::function<void(const v1::JobEvent&)> fn) : fn_(std::move(fn)) {}
  void OnEvent(const v1::JobEvent& event) override { fn_(event); }

 private:
  std::function<void(const v1::JobEvent&)> fn_;
};

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the ", what, " ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading the ", what, " ", path));
  return buffer.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const CoordinatorOptions& o) {
  if (o.tls_cert_path.empty()) return grpc::InsecureServerCredentials();
  absl::StatusOr<std::string> cert = ReadFile(o.tls_cert_path, "TLS certificate");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadFile(o.tls_key_path, "TLS key");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl(
      o.tls_client_ca_path.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                   : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  if (!o.tls_client_ca_path.empty()) {
    absl::StatusOr<std::string> ca = ReadFile(o.tls_client_ca_path, "TLS client CA");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
  }
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(ssl);
}

// Queues by default: one per core, at least 2. Two costs pull opposite ways. Debian's gRPC
// scans a queue's outstanding operations on every event (a debug check), which more
// queues divide; but an event is usually found by whichever thread is polling and handed
// to its queue's thread, a wake-up that is likelier the more queues there are. Measured
// here with 12,500 agents beating at 1 Hz: 0.34-0.43 core with 2 queues, 0.47-0.53 with
// 8, the NCCL-id fan-out no different. The scan stays short because held unary calls
// keep no operation outstanding (no AsyncNotifyWhenDone on StoreWait) and a Health
// stream keeps one (its read).
constexpr int kDefaultQueues = 2;

std::string HostOf(const std::string& address) {
  size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

// Gives memory back to the system after a burst of calls. 100,000 held StoreWaits (the
// NCCL id of 12,500 nodes x 8 ranks) take ~1.8 GB inside gRPC; glibc keeps freed pages,
// so without this a coordinator would sit at its burst's peak for the rest of the job.
// When the live calls have fallen far below their peak, malloc_trim runs once the fall
// has paused for a second (calls are freed over seconds, as clients read their answers).
class MemoryReturn {
 public:
  void Tick(absl::Time now, int64_t live_calls) {
    peak_ = std::max(peak_, live_calls);
    if (peak_ - live_calls >= kBurst) {
      trim_at_ = now + absl::Seconds(1);
      peak_ = live_calls;
    }
    if (now >= trim_at_) {
      malloc_trim(0);
      trim_at_ = absl::InfiniteFuture();
    }
  }

 private:
  static constexpr int64_t kBurst = 2000;
  int64_t peak_ = 0;
  absl::Time trim_at_ = absl::InfiniteFuture();
};

}  // namespace

JobConfig ToJobConfig(const CoordinatorOptions& o) {
  JobConfig c;
  c.job_id = o.job_id;
  c.min_nodes = o.min_nodes;
  c.max_nodes = o.max_nodes;
  c.settle = o.settle;
  c.join_timeout = o.join_timeout;
  c.heartbeat_interval = o.heartbeat_interval;
  c.node_timeout = o.node_timeout;
  c.hang_timeout = o.hang_timeout;
  c.max_restarts = o.max_restarts;
  c.restart_backoff = o.restart_backoff;
  c.stop_grace = o.stop_grace;
  return c;
}

absl::Status ValidateCoordinatorOptions(const CoordinatorOptions& o) {
  if (absl::Status s = ValidateJobConfig(ToJobConfig(o)); !s.ok()) return s;
  if (o.run_dir.empty()) return absl::InvalidArgumentError("run_dir is empty (the journal lives there)");
  if (o.token.empty()) return absl::InvalidArgumentError("token is empty (every call must carry it)");
  if (o.listen_address.empty() || o.listen_address.find(':') == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address '", o.listen_address, "' is not host:port"));
  }
  if (o.tls_cert_path.empty() != o.tls_key_path.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate and its key");
  }
  if (!o.tls_client_ca_path.empty() && o.tls_cert_path.empty()) {
    return absl::InvalidArgumentError("a TLS client CA needs a server certificate and key too");
  }
  if (o.metrics_port < -1 || o.metrics_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("metrics port ", o.metrics_port,
                                                   " is not -1 (off) or 0..65535"));
  }
  if (o.cq_threads < 0 || o.cq_threads > 256) {
    return absl::InvalidArgumentError(absl::StrCat("cq_threads ", o.cq_threads, " is not in 0..256"));
  }
  if (o.first_message_timeout <= absl::ZeroDuration() || o.store_wait_timeout <= absl::ZeroDuration() ||
      o.tick_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "first_message_timeout, store_wait_timeout and tick_interval must be positive");
  }
  return absl::OkStatus();
}

class CoordinatorServer::Impl {
 public:
  ~Impl() { Shutdown(absl::Seconds(2)); }

  void Shutdown(absl::Duration grace) {
    {
      absl::MutexLock lock(&mu_);
      if (shut_down_) return;
      shut_down_ = true;
    }
    metrics.reset();
    if (ticker.joinable()) ticker.join();
    if (server != nullptr) {
      // Held calls and streams end first, while the queues still run to deliver them.
      const absl::Status going = absl::UnavailableError(
          "coordinator shutting down; retry against its successor on the same run directory");
      state->Shutdown(going);
      {
        Deferred deferred;
        store->Close(going, &deferred);
      }
      // Deliver what the job logged last (its JOB_ENDED may still be on its way from the
      // thread that ended it) before the subscribers are let go.
      events->Flush();
      events->CloseAll(going);
      ctx->SweepFirstMessages(absl::Now(), /*all=*/true);
      server->Shutdown(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(absl::ToInt64Milliseconds(grace)));
      ctx->CloseOps();
      for (auto& cq : ctx->cqs) cq->Shutdown();
      for (std::thread& t : cq_threads) t.join();
      cq_threads.clear();
      server.reset();  // before the queues it was built with
    }
    ctx.reset();
    journal.reset();  // releases the journal's lock for a successor
  }

  void TickerLoop() {
    MemoryReturn memory;
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (mu_.AwaitWithTimeout(absl::Condition(&shut_down_), options.tick_interval)) return;
      }
      const absl::Time now = absl::Now();
      state->Tick(now);
      store->Tick(now);
      ctx->SweepFirstMessages(now);
      memory.Tick(now, ctx->live_calls.load(std::memory_order_relaxed));
    }
  }

  std::string RenderMetrics() {
    const absl::Time now = absl::Now();
    JobMetrics m = state->Metrics(now);
    PrometheusText t;
    t.Gauge("colossus_coordinator_generation", "Current generation (running or being formed).",
            static_cast<double>(m.generation));
    t.Gauge("colossus_coordinator_job_phase", "1 for the job's current phase.", 1,
            {{"phase", v1::JobPhase_Name(m.phase)}});
    t.Gauge("colossus_coordinator_nodes_joined",
            "Members of the formed generation, or nodes waiting while forming.", m.nodes_joined);
    t.Gauge("colossus_coordinator_nodes_alive", "Members heard from within the node timeout.",
            m.nodes_alive);
    t.Gauge("colossus_coordinator_world_size", "Ranks in the formed generation.", m.world_size);
    t.Counter("colossus_coordinator_restarts_total", "Restarts spent from the budget.", m.restarts);
    t.Gauge("colossus_coordinator_max_heartbeat_lag_seconds",
            "Longest time since a live member's last health message.", m.max_heartbeat_lag_s);
    for (int op = 0; op < static_cast<int>(StoreOp::kCount); ++op) {
      t.Counter("colossus_coordinator_store_operations_total", "Store calls by kind.",
                static_cast<double>(store->op_count(static_cast<StoreOp>(op))),
                {{"op", StoreOpName(static_cast<StoreOp>(op))}});
    }
    t.Gauge("colossus_coordinator_held_calls", "Calls held by the coordinator, by kind.",
            static_cast<double>(store->held_waits()), {{"kind", "store_wait"}});
    t.Gauge("colossus_coordinator_held_calls", "Calls held by the coordinator, by kind.",
            m.nodes_waiting, {{"kind", "join"}});
    t.Gauge("colossus_coordinator_store_bytes", "Bytes of keys and values in the store.",
            static_cast<double>(store->total_bytes()));
    t.Counter("colossus_coordinator_checkpoint_commits_total", "Checkpoint steps committed.",
              static_cast<double>(m.commits));
    t.Gauge("colossus_coordinator_latest_committed_step", "Step of the latest committed checkpoint.",
            static_cast<double>(m.latest_step));
    t.Gauge("colossus_coordinator_event_watchers", "Subscribers of the job's events.",
            static_cast<double>(events->subscribers()));
    t.Counter("colossus_coordinator_unauthenticated_total", "Calls refused for a missing or wrong token.",
              static_cast<double>(ctx->unauthenticated.load()));
    t.Counter("colossus_coordinator_first_message_timeouts_total",
              "Health streams cut off for not sending a first message.",
              static_cast<double>(ctx->first_message_timeouts.load()));
    return t.str();
  }

  CoordinatorOptions options;
  std::unique_ptr<Journal> journal;
  std::unique_ptr<JournalFile> journal_sink;
  std::unique_ptr<JobEvents> events;
  std::unique_ptr<JobStore> store;
  std::unique_ptr<JobState> state;
  std::unique_ptr<service::ServiceContext> ctx;  // holds the queues: outlives the server
  std::unique_ptr<grpc::Server> server;
  std::vector<std::thread> cq_threads;
  std::thread ticker;
  std::unique_ptr<MetricsHttpServer> metrics;
  int port = 0;
  std::string address;
  std::string replay_summary;
  std::string journal_warning;

 private:
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorOptions& options) {
  if (absl::Status s = ValidateCoordinatorOptions(options); !s.ok()) return s;
  // Debian's abseil checks every lock order; with thousands of held calls it doubles the
  // cost of a rendezvous (../shared/PLATFORM.md).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (!impl->options.log) {
    impl->options.log = [](const std::string& line) {
      std::cerr << "colossus-coordinator: " << line << std::endl;
    };
  }
  std::error_code ec;
  std::filesystem::create_directories(options.run_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the run directory ", options.run_dir, ": ", ec.message()));
  }

  // Journal and replay.
  const std::string journal_path = (std::filesystem::path(options.run_dir) / "coordinator.journal").string();
  JournalReplay replay;
  absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(journal_path, &replay);
  if (!journal.ok()) return journal.status();
  impl->journal = std::move(*journal);
  impl->journal_warning = replay.warning;
  if (!replay.warning.empty()) impl->options.log(absl::StrCat("warning: ", replay.warning));
  std::vector<v1::JournalRecord> records(replay.records.size());
  for (size_t i = 0; i < replay.records.size(); ++i) {
    if (!records[i].ParseFromString(replay.records[i])) {
      return absl::DataLossError(absl::StrCat("journal ", journal_path, ": record ", i,
                                              " passed its checksum but is not a JournalRecord"));
    }
  }
  impl->journal_sink = std::make_unique<JournalFile>(impl->journal.get());
  impl->events = std::make_unique<JobEvents>();
  impl->store = std::make_unique<JobStore>(options.store_limits);
  impl->state = std::make_unique<JobState>(ToJobConfig(options), impl->journal_sink.get(),
                                           impl->store.get(), impl->events.get());
  absl::StatusOr<std::string> summary = impl->state->Restore(records, absl::Now(), options.relaunch_ended_job);
  if (!summary.ok()) return summary.status();
  impl->replay_summary = *summary;
  if (!records.empty()) impl->options.log(*summary);
  if (impl->options.on_event) {
    impl->events->Subscribe(std::make_shared<CallbackSink>(impl->options.on_event));
  }

  // The gRPC server.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = Credentials(options);
  if (!credentials.ok()) return credentials.status();
  impl->ctx = std::make_unique<service::ServiceContext>();
  service::ServiceContext& ctx = *impl->ctx;
  ctx.state = impl->state.get();
  ctx.store = impl->store.get();
  ctx.events = impl->events.get();
  ctx.job_id = options.job_id;
  ctx.token = options.token;
  ctx.store_wait_timeout = options.store_wait_timeout;
  ctx.first_message_timeout = options.first_message_timeout;

  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, *credentials, &impl->port);
  builder.RegisterService(&ctx.service);
  // A held rendezvous deadlocks when a connection carries more calls than this
  // (PLATFORM.md): make it larger than any agent's share of calls.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 1'000'000);
  // Agents may ping to keep idle connections alive; a dead peer is found by keepalive.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // BDP probing costs a ping per burst on every connection; the control plane moves
  // small messages (PLATFORM.md: 0.72 -> 0.43 core at 12,500 connections).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  // No per-call deadline timer on the server: JobState and JobStore time their held calls
  // themselves, and a client whose deadline passes cancels its call (which the held call
  // notices). Debian's gRPC keeps every timer in a debug hash table of 1009 chains, so
  // 100,000 held StoreWaits with client deadlines made each timer add/remove walk ~100
  // entries: a third of the coordinator's time in the NCCL-id fan-out.
  builder.AddChannelArgument(GRPC_ARG_ENABLE_DEADLINE_CHECKS, 0);
  // Two coordinators must not share a port silently.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(16 << 20);
  int threads = options.cq_threads;
  if (threads == 0) threads = std::max(kDefaultQueues, static_cast<int>(std::thread::hardware_concurrency()));
  for (int i = 0; i < threads; ++i) ctx.cqs.push_back(builder.AddCompletionQueue());
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    if (impl->server != nullptr) impl->server->Shutdown();
    impl->server.reset();
    for (auto& cq : ctx.cqs) {
      cq->Shutdown();
      void* tag;
      bool ok;
      while (cq->Next(&tag, &ok)) {
      }
    }
    impl->ctx.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address,
                                               " (address in use, not local, or bad TLS files)"));
  }
  impl->address = absl::StrCat(HostOf(options.listen_address), ":", impl->port);

  for (auto& cq : ctx.cqs) {
    // Enough pending requests that a burst of Joins or streams is matched without waiting
    // for each call to post its successor.
    service::PostUnaryCalls(&ctx, cq.get(), 2);
    service::PostHeldCalls(&ctx, cq.get(), 32);
    service::PostStreamCalls(&ctx, cq.get(), 32);
  }
  for (auto& cq : ctx.cqs) {
    grpc::ServerCompletionQueue* q = cq.get();
    impl->cq_threads.emplace_back([q] {
      void* tag = nullptr;
      bool ok = false;
      while (q->Next(&tag, &ok)) static_cast<service::CqTag*>(tag)->Proceed(ok);
    });
  }
  Impl* raw = impl.get();
  impl->ticker = std::thread([raw] { raw->TickerLoop(); });

  if (options.metrics_port >= 0) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> metrics = MetricsHttpServer::Start(
        options.metrics_host, options.metrics_port, [raw] { return raw->RenderMetrics(); });
    if (!metrics.ok()) {
      impl->Shutdown(absl::ZeroDuration());
      return metrics.status();
    }
    impl->metrics = std::move(*metrics);
  }
  return std::unique_ptr<CoordinatorServer>(new CoordinatorServer(std::move(impl)));
}

CoordinatorServer::CoordinatorServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CoordinatorServer::~CoordinatorServer() { impl_->Shutdown(absl::Seconds(2)); }

int CoordinatorServer::port() const { return impl_->port; }
int CoordinatorServer::metrics_port() const {
  return impl_->metrics == nullptr ? -1 : impl_->metrics->port();
}
std::string CoordinatorServer::address() const { return impl_->address; }
int64_t CoordinatorServer::generation() const { return impl_->state->generation(); }
v1::JobStatus CoordinatorServer::Status() const { return impl_->state->Status(absl::Now()); }
const std::string& CoordinatorServer::replay_summary() const { return impl_->replay_summary; }
const std::string& CoordinatorServer::journal_warning() const { return impl_->journal_warning; }

v1::JobPhase CoordinatorServer::Wait() {
  impl_->state->AwaitEnd(absl::InfiniteFuture());
  return impl_->state->phase();
}

bool CoordinatorServer::WaitFor(absl::Duration timeout) {
  return impl_->state->AwaitEnd(absl::Now() + timeout);
}

void CoordinatorServer::Shutdown(absl::Duration grace) { impl_->Shutdown(grace); }

}  // namespace colossus::launcher
