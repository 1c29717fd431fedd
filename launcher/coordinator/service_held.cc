// The held RPCs: Join (until the generation forms), StoreWait (until the keys exist) and
// ReportShard (until its journal batch is durable). Each leaves a completion callback
// with JobState/JobStore that finishes the call from whatever thread completes it. A Join
// whose client goes away is noticed through AsyncNotifyWhenDone and removed (it must not
// count toward a generation); a StoreWait's is left to its timeout (see StoreWaitTraits).
#include <atomic>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service.h"

namespace colossus::launcher::service {
namespace {

template <class Traits>
class HeldCall : public std::enable_shared_from_this<HeldCall<Traits>> {
 public:
  using Request = typename Traits::Request;
  using Response = typename Traits::Response;

  HeldCall(ServiceContext* ctx, grpc::ServerCompletionQueue* cq) : ctx_(ctx), cq_(cq) {
    ctx_->live_calls.fetch_add(1, std::memory_order_relaxed);
  }
  ~HeldCall() { ctx_->live_calls.fetch_sub(1, std::memory_order_relaxed); }

  static void Post(ServiceContext* ctx, grpc::ServerCompletionQueue* cq) {
    auto call = std::make_shared<HeldCall>(ctx, cq);
    // Delivered once the call has started (never for a request that never matched), so
    // it is armed only in OnRequest.
    if (Traits::kNotifyWhenDone) call->server_ctx_.AsyncNotifyWhenDone(&call->done_tag_);
    ctx->Run([&] {
      Traits::RequestCall(ctx->service, &call->server_ctx_, &call->request_, &call->writer_, cq,
                          call->request_tag_.Arm(call));
    });
  }

  void Complete(absl::StatusOr<Response> result) {
    if (finished_.exchange(true)) return;
    auto self = this->shared_from_this();
    ctx_->Run([&] {
      if (result.ok()) {
        writer_.Finish(*result, grpc::Status::OK, finish_tag_.Arm(self));
      } else {
        writer_.FinishWithError(ToGrpc(result.status()), finish_tag_.Arm(self));
      }
    });
  }

 private:
  void OnRequest(bool ok) {
    if (!ok) return;
    Post(ctx_, cq_);
    auto self = this->shared_from_this();
    // The done tag and this one come through the same single-threaded queue, so this
    // check and OnDone cannot race.
    if (Traits::kNotifyWhenDone && !done_seen_) done_tag_.Arm(self);
    grpc::Status status = Authorize(*ctx_, server_ctx_);
    if (status.ok()) {
      status = CheckHeader(*ctx_, request_.has_header(), request_.header(), Traits::kName);
    }
    if (!status.ok()) {
      Complete(absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                            status.error_message()));
      return;
    }
    ticket_ = Traits::Start(*ctx_, request_, [self](absl::StatusOr<Response> r) {
      self->Complete(std::move(r));
    });
  }

  void OnDone(bool ok) {
    done_seen_ = true;
    if (!server_ctx_.IsCancelled() || ticket_ == 0) return;
    // The caller went away. If the held call is still held, take it back and finish it
    // here; otherwise its completion is under way on another thread.
    if (Traits::Cancel(*ctx_, ticket_)) {
      Complete(absl::CancelledError(absl::StrCat(Traits::kName, " cancelled by the client")));
    }
  }

  void OnFinish(bool ok) {}

  ServiceContext* const ctx_;
  grpc::ServerCompletionQueue* const cq_;
  grpc::ServerContext server_ctx_;
  Request request_;
  grpc::ServerAsyncResponseWriter<Response> writer_{&server_ctx_};
  OpTag<HeldCall> request_tag_{this, &HeldCall::OnRequest};
  OpTag<HeldCall> done_tag_{this, &HeldCall::OnDone};
  OpTag<HeldCall> finish_tag_{this, &HeldCall::OnFinish};
  std::atomic<bool> finished_{false};
  bool done_seen_ = false;   // queue thread only
  uint64_t ticket_ = 0;      // queue thread only
};

#define COLOSSUS_HELD_TRAITS(Rpc, Req, Resp)                                                   \
  using Request = v1::Req;                                                                     \
  using Response = v1::Resp;                                                                   \
  using Done = std::function<void(absl::StatusOr<Response>)>;                                  \
  static constexpr const char* kName = #Req;                                                   \
  static void RequestCall(v1::Coordinator::AsyncService& s, grpc::ServerContext* c, Request* r, \
                          grpc::ServerAsyncResponseWriter<Response>* w,                        \
                          grpc::ServerCompletionQueue* cq, void* tag) {                        \
    s.Request##Rpc(c, r, w, cq, cq, tag);                                                      \
  }

struct JoinTraits {
  COLOSSUS_HELD_TRAITS(Join, JoinRequest, JoinResponse)
  // A Join whose agent went away must stop counting toward the generation at once.
  static constexpr bool kNotifyWhenDone = true;
  static uint64_t Start(ServiceContext& ctx, const Request& r, Done done) {
    return ctx.state->Join(r, absl::Now(), std::move(done));
  }
  static bool Cancel(ServiceContext& ctx, uint64_t ticket) {
    return ctx.state->CancelJoin(ticket, absl::Now());
  }
};

struct StoreWaitTraits {
  COLOSSUS_HELD_TRAITS(StoreWait, StoreWaitRequest, StoreWaitResponse)
  // Not watched: a StoreWait whose client went away only holds memory until its own
  // timeout (or the generation's end), while the notification costs a queue event per
  // call: 100,000 more events in the NCCL-id fan-out, each scanned by Debian's debug check.
  static constexpr bool kNotifyWhenDone = false;
  static uint64_t Start(ServiceContext& ctx, const Request& r, Done done) {
    if (r.timeout_ms() < 0) {
      done(absl::InvalidArgumentError(
          absl::StrCat("StoreWaitRequest.timeout_ms ", r.timeout_ms(), " is negative")));
      return 0;
    }
    absl::Duration timeout =
        r.timeout_ms() > 0 ? absl::Milliseconds(r.timeout_ms()) : ctx.store_wait_timeout;
    std::vector<std::string> keys(r.keys().begin(), r.keys().end());
    return ctx.store->Wait(
        r.header().generation(), r.scope(), std::move(keys), absl::Now(), timeout,
        [done = std::move(done)](absl::StatusOr<std::vector<std::string>> values) {
          if (!values.ok()) return done(values.status());
          Response response;
          for (std::string& v : *values) response.add_values(std::move(v));
          done(std::move(response));
        });
  }
  static bool Cancel(ServiceContext& ctx, uint64_t ticket) { return ctx.store->CancelWait(ticket); }
};

struct ReportShardTraits {
  COLOSSUS_HELD_TRAITS(ReportShard, ShardReport, ShardAck)
  static constexpr bool kNotifyWhenDone = false;
  static uint64_t Start(ServiceContext& ctx, const Request& r, Done done) {
    ctx.state->ReportShard(r, absl::Now(), std::move(done));
    return 0;  // answered within a journal append: not worth cancelling
  }
  static bool Cancel(ServiceContext&, uint64_t) { return false; }
};

#undef COLOSSUS_HELD_TRAITS

}  // namespace

void PostHeldCalls(ServiceContext* ctx, grpc::ServerCompletionQueue* cq, int per_queue) {
  for (int i = 0; i < per_queue; ++i) {
    HeldCall<JoinTraits>::Post(ctx, cq);
    HeldCall<StoreWaitTraits>::Post(ctx, cq);
    HeldCall<ReportShardTraits>::Post(ctx, cq);
  }
}

}  // namespace colossus::launcher::service
