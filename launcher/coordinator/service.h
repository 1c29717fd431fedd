// The coordinator's gRPC service on the async API (internal to launcher/coordinator/).
//
// Shape: several ServerCompletionQueues, one thread each (coordinator_server.cc). Every
// RPC is a call object owned by shared_ptr; each pending operation's tag (OpTag) pins its
// call until the queue delivers it, and a held call (Join, StoreWait) is also pinned by
// the completion callback it left with JobState/JobStore, so a call lives exactly as long
// as someone can still touch it. Unary calls are answered on the queue's thread; held
// calls are finished from whichever thread completes them (a Join that forms the
// generation finishes all 12,500 Joins; a StoreSet finishes every StoreWait of its key).
//
// Why several queues: Debian's gRPC is built with debug checks that scan a queue's pending
// tags on every event, so one big queue with 12,500 streams slows every event
// (../shared/PLATFORM.md "gRPC at scale"); calls are spread over the queues by posting
// requests on each.
//
// Shutdown ordering (CoordinatorServer): state/store/events closed (held calls finished
// with UNAVAILABLE) -> grpc::Server::Shutdown -> CloseOps() -> queues shut down and
// drained. Starting an operation on a queue that was shut down aborts inside gRPC, so
// every operation starts through Run(), which refuses once CloseOps() was called; a call
// whose operation was refused simply drops its pin.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "colossus/coordinator/v1/coordinator.grpc.pb.h"
#include "colossus/launcher/job_events.h"
#include "colossus/launcher/job_state.h"
#include "colossus/launcher/job_store.h"
#include "colossus/launcher/job_token.h"

namespace colossus::launcher::service {

namespace v1 = ::colossus::coordinator::v1;

// A completion-queue tag.
class CqTag {
 public:
  virtual ~CqTag() = default;
  virtual void Proceed(bool ok) = 0;
};

// The tag of one kind of operation of a call; Arm() pins the call until the tag comes
// back from the queue.
template <class Call>
class OpTag final : public CqTag {
 public:
  using Handler = void (Call::*)(bool ok);
  OpTag(Call* call, Handler handler) : call_(call), handler_(handler) {}
  void* Arm(std::shared_ptr<Call> pin) {
    pin_ = std::move(pin);
    return this;
  }
  void Proceed(bool ok) override {
    std::shared_ptr<Call> keep = std::move(pin_);  // the call may die when this returns
    (call_->*handler_)(ok);
  }

 private:
  Call* const call_;
  const Handler handler_;
  std::shared_ptr<Call> pin_;
};

// A Health stream waiting for its first message, cut off by the sweep when it is late.
class FirstMessageWatch {
 public:
  virtual ~FirstMessageWatch() = default;
  virtual void CutOff(const absl::Status& status) = 0;
};

// What every call needs: the job, the service, the queues, and the operation gate.
class ServiceContext {
 public:
  v1::Coordinator::AsyncService service;
  JobState* state = nullptr;
  JobStore* store = nullptr;
  JobEvents* events = nullptr;
  std::string job_id;
  std::string token;
  absl::Duration store_wait_timeout = absl::Minutes(10);
  absl::Duration first_message_timeout = absl::Seconds(5);
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> cqs;

  // Runs `op` (which starts a gRPC operation) unless the queues are closing; returns
  // whether it ran.
  template <class F>
  bool Run(F&& op) {
    absl::ReaderMutexLock lock(&op_mu_);
    if (ops_closed_) return false;
    op();
    return true;
  }
  // No operation starts after this returns.
  void CloseOps() {
    absl::MutexLock lock(&op_mu_);
    ops_closed_ = true;
  }

  // First-message deadlines of Health streams.
  uint64_t WatchFirstMessage(std::weak_ptr<FirstMessageWatch> call, absl::Time deadline);
  void Unwatch(uint64_t id);
  // Cuts off the streams whose deadline is <= now (all of them with `all`).
  void SweepFirstMessages(absl::Time now, bool all = false);

  // Call objects alive (held, streaming, or waiting for a request), for memory
  // housekeeping.
  std::atomic<int64_t> live_calls{0};
  // Refusals, for /metrics.
  std::atomic<int64_t> unauthenticated{0};
  std::atomic<int64_t> first_message_timeouts{0};

 private:
  absl::Mutex op_mu_;
  bool ops_closed_ ABSL_GUARDED_BY(op_mu_) = false;

  struct Watch {
    std::weak_ptr<FirstMessageWatch> call;
    absl::Time deadline;
  };
  absl::Mutex watch_mu_;
  uint64_t next_watch_ ABSL_GUARDED_BY(watch_mu_) = 1;
  std::map<uint64_t, Watch> watches_ ABSL_GUARDED_BY(watch_mu_);  // ids grow with deadlines
};

// Auth and header checks (service_auth.cc).
// UNAUTHENTICATED unless the call carries the job's token.
grpc::Status Authorize(ServiceContext& ctx, const grpc::ServerContext& call);
// INVALID_ARGUMENT when the header is missing, NOT_FOUND when it names another job.
grpc::Status CheckHeader(const ServiceContext& ctx, bool has_header,
                         const v1::RequestHeader& header, const char* rpc);
grpc::Status ToGrpc(const absl::Status& status);

// Posts `per_queue` pending requests of every RPC on every queue (service_*.cc).
void PostUnaryCalls(ServiceContext* ctx, grpc::ServerCompletionQueue* cq, int per_queue);
void PostHeldCalls(ServiceContext* ctx, grpc::ServerCompletionQueue* cq, int per_queue);
void PostStreamCalls(ServiceContext* ctx, grpc::ServerCompletionQueue* cq, int per_queue);

}  // namespace colossus::launcher::service
