#include "colossus/launcher/job_store.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colossus::launcher {
namespace {

// Keys are bytes: quote them escaped and cut long ones so messages stay one short line.
std::string Quote(const std::string& key) {
  constexpr size_t kShown = 64;
  if (key.size() <= kShown) return absl::StrCat("\"", absl::CHexEscape(key), "\"");
  return absl::StrCat("\"", absl::CHexEscape(key.substr(0, kShown)), "\"... (", key.size(),
                      " bytes)");
}

const char* ScopeName(v1::KeyScope scope) {
  return scope == v1::KEY_SCOPE_JOB ? "JOB" : "GENERATION";
}

std::string ScopedKey(v1::KeyScope scope, const std::string& key) {
  std::string out;
  out.reserve(key.size() + 1);
  out.push_back(scope == v1::KEY_SCOPE_JOB ? 'j' : 'g');
  out.append(key);
  return out;
}

}  // namespace

const char* StoreOpName(StoreOp op) {
  switch (op) {
    case StoreOp::kSet: return "set";
    case StoreOp::kGet: return "get";
    case StoreOp::kWait: return "wait";
    case StoreOp::kAdd: return "add";
    case StoreOp::kCompareSet: return "compare_set";
    case StoreOp::kDelete: return "delete";
    case StoreOp::kCount: break;
  }
  return "unknown";
}

struct JobStore::Waiter {
  uint64_t id = 0;
  int64_t generation = 0;
  v1::KeyScope scope = v1::KEY_SCOPE_GENERATION;
  std::vector<std::string> keys;
  absl::Duration timeout;
  WaitDone done;
  std::multimap<absl::Time, uint64_t>::iterator deadline_it;
};

JobStore::JobStore(StoreLimits limits, int64_t generation)
    : limits_(limits), generation_(generation) {}

JobStore::~JobStore() = default;

absl::Status JobStore::CheckLocked(int64_t generation, v1::KeyScope scope,
                                   const std::string& key, const char* rpc) const {
  if (!closed_.ok()) return closed_;
  if (!v1::KeyScope_IsValid(scope)) {
    return absl::InvalidArgumentError(
        absl::StrCat(rpc, ".scope ", static_cast<int>(scope), " is not a KeyScope"));
  }
  if (generation == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        rpc, ".header.generation is 0: store calls act in a generation (the one Join "
             "returned)"));
  }
  if (generation < generation_) {
    return absl::FailedPreconditionError(
        absl::StrCat(rpc, " from generation ", generation, " refused: that generation has "
                     "ended and the job is in generation ", generation_, " (fenced)"));
  }
  if (generation > generation_) {
    return absl::FailedPreconditionError(absl::StrCat(
        rpc, " names generation ", generation, ", but the job is in generation ", generation_));
  }
  if (key.empty()) return absl::InvalidArgumentError(absl::StrCat(rpc, ".key is empty"));
  if (key.size() > limits_.max_key_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(rpc, ".key ", Quote(key), " of ", key.size(),
                                                     " bytes exceeds the ",
                                                     limits_.max_key_bytes, "-byte limit"));
  }
  return absl::OkStatus();
}

JobStore::Map& JobStore::MapFor(v1::KeyScope scope) {
  return scope == v1::KEY_SCOPE_JOB ? job_kv_ : generation_kv_;
}

absl::Status JobStore::PutLocked(v1::KeyScope scope, const std::string& key, std::string value,
                                 Deferred* deferred) {
  if (value.size() > limits_.max_value_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("value of ", value.size(), " bytes for key ",
                                                     Quote(key), " exceeds the ",
                                                     limits_.max_value_bytes, "-byte limit"));
  }
  Map& map = MapFor(scope);
  auto it = map.find(key);
  int64_t old_bytes = it == map.end() ? 0 : static_cast<int64_t>(key.size() + it->second.size());
  int64_t new_bytes = static_cast<int64_t>(key.size() + value.size());
  int64_t total = total_bytes_ - old_bytes + new_bytes;
  if (total > limits_.max_total_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("store full: key ", Quote(key), " (", new_bytes, " bytes) would bring the "
                     "store to ", total, " bytes, over its limit of ", limits_.max_total_bytes));
  }
  total_bytes_ = total;
  if (it == map.end()) {
    map.emplace(key, std::move(value));
  } else {
    it->second = std::move(value);
  }
  WakeLocked(scope, key, deferred);
  return absl::OkStatus();
}

void JobStore::WakeLocked(v1::KeyScope scope, const std::string& key, Deferred* deferred) {
  auto kw = key_waiters_.find(ScopedKey(scope, key));
  if (kw == key_waiters_.end()) return;
  std::vector<uint64_t> ids = std::move(kw->second.ids);
  key_waiters_.erase(kw);

  const Map& map = MapFor(scope);
  std::vector<uint64_t> still_waiting;
  for (uint64_t id : ids) {
    auto w = waiters_.find(id);
    if (w == waiters_.end()) continue;  // gone (lazy removal)
    Waiter& waiter = *w->second;
    std::vector<std::string> values;
    values.reserve(waiter.keys.size());
    bool all = true;
    for (const std::string& k : waiter.keys) {
      auto v = map.find(k);
      if (v == map.end()) {
        all = false;
        break;
      }
      values.push_back(v->second);
    }
    if (!all) {
      still_waiting.push_back(id);
      continue;
    }
    std::unique_ptr<Waiter> done = TakeWaiterLocked(id);
    deferred->Add([done = std::move(done->done), values = std::move(values)]() mutable {
      done(std::move(values));
    });
  }
  if (!still_waiting.empty()) {
    KeyWaiters& entry = key_waiters_[ScopedKey(scope, key)];
    entry.ids.insert(entry.ids.end(), still_waiting.begin(), still_waiting.end());
  }
}

std::unique_ptr<JobStore::Waiter> JobStore::TakeWaiterLocked(uint64_t id) {
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return nullptr;
  std::unique_ptr<Waiter> waiter = std::move(it->second);
  waiters_.erase(it);
  deadlines_.erase(waiter->deadline_it);
  held_waits_.fetch_sub(1, std::memory_order_relaxed);
  // The id stays in its keys' lists; count it stale there and compact a list once most
  // of it is stale, so that waits that time out on a key nobody sets do not pile up.
  for (const std::string& k : waiter->keys) {
    auto kw = key_waiters_.find(ScopedKey(waiter->scope, k));
    if (kw == key_waiters_.end()) continue;
    KeyWaiters& entry = kw->second;
    ++entry.stale;
    if (entry.stale * 2 < entry.ids.size() + 16) continue;
    std::vector<uint64_t> live;
    for (uint64_t other : entry.ids) {
      if (waiters_.contains(other)) live.push_back(other);
    }
    if (live.empty()) {
      key_waiters_.erase(kw);
    } else {
      entry.ids = std::move(live);
      entry.stale = 0;
    }
  }
  return waiter;
}

void JobStore::FailAllLocked(const absl::Status& status, Deferred* deferred) {
  for (auto& [id, waiter] : waiters_) {
    deferred->Add([done = std::move(waiter->done), status] { done(status); });
  }
  waiters_.clear();
  key_waiters_.clear();
  deadlines_.clear();
  held_waits_.store(0, std::memory_order_relaxed);
}

absl::Status JobStore::Set(int64_t generation, v1::KeyScope scope, const std::string& key,
                           const std::string& value) {
  Count(StoreOp::kSet);
  Deferred deferred;
  absl::MutexLock lock(&mu_);
  absl::Status status = CheckLocked(generation, scope, key, "StoreSet");
  if (!status.ok()) return status;
  return PutLocked(scope, key, value, &deferred);
}

absl::StatusOr<std::string> JobStore::Get(int64_t generation, v1::KeyScope scope,
                                          const std::string& key) {
  Count(StoreOp::kGet);
  absl::MutexLock lock(&mu_);
  absl::Status status = CheckLocked(generation, scope, key, "StoreGet");
  if (!status.ok()) return status;
  const Map& map = MapFor(scope);
  auto it = map.find(key);
  if (it == map.end()) {
    return absl::NotFoundError(absl::StrCat("key ", Quote(key), " is not set (scope ",
                                            ScopeName(scope), ", generation ", generation_, ")"));
  }
  return it->second;
}

absl::StatusOr<int64_t> JobStore::Add(int64_t generation, v1::KeyScope scope,
                                      const std::string& key, int64_t delta) {
  Count(StoreOp::kAdd);
  Deferred deferred;
  absl::MutexLock lock(&mu_);
  absl::Status status = CheckLocked(generation, scope, key, "StoreAdd");
  if (!status.ok()) return status;
  const Map& map = MapFor(scope);
  int64_t current = 0;
  if (auto it = map.find(key); it != map.end() && !absl::SimpleAtoi(it->second, &current)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "StoreAdd: the value at key ", Quote(key), " is not a decimal int64 (", it->second.size(),
        " bytes: ", Quote(it->second), ")"));
  }
  int64_t sum = 0;
  if (__builtin_add_overflow(current, delta, &sum)) {
    return absl::OutOfRangeError(absl::StrCat("StoreAdd: ", current, " + ", delta, " at key ",
                                              Quote(key), " overflows int64"));
  }
  status = PutLocked(scope, key, absl::StrCat(sum), &deferred);
  if (!status.ok()) return status;
  return sum;
}

absl::StatusOr<CompareSetResult> JobStore::CompareSet(int64_t generation, v1::KeyScope scope,
                                                      const std::string& key, bool expect_absent,
                                                      const std::string& expected,
                                                      const std::string& desired) {
  Count(StoreOp::kCompareSet);
  Deferred deferred;
  absl::MutexLock lock(&mu_);
  absl::Status status = CheckLocked(generation, scope, key, "StoreCompareSet");
  if (!status.ok()) return status;
  const Map& map = MapFor(scope);
  auto it = map.find(key);
  bool swap = expect_absent ? it == map.end() : (it != map.end() && it->second == expected);
  CompareSetResult result;
  if (swap) {
    status = PutLocked(scope, key, desired, &deferred);
    if (!status.ok()) return status;
    result.swapped = true;
    result.has_value = true;
    result.value = desired;
  } else if (it != map.end()) {
    result.has_value = true;
    result.value = it->second;
  }
  return result;
}

absl::StatusOr<bool> JobStore::Delete(int64_t generation, v1::KeyScope scope,
                                      const std::string& key) {
  Count(StoreOp::kDelete);
  absl::MutexLock lock(&mu_);
  absl::Status status = CheckLocked(generation, scope, key, "StoreDelete");
  if (!status.ok()) return status;
  Map& map = MapFor(scope);
  auto it = map.find(key);
  if (it == map.end()) return false;
  total_bytes_ -= static_cast<int64_t>(key.size() + it->second.size());
  map.erase(it);
  return true;
}

uint64_t JobStore::Wait(int64_t generation, v1::KeyScope scope, std::vector<std::string> keys,
                        absl::Time now, absl::Duration timeout, WaitDone done) {
  Count(StoreOp::kWait);
  Deferred deferred;
  absl::MutexLock lock(&mu_);
  auto refuse = [&](absl::Status status) {
    deferred.Add([done = std::move(done), status = std::move(status)] { done(status); });
    return uint64_t{0};
  };
  // Generation, scope and closed state are the same for every key: check them with a
  // placeholder key, then each key with its index.
  absl::Status status = CheckLocked(generation, scope, "k", "StoreWait");
  if (!status.ok()) return refuse(std::move(status));
  if (keys.empty()) return refuse(absl::InvalidArgumentError("StoreWait.keys is empty"));
  if (keys.size() > limits_.max_wait_keys) {
    return refuse(absl::InvalidArgumentError(absl::StrCat(
        "StoreWait.keys has ", keys.size(), " keys, over the limit of ", limits_.max_wait_keys)));
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    status = CheckLocked(generation, scope, keys[i], "StoreWait");
    if (!status.ok()) {
      return refuse(absl::Status(status.code(), absl::StrCat("keys[", i, "]: ", status.message())));
    }
  }
  const Map& map = MapFor(scope);
  std::vector<std::string> values;
  values.reserve(keys.size());
  for (const std::string& k : keys) {
    auto it = map.find(k);
    if (it == map.end()) break;
    values.push_back(it->second);
  }
  if (values.size() == keys.size()) {
    deferred.Add([done = std::move(done), values = std::move(values)]() mutable {
      done(std::move(values));
    });
    return 0;
  }

  auto waiter = std::make_unique<Waiter>();
  waiter->id = next_ticket_++;
  waiter->generation = generation;
  waiter->scope = scope;
  waiter->keys = std::move(keys);
  waiter->timeout = timeout;
  waiter->done = std::move(done);
  waiter->deadline_it = deadlines_.emplace(now + timeout, waiter->id);
  for (const std::string& k : waiter->keys) key_waiters_[ScopedKey(scope, k)].ids.push_back(waiter->id);
  uint64_t id = waiter->id;
  waiters_.emplace(id, std::move(waiter));
  held_waits_.fetch_add(1, std::memory_order_relaxed);
  return id;
}

bool JobStore::CancelWait(uint64_t ticket) {
  std::unique_ptr<Waiter> gone;  // destroyed after the unlock: it may own the call
  absl::MutexLock lock(&mu_);
  gone = TakeWaiterLocked(ticket);
  return gone != nullptr;
}

void JobStore::Tick(absl::Time now) {
  Deferred deferred;
  absl::MutexLock lock(&mu_);
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    std::unique_ptr<Waiter> waiter = TakeWaiterLocked(deadlines_.begin()->second);
    const Map& map = MapFor(waiter->scope);
    std::vector<std::string> missing;
    for (const std::string& k : waiter->keys) {
      if (!map.contains(k)) missing.push_back(Quote(k));
    }
    absl::Status status = absl::DeadlineExceededError(absl::StrCat(
        "StoreWait timed out after ", absl::FormatDuration(waiter->timeout), "; missing keys: ",
        absl::StrJoin(missing, ", "), " (scope ", ScopeName(waiter->scope), ", generation ",
        waiter->generation, ")"));
    deferred.Add([done = std::move(waiter->done), status] { done(status); });
  }
}

void JobStore::AdvanceGeneration(int64_t generation, Deferred* deferred) {
  absl::MutexLock lock(&mu_);
  if (generation <= generation_) return;
  absl::Status status = absl::FailedPreconditionError(
      absl::StrCat("generation ", generation_, " ended while StoreWait was held (the job moved to "
                   "generation ", generation, ")"));
  generation_ = generation;
  for (const auto& [k, v] : generation_kv_) total_bytes_ -= static_cast<int64_t>(k.size() + v.size());
  generation_kv_.clear();
  FailAllLocked(status, deferred);
}

void JobStore::Close(const absl::Status& status, Deferred* deferred) {
  absl::MutexLock lock(&mu_);
  if (!closed_.ok()) return;
  closed_ = status.ok() ? absl::UnavailableError("store closed") : status;
  FailAllLocked(closed_, deferred);
}

int64_t JobStore::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

int64_t JobStore::total_bytes() const {
  absl::MutexLock lock(&mu_);
  return total_bytes_;
}

}  // namespace colossus::launcher
