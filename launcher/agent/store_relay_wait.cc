// StoreRelay: coalesced StoreWaits (the contract is in store_relay.h).
//
// A Group is one upstream StoreWait for (job id, generation, scope, keys in order), held
// for the timeout of the waiter that opened it. Waiters join it while it is open; its
// answer goes to every waiter still in it. A waiter's timer fires either at its own
// deadline when that comes before the group's hold (it then leaves the group and asks
// the coordinator once more with a 1 ms wait: a probe), or, as a safety net, call_timeout
// after its deadline when the group owes an answer by then and has not given one.
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "store_relay_impl.h"

namespace colossus::launcher {
namespace {

// Lengths before bytes, so that no two different requests share a key.
std::string GroupKey(const v1::StoreWaitRequest& r) {
  std::string key = absl::StrCat(r.has_header() ? "h" : "-", r.header().job_id().size(), ":",
                                 r.header().job_id(), "/", r.header().generation(), "/",
                                 static_cast<int>(r.scope()));
  for (const std::string& k : r.keys()) absl::StrAppend(&key, "/", k.size(), ":", k);
  return key;
}

// What is left of a hold, in whole milliseconds rounded up, at least 1 (0 would mean
// the coordinator's default hold).
int64_t RemainingMs(absl::Time until, absl::Time now) {
  const absl::Duration left = until - now;
  if (left <= absl::ZeroDuration()) return 1;
  return std::max<int64_t>(1, absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
}

absl::Duration Backoff(absl::Duration initial, absl::Duration max, int attempt) {
  // Jittered, so that 12,500 relays do not retry a restarted coordinator in lockstep.
  thread_local std::mt19937_64 rng(std::random_device{}());
  absl::Duration wait = initial;
  for (int i = 0; i < attempt && wait < max; ++i) wait *= 2;
  wait = std::min(wait, max);
  std::uniform_real_distribution<double> factor(0.7, 1.3);
  return wait * factor(rng);
}

}  // namespace

grpc::ServerUnaryReactor* StoreRelay::Impl::StoreWait(grpc::CallbackServerContext* ctx,
                                                      const v1::StoreWaitRequest* req,
                                                      v1::StoreWaitResponse* resp) {
  auto* w = new Waiter(this, req, resp);  // deletes itself in OnDone
  if (grpc::Status s = Admit(ctx, &w->token); !s.ok()) {
    w->Finish(s);
    return w;
  }
  const absl::Time now = absl::Now();
  // timeout_ms 0 asks for the coordinator's default hold, which the relay does not know:
  // such a wait goes upstream alone, as it came.
  w->coalesce = req->timeout_ms() > 0;
  if (w->coalesce) w->deadline = now + absl::Milliseconds(req->timeout_ms());
  Pending pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      pending.answers.push_back(Answer{w, ShutDownStatus(), {}});
    } else {
      local_waits_.fetch_add(1, std::memory_order_relaxed);
      w->id = next_id_++;
      waiters_.emplace(w->id, w);
      JoinGroupLocked(w, &pending);
    }
  }
  Deliver(std::move(pending));
  return w;
}

void StoreRelay::Impl::JoinGroupLocked(Waiter* w, Pending* pending) {
  const std::string key = w->coalesce ? GroupKey(*w->request) : absl::StrCat("#", w->id);
  std::shared_ptr<Group>& slot = groups_[key];
  if (slot == nullptr) {
    slot = std::make_shared<Group>();
    slot->key = key;
    slot->token = w->token;
    slot->request = *w->request;
    slot->hold_until = w->deadline;
    slot->coalesced = w->coalesce;
    pending->starts.push_back(slot);
  }
  w->group = slot;
  slot->waiters.insert(w->id);
  absl::Time when = absl::InfiniteFuture();
  if (w->deadline < slot->hold_until) {
    when = w->deadline;  // answered by a probe at its own deadline
  } else if (w->deadline != absl::InfiniteFuture()) {
    when = w->deadline + options_.call_timeout;  // safety net: the group owes an answer
  }
  if (when != absl::InfiniteFuture()) {
    w->timer = ArmLocked(when, [this, id = w->id] { OnWaiterTimer(id); });
  }
}

void StoreRelay::Impl::StartAttempt(const std::shared_ptr<Group>& g) {
  grpc::ClientContext* context = nullptr;  // owned by upstream_ until the call ends
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (g->abandoned || g->waiters.empty()) return;
    g->context = NewUpstreamLocked(g->token);
    if (g->context == nullptr) return;  // stopping: Stop answers the waiters
    context = g->context.get();
    // A retried wait holds only for what is left of the first one's hold.
    if (g->coalesced) g->request.set_timeout_ms(RemainingMs(g->hold_until, absl::Now()));
    ++g->attempts;
    upstream_waits_.fetch_add(1, std::memory_order_relaxed);
  }
  // No gRPC deadline (a timer per held call at the coordinator): the waiters' timers and
  // LeaveGroupLocked end the call instead.
  stub_->async()->StoreWait(context, &g->request, &g->response,
                            [this, g](grpc::Status s) { OnGroupAnswered(g, s); });
}

void StoreRelay::Impl::OnGroupAnswered(const std::shared_ptr<Group>& g, const grpc::Status& status) {
  Pending pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    UpstreamEndedLocked(g->context.get());
    RetireLocked(std::move(g->context));
    g->context.reset();
    if (options_.on_upstream_wait_answered) {
      options_.on_upstream_wait_answered(static_cast<int>(g->waiters.size()));
    }
    const absl::Time now = absl::Now();
    bool retry = false;
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE && !stopping_ && !g->abandoned &&
        !g->waiters.empty()) {
      // The coordinator is away (restarting, a network blip): keep the waiters and try
      // again within the hold, as CoordinatorClient does for a worker talking directly.
      const absl::Duration wait = Backoff(options_.retry_initial_backoff,
                                          options_.retry_max_backoff, g->attempts - 1);
      if (now + wait < g->hold_until) {
        ArmLocked(now + wait, [this, g] { StartAttempt(g); });
        retry = true;
      }
    }
    if (!retry) {
      if (auto it = groups_.find(g->key); it != groups_.end() && it->second == g) groups_.erase(it);
      const std::set<uint64_t> ids = std::move(g->waiters);
      g->waiters.clear();
      for (uint64_t id : ids) {
        auto it = waiters_.find(id);
        if (it == waiters_.end()) continue;
        Waiter* w = it->second;
        w->group.reset();
        if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && g->coalesced &&
            w->deadline > g->hold_until && w->deadline > now) {
          // It outlives this hold: the next upstream wait is its (and its peers') own.
          DisarmLocked(w->timer);
          w->timer = 0;
          JoinGroupLocked(w, &pending);
        } else {
          AnswerLocked(w, status, status.ok() ? &g->response : nullptr, &pending);
        }
      }
    }
  }
  Deliver(std::move(pending));
  CallbackDone();  // the last touch of this relay
}

void StoreRelay::Impl::OnWaiterTimer(uint64_t waiter_id) {
  Pending pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = waiters_.find(waiter_id);
    if (it == waiters_.end()) return;
    Waiter* w = it->second;
    w->timer = 0;
    if (w->group != nullptr && w->deadline < w->group->hold_until) {
      // Its own deadline, before the shared wait's: ask once more, briefly, so that the
      // answer names exactly the keys still missing (or has the values after all).
      LeaveGroupLocked(w, &pending);
      auto p = std::make_shared<Probe>();
      p->waiter_id = w->id;
      p->request = *w->request;
      p->request.set_timeout_ms(1);
      p->context = NewUpstreamLocked(w->token);
      if (p->context == nullptr) {
        AnswerLocked(w, ShutDownStatus(), nullptr, &pending);
      } else {
        probes_.fetch_add(1, std::memory_order_relaxed);
        upstream_waits_.fetch_add(1, std::memory_order_relaxed);
        pending.probes.push_back(std::move(p));
      }
    } else {
      AnswerLocked(w,
                   grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                absl::StrCat(name_, ": the coordinator did not answer StoreWait (",
                                             w->request->keys_size(), " keys) within ",
                                             absl::FormatDuration(options_.call_timeout),
                                             " after its timeout")),
                   nullptr, &pending);
    }
  }
  Deliver(std::move(pending));
}

void StoreRelay::Impl::StartProbe(const std::shared_ptr<Probe>& p) {
  grpc::ClientContext* context = p->context.get();  // upstream_ owns it too
  context->set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
  stub_->async()->StoreWait(context, &p->request, &p->response,
                            [this, p](grpc::Status s) { OnProbeAnswered(p, s); });
}

void StoreRelay::Impl::OnProbeAnswered(const std::shared_ptr<Probe>& p, const grpc::Status& status) {
  Pending pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    UpstreamEndedLocked(p->context.get());
    RetireLocked(std::move(p->context));
    p->context.reset();
    if (auto it = waiters_.find(p->waiter_id); it != waiters_.end()) {
      AnswerLocked(it->second, status, status.ok() ? &p->response : nullptr, &pending);
    }
  }
  Deliver(std::move(pending));
  CallbackDone();
}

void StoreRelay::Impl::WaiterCancelled(Waiter* w) {
  Pending pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = waiters_.find(w->id);
    if (it == waiters_.end() || it->second != w) return;  // answered already
    AnswerLocked(w, grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the caller"), nullptr,
                 &pending);
  }
  Deliver(std::move(pending));
}

void StoreRelay::Impl::LeaveGroupLocked(Waiter* w, Pending* pending) {
  std::shared_ptr<Group> g = std::move(w->group);
  w->group.reset();
  if (g == nullptr) return;
  g->waiters.erase(w->id);
  if (!g->waiters.empty()) return;
  // Nobody is left to answer: end the upstream call instead of letting the coordinator
  // hold it to the end of its timeout.
  g->abandoned = true;
  if (auto it = groups_.find(g->key); it != groups_.end() && it->second == g) groups_.erase(it);
  if (g->context != nullptr && upstream_.count(g->context.get()) > 0) {
    pending->cancels.push_back(g->context);
  }
}

void StoreRelay::Impl::AnswerLocked(Waiter* w, grpc::Status status,
                                    const v1::StoreWaitResponse* values, Pending* pending) {
  waiters_.erase(w->id);
  if (w->timer != 0) DisarmLocked(w->timer);
  w->timer = 0;
  LeaveGroupLocked(w, pending);
  Answer a{w, std::move(status), {}};
  if (values != nullptr) a.values.assign(values->values().begin(), values->values().end());
  pending->answers.push_back(std::move(a));
}

void StoreRelay::Impl::Deliver(Pending pending) {
  // Answers first: they are what the workers wait for.
  for (Answer& a : pending.answers) {
    if (a.status.ok()) {
      a.waiter->response->clear_values();
      for (std::string& v : a.values) a.waiter->response->add_values(std::move(v));
    }
    a.waiter->Finish(std::move(a.status));  // the waiter may be gone when this returns
  }
  for (auto& c : pending.cancels) c->TryCancel();
  if (!pending.cancels.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : pending.cancels) RetireLocked(std::move(c));
  }
  for (auto& g : pending.starts) StartAttempt(g);
  for (auto& p : pending.probes) StartProbe(p);
}

}  // namespace colossus::launcher
