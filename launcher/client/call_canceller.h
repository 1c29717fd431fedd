// CallCanceller: cancels held calls (Join, StoreWait) at the client's own deadline.
//
// A gRPC deadline travels to the server as grpc-timeout, and the server arms a timer
// for it. Debian's gRPC keeps every timer in a debug hash table of ~1,000 buckets whose
// chains are walked on each add and remove, so 100,000 held StoreWaits with deadlines
// (every rank waiting for the NCCL id) cost the coordinator seconds of CPU in timer
// bookkeeping alone (measured with colossus-coordinator-load). Held calls therefore go
// out without a gRPC deadline (the coordinator bounds them by their timeout_ms) and this
// one process-wide thread cancels any that outlive hold + grace.
//
// Thread safety: all methods from any thread. Disarm guarantees that TryCancel is not
// running on, and will not be called on, the context once it returns.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

#include "absl/time/time.h"

namespace grpc {
class ClientContext;
}

namespace colossus::launcher::client_internal {

class CallCanceller {
 public:
  // The process's canceller (started on first use, never destroyed: calls may be in
  // flight during static destruction).
  static CallCanceller& Get();

  // Cancels `context` at `when` unless disarmed first. Returns the handle for Disarm.
  uint64_t Arm(absl::Time when, grpc::ClientContext* context);
  // Returns whether the timer had already fired (the call was cancelled by us).
  bool Disarm(uint64_t handle);

 private:
  CallCanceller();
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t next_ = 1;                                             // guarded by mu_
  std::map<std::pair<absl::Time, uint64_t>, grpc::ClientContext*> armed_;  // guarded by mu_
  std::map<uint64_t, absl::Time> when_;                           // guarded by mu_
};

}  // namespace colossus::launcher::client_internal
