// StoreRelay: the node agent's relay of the coordinator's store RPCs for its workers, so
// that the coordinator holds one StoreWait per node, not one per rank (ARCHITECTURE.md,
// principle 6: 100,000 ranks waiting for the NCCL id are 12,500 held calls, not 100,000).
//
// A gRPC server on a unix-domain socket that serves the Coordinator service's store RPCs
// (StoreSet, StoreGet, StoreWait, StoreAdd, StoreCompareSet, StoreDelete; every other RPC
// is UNIMPLEMENTED). Workers reach it through COLOSSUS_STORE=unix:<path> (worker_store.h).
//
// Forwarding: every call except StoreWait goes upstream unchanged, once: the worker's
// request (header with job id and generation as the worker sent them) and its token, with
// the caller's deadline (or call_timeout when it gave none). The coordinator answers and
// its status and message come back unchanged; the worker's client retries what it would
// retry talking to the coordinator directly.
//
// StoreWait is coalesced: concurrent waits for the same (job id, generation, scope, keys
// in order) share ONE upstream StoreWait. Each local waiter keeps its own timeout:
//   - the upstream call holds for the timeout of the waiter that opened it; a waiter
//     whose timeout ends earlier is answered at its own deadline by a one-millisecond
//     upstream StoreWait of its own (so that DEADLINE_EXCEEDED names exactly the keys
//     still missing, or the values when they arrived meanwhile);
//   - a waiter that outlives the upstream call's hold opens the next one;
//   - an upstream answer (values, or any error: a fenced generation, an unknown job,
//     the coordinator gone) reaches every waiter with the coordinator's status and
//     message. UNAVAILABLE from the coordinator is retried by the relay within the hold
//     (jittered backoff), as CoordinatorClient does, so that a worker sees UNAVAILABLE
//     only when the relay itself is gone or the coordinator stayed away for the hold;
//   - a waiter whose caller went away (cancelled) leaves; the last one to leave cancels
//     the upstream call. Upstream held calls carry no gRPC deadline (it would cost the
//     coordinator a timer each; call_canceller.h): the relay cancels them itself.
// A wait with timeout_ms 0 (the coordinator's default hold) is forwarded uncoalesced.
//
// Authentication: the relay never widens access. A call without the job's token in
// "x-colossus-token" is refused here (UNAUTHENTICATED, nothing sent upstream); with it,
// the coordinator still checks token, job and generation (fencing) as for any caller.
// The socket is created with mode 0600 in a directory the agent owns.
//
// Threads: gRPC's callback threads run the calls; one relay thread runs the waiters'
// timers. Thread safety: stats() and target() from any thread. Destruction (or Stop)
// answers every local call in flight with UNAVAILABLE "store relay ... shut down",
// cancels the upstream calls, stops the server and removes the socket file.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace grpc {
class Channel;
}

namespace colossus::launcher {

struct StoreRelayOptions {
  // Where to listen: a filesystem path (at most 107 bytes; an existing socket file there
  // is replaced). Its directory must exist.
  std::string socket_path;
  // The channel to the coordinator (the agent's own: the relay adds no connection).
  std::shared_ptr<grpc::Channel> upstream;
  // The job's token: local callers must present it.
  std::string token;
  // Deadline of a forwarded call whose caller set none; also how long past its hold an
  // upstream StoreWait may take to answer before its waiters give up on it.
  absl::Duration call_timeout = absl::Seconds(30);
  // Backoff of the relay's retries of an upstream StoreWait answered UNAVAILABLE.
  absl::Duration retry_initial_backoff = absl::Milliseconds(100);
  absl::Duration retry_max_backoff = absl::Seconds(5);
  // Benchmarks and tests: called on a gRPC thread right after an upstream StoreWait
  // answered, before its waiters are answered, with the number of local waiters it
  // answers. Must not block.
  std::function<void(int waiters)> on_upstream_wait_answered;
};

class StoreRelay {
 public:
  // Listens on options.socket_path. Errors: InvalidArgument (no upstream, no token, a
  // path too long for a unix socket), Unavailable naming the path when the server
  // cannot listen there.
  static absl::StatusOr<std::unique_ptr<StoreRelay>> Start(StoreRelayOptions options);
  ~StoreRelay();
  StoreRelay(const StoreRelay&) = delete;
  StoreRelay& operator=(const StoreRelay&) = delete;

  // "unix:<socket_path>": the value of COLOSSUS_STORE for the workers.
  const std::string& target() const;

  struct Stats {
    int64_t local_waits = 0;     // StoreWait calls received (and authorized)
    int64_t upstream_waits = 0;  // StoreWait calls sent upstream (coalesced + probes)
    int64_t probes = 0;          // of those: 1 ms waits answering an early timeout
    int64_t forwarded = 0;       // other store calls forwarded
    int64_t refused = 0;         // calls refused here (token)
  };
  Stats stats() const;

  // Answers local calls in flight with UNAVAILABLE and stops serving (idempotent).
  void Stop();

  class Impl;

 private:
  explicit StoreRelay(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace colossus::launcher
