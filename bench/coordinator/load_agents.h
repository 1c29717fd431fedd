// LoadAgents: N simulated node agents (R ranks each) driving one coordinator over real
// gRPC with the asynchronous client API, for colossus-coordinator-load.
//
// Connections: agent i has a channel of its own (own TCP connection, as a separate host
// would) for i < max_connections; agents beyond that budget share those channels round
// robin (the process may hold only 20,000 descriptors). A rank's calls go over its
// agent's channel.
//
// Completion queues: `cq_threads` queues, one thread each, agent i on queue i % n.
// Debian's gRPC is built with its debug checks, one of which scans every operation
// pending on a queue for each event; several queues keep that scan short when 100,000
// StoreWait calls are pending at once.
//
// Thread safety: the phase methods are called one after another from one thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator_process.h"

namespace grpc {
class Channel;
class CompletionQueue;
}  // namespace grpc

namespace colossus::bench {

struct LoadOptions {
  std::string target;  // "host:port" of the coordinator
  std::string token;
  std::string job_id;
  int agents = 1250;
  int ranks_per_agent = 8;
  int cq_threads = 8;
  int max_connections = 16000;
  pid_t coordinator_pid = 0;  // for CPU and memory samples (0: none)
  // Held calls (Join, StoreWait) carry a gRPC deadline. CoordinatorClient's do not (it
  // cancels them itself): a deadline travels to the coordinator, where Debian's gRPC
  // arms a timer per call with debug bookkeeping (launcher/client/call_canceller.h).
  // On, it shows what that costs.
  bool held_call_deadlines = false;
  // Told the start of each step inside a phase ("(b) set", ...), for profiling windows.
  std::function<void(const char*)> progress;
};

struct RendezvousFigures {
  double issue_s = 0;         // first Join sent -> last Join sent
  double all_answered_s = 0;  // first Join sent -> last response
  double tail_s = 0;          // last Join sent -> last response
  int ok = 0, failed = 0;
  std::string first_error;
  int64_t generation = 0;
  bool assignments_ok = false;
  std::string assignment_error;  // the first wrong assignment, when not ok
  ProcSample coordinator_after;
};

struct NcclIdFigures {
  int waits = 0;
  double issue_s = 0;          // issuing every rank's StoreWait
  double settle_s = 0;         // until both processes were quiet (waits registered)
  double set_rtt_s = 0;        // the Set call itself
  double set_to_last_s = 0;    // Set sent -> last rank holding the value
  int ok = 0, failed = 0;
  std::string first_error;
  bool values_ok = false;
  ProcSample coordinator_after;
};

// (b, relayed) The same NCCL id through node relays: one upstream StoreWait per agent.
// Every agent but the sampled ones is simulated by that one upstream wait; each sampled
// agent runs the real StoreRelay (launcher/agent) with R real CoordinatorClients over
// its unix socket, so the local hop is measured, not assumed.
struct RelayedNcclIdFigures {
  int upstream_waits = 0;      // one per agent
  int sampled = 0;             // agents with a real relay and R local clients
  double issue_s = 0;          // issuing every wait (upstream and local)
  double settle_s = 0;         // until both processes were quiet
  double set_rtt_s = 0;
  double set_to_last_upstream_s = 0;  // Set sent -> last agent's upstream answer
  // Local hop of the sampled relays during the fan-out: the relay's upstream answer ->
  // the last of its R clients holding the value (median and max over the sample).
  double hop_median_s = 0, hop_max_s = 0;
  double set_to_last_sampled_rank_s = 0;  // Set sent -> last local rank of the sample
  // The same hop on a quiet machine, `trials` times through one relay.
  int hop_trials = 0;
  double trial_hop_median_s = 0, trial_hop_p99_s = 0, trial_hop_max_s = 0;
  // The figure against the target: Set -> last upstream answer + the largest hop seen.
  double set_to_last_rank_s = 0;
  int64_t relays_upstream_calls = 0;  // StoreWaits the sampled relays sent (want: sampled)
  int64_t relays_local_waits = 0;     // StoreWaits they took (want: sampled * R)
  int ok = 0, failed = 0;
  std::string first_error;
  bool values_ok = false;
  ProcSample coordinator_after;
};

struct HeartbeatFigures {
  int streams_open = 0, streams_failed = 0;
  std::string first_error;
  double open_s = 0;           // opening every stream (first message written)
  double measured_s = 0;       // the measured window
  int64_t beats = 0;           // beats written in the window
  double beats_per_s = 0;
  int64_t late_beats = 0;      // beats skipped because the previous one was still in flight
  int64_t commands = 0;        // commands received (expected 0 in a healthy job)
  double coordinator_cores = 0;
  double load_cores = 0;
  ProcSample coordinator_after;
};

class LoadAgents {
 public:
  static absl::StatusOr<std::unique_ptr<LoadAgents>> Create(const LoadOptions& options);
  ~LoadAgents();
  LoadAgents(const LoadAgents&) = delete;
  LoadAgents& operator=(const LoadAgents&) = delete;

  int connections() const { return static_cast<int>(channels_.size()); }

  // (a) Every agent Joins (in a shuffled order); checks the assignments: nodes in
  // node_id order, ranks contiguous, one generation.
  RendezvousFigures Rendezvous();
  // (b) Every rank StoreWaits on one key; once both processes are quiet, one rank Sets
  // it; checks every rank got the value.
  NcclIdFigures NcclId();
  // (b, relayed) One upstream StoreWait per agent (`sample` of them through a real
  // StoreRelay with R local clients, sockets under `socket_dir`), then one Set; then
  // `hop_trials` quiet trials of the local hop through one relay.
  RelayedNcclIdFigures RelayedNcclId(int sample, int hop_trials, const std::string& socket_dir);
  // (c) Every agent opens its health stream and beats once a second (R RankHealth
  // entries) for `duration` after a warm-up second.
  HeartbeatFigures Heartbeats(absl::Duration duration);

  struct Op;  // a pending operation; its address is the completion-queue tag

 private:
  explicit LoadAgents(const LoadOptions& options);
  grpc::CompletionQueue* QueueOf(int agent) const;
  // Waits until the coordinator and this process both use under 5% of a core over a
  // 300 ms window (or `limit` passes); returns the time it took.
  absl::Duration WaitQuiet(absl::Duration limit);

  LoadOptions options_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  struct StubSet;
  std::unique_ptr<StubSet> stubs_;  // one stub per channel
  std::vector<std::unique_ptr<grpc::CompletionQueue>> queues_;
  std::vector<std::thread> threads_;
  int64_t generation_ = 0;
};

}  // namespace colossus::bench
