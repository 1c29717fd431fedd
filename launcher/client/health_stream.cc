// HealthStream (a node's bidirectional health stream) and EventWatch (job events).
#include <chrono>
#include <condition_variable>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client_internal.h"
#include "colossus/launcher/coordinator_client.h"
#include "grpcpp/grpcpp.h"

namespace colossus::launcher {

using client_internal::Sv;

// ---- HealthStream -----------------------------------------------------------------------

struct HealthStream::Impl {
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientReaderWriter<v1::NodeHealth, v1::Command>> stream;
  std::function<void(const v1::Command&)> on_command;
  std::function<void(const absl::Status&)> on_end;

  // Serialises Write, WritesDone and Finish: gRPC allows one writer at a time, and
  // Finish must not overlap a Write.
  std::mutex write_mu;
  bool writes_done = false;  // guarded by write_mu

  std::mutex end_mu;
  std::condition_variable end_cv;
  bool finished = false;     // guarded by end_mu
  absl::Status final_status;  // guarded by end_mu: set when finished
  bool cancelled_by_us = false;  // guarded by end_mu
  // The coordinator ends the stream after a RESTART or EXIT command: that end is the
  // protocol, not a lost link. Written by the reader thread only.
  bool ended_by_command = false;
};

HealthStream::HealthStream(CoordinatorClient* client, std::string node_id, int64_t generation)
    : client_(client), node_id_(std::move(node_id)), generation_(generation), impl_(new Impl) {}

HealthStream::~HealthStream() {
  if (reader_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(impl_->end_mu);
      if (!impl_->finished) impl_->cancelled_by_us = true;
    }
    impl_->context->TryCancel();
    reader_.join();
  }
  if (impl_->context) client_->Unregister(impl_->context.get());
}

absl::StatusOr<std::unique_ptr<HealthStream>> CoordinatorClient::OpenHealthStream(
    std::string_view node_id, int64_t generation, v1::NodeHealth first,
    std::function<void(const v1::Command&)> on_command,
    std::function<void(const absl::Status&)> on_end) {
  const std::string what = absl::StrCat("of node '", Sv(node_id), "' (generation ", generation, ")");
  first.mutable_header()->set_job_id(options_.job_id);
  first.mutable_header()->set_generation(generation);
  first.set_node_id(std::string(node_id));
  if (first.sent_unix_ms() == 0) first.set_sent_unix_ms(absl::ToUnixMillis(absl::Now()));

  // Opening is safe to repeat: a stream whose first message never got through does not
  // exist for the coordinator. Retried on UNAVAILABLE like an idempotent call.
  const absl::Time last_start = absl::Now() + options_.retry.max_elapsed;
  for (int attempts = 1;; ++attempts) {
    std::unique_ptr<HealthStream> hs(new HealthStream(this, std::string(node_id), generation));
    absl::StatusOr<std::unique_ptr<grpc::ClientContext>> context =
        NewContext(absl::InfiniteFuture(), /*wait_for_ready=*/false);
    if (!context.ok()) return context.status();
    hs->impl_->context = *std::move(context);
    hs->impl_->stream = stubs_->stub->Health(hs->impl_->context.get());
    if (hs->impl_->stream->Write(first)) {
      hs->impl_->on_command = std::move(on_command);
      hs->impl_->on_end = std::move(on_end);
      HealthStream* raw = hs.get();
      hs->reader_ = std::thread([raw] { raw->ReaderLoop(); });
      return hs;
    }
    // The first write failed: the stream is already over; its status says why.
    const grpc::Status st = hs->impl_->stream->Finish();
    Unregister(hs->impl_->context.get());
    hs->impl_->stream.reset();  // the stream before the context that owns its call
    hs->impl_->context.reset();
    Rpc rpc("Health", what, false);
    if (st.error_code() != grpc::StatusCode::UNAVAILABLE) {
      return Translate(rpc, st.error_code(), st.error_message());
    }
    const absl::Duration wait = client_internal::Backoff(options_.retry, attempts - 1);
    if (absl::Now() + wait > last_start) {
      return absl::UnavailableError(absl::StrCat("coordinator ", target(), " unreachable after ",
                                                 attempts, attempts == 1 ? " attempt" : " attempts",
                                                 " (Health ", what, ": ", st.error_message(), ")"));
    }
    std::unique_lock<std::mutex> lock(mu_);
    shutdown_cv_.wait_for(lock, absl::ToChronoNanoseconds(wait), [&] { return shut_down_; });
    if (shut_down_) {
      return absl::CancelledError(absl::StrCat("coordinator ", target(), ": Health ", what,
                                               ": cancelled by Shutdown"));
    }
  }
}

void HealthStream::ReaderLoop() {
  v1::Command command;
  while (impl_->stream->Read(&command)) {
    impl_->ended_by_command = command.kind() == v1::Command::KIND_RESTART ||
                              command.kind() == v1::Command::KIND_EXIT;
    if (impl_->on_command) impl_->on_command(command);
  }
  grpc::Status st;
  bool we_closed = false;
  {
    std::lock_guard<std::mutex> lock(impl_->write_mu);
    st = impl_->stream->Finish();
    we_closed = impl_->writes_done;
  }
  const std::string what =
      absl::StrCat("Health of node '", node_id_, "' (generation ", generation_, ")");
  absl::Status end;
  bool cancelled_by_us;
  {
    std::lock_guard<std::mutex> lock(impl_->end_mu);
    cancelled_by_us = impl_->cancelled_by_us;
  }
  if (st.ok() && (we_closed || impl_->ended_by_command)) {
    end = absl::OkStatus();
  } else if (cancelled_by_us) {
    end = absl::CancelledError(absl::StrCat("coordinator ", client_->target(), ": ", what,
                                            ": cancelled"));
  } else if (st.ok()) {
    // The coordinator ended the stream without being asked to: for the agent that is a
    // lost link like any other.
    end = absl::UnavailableError(absl::StrCat("coordinator ", client_->target(), ": ", what,
                                              ": the coordinator ended the stream"));
  } else if (st.error_code() == grpc::StatusCode::CANCELLED) {
    // Cancelled without our asking: Shutdown, or the server cancelled it.
    end = absl::UnavailableError(absl::StrCat("coordinator ", client_->target(), ": ", what,
                                              ": stream cancelled (", st.error_message(), ")"));
  } else {
    end = absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                       absl::StrCat("coordinator ", client_->target(), ": ", what,
                                    ": stream broken: ", st.error_message()));
  }
  {
    std::lock_guard<std::mutex> lock(impl_->end_mu);
    impl_->finished = true;
    impl_->final_status = end;
  }
  ended_.store(true);
  impl_->end_cv.notify_all();
  if (impl_->on_end) impl_->on_end(end);
}

absl::Status HealthStream::EndStatus() {
  std::lock_guard<std::mutex> lock(impl_->end_mu);
  if (impl_->final_status.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "coordinator ", client_->target(), ": Health of node '", node_id_, "': stream closed"));
  }
  return impl_->final_status;
}

absl::Status HealthStream::Send(v1::NodeHealth beat) {
  if (!beat.has_header()) {
    beat.mutable_header()->set_job_id(client_->job_id());
    beat.mutable_header()->set_generation(generation_);
  }
  if (beat.node_id().empty()) beat.set_node_id(node_id_);
  if (beat.sent_unix_ms() == 0) beat.set_sent_unix_ms(absl::ToUnixMillis(absl::Now()));
  {
    std::lock_guard<std::mutex> lock(impl_->write_mu);
    if (!ended_.load() && !impl_->writes_done && impl_->stream->Write(beat)) {
      return absl::OkStatus();
    }
  }
  // The write failed because the call is over; the reader thread learns why from
  // Finish. Give it a moment so the caller gets the real reason.
  std::unique_lock<std::mutex> lock(impl_->end_mu);
  impl_->end_cv.wait_for(lock, std::chrono::seconds(2), [&] { return impl_->finished; });
  if (!impl_->finished) {
    return absl::UnavailableError(absl::StrCat("coordinator ", client_->target(),
                                               ": Health of node '", node_id_,
                                               "': stream broken (write failed)"));
  }
  if (impl_->final_status.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "coordinator ", client_->target(), ": Health of node '", node_id_, "': stream closed"));
  }
  return impl_->final_status;
}

absl::Status HealthStream::Close() {
  {
    std::lock_guard<std::mutex> lock(impl_->write_mu);
    if (!impl_->writes_done && !ended_.load()) {
      impl_->writes_done = true;
      impl_->stream->WritesDone();
    }
  }
  {
    std::unique_lock<std::mutex> lock(impl_->end_mu);
    const bool done = impl_->end_cv.wait_for(
        lock, absl::ToChronoNanoseconds(client_->options().call_timeout),
        [&] { return impl_->finished; });
    if (!done) impl_->cancelled_by_us = true;
  }
  // A coordinator that does not end the stream after our half-close is cut off.
  if (!ended_.load()) impl_->context->TryCancel();
  if (reader_.joinable()) reader_.join();
  std::lock_guard<std::mutex> lock(impl_->end_mu);
  return impl_->final_status;
}

// ---- EventWatch -------------------------------------------------------------------------

struct EventWatch::Impl {
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader;
  std::atomic<bool> cancelled{false};
};

EventWatch::EventWatch(CoordinatorClient* client) : client_(client), impl_(new Impl) {}

EventWatch::~EventWatch() {
  if (!finished_ && impl_->reader) {
    Cancel();
    Finish().IgnoreError();
  }
  if (impl_->context) client_->Unregister(impl_->context.get());
}

bool EventWatch::Next(v1::JobEvent* event) { return !finished_ && impl_->reader->Read(event); }

void EventWatch::Cancel() {
  impl_->cancelled.store(true);
  impl_->context->TryCancel();
}

absl::Status EventWatch::Finish() {
  if (finished_) return final_status_;
  // Finish requires every message to have been read: drain what is left.
  v1::JobEvent ignored;
  while (impl_->reader->Read(&ignored)) {
  }
  const grpc::Status st = impl_->reader->Finish();
  finished_ = true;
  const std::string what = absl::StrCat("WatchEvents of job '", client_->job_id(), "'");
  if (st.ok()) {
    final_status_ = absl::OkStatus();
  } else if (impl_->cancelled.load() && st.error_code() == grpc::StatusCode::CANCELLED) {
    final_status_ = absl::CancelledError(
        absl::StrCat("coordinator ", client_->target(), ": ", what, ": cancelled"));
  } else {
    final_status_ = absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                                 absl::StrCat("coordinator ", client_->target(), ": ", what, ": ",
                                              st.error_message()));
  }
  return final_status_;
}

absl::StatusOr<std::unique_ptr<EventWatch>> CoordinatorClient::OpenEventWatch() {
  v1::WatchEventsRequest request;
  *request.mutable_header() = Header();
  std::unique_ptr<EventWatch> watch(new EventWatch(this));
  absl::StatusOr<std::unique_ptr<grpc::ClientContext>> context =
      NewContext(absl::InfiniteFuture(), /*wait_for_ready=*/false);
  if (!context.ok()) return context.status();
  watch->impl_->context = *std::move(context);
  watch->impl_->reader = stubs_->stub->WatchEvents(watch->impl_->context.get(), request);
  return watch;
}

absl::Status CoordinatorClient::WatchEvents(
    const std::function<bool(const v1::JobEvent&)>& on_event) {
  absl::StatusOr<std::unique_ptr<EventWatch>> watch = OpenEventWatch();
  if (!watch.ok()) return watch.status();
  v1::JobEvent event;
  while ((*watch)->Next(&event)) {
    if (!on_event(event)) {
      (*watch)->Cancel();
      (*watch)->Finish().IgnoreError();
      return absl::OkStatus();
    }
  }
  absl::Status s = (*watch)->Finish();
  if (s.code() == absl::StatusCode::kUnavailable) {
    return absl::UnavailableError(absl::StrCat("coordinator ", target(), " unreachable (",
                                               s.message(), ")"));
  }
  return s;
}

}  // namespace colossus::launcher
