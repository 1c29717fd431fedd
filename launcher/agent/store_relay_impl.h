// StoreRelay's implementation class, shared by store_relay.cc (server, forwarding, stop)
// and store_relay_wait.cc (coalesced StoreWaits). Not a public header.
//
// Locking: one mutex, mu_, guards every field marked so: the waiters, the open groups,
// the timers, the upstream calls in flight. gRPC reactors are answered (Finish) only
// after mu_ is released, and a waiter is touched by one path only: whoever removes it
// from waiters_ under mu_ answers it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "colossus/coordinator/v1/coordinator.grpc.pb.h"
#include "colossus/launcher/store_relay.h"
#include "grpcpp/grpcpp.h"

namespace colossus::launcher {

namespace v1 = ::colossus::coordinator::v1;

class StoreRelay::Impl final : public v1::Coordinator::CallbackService {
 public:
  explicit Impl(StoreRelayOptions options);
  ~Impl() override;

  absl::Status Listen();
  void Stop();  // once; later calls wait for the first
  const std::string& target() const { return target_; }
  StoreRelay::Stats stats() const;

  grpc::ServerUnaryReactor* StoreSet(grpc::CallbackServerContext* ctx, const v1::StoreSetRequest* req,
                                     v1::StoreSetResponse* resp) override;
  grpc::ServerUnaryReactor* StoreGet(grpc::CallbackServerContext* ctx, const v1::StoreGetRequest* req,
                                     v1::StoreGetResponse* resp) override;
  grpc::ServerUnaryReactor* StoreAdd(grpc::CallbackServerContext* ctx, const v1::StoreAddRequest* req,
                                     v1::StoreAddResponse* resp) override;
  grpc::ServerUnaryReactor* StoreCompareSet(grpc::CallbackServerContext* ctx,
                                            const v1::StoreCompareSetRequest* req,
                                            v1::StoreCompareSetResponse* resp) override;
  grpc::ServerUnaryReactor* StoreDelete(grpc::CallbackServerContext* ctx,
                                        const v1::StoreDeleteRequest* req,
                                        v1::StoreDeleteResponse* resp) override;
  grpc::ServerUnaryReactor* StoreWait(grpc::CallbackServerContext* ctx,
                                      const v1::StoreWaitRequest* req,
                                      v1::StoreWaitResponse* resp) override;

  class Waiter;  // one local StoreWait (a reactor)
  struct Group;  // the upstream StoreWait shared by waiters of one (job, generation, scope, keys)
  struct Probe;  // the 1 ms upstream StoreWait answering one waiter at its own deadline

  // A waiter's answer, delivered after mu_ is released.
  struct Answer {
    Waiter* waiter;
    grpc::Status status;
    std::vector<std::string> values;
  };
  // Work collected under mu_, carried out after it is released.
  // (gRPC may run a callback inline in TryCancel or in a call's start: never under mu_.)
  struct Pending {
    std::vector<Answer> answers;
    std::vector<std::shared_ptr<Group>> starts;
    std::vector<std::shared_ptr<Probe>> probes;
    std::vector<std::shared_ptr<grpc::ClientContext>> cancels;
  };

  // ---- called by Waiter (store_relay_wait.cc) ----
  void WaiterCancelled(Waiter* w);

 private:
  // UNAUTHENTICATED unless the call carries the job's token; the token otherwise.
  grpc::Status Admit(grpc::CallbackServerContext* ctx, std::string* token);
  grpc::Status ShutDownStatus() const;
  // A context for an upstream call carrying `token`, registered so Stop can cancel it;
  // nullptr once stopping. REQUIRES: mu_ held.
  std::shared_ptr<grpc::ClientContext> NewUpstreamLocked(const std::string& token);
  // The call on `context` ended: it is no longer cancellable, and its context retires.
  void UpstreamEndedLocked(grpc::ClientContext* context);
  // Contexts are destroyed on the relay's thread (or in Stop), never on a gRPC callback
  // thread: a context holds its channel, and Debian's gRPC (1.51) tears down its shared
  // callback queue when the last channel goes, which must not happen on that queue's own
  // thread (grpc/grpc#32584: a crash, seen here as "assertion failed: prior > 0").
  void RetireLocked(std::shared_ptr<grpc::ClientContext> context);
  // The last statement of every upstream callback: Stop waits for in_flight_ == 0.
  void CallbackDone();

  template <class Req, class Resp, class Call>
  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* ctx, const Req* req, Resp* resp,
                                    Call call);

  // ---- coalesced waits (store_relay_wait.cc); *Locked: REQUIRES mu_ held ----
  // Puts w into the open group for its keys (opening one, to be started, if none).
  void JoinGroupLocked(Waiter* w, Pending* pending);
  void StartAttempt(const std::shared_ptr<Group>& g);
  void StartProbe(const std::shared_ptr<Probe>& p);
  void OnGroupAnswered(const std::shared_ptr<Group>& g, const grpc::Status& status);
  void OnWaiterTimer(uint64_t waiter_id);
  void OnProbeAnswered(const std::shared_ptr<Probe>& p, const grpc::Status& status);
  // Removes w from its group; the last waiter to leave cancels the upstream call.
  void LeaveGroupLocked(Waiter* w, Pending* pending);
  // Takes w out of the relay's books and queues its answer.
  void AnswerLocked(Waiter* w, grpc::Status status, const v1::StoreWaitResponse* values,
                    Pending* pending);
  void Deliver(Pending pending);

  // ---- timers (run on the relay's thread without mu_) ----
  uint64_t ArmLocked(absl::Time when, std::function<void()> fn);
  void DisarmLocked(uint64_t id);
  void TimerLoop();
  void StopOnce();

  const StoreRelayOptions options_;
  const std::string target_;  // "unix:<path>"
  const std::string name_;    // "store relay unix:<path>" in messages
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  std::unique_ptr<grpc::Server> server_;
  std::thread timer_thread_;
  std::once_flag stop_once_;

  mutable std::mutex mu_;
  std::condition_variable cv_;  // timers changed, stopping, an upstream call ended
  bool stopping_ = false;       // guarded by mu_
  uint64_t next_id_ = 1;        // guarded by mu_ (waiters, timers)
  std::map<uint64_t, Waiter*> waiters_;                    // guarded by mu_: unanswered
  std::map<std::string, std::shared_ptr<Group>> groups_;   // guarded by mu_: open groups
  // guarded by mu_: upstream calls in flight (shared so that they can be cancelled
  // after mu_ is released even if their call ends meanwhile)
  std::map<grpc::ClientContext*, std::shared_ptr<grpc::ClientContext>> upstream_;
  std::vector<std::shared_ptr<grpc::ClientContext>> retired_;  // guarded by mu_
  int64_t in_flight_ = 0;  // guarded by mu_: upstream callbacks not yet finished
  std::map<std::pair<absl::Time, uint64_t>, std::function<void()>> timers_;  // guarded by mu_
  std::map<uint64_t, absl::Time> timer_when_;              // guarded by mu_

  std::atomic<int64_t> local_waits_{0}, upstream_waits_{0}, probes_{0}, forwarded_{0}, refused_{0};
};

class StoreRelay::Impl::Waiter final : public grpc::ServerUnaryReactor {
 public:
  Waiter(Impl* relay, const v1::StoreWaitRequest* request, v1::StoreWaitResponse* response)
      : relay(relay), request(request), response(response) {}
  void OnCancel() override { relay->WaiterCancelled(this); }
  void OnDone() override { delete this; }

  Impl* const relay;
  const v1::StoreWaitRequest* const request;
  v1::StoreWaitResponse* const response;
  std::string token;
  // Set before the waiter is published in waiters_; read under mu_ after.
  uint64_t id = 0;
  absl::Time deadline = absl::InfiniteFuture();
  bool coalesce = true;
  // Guarded by the relay's mu_.
  std::shared_ptr<Group> group;
  uint64_t timer = 0;
};

struct StoreRelay::Impl::Group {
  std::string key;
  std::string token;
  v1::StoreWaitRequest request;  // upstream: the waiter's request, timeout_ms the hold
  absl::Time hold_until = absl::InfiniteFuture();
  bool coalesced = true;
  // Guarded by the relay's mu_ (the call owns context and response while in flight).
  std::shared_ptr<grpc::ClientContext> context;
  v1::StoreWaitResponse response;
  std::set<uint64_t> waiters;
  int attempts = 0;
  bool abandoned = false;  // every waiter left: the upstream call was cancelled
};

struct StoreRelay::Impl::Probe {
  uint64_t waiter_id = 0;
  v1::StoreWaitRequest request;
  std::shared_ptr<grpc::ClientContext> context;
  v1::StoreWaitResponse response;
};

}  // namespace colossus::launcher
