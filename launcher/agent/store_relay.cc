// StoreRelay: the server on the node's unix socket, authentication, plain forwarding of
// the store calls, timers and the shutdown order. Coalesced waits: store_relay_wait.cc.
#include "colossus/launcher/store_relay.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "colossus/launcher/job_token.h"
#include "store_relay_impl.h"

namespace colossus::launcher {

StoreRelay::Impl::Impl(StoreRelayOptions options)
    : options_(std::move(options)),
      target_(absl::StrCat("unix:", options_.socket_path)),
      name_(absl::StrCat("store relay ", target_)) {}

StoreRelay::Impl::~Impl() { Stop(); }

absl::Status StoreRelay::Impl::Listen() {
  const std::string& path = options_.socket_path;
  if (path.empty() || path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store relay: socket path '", path, "' is ", path.empty() ? "empty" : "too long",
        " (a unix socket path holds at most ", sizeof(sockaddr_un{}.sun_path) - 1, " bytes)"));
  }
  // A socket left by an earlier agent of this node: nobody serves it any more.
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("store relay: '", path, "' exists and is not a socket"));
    }
    unlink(path.c_str());
  }
  stub_ = v1::Coordinator::NewStub(options_.upstream);
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(target_, grpc::InsecureServerCredentials(), &bound);
  // Workers' clients ping every keepalive_time (60 s) while a call is open, and a
  // StoreWait may be held for many minutes: accept pings as colossus-coordinator does
  // (a default gRPC server may answer pings more frequent than one per 5 minutes on a
  // connection that sends no data with GOAWAY "too_many_pings"). Not reproduced here with
  // 200 ms pings on the unix socket; kept for parity with the coordinator's settings.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || bound == 0) {
    server_.reset();
    return absl::UnavailableError(absl::StrCat("store relay: cannot listen on ", target_));
  }
  // Only the agent's user may connect (the directory should already say so).
  if (chmod(path.c_str(), 0600) != 0) {
    const std::string err = std::strerror(errno);
    server_->Shutdown();
    server_.reset();
    return absl::InternalError(absl::StrCat("store relay: chmod 0600 '", path, "': ", err));
  }
  timer_thread_ = std::thread([this] { TimerLoop(); });
  return absl::OkStatus();
}

grpc::Status StoreRelay::Impl::ShutDownStatus() const {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      absl::StrCat(name_, " shut down (its node agent is stopping)"));
}

grpc::Status StoreRelay::Impl::Admit(grpc::CallbackServerContext* ctx, std::string* token) {
  const auto& metadata = ctx->client_metadata();
  auto it = metadata.find(kTokenMetadata);
  if (it == metadata.end() ||
      !TokenMatches(options_.token, std::string_view(it->second.data(), it->second.size()))) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        absl::StrCat(name_, ": ", it == metadata.end() ? "missing " : "wrong ",
                                     kTokenMetadata, " (nothing was sent to the coordinator)"));
  }
  token->assign(it->second.data(), it->second.size());
  return grpc::Status::OK;
}

std::shared_ptr<grpc::ClientContext> StoreRelay::Impl::NewUpstreamLocked(const std::string& token) {
  if (stopping_) return nullptr;
  auto context = std::make_shared<grpc::ClientContext>();
  context->AddMetadata(kTokenMetadata, token);
  upstream_.emplace(context.get(), context);
  ++in_flight_;
  return context;
}

void StoreRelay::Impl::UpstreamEndedLocked(grpc::ClientContext* context) {
  auto it = upstream_.find(context);
  if (it == upstream_.end()) return;
  RetireLocked(std::move(it->second));
  upstream_.erase(it);
}

void StoreRelay::Impl::RetireLocked(std::shared_ptr<grpc::ClientContext> context) {
  if (context == nullptr) return;
  retired_.push_back(std::move(context));
  cv_.notify_all();
}

void StoreRelay::Impl::CallbackDone() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_ == 0) cv_.notify_all();
}

// One attempt upstream with the caller's request, token and deadline; the coordinator's
// answer goes back as it is (the response is written straight into the local call's).
template <class Req, class Resp, class Call>
grpc::ServerUnaryReactor* StoreRelay::Impl::Forward(grpc::CallbackServerContext* ctx,
                                                    const Req* req, Resp* resp, Call call) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  std::string token;
  if (grpc::Status s = Admit(ctx, &token); !s.ok()) {
    reactor->Finish(s);
    return reactor;
  }
  std::shared_ptr<grpc::ClientContext> up;
  {
    std::lock_guard<std::mutex> lock(mu_);
    up = NewUpstreamLocked(token);
  }
  if (up == nullptr) {
    reactor->Finish(ShutDownStatus());
    return reactor;
  }
  const auto deadline = ctx->deadline();
  up->set_deadline(deadline != std::chrono::system_clock::time_point::max()
                       ? deadline
                       : absl::ToChronoTime(absl::Now() + options_.call_timeout));
  forwarded_.fetch_add(1, std::memory_order_relaxed);
  grpc::ClientContext* raw = up.get();
  up.reset();  // upstream_ owns it until the call ends (RetireLocked)
  call(raw, req, resp, [this, reactor, raw](grpc::Status s) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      UpstreamEndedLocked(raw);
    }
    reactor->Finish(std::move(s));
    CallbackDone();  // the last touch of this relay
  });
  return reactor;
}

grpc::ServerUnaryReactor* StoreRelay::Impl::StoreSet(grpc::CallbackServerContext* ctx,
                                                     const v1::StoreSetRequest* req,
                                                     v1::StoreSetResponse* resp) {
  return Forward(ctx, req, resp, [this](auto* c, auto* q, auto* r, auto done) {
    stub_->async()->StoreSet(c, q, r, std::move(done));
  });
}

grpc::ServerUnaryReactor* StoreRelay::Impl::StoreGet(grpc::CallbackServerContext* ctx,
                                                     const v1::StoreGetRequest* req,
                                                     v1::StoreGetResponse* resp) {
  return Forward(ctx, req, resp, [this](auto* c, auto* q, auto* r, auto done) {
    stub_->async()->StoreGet(c, q, r, std::move(done));
  });
}

grpc::ServerUnaryReactor* StoreRelay::Impl::StoreAdd(grpc::CallbackServerContext* ctx,
                                                     const v1::StoreAddRequest* req,
                                                     v1::StoreAddResponse* resp) {
  return Forward(ctx, req, resp, [this](auto* c, auto* q, auto* r, auto done) {
    stub_->async()->StoreAdd(c, q, r, std::move(done));
  });
}

grpc::ServerUnaryReactor* StoreRelay::Impl::StoreCompareSet(grpc::CallbackServerContext* ctx,
                                                            const v1::StoreCompareSetRequest* req,
                                                            v1::StoreCompareSetResponse* resp) {
  return Forward(ctx, req, resp, [this](auto* c, auto* q, auto* r, auto done) {
    stub_->async()->StoreCompareSet(c, q, r, std::move(done));
  });
}

grpc::ServerUnaryReactor* StoreRelay::Impl::StoreDelete(grpc::CallbackServerContext* ctx,
                                                        const v1::StoreDeleteRequest* req,
                                                        v1::StoreDeleteResponse* resp) {
  return Forward(ctx, req, resp, [this](auto* c, auto* q, auto* r, auto done) {
    stub_->async()->StoreDelete(c, q, r, std::move(done));
  });
}

// ---- timers -----------------------------------------------------------------------------

uint64_t StoreRelay::Impl::ArmLocked(absl::Time when, std::function<void()> fn) {
  const uint64_t id = next_id_++;
  timers_.emplace(std::make_pair(when, id), std::move(fn));
  timer_when_.emplace(id, when);
  cv_.notify_all();
  return id;
}

void StoreRelay::Impl::DisarmLocked(uint64_t id) {
  auto it = timer_when_.find(id);
  if (it == timer_when_.end()) return;
  timers_.erase({it->second, id});
  timer_when_.erase(it);
}

void StoreRelay::Impl::TimerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (!retired_.empty()) {
      std::vector<std::shared_ptr<grpc::ClientContext>> gone = std::move(retired_);
      retired_.clear();
      lock.unlock();
      gone.clear();
      lock.lock();
      continue;
    }
    if (timers_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const absl::Time next = timers_.begin()->first.first;
    const absl::Time now = absl::Now();
    if (next > now) {
      cv_.wait_for(lock, absl::ToChronoNanoseconds(next - now));
      continue;
    }
    std::vector<std::function<void()>> due;
    while (!timers_.empty() && timers_.begin()->first.first <= now) {
      timer_when_.erase(timers_.begin()->first.second);
      due.push_back(std::move(timers_.begin()->second));
      timers_.erase(timers_.begin());
    }
    lock.unlock();
    for (auto& fn : due) fn();
    lock.lock();
  }
}

// ---- shutdown ---------------------------------------------------------------------------

void StoreRelay::Impl::Stop() {
  std::call_once(stop_once_, [this] { StopOnce(); });
}

void StoreRelay::Impl::StopOnce() {
  Pending pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (server_ == nullptr) return;
    // Every local waiter gets its answer now; the upstream calls are cancelled and their
    // callbacks find nobody left to answer.
    std::vector<Waiter*> all;
    for (auto& [id, w] : waiters_) all.push_back(w);
    for (Waiter* w : all) AnswerLocked(w, ShutDownStatus(), nullptr, &pending);
    groups_.clear();
    timers_.clear();
    timer_when_.clear();
    for (auto& [raw, c] : upstream_) pending.cancels.push_back(c);
    cv_.notify_all();
  }
  Deliver(std::move(pending));
  if (timer_thread_.joinable()) timer_thread_.join();
  {
    // Forwarded calls finish their local call from the upstream callback: wait for them
    // (cancelled above, so promptly) before the server waits for the local calls.
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return in_flight_ == 0; });
    // Every call has ended: destroy the contexts here, before the channel can go.
    std::vector<std::shared_ptr<grpc::ClientContext>> gone = std::move(retired_);
    retired_.clear();
    lock.unlock();
    gone.clear();
  }
  server_->Shutdown();
  unlink(options_.socket_path.c_str());
}

StoreRelay::Stats StoreRelay::Impl::stats() const {
  StoreRelay::Stats s;
  s.local_waits = local_waits_.load();
  s.upstream_waits = upstream_waits_.load();
  s.probes = probes_.load();
  s.forwarded = forwarded_.load();
  s.refused = refused_.load();
  return s;
}

// ---- StoreRelay -------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<StoreRelay>> StoreRelay::Start(StoreRelayOptions options) {
  if (options.upstream == nullptr) {
    return absl::InvalidArgumentError("store relay: no upstream channel to the coordinator");
  }
  if (options.token.empty()) return absl::InvalidArgumentError("store relay: no job token");
  auto impl = std::make_unique<Impl>(std::move(options));
  if (absl::Status s = impl->Listen(); !s.ok()) return s;
  return std::unique_ptr<StoreRelay>(new StoreRelay(std::move(impl)));
}

StoreRelay::StoreRelay(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StoreRelay::~StoreRelay() { impl_->Stop(); }
const std::string& StoreRelay::target() const { return impl_->target(); }
StoreRelay::Stats StoreRelay::stats() const { return impl_->stats(); }
void StoreRelay::Stop() { impl_->Stop(); }

}  // namespace colossus::launcher
