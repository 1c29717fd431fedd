// CoordinatorClient: the gRPC client of colossus-coordinator, for node agents, workers
// and colossus-launch (proto/colossus/coordinator/v1/coordinator.proto is the contract).
//
// One client talks to one coordinator for one job. Every call carries the job id and the
// client's current generation in its RequestHeader and the job's token as the metadata
// "x-colossus-token". The generation starts at `initial_generation` (0: none known yet),
// becomes the generation a successful Join returns, and can be set (after a RESTART
// command, or when a worker learns it from its environment).
//
// Errors: a gRPC status becomes the absl::Status of the same code with the message
//   "coordinator HOST:PORT: <Rpc> <what>: <server's message>"
// (<what> names the key, node or step the call was about). Calls that are safe to repeat
// (StoreSet, StoreGet, StoreWait, ReportShard, GetLatestCheckpoint, InvalidateCheckpoints,
// GetJobStatus, Leave)
// are retried on UNAVAILABLE with jittered exponential backoff until retry.max_elapsed has
// passed (StoreWait: until its own timeout); a coordinator that never answers then reads
//   "coordinator HOST:PORT unreachable after N attempts (<Rpc> <what>: <last error>)"
// (Unavailable). StoreAdd, StoreCompareSet, StoreDelete and StopJob are tried once: a lost
// reply would otherwise apply them twice. Join waits for the channel to connect (gRPC's
// wait_for_ready) until its deadline, so an agent that starts before its coordinator
// simply waits (a coordinator never reached reads "unreachable", not DeadlineExceeded);
// it is retried on UNAVAILABLE within its hold only when it carries an incarnation (the
// coordinator takes a Join with the incarnation of a held one as its retry).
//
// Deadlines: a non-held call gets `call_timeout`; a held call (Join, StoreWait) gets its
// own timeout plus `call_timeout`, so that the coordinator's own DEADLINE_EXCEEDED (which
// names what is missing) arrives before the client gives up. Held calls enforce that
// deadline on the client (a process-wide thread cancels them) instead of sending it as a
// gRPC deadline, which would cost the coordinator a timer per held call: 100,000 ranks
// waiting for one NCCL id made that seconds of its CPU with Debian's gRPC.
//
// Connections: by default every client opens its own TCP connection (a local subchannel
// pool and a channel argument unique to the client), as separate hosts would. Clients of
// one process can instead share one channel (MakeCoordinatorChannel + the Create overload
// that takes it); the coordinator allows thousands of streams per connection.
//
// Thread safety: every method may be called from any number of threads at once (each
// call is its own gRPC call). Shutdown() cancels calls in flight (they return Cancelled)
// and makes later calls fail at once; the destructor does the same.
// Ownership: HealthStream and EventWatch objects refer to the client that opened them;
// destroy them before the client.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "colossus/coordinator/v1/coordinator.pb.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace colossus::launcher {

namespace v1 = ::colossus::coordinator::v1;

// TLS towards the coordinator. All paths name PEM files; an empty ca_cert_file means
// plaintext (the coordinator must then run without a certificate too).
struct CoordinatorTlsOptions {
  std::string ca_cert_file;      // roots that sign the coordinator's certificate
  std::string client_cert_file;  // optional client certificate (with client_key_file)
  std::string client_key_file;
  // Name to check the server certificate against instead of the target's host (tests
  // with a certificate issued for "localhost" reached as 127.0.0.1, for example).
  std::string server_name_override;
};

// Backoff between attempts of a retried call: the n-th wait is
// min(max_backoff, initial_backoff * multiplier^n), scaled by a uniform random factor in
// [1 - jitter, 1 + jitter] so that thousands of agents do not retry in lockstep.
struct RetryPolicy {
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  double multiplier = 2.0;
  double jitter = 0.3;
  // No new attempt starts later than this after the first one. Held calls (StoreWait)
  // retry until their own timeout instead. Zero: a single attempt.
  absl::Duration max_elapsed = absl::Seconds(60);
  // Held calls stop retrying at their hold's end or this long after the first attempt,
  // whichever comes first. Workers talking to their node's store relay bound it: the
  // relay retries the coordinator itself, so an unreachable relay means its agent is
  // gone, and a long wait should fail with that instead of retrying for its whole hold.
  absl::Duration held_max_elapsed = absl::InfiniteDuration();
};

// How the client's channel is built (also used by MakeCoordinatorChannel).
struct CoordinatorChannelOptions {
  std::string target;  // "host:port"
  CoordinatorTlsOptions tls;
  // One TCP connection of its own for this channel (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL=1
  // and a unique channel argument), instead of gRPC's process-wide subchannel sharing.
  bool own_connection = true;
  // HTTP/2 keepalive pings, so an agent notices a coordinator behind a dead network
  // within keepalive_time + keepalive_timeout. The server must permit pings this often:
  // colossus-coordinator allows one every 5 s, while a gRPC server with default settings
  // answers pings more frequent than one per 5 minutes (when it has nothing to send,
  // as on a health stream) with GOAWAY "too_many_pings". Zero turns keepalive off.
  absl::Duration keepalive_time = absl::Seconds(60);
  absl::Duration keepalive_timeout = absl::Seconds(20);
};

struct CoordinatorClientOptions {
  CoordinatorChannelOptions channel;
  std::string token;   // the job's secret, sent as metadata "x-colossus-token"
  std::string job_id;  // must match the coordinator's job
  // How error messages name the server; empty: "coordinator <target>". A worker's client
  // of its node's store relay (store_relay.h) says "store relay unix:<path>".
  std::string peer_name;
  int64_t initial_generation = 0;
  // Deadline of a non-held call, and the grace added to a held call's own timeout.
  absl::Duration call_timeout = absl::Seconds(30);
  // Join's hold when the request leaves timeout_ms at 0 (the server's default applies
  // then; this only bounds how long the client waits for it).
  absl::Duration default_join_timeout = absl::Minutes(10);
  RetryPolicy retry;
};

// Builds a channel to options.target with the agent-side channel arguments (BDP probing
// off: it costs the coordinator CPU on thousands of mostly idle connections; keepalive;
// own_connection as described). Errors name the TLS file that could not be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeCoordinatorChannel(
    const CoordinatorChannelOptions& options);

class HealthStream;
class EventWatch;

class CoordinatorClient {
 public:
  // A client with its own channel (built from options.channel).
  static absl::StatusOr<std::unique_ptr<CoordinatorClient>> Create(CoordinatorClientOptions options);
  // A client over an existing channel (shared with other clients); options.channel.target
  // still names the coordinator in messages.
  static std::unique_ptr<CoordinatorClient> Create(CoordinatorClientOptions options,
                                                   std::shared_ptr<grpc::Channel> channel);
  ~CoordinatorClient();
  CoordinatorClient(const CoordinatorClient&) = delete;
  CoordinatorClient& operator=(const CoordinatorClient&) = delete;

  const std::string& target() const { return options_.channel.target; }
  // "coordinator HOST:PORT", or options.peer_name: how messages name the server.
  const std::string& peer() const { return peer_; }
  const std::string& job_id() const { return options_.job_id; }
  const CoordinatorClientOptions& options() const { return options_; }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

  // The generation sent in request headers.
  int64_t generation() const { return generation_.load(); }
  void set_generation(int64_t generation) { generation_.store(generation); }

  // ---- rendezvous ----
  // Held until the node's generation forms or request.timeout_ms passes (the header is
  // filled in here). On success the client's generation becomes the response's.
  absl::StatusOr<v1::JoinResponse> Join(v1::JoinRequest request);
  absl::Status Leave(std::string_view node_id, std::string_view reason);

  // ---- key-value store (keys and values are bytes; see the proto for scopes) ----
  absl::Status StoreSet(std::string_view key, std::string_view value,
                        v1::KeyScope scope = v1::KEY_SCOPE_GENERATION);
  absl::StatusOr<std::string> StoreGet(std::string_view key,
                                       v1::KeyScope scope = v1::KEY_SCOPE_GENERATION);
  // Held until every key exists; returns their values in the order of `keys`.
  absl::StatusOr<std::vector<std::string>> StoreWait(const std::vector<std::string>& keys,
                                                     absl::Duration timeout,
                                                     v1::KeyScope scope = v1::KEY_SCOPE_GENERATION);
  absl::StatusOr<int64_t> StoreAdd(std::string_view key, int64_t delta,
                                   v1::KeyScope scope = v1::KEY_SCOPE_GENERATION);
  // expected nullopt: swap only if the key is absent.
  absl::StatusOr<v1::StoreCompareSetResponse> StoreCompareSet(
      std::string_view key, std::optional<std::string_view> expected, std::string_view desired,
      v1::KeyScope scope = v1::KEY_SCOPE_GENERATION);
  absl::StatusOr<bool> StoreDelete(std::string_view key,
                                   v1::KeyScope scope = v1::KEY_SCOPE_GENERATION);

  // ---- checkpoints ----
  absl::StatusOr<v1::ShardAck> ReportShard(v1::ShardReport report);
  absl::StatusOr<v1::CheckpointRef> GetLatestCheckpoint();
  // The workers resumed from an older step than the latest (header filled in here);
  // returns the latest checkpoint after. Safe to repeat.
  absl::StatusOr<v1::CheckpointRef> InvalidateCheckpoints(v1::InvalidateCheckpointsRequest request);

  // ---- job control ----
  absl::StatusOr<v1::JobStatus> GetJobStatus();
  absl::StatusOr<v1::StopJobResponse> StopJob(std::string_view reason);

  // Events from now on. The callback runs on the calling thread for each event; return
  // false from it to stop watching (then OK is returned). Returns when the job ends
  // (the coordinator closes the stream: OK), on an error, or on Shutdown (Cancelled).
  absl::Status WatchEvents(const std::function<bool(const v1::JobEvent&)>& on_event);
  // The same as a reader the caller pulls from.
  absl::StatusOr<std::unique_ptr<EventWatch>> OpenEventWatch();

  // ---- health ----
  // Opens node_id's health stream for `generation` and sends the first message (header,
  // node_id, `first.ranks`). Commands arrive on on_command from the stream's reader
  // thread; on_end (optional) runs once on that thread when the stream ends: OK after
  // Close() or when the coordinator ends it right after a RESTART or EXIT command (the
  // protocol), otherwise the error that broke it (Unavailable, naming the node; a
  // refusal keeps its code: FailedPrecondition for a stale generation, ...).
  absl::StatusOr<std::unique_ptr<HealthStream>> OpenHealthStream(
      std::string_view node_id, int64_t generation, v1::NodeHealth first,
      std::function<void(const v1::Command&)> on_command,
      std::function<void(const absl::Status&)> on_end = nullptr);

  // Cancels every call in flight (held Joins and Waits return Cancelled) and refuses
  // later calls. Health streams and event watches opened earlier are cancelled too.
  void Shutdown();

 private:
  friend class HealthStream;
  friend class EventWatch;
  struct Rpc;  // one RPC's name, the thing it is about, and how it is retried

  CoordinatorClient(CoordinatorClientOptions options, std::shared_ptr<grpc::Channel> channel);

  v1::RequestHeader Header() const;
  // A context with the token, the deadline and registration for Shutdown, or Cancelled
  // after Shutdown. Release with Unregister.
  absl::StatusOr<std::unique_ptr<grpc::ClientContext>> NewContext(absl::Time deadline,
                                                                  bool wait_for_ready);
  void Unregister(grpc::ClientContext* context);
  // Runs `attempt` (one gRPC call on the given context) under rpc's retry rule.
  absl::Status Invoke(const Rpc& rpc,
                      const std::function<absl::Status(grpc::ClientContext*)>& attempt);
  absl::Status Translate(const Rpc& rpc, int grpc_code, const std::string& message) const;

  const CoordinatorClientOptions options_;
  const std::string peer_;
  const std::shared_ptr<grpc::Channel> channel_;
  struct Stubs;
  const std::unique_ptr<Stubs> stubs_;
  std::atomic<int64_t> generation_;

  std::mutex mu_;
  std::condition_variable shutdown_cv_;     // wakes retry backoffs on Shutdown
  bool shut_down_ = false;                  // guarded by mu_
  std::set<grpc::ClientContext*> active_;   // guarded by mu_: calls Shutdown cancels
};

// A node's health stream (one per node agent and generation).
//
// Send() may be called from any thread (calls are serialised); commands and the end of
// the stream are reported on the stream's own reader thread. A stream that broke (the
// coordinator went away, refused the stream, or ended it) makes Send return Unavailable
// (or the coordinator's refusal: FailedPrecondition for a stale generation,
// Unauthenticated) naming the node. Destruction cancels the stream if it is still open
// and joins the reader thread; it must not run on that thread (from a callback).
class HealthStream {
 public:
  ~HealthStream();
  HealthStream(const HealthStream&) = delete;
  HealthStream& operator=(const HealthStream&) = delete;

  // Sends one beat. Header and node_id are filled in when left empty, sent_unix_ms when 0.
  absl::Status Send(v1::NodeHealth beat);
  // Half-closes the stream and waits (up to the client's call_timeout) for the
  // coordinator to end it; returns the stream's final status (OK for a clean end).
  absl::Status Close();
  // Whether the stream has ended (closed, broken or refused).
  bool ended() const { return ended_.load(); }
  const std::string& node_id() const { return node_id_; }
  int64_t generation() const { return generation_; }

 private:
  friend class CoordinatorClient;
  struct Impl;
  HealthStream(CoordinatorClient* client, std::string node_id, int64_t generation);
  void ReaderLoop();
  absl::Status EndStatus();

  CoordinatorClient* const client_;
  const std::string node_id_;
  const int64_t generation_;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> ended_{false};
  std::thread reader_;
};

// A reader of job events (CoordinatorClient::OpenEventWatch).
class EventWatch {
 public:
  ~EventWatch();
  EventWatch(const EventWatch&) = delete;
  EventWatch& operator=(const EventWatch&) = delete;
  // Blocks for the next event; false when the stream has ended (then call Finish).
  bool Next(v1::JobEvent* event);
  // Ends the watch from any thread: a blocked Next returns false.
  void Cancel();
  // The stream's final status: OK when the coordinator ended it (the job ended),
  // Cancelled after Cancel().
  absl::Status Finish();

 private:
  friend class CoordinatorClient;
  struct Impl;
  explicit EventWatch(CoordinatorClient* client);
  CoordinatorClient* const client_;
  std::unique_ptr<Impl> impl_;
  bool finished_ = false;
  absl::Status final_status_;
};

}  // namespace colossus::launcher
