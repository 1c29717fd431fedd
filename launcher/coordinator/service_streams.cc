// The streaming RPCs: Health (one bidirectional stream per node agent; beats in, commands
// out only when there is one) and WatchEvents (job events out until the job ends).
//
// Each stream keeps at most one read and one write in flight (gRPC's rule); commands or
// events queue behind the write in flight, and Finish waits for the queue to drain.
#include <deque>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service.h"

namespace colossus::launcher::service {
namespace {

class HealthCall : public CommandSink,
                   public FirstMessageWatch,
                   public std::enable_shared_from_this<HealthCall> {
 public:
  HealthCall(ServiceContext* ctx, grpc::ServerCompletionQueue* cq) : ctx_(ctx), cq_(cq) {
    ctx_->live_calls.fetch_add(1, std::memory_order_relaxed);
  }
  ~HealthCall() override { ctx_->live_calls.fetch_sub(1, std::memory_order_relaxed); }

  static void Post(ServiceContext* ctx, grpc::ServerCompletionQueue* cq) {
    // No AsyncNotifyWhenDone: a read is pending for the stream's whole life and fails when
    // the client goes away, which is all we need to know; the notification would add an
    // outstanding operation per stream to the queue that Debian's gRPC scans per event.
    auto call = std::make_shared<HealthCall>(ctx, cq);
    ctx->Run([&] {
      ctx->service.RequestHealth(&call->server_ctx_, &call->stream_, cq, cq,
                                 call->request_tag_.Arm(call));
    });
  }

  // CommandSink: from JobState, on any thread, never under its lock.
  void Send(const v1::Command& command) override {
    absl::MutexLock lock(&mu_);
    if (finish_requested_) return;
    queue_.push_back(command);
    if (!writing_) StartWriteLocked();
  }
  void Close(const absl::Status& status) override { RequestFinish(ToGrpc(status)); }
  // FirstMessageWatch: the sweep found this stream silent past its deadline.
  void CutOff(const absl::Status& status) override { RequestFinish(ToGrpc(status)); }

 private:
  void OnRequest(bool ok) {
    if (!ok) return;
    Post(ctx_, cq_);
    grpc::Status status = Authorize(*ctx_, server_ctx_);
    if (!status.ok()) {
      RequestFinish(status);
      return;
    }
    watch_id_ = ctx_->WatchFirstMessage(weak_from_this(), absl::Now() + ctx_->first_message_timeout);
    StartRead();
  }

  void StartRead() {
    auto self = shared_from_this();
    ctx_->Run([&] { stream_.Read(&message_, read_tag_.Arm(self)); });
  }

  void OnRead(bool ok) {
    if (!ok) {
      // The agent closed its side, or the stream broke (or we finished it).
      ctx_->Unwatch(watch_id_);
      Detach();
      RequestFinish(grpc::Status::OK);
      return;
    }
    const absl::Time now = absl::Now();
    if (stream_id_ == 0 && !opened_) {
      ctx_->Unwatch(watch_id_);
      grpc::Status status =
          CheckHeader(*ctx_, message_.has_header(), message_.header(), "NodeHealth");
      if (!status.ok()) {
        RequestFinish(status);
        return;
      }
      absl::StatusOr<uint64_t> id = ctx_->state->OpenHealthStream(message_, shared_from_this(), now);
      if (!id.ok()) {
        RequestFinish(ToGrpc(id.status()));
        return;
      }
      opened_ = true;
      stream_id_ = *id;
      if (stream_id_ == 0) return;  // the job had ended: EXIT queued, the stream closes
    } else {
      if (message_.has_header() && !message_.header().job_id().empty() &&
          message_.header().job_id() != ctx_->job_id) {
        RequestFinish(CheckHeader(*ctx_, true, message_.header(), "NodeHealth"));
        return;
      }
      absl::Status status = ctx_->state->Beat(stream_id_, message_, now);
      if (!status.ok()) {
        Detach();
        RequestFinish(ToGrpc(status));
        return;
      }
    }
    StartRead();
  }

  // The stream no longer speaks for its node (queue thread only).
  void Detach() {
    if (stream_id_ != 0) ctx_->state->CloseHealthStream(stream_id_);
    stream_id_ = 0;
  }

  void RequestFinish(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    if (finish_requested_) return;
    finish_requested_ = true;
    finish_status_ = status;
    if (!writing_) StartFinishLocked();
  }

  void StartWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto self = shared_from_this();
    writing_ = ctx_->Run([&] { stream_.Write(queue_.front(), write_tag_.Arm(self)); });
  }

  void StartFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto self = shared_from_this();
    ctx_->Run([&] { stream_.Finish(finish_status_, finish_tag_.Arm(self)); });
  }

  void OnWrite(bool ok) {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      queue_.clear();  // the stream is broken; Finish reports it
      if (!finish_requested_) {
        finish_requested_ = true;
        finish_status_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, "health stream broken");
      }
    } else {
      queue_.pop_front();
    }
    if (!queue_.empty()) {
      StartWriteLocked();
    } else if (finish_requested_) {
      StartFinishLocked();
    }
  }

  void OnFinish(bool ok) {}

  ServiceContext* const ctx_;
  grpc::ServerCompletionQueue* const cq_;
  grpc::ServerContext server_ctx_;
  grpc::ServerAsyncReaderWriter<v1::Command, v1::NodeHealth> stream_{&server_ctx_};
  v1::NodeHealth message_;
  OpTag<HealthCall> request_tag_{this, &HealthCall::OnRequest};
  OpTag<HealthCall> read_tag_{this, &HealthCall::OnRead};
  OpTag<HealthCall> write_tag_{this, &HealthCall::OnWrite};
  OpTag<HealthCall> finish_tag_{this, &HealthCall::OnFinish};
  // Queue thread only.
  bool opened_ = false;
  uint64_t stream_id_ = 0;
  uint64_t watch_id_ = 0;
  // Writes and the finish, from any thread.
  absl::Mutex mu_;
  std::deque<v1::Command> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

class EventsCall : public EventSink, public std::enable_shared_from_this<EventsCall> {
 public:
  // A watcher further behind than this is dropped rather than buffering without bound.
  static constexpr size_t kMaxQueued = 10000;

  EventsCall(ServiceContext* ctx, grpc::ServerCompletionQueue* cq) : ctx_(ctx), cq_(cq) {
    ctx_->live_calls.fetch_add(1, std::memory_order_relaxed);
  }
  ~EventsCall() override { ctx_->live_calls.fetch_sub(1, std::memory_order_relaxed); }

  static void Post(ServiceContext* ctx, grpc::ServerCompletionQueue* cq) {
    auto call = std::make_shared<EventsCall>(ctx, cq);
    call->server_ctx_.AsyncNotifyWhenDone(&call->done_tag_);
    ctx->Run([&] {
      ctx->service.RequestWatchEvents(&call->server_ctx_, &call->request_, &call->writer_, cq, cq,
                                      call->request_tag_.Arm(call));
    });
  }

  void OnEvent(const v1::JobEvent& event) override {
    absl::MutexLock lock(&mu_);
    if (finish_requested_) return;
    if (queue_.size() >= kMaxQueued) {
      RequestFinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                       "event watcher fell more than 10000 events behind"));
      return;
    }
    queue_.push_back(event);
    if (event.kind() == v1::JobEvent::KIND_JOB_ENDED) {
      RequestFinishLocked(grpc::Status::OK);  // after the queue drains
      return;
    }
    if (!writing_) StartWriteLocked();
  }
  void OnClosed(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    RequestFinishLocked(ToGrpc(status));
  }

 private:
  void OnRequest(bool ok) {
    if (!ok) return;
    Post(ctx_, cq_);
    auto self = shared_from_this();
    if (!done_seen_) done_tag_.Arm(self);
    grpc::Status status = Authorize(*ctx_, server_ctx_);
    if (status.ok()) {
      status = CheckHeader(*ctx_, request_.has_header(), request_.header(), "WatchEventsRequest");
    }
    if (!status.ok()) {
      absl::MutexLock lock(&mu_);
      RequestFinishLocked(status);
      return;
    }
    // Outside mu_: Subscribe may call OnClosed at once, and deliveries take mu_. The
    // finish tag cannot come before this returns (it is delivered on this thread).
    uint64_t id = ctx_->events->Subscribe(self);
    const bool ended = ctx_->state->ended();
    absl::MutexLock lock(&mu_);
    subscription_ = id;
    if (ended) RequestFinishLocked(grpc::Status::OK);  // subscribed after the end
  }

  void OnDone(bool ok) {
    done_seen_ = true;
    if (server_ctx_.IsCancelled()) {
      absl::MutexLock lock(&mu_);
      RequestFinishLocked(grpc::Status::CANCELLED);
    }
  }

  void RequestFinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finish_requested_) return;
    finish_requested_ = true;
    finish_status_ = status;
    if (!queue_.empty() && !writing_) {
      StartWriteLocked();
    } else if (!writing_) {
      StartFinishLocked();
    }
  }

  void StartWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto self = shared_from_this();
    writing_ = ctx_->Run([&] { writer_.Write(queue_.front(), write_tag_.Arm(self)); });
  }

  void StartFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto self = shared_from_this();
    ctx_->Run([&] { writer_.Finish(finish_status_, finish_tag_.Arm(self)); });
  }

  void OnWrite(bool ok) {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      queue_.clear();
      if (!finish_requested_) {
        finish_requested_ = true;
        finish_status_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, "event stream broken");
      }
    } else {
      queue_.pop_front();
    }
    if (!queue_.empty()) {
      StartWriteLocked();
    } else if (finish_requested_) {
      StartFinishLocked();
    }
  }

  void OnFinish(bool ok) {
    uint64_t id = 0;
    {
      absl::MutexLock lock(&mu_);
      id = subscription_;
      subscription_ = 0;
    }
    if (id != 0) ctx_->events->Unsubscribe(id);
  }

  ServiceContext* const ctx_;
  grpc::ServerCompletionQueue* const cq_;
  grpc::ServerContext server_ctx_;
  v1::WatchEventsRequest request_;
  grpc::ServerAsyncWriter<v1::JobEvent> writer_{&server_ctx_};
  OpTag<EventsCall> request_tag_{this, &EventsCall::OnRequest};
  OpTag<EventsCall> write_tag_{this, &EventsCall::OnWrite};
  OpTag<EventsCall> finish_tag_{this, &EventsCall::OnFinish};
  OpTag<EventsCall> done_tag_{this, &EventsCall::OnDone};
  bool done_seen_ = false;  // queue thread only
  absl::Mutex mu_;
  std::deque<v1::JobEvent> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t subscription_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

void PostStreamCalls(ServiceContext* ctx, grpc::ServerCompletionQueue* cq, int per_queue) {
  for (int i = 0; i < per_queue; ++i) {
    HealthCall::Post(ctx, cq);
    EventsCall::Post(ctx, cq);
  }
}

}  // namespace colossus::launcher::service
