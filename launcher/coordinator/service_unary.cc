// The RPCs answered at once on the queue's thread: Leave, the store (except Wait),
// GetLatestCheckpoint, InvalidateCheckpoints, GetJobStatus, StopJob.
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service.h"

namespace colossus::launcher::service {
namespace {

// One unary RPC: Traits names its messages, how to request it and how to answer it.
template <class Traits>
class UnaryCall : public std::enable_shared_from_this<UnaryCall<Traits>> {
 public:
  using Request = typename Traits::Request;
  using Response = typename Traits::Response;

  UnaryCall(ServiceContext* ctx, grpc::ServerCompletionQueue* cq) : ctx_(ctx), cq_(cq) {}

  static void Post(ServiceContext* ctx, grpc::ServerCompletionQueue* cq) {
    auto call = std::make_shared<UnaryCall>(ctx, cq);
    ctx->Run([&] {
      Traits::RequestCall(ctx->service, &call->server_ctx_, &call->request_, &call->writer_, cq,
                          call->request_tag_.Arm(call));
    });
  }

 private:
  void OnRequest(bool ok) {
    if (!ok) return;  // the server is shutting down
    Post(ctx_, cq_);
    Response response;
    grpc::Status status = Authorize(*ctx_, server_ctx_);
    if (status.ok()) {
      status = CheckHeader(*ctx_, request_.has_header(), request_.header(), Traits::kName);
    }
    if (status.ok()) status = Traits::Handle(*ctx_, request_, &response);
    auto self = this->shared_from_this();
    ctx_->Run([&] {
      if (status.ok()) {
        writer_.Finish(response, grpc::Status::OK, finish_tag_.Arm(self));
      } else {
        writer_.FinishWithError(status, finish_tag_.Arm(self));
      }
    });
  }
  void OnFinish(bool ok) {}

  ServiceContext* const ctx_;
  grpc::ServerCompletionQueue* const cq_;
  grpc::ServerContext server_ctx_;
  Request request_;
  grpc::ServerAsyncResponseWriter<Response> writer_{&server_ctx_};
  OpTag<UnaryCall> request_tag_{this, &UnaryCall::OnRequest};
  OpTag<UnaryCall> finish_tag_{this, &UnaryCall::OnFinish};
};

#define COLOSSUS_UNARY_TRAITS(Rpc, Req, Resp)                                                  \
  using Request = v1::Req;                                                                     \
  using Response = v1::Resp;                                                                   \
  static constexpr const char* kName = #Req;                                                   \
  static void RequestCall(v1::Coordinator::AsyncService& s, grpc::ServerContext* c, Request* r, \
                          grpc::ServerAsyncResponseWriter<Response>* w,                        \
                          grpc::ServerCompletionQueue* cq, void* tag) {                        \
    s.Request##Rpc(c, r, w, cq, cq, tag);                                                      \
  }

struct LeaveTraits {
  COLOSSUS_UNARY_TRAITS(Leave, LeaveRequest, LeaveResponse)
  static grpc::Status Handle(ServiceContext& ctx, const Request& r, Response*) {
    return ToGrpc(ctx.state->Leave(r, absl::Now()));
  }
};

struct StoreSetTraits {
  COLOSSUS_UNARY_TRAITS(StoreSet, StoreSetRequest, StoreSetResponse)
  static grpc::Status Handle(ServiceContext& ctx, const Request& r, Response*) {
    return ToGrpc(ctx.store->Set(r.header().generation(), r.scope(), r.key(), r.value()));
  }
};

struct StoreGetTraits {
  COLOSSUS_UNARY_TRAITS(StoreGet, StoreGetRequest, StoreGetResponse)
  static grpc::Status Handle(ServiceContext& ctx, const Request& r, Response* out) {
    absl::StatusOr<std::string> v = ctx.store->Get(r.header().generation(), r.scope(), r.key());
    if (!v.ok()) return ToGrpc(v.status());
    out->set_value(std::move(*v));
    return grpc::Status::OK;
  }
};

struct StoreAddTraits {
  COLOSSUS_UNARY_TRAITS(StoreAdd, StoreAddRequest, StoreAddResponse)
  static grpc::Status Handle(ServiceContext& ctx, const Request& r, Response* out) {
    absl::StatusOr<int64_t> v = ctx.store->Add(r.header().generation(), r.scope(), r.key(), r.delta());
    if (!v.ok()) return ToGrpc(v.status());
    out->set_value(*v);
    return grpc::Status::OK;
  }
};

struct StoreCompareSetTraits {
  COLOSSUS_UNARY_TRAITS(StoreCompareSet, StoreCompareSetRequest, StoreCompareSetResponse)
  static grpc::Status Handle(ServiceContext& ctx, const Request& r, Response* out) {
    absl::StatusOr<CompareSetResult> v =
        ctx.store->CompareSet(r.header().generation(), r.scope(), r.key(), r.expect_absent(),
                              r.expected(), r.desired());
    if (!v.ok()) return ToGrpc(v.status());
    out->set_swapped(v->swapped);
    out->set_has_value(v->has_value);
    out->set_value(std::move(v->value));
    return grpc::Status::OK;
  }
};

struct StoreDeleteTraits {
  COLOSSUS_UNARY_TRAITS(StoreDelete, StoreDeleteRequest, StoreDeleteResponse)
  static grpc::Status Handle(ServiceContext& ctx, const Request& r, Response* out) {
    absl::StatusOr<bool> v = ctx.store->Delete(r.header().generation(), r.scope(), r.key());
    if (!v.ok()) return ToGrpc(v.status());
    out->set_existed(*v);
    return grpc::Status::OK;
  }
};

struct GetLatestCheckpointTraits {
  COLOSSUS_UNARY_TRAITS(GetLatestCheckpoint, GetLatestCheckpointRequest, CheckpointRef)
  static grpc::Status Handle(ServiceContext& ctx, const Request&, Response* out) {
    *out = ctx.state->LatestCheckpoint();
    return grpc::Status::OK;
  }
};

struct InvalidateCheckpointsTraits {
  COLOSSUS_UNARY_TRAITS(InvalidateCheckpoints, InvalidateCheckpointsRequest, CheckpointRef)
  static grpc::Status Handle(ServiceContext& ctx, const Request& r, Response* out) {
    absl::StatusOr<v1::CheckpointRef> latest = ctx.state->InvalidateCheckpoints(r, absl::Now());
    if (!latest.ok()) return ToGrpc(latest.status());
    *out = *std::move(latest);
    return grpc::Status::OK;
  }
};

struct GetJobStatusTraits {
  COLOSSUS_UNARY_TRAITS(GetJobStatus, JobStatusRequest, JobStatus)
  static grpc::Status Handle(ServiceContext& ctx, const Request&, Response* out) {
    *out = ctx.state->Status(absl::Now());
    return grpc::Status::OK;
  }
};

struct StopJobTraits {
  COLOSSUS_UNARY_TRAITS(StopJob, StopJobRequest, StopJobResponse)
  static grpc::Status Handle(ServiceContext& ctx, const Request& r, Response* out) {
    std::string reason = r.reason().empty() ? "stopped by StopJob" : absl::StrCat("stopped: ", r.reason());
    *out->mutable_status() = ctx.state->Stop(reason, absl::Now());
    return grpc::Status::OK;
  }
};

#undef COLOSSUS_UNARY_TRAITS

}  // namespace

void PostUnaryCalls(ServiceContext* ctx, grpc::ServerCompletionQueue* cq, int per_queue) {
  for (int i = 0; i < per_queue; ++i) {
    UnaryCall<LeaveTraits>::Post(ctx, cq);
    UnaryCall<StoreSetTraits>::Post(ctx, cq);
    UnaryCall<StoreGetTraits>::Post(ctx, cq);
    UnaryCall<StoreAddTraits>::Post(ctx, cq);
    UnaryCall<StoreCompareSetTraits>::Post(ctx, cq);
    UnaryCall<StoreDeleteTraits>::Post(ctx, cq);
    UnaryCall<GetLatestCheckpointTraits>::Post(ctx, cq);
    UnaryCall<InvalidateCheckpointsTraits>::Post(ctx, cq);
    UnaryCall<GetJobStatusTraits>::Post(ctx, cq);
    UnaryCall<StopJobTraits>::Post(ctx, cq);
  }
}

}  // namespace colossus::launcher::service
