// CoordinatorServer: the job's gRPC control plane, embeddable in a process.
//
//   CoordinatorOptions o;
//   o.job_id = "gpt-small"; o.run_dir = "/runs/gpt-small"; o.token = secret;
//   o.min_nodes = o.max_nodes = 4;
//   auto server = CoordinatorServer::Start(o);      // listening when this returns
//   if (!server.ok()) return server.status();      // names the address, file or option
//   ... (*server)->port() ...
//   v1::JobPhase end = (*server)->Wait();          // the job's outcome
//
// What it serves is proto/colossus/coordinator/v1/coordinator.proto (service
// Coordinator); the job's logic is JobState and JobStore (job_state.h, job_store.h).
//
// Start: opens (or creates) the journal <run_dir>/coordinator.journal and replays it (a
// torn or corrupt tail is cut at the last good record; the warning goes to `log` and to
// journal_warning()), then listens. A coordinator started on the run directory of one
// that was killed resumes its job: the same generation, restart count and latest
// checkpoint, and the members of the last generation are re-adopted when they reconnect
// their health streams within node_timeout.
//
// Every call must carry metadata "x-colossus-token" equal to the token (compared in
// constant time; UNAUTHENTICATED otherwise, with no effect) and name job_id in its
// header (NOT_FOUND otherwise). With tls_cert_path and tls_key_path it serves TLS only
// (and with tls_client_ca_path it requires client certificates signed by that CA);
// without them, plaintext.
//
// Threads: `cq_threads` completion queues with one thread each serve the RPCs (the async
// API: held Joins and StoreWaits cost no thread); one ticker thread drives time (Tick
// every tick_interval); the metrics server has its own thread.
//
// Thread safety: all methods may be called from any thread. Shutdown() is idempotent and
// is called by the destructor.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "colossus/coordinator/v1/coordinator.pb.h"
#include "colossus/launcher/job_state.h"
#include "colossus/launcher/job_store.h"

namespace colossus::launcher {

struct CoordinatorOptions {
  std::string job_id;
  // host:port to listen on; port 0 picks a free one (port() tells which).
  std::string listen_address = "127.0.0.1:0";
  // Holds coordinator.journal; created when absent.
  std::string run_dir;
  // A run_dir whose job has ended is launched again (JobState::Restore's relaunch_ended):
  // colossus-launch sets it; a coordinator restarted after a crash leaves it off.
  bool relaunch_ended_job = false;
  // The job's secret; every call must carry it. Required.
  std::string token;

  int32_t min_nodes = 1;
  int32_t max_nodes = 1;
  absl::Duration settle = absl::ZeroDuration();
  absl::Duration join_timeout = absl::Minutes(10);
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration node_timeout = absl::Seconds(30);
  absl::Duration hang_timeout = absl::Minutes(10);
  int32_t max_restarts = 3;
  // JobConfig::restart_backoff: the wait before re-forming after a generation in which no
  // rank completed a step (doubling per such failure in a row, at most 16x).
  absl::Duration restart_backoff = absl::ZeroDuration();
  absl::Duration stop_grace = absl::Seconds(10);

  // PEM files. Cert and key together turn TLS on; the client CA makes client
  // certificates mandatory.
  std::string tls_cert_path;
  std::string tls_key_path;
  std::string tls_client_ca_path;

  // Prometheus /metrics on metrics_host:metrics_port; -1: off, 0: pick a free port.
  std::string metrics_host = "127.0.0.1";
  int metrics_port = -1;

  // Completion queues (one thread each); 0: one per core, at least 2 (the trade-off is
  // measured in coordinator_server.cc).
  int cq_threads = 0;
  StoreLimits store_limits;
  // A StoreWait with timeout_ms 0 waits this long.
  absl::Duration store_wait_timeout = absl::Minutes(10);
  // A Health stream whose first message has not arrived by then is cut off.
  absl::Duration first_message_timeout = absl::Seconds(5);
  // How often time is driven (settle, timeouts, health scan).
  absl::Duration tick_interval = absl::Milliseconds(50);

  // Receives every job event, in order, on an internal thread (never under a lock of the
  // job state). Optional; the binary logs them to stderr.
  std::function<void(const coordinator::v1::JobEvent&)> on_event;
  // Receives diagnostics (the journal's recovery warning); default: stderr.
  std::function<void(const std::string&)> log;
};

// The state-machine part of the options (JobConfig) and InvalidArgument naming the
// option when they cannot work.
JobConfig ToJobConfig(const CoordinatorOptions& options);
absl::Status ValidateCoordinatorOptions(const CoordinatorOptions& options);

class CoordinatorServer {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(const CoordinatorOptions& options);
  ~CoordinatorServer();

  CoordinatorServer(const CoordinatorServer&) = delete;
  CoordinatorServer& operator=(const CoordinatorServer&) = delete;

  // The bound port, and the metrics port (-1 when off).
  int port() const;
  int metrics_port() const;
  // host:port as listened on, with the bound port.
  std::string address() const;
  // The current generation (the one running or being formed).
  int64_t generation() const;
  coordinator::v1::JobStatus Status() const;
  // What replay said (one line), and the journal's recovery warning (empty when clean).
  const std::string& replay_summary() const;
  const std::string& journal_warning() const;

  // Blocks until the job has ended (its phase) or Shutdown() was called (the phase at that
  // point).
  coordinator::v1::JobPhase Wait();
  // Like Wait, up to `timeout`; returns whether the job ended.
  bool WaitFor(absl::Duration timeout);

  // Stops serving: held calls end with UNAVAILABLE, streams close, in-flight RPCs get up
  // to `grace` to finish, then the journal is closed. The job is not ended by this: a
  // coordinator started on the same run directory resumes it.
  void Shutdown(absl::Duration grace = absl::Seconds(2));

 private:
  class Impl;
  explicit CoordinatorServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace colossus::launcher
