// CoordinatorClient: contexts, the retry loop, error translation and the unary RPCs.
#include "colossus/launcher/coordinator_client.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "call_canceller.h"
#include "client_internal.h"
#include "colossus/launcher/job_token.h"
#include "grpcpp/client_context.h"
#include "grpcpp/grpcpp.h"

namespace colossus::launcher {

using client_internal::QuoteKey;
using client_internal::QuoteKeys;
using client_internal::Sv;

namespace client_internal {

std::string QuoteKey(std::string_view key) {
  constexpr size_t kMaxShown = 200;
  const std::string_view shown = key.substr(0, kMaxShown);
  std::string out = absl::StrCat("'", absl::CHexEscape(Sv(shown)), "'");
  if (key.size() > kMaxShown) absl::StrAppend(&out, "... (", key.size(), " bytes)");
  return out;
}

std::string QuoteKeys(const std::vector<std::string>& keys) {
  constexpr size_t kMaxNamed = 20;
  std::vector<std::string> quoted;
  for (size_t i = 0; i < keys.size() && i < kMaxNamed; ++i) quoted.push_back(QuoteKey(keys[i]));
  std::string out = absl::StrJoin(quoted, ", ");
  if (keys.size() > kMaxNamed) absl::StrAppend(&out, " and ", keys.size() - kMaxNamed, " more");
  return out;
}

absl::Duration Backoff(const RetryPolicy& policy, int attempt) {
  // One generator per thread: agents' threads retry independently, and no lock is
  // needed. Seeded from the OS so that separate processes do not share a sequence.
  thread_local std::mt19937_64 rng(std::random_device{}());
  const double grown = std::pow(std::max(policy.multiplier, 1.0), std::min(attempt, 60));
  absl::Duration wait = std::min(policy.initial_backoff * grown, policy.max_backoff);
  const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
  std::uniform_real_distribution<double> factor(1.0 - jitter, 1.0 + jitter);
  return wait * factor(rng);
}

}  // namespace client_internal

namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  // gRPC's and abseil's status codes have the same numbers by design.
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

}  // namespace

// ---- construction -----------------------------------------------------------------------

CoordinatorClient::CoordinatorClient(CoordinatorClientOptions options,
                                     std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      peer_(options_.peer_name.empty() ? absl::StrCat("coordinator ", options_.channel.target)
                                       : options_.peer_name),
      channel_(std::move(channel)),
      stubs_(new Stubs{v1::Coordinator::NewStub(channel_)}),
      generation_(options_.initial_generation) {}

absl::StatusOr<std::unique_ptr<CoordinatorClient>> CoordinatorClient::Create(
    CoordinatorClientOptions options) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeCoordinatorChannel(options.channel);
  if (!channel.ok()) return channel.status();
  return Create(std::move(options), *std::move(channel));
}

std::unique_ptr<CoordinatorClient> CoordinatorClient::Create(CoordinatorClientOptions options,
                                                             std::shared_ptr<grpc::Channel> channel) {
  return std::unique_ptr<CoordinatorClient>(
      new CoordinatorClient(std::move(options), std::move(channel)));
}

CoordinatorClient::~CoordinatorClient() { Shutdown(); }

void CoordinatorClient::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shut_down_ = true;
  for (grpc::ClientContext* context : active_) context->TryCancel();
  shutdown_cv_.notify_all();
}

v1::RequestHeader CoordinatorClient::Header() const {
  v1::RequestHeader header;
  header.set_job_id(options_.job_id);
  header.set_generation(generation_.load());
  return header;
}

absl::StatusOr<std::unique_ptr<grpc::ClientContext>> CoordinatorClient::NewContext(
    absl::Time deadline, bool wait_for_ready) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata(kTokenMetadata, options_.token);
  if (deadline != absl::InfiniteFuture()) context->set_deadline(absl::ToChronoTime(deadline));
  context->set_wait_for_ready(wait_for_ready);
  std::lock_guard<std::mutex> lock(mu_);
  if (shut_down_) {
    return absl::CancelledError(absl::StrCat(peer(), ": client shut down"));
  }
  active_.insert(context.get());
  return context;
}

void CoordinatorClient::Unregister(grpc::ClientContext* context) {
  std::lock_guard<std::mutex> lock(mu_);
  active_.erase(context);
}

// ---- calls, retries, messages -----------------------------------------------------------

absl::Status CoordinatorClient::Translate(const Rpc& rpc, int grpc_code,
                                          const std::string& message) const {
  const std::string call = rpc.what.empty() ? rpc.name : absl::StrCat(rpc.name, " ", rpc.what);
  return absl::Status(static_cast<absl::StatusCode>(grpc_code),
                      absl::StrCat(peer(), ": ", call, ": ", message));
}

absl::Status CoordinatorClient::Invoke(
    const Rpc& rpc, const std::function<absl::Status(grpc::ClientContext*)>& attempt) {
  const std::string call = rpc.what.empty() ? rpc.name : absl::StrCat(rpc.name, " ", rpc.what);
  const absl::Time first = absl::Now();
  // A held call retries within its own hold (a Wait for 30 s keeps trying for 30 s); any
  // other retried call for retry.max_elapsed.
  const absl::Time last_start =
      !rpc.retry ? first
      : rpc.hold_until != absl::InfinitePast()
          ? std::min(rpc.hold_until, first + options_.retry.held_max_elapsed)
          : first + options_.retry.max_elapsed;
  for (int attempts = 1;; ++attempts) {
    const absl::Time deadline = std::max(absl::Now(), rpc.hold_until) + options_.call_timeout;
    // Held calls carry no gRPC deadline (it would cost the coordinator a timer per held
    // call; call_canceller.h): the canceller ends them at the same instant instead.
    const bool held = rpc.hold_until != absl::InfinitePast();
    absl::StatusOr<std::unique_ptr<grpc::ClientContext>> context =
        NewContext(held ? absl::InfiniteFuture() : deadline, rpc.wait_for_ready);
    if (!context.ok()) return context.status();
    const uint64_t timer = held ? client_internal::CallCanceller::Get().Arm(deadline, context->get()) : 0;
    absl::Status s = attempt(context->get());
    const bool timed_out = held && client_internal::CallCanceller::Get().Disarm(timer);
    Unregister(context->get());
    if (s.ok()) return s;
    if (timed_out && s.code() == absl::StatusCode::kCancelled) {
      s = absl::DeadlineExceededError("cancelled by the client at its deadline");
    }

    if (s.code() == absl::StatusCode::kCancelled) {
      std::lock_guard<std::mutex> lock(mu_);
      if (shut_down_) {
        return absl::CancelledError(
            absl::StrCat(peer(), ": ", call, ": cancelled by Shutdown"));
      }
    }
    if (s.code() == absl::StatusCode::kDeadlineExceeded && absl::Now() >= deadline) {
      // Our own deadline, not the coordinator's answer. A wait_for_ready call that never
      // got a connection is an unreachable coordinator, not a slow one.
      if (rpc.wait_for_ready && channel_->GetState(false) != GRPC_CHANNEL_READY) {
        return absl::UnavailableError(absl::StrCat(peer(), " unreachable after ",
                                                   attempts, " attempts (", call,
                                                   ": no connection within ",
                                                   absl::FormatDuration(deadline - first), ")"));
      }
      return absl::DeadlineExceededError(absl::StrCat(
          peer(), ": ", call, ": no answer within ",
          absl::FormatDuration(deadline - first), rpc.timeout_detail, " (", s.message(), ")"));
    }
    if (s.code() != absl::StatusCode::kUnavailable) {
      return Translate(rpc, static_cast<int>(s.code()), std::string(s.message()));
    }
    const absl::Duration wait = client_internal::Backoff(options_.retry, attempts - 1);
    if (!rpc.retry || absl::Now() + wait > last_start) {
      return absl::UnavailableError(absl::StrCat(peer(), " unreachable after ",
                                                 attempts, attempts == 1 ? " attempt" : " attempts",
                                                 " (", call, ": ", s.message(), ")"));
    }
    std::unique_lock<std::mutex> lock(mu_);
    shutdown_cv_.wait_for(lock, absl::ToChronoNanoseconds(wait), [&] { return shut_down_; });
    if (shut_down_) {
      return absl::CancelledError(
          absl::StrCat(peer(), ": ", call, ": cancelled by Shutdown"));
    }
  }
}

// ---- rendezvous -------------------------------------------------------------------------

absl::StatusOr<v1::JoinResponse> CoordinatorClient::Join(v1::JoinRequest request) {
  *request.mutable_header() = Header();
  const absl::Duration hold = request.timeout_ms() > 0 ? absl::Milliseconds(request.timeout_ms())
                                                       : options_.default_join_timeout;
  // The coordinator takes a Join with the incarnation of a held one as its retry (it
  // replaces the earlier call), so with an incarnation a Join is safe to repeat.
  Rpc rpc("Join", absl::StrCat("of node '", request.node_id(), "'"), !request.incarnation().empty());
  rpc.wait_for_ready = true;
  rpc.hold_until = absl::Now() + hold;
  v1::JoinResponse response;
  absl::Status s = Invoke(rpc, [&](grpc::ClientContext* context) {
    return FromGrpc(stubs_->stub->Join(context, request, &response));
  });
  if (!s.ok()) return s;
  generation_.store(response.generation());
  return response;
}

absl::Status CoordinatorClient::Leave(std::string_view node_id, std::string_view reason) {
  v1::LeaveRequest request;
  *request.mutable_header() = Header();
  request.set_node_id(std::string(node_id));
  request.set_reason(std::string(reason));
  Rpc rpc("Leave", absl::StrCat("of node '", Sv(node_id), "'"), true);
  v1::LeaveResponse response;
  return Invoke(rpc, [&](grpc::ClientContext* context) {
    return FromGrpc(stubs_->stub->Leave(context, request, &response));
  });
}

// ---- store ------------------------------------------------------------------------------

absl::Status CoordinatorClient::StoreSet(std::string_view key, std::string_view value,
                                         v1::KeyScope scope) {
  v1::StoreSetRequest request;
  *request.mutable_header() = Header();
  request.set_scope(scope);
  request.set_key(std::string(key));
  request.set_value(std::string(value));
  // A repeated Set writes the same value again: safe to retry.
  Rpc rpc("StoreSet", QuoteKey(key), true);
  v1::StoreSetResponse response;
  return Invoke(rpc, [&](grpc::ClientContext* context) {
    return FromGrpc(stubs_->stub->StoreSet(context, request, &response));
  });
}

absl::StatusOr<std::string> CoordinatorClient::StoreGet(std::string_view key, v1::KeyScope scope) {
  v1::StoreGetRequest request;
  *request.mutable_header() = Header();
  request.set_scope(scope);
  request.set_key(std::string(key));
  Rpc rpc("StoreGet", QuoteKey(key), true);
  v1::StoreGetResponse response;
  absl::Status s = Invoke(rpc, [&](grpc::ClientContext* context) {
    return FromGrpc(stubs_->stub->StoreGet(context, request, &response));
  });
  if (!s.ok()) return s;
  return std::move(*response.mutable_value());
}

absl::StatusOr<std::vector<std::string>> CoordinatorClient::StoreWait(
    const std::vector<std::string>& keys, absl::Duration timeout, v1::KeyScope scope) {
  v1::StoreWaitRequest request;
  *request.mutable_header() = Header();
  request.set_scope(scope);
  for (const std::string& key : keys) request.add_keys(key);
  const absl::Time wait_end = absl::Now() + std::max(timeout, absl::ZeroDuration());
  // The coordinator's DEADLINE_EXCEEDED names the keys still missing; naming all of them
  // here as well would hide which ones those are.
  Rpc rpc("StoreWait", absl::StrCat("(", keys.size(), keys.size() == 1 ? " key)" : " keys)"), true);
  rpc.hold_until = wait_end;
  rpc.timeout_detail = absl::StrCat("; waiting for ", QuoteKeys(keys));
  v1::StoreWaitResponse response;
  absl::Status s = Invoke(rpc, [&](grpc::ClientContext* context) {
    // A retried wait only waits for what is left of the caller's timeout.
    request.set_timeout_ms(std::max<int64_t>(0, absl::ToInt64Milliseconds(wait_end - absl::Now())));
    return FromGrpc(stubs_->stub->StoreWait(context, request, &response));
  });
  if (!s.ok()) return s;
  if (static_cast<size_t>(response.values_size()) != keys.size()) {
    return absl::InternalError(absl::StrCat(peer(), ": StoreWait ", rpc.what,
                                            ": ", response.values_size(), " values for ",
                                            keys.size(), " keys"));
  }
  return std::vector<std::string>(response.values().begin(), response.values().end());
}

absl::StatusOr<int64_t> CoordinatorClient::StoreAdd(std::string_view key, int64_t delta,
                                                    v1::KeyScope scope) {
  v1::StoreAddRequest request;
  *request.mutable_header() = Header();
  request.set_scope(scope);
  request.set_key(std::string(key));
  request.set_delta(delta);
  Rpc rpc("StoreAdd", QuoteKey(key), false);
  v1::StoreAddResponse response;
  absl::Status s = Invoke(rpc, [&](grpc::ClientContext* context) {
    return FromGrpc(stubs_->stub->StoreAdd(context, request, &response));
  });
  if (!s.ok()) return s;
  return response.value();
}

absl::StatusOr<v1::StoreCompareSetResponse> CoordinatorClient::StoreCompareSet(
    std::string_view key, std::optional<std::string_view> expected, std::string_view desired,
    v1::KeyScope scope) {
  v1::StoreCompareSetRequest request;
  *request.mutable_header() = Header();
  request.set_scope(scope);
  request.set_key(std::string(key));
  request.set_expect_absent(!expected.has_value());
  if (expected) request.set_expected(std::string(*expected));
  request.set_desired(std::string(desired));
  Rpc rpc("StoreCompareSet", QuoteKey(key), false);
  v1::StoreCompareSetResponse response;
  absl::Status s = Invoke(rpc, [&](grpc::ClientContext* context) {
    return FromGrpc(stubs_->stub->StoreCompareSet(context, request, &response));
  });
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<bool> CoordinatorClient::StoreDelete(std::string_view key, v1::KeyScope scope) {
  v1::StoreDeleteRequest request;
  *request.mutable_header() = Header();
  request.set_scope(scope);
  request.set_key(std::string(key));
  // Not retried: a repeat after a lost reply would report existed = false.
  Rpc rpc("StoreDelete", QuoteKey(key), false);
  v1::StoreDeleteResponse response;
  absl::Status s = Invoke(rpc, [&](grpc::ClientContext* context) {
    return FromGrpc(stubs_->stub->StoreDelete(context, request, &response));
  });
  if (!s.ok()) return s;
  return response.existed();
}

// ---- checkpoints and job control --------------------------------------------------------

absl::StatusOr<v1::ShardAck> CoordinatorClient::ReportShard(v1::ShardReport report) {
  *report.mutable_header() = Header();
  // The coordinator takes a repeated report of the same shard as a no-op.
  Rpc rpc("ReportShard", absl::StrCat("step ", report.step(), " rank ", report.rank()), true);
  v1::ShardAck ack;
  absl::Status s = Invoke(rpc, [&](grpc::ClientContext* context) {
    return FromGrpc(stubs_->stub->ReportShard(context, report, &ack));
  });
  if (!s.ok()) return s;
  return ack;
}

absl::StatusOr<v1::CheckpointRef> CoordinatorClient::GetLatestCheckpoint() {
  v1::GetLatestCheckpointRequest request;
  *request.mutable_header() = Header();
  Rpc rpc("GetLatestCheckpoint", "", true);
  v1::CheckpointRef ref;
  absl::Status s = Invoke(rpc, [&](grpc::ClientContext* context) {
    return FromGrpc(stubs_->stub->GetLatestCheckpoint(context, request, &ref));
  });
  if (!s.ok()) return s;
  return ref;
}

absl::StatusOr<v1::CheckpointRef> CoordinatorClient::InvalidateCheckpoints(
    v1::InvalidateCheckpointsRequest request) {
  *request.mutable_header() = Header();
  // Idempotent: a repeat finds nothing newer than the resumed step to invalidate.
  Rpc rpc("InvalidateCheckpoints", absl::StrCat("after step ", request.resumed().step()), true);
  v1::CheckpointRef ref;
  absl::Status s = Invoke(rpc, [&](grpc::ClientContext* context) {
    return FromGrpc(stubs_->stub->InvalidateCheckpoints(context, request, &ref));
  });
  if (!s.ok()) return s;
  return ref;
}

absl::StatusOr<v1::JobStatus> CoordinatorClient::GetJobStatus() {
  v1::JobStatusRequest request;
  *request.mutable_header() = Header();
  Rpc rpc("GetJobStatus", absl::StrCat("of job '", options_.job_id, "'"), true);
  v1::JobStatus status;
  absl::Status s = Invoke(rpc, [&](grpc::ClientContext* context) {
    return FromGrpc(stubs_->stub->GetJobStatus(context, request, &status));
  });
  if (!s.ok()) return s;
  return status;
}

absl::StatusOr<v1::StopJobResponse> CoordinatorClient::StopJob(std::string_view reason) {
  v1::StopJobRequest request;
  *request.mutable_header() = Header();
  request.set_reason(std::string(reason));
  Rpc rpc("StopJob", absl::StrCat("of job '", options_.job_id, "'"), false);
  v1::StopJobResponse response;
  absl::Status s = Invoke(rpc, [&](grpc::ClientContext* context) {
    return FromGrpc(stubs_->stub->StopJob(context, request, &response));
  });
  if (!s.ok()) return s;
  return response;
}

}  // namespace colossus::launcher
