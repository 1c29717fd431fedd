// JobStore: the coordinator's key-value store (what NCCL and Gloo rendezvous through).
//
// Keys live in a scope (proto KeyScope): GENERATION keys belong to the current generation
// and are all dropped when the generation ends (AdvanceGeneration), so nothing a failed
// group left (an NCCL id, a Gloo address) is mistaken for the next one's; JOB keys live
// as long as the coordinator process (they are not journaled). Every operation names
// the generation it acts in and is fenced: older or newer than the store's generation is
// FAILED_PRECONDITION naming both, so a zombie of generation 3 cannot write into 4.
//
// Limits (StoreLimits): key 1..max_key_bytes, value <= max_value_bytes, the sum of all
// keys' and values' bytes <= max_total_bytes: RESOURCE_EXHAUSTED beyond (naming the size
// and the limit); an empty key, an unknown scope, a Wait without keys or with more than
// max_wait_keys: INVALID_ARGUMENT naming the field.
//
// Waits: Wait holds until every key exists (values in request order) or the deadline
// (DEADLINE_EXCEEDED naming the missing keys), the generation ends (FAILED_PRECONDITION)
// or the store closes. Waiters are indexed by key: a Set touches only that key's waiters,
// so 100,000 waiters on one key are released by one pass over them, and a Set of a key
// nobody waits for costs nothing extra. Deadlines sit in an ordered map; Tick(now)
// expires the due ones.
//
// Thread safety: all methods are thread-safe. Completion callbacks (WaitDone) never run
// under the store's mutex: they run on the thread that caused the completion (a Set, a
// Tick, AdvanceGeneration/Close via the caller's Deferred) after the mutex is released.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "colossus/coordinator/v1/coordinator.pb.h"
#include "colossus/launcher/job_deferred.h"

namespace colossus::launcher {

namespace v1 = ::colossus::coordinator::v1;

struct StoreLimits {
  size_t max_key_bytes = 1024;
  size_t max_value_bytes = size_t{1} << 20;
  int64_t max_total_bytes = int64_t{256} << 20;
  size_t max_wait_keys = 4096;
};

// Operation kinds, for the metrics' per-kind counters.
enum class StoreOp { kSet = 0, kGet, kWait, kAdd, kCompareSet, kDelete, kCount };
const char* StoreOpName(StoreOp op);

struct CompareSetResult {
  bool swapped = false;
  bool has_value = false;
  std::string value;  // the value now stored (when has_value)
};

class JobStore {
 public:
  // Called exactly once per Wait that was not cancelled: the values in request order, or
  // the error.
  using WaitDone = std::function<void(absl::StatusOr<std::vector<std::string>>)>;

  explicit JobStore(StoreLimits limits = {}, int64_t generation = 1);
  ~JobStore();

  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  absl::Status Set(int64_t generation, v1::KeyScope scope, const std::string& key,
                   const std::string& value);
  // NOT_FOUND naming the key when absent.
  absl::StatusOr<std::string> Get(int64_t generation, v1::KeyScope scope,
                                  const std::string& key);
  // Adds delta to the decimal int64 at key (absent: 0); INVALID_ARGUMENT when the stored
  // value is not a decimal int64, OUT_OF_RANGE on overflow.
  absl::StatusOr<int64_t> Add(int64_t generation, v1::KeyScope scope, const std::string& key,
                              int64_t delta);
  // Sets key to desired if it holds expected (expect_absent: if it is absent).
  absl::StatusOr<CompareSetResult> CompareSet(int64_t generation, v1::KeyScope scope,
                                              const std::string& key, bool expect_absent,
                                              const std::string& expected,
                                              const std::string& desired);
  // Whether the key existed.
  absl::StatusOr<bool> Delete(int64_t generation, v1::KeyScope scope, const std::string& key);

  // Holds until all keys exist or `timeout` after `now`. `done` is called exactly once,
  // possibly before Wait returns (keys present, or a refused request), unless
  // CancelWait(ticket) returns true. Returns the ticket (0 when done was already called).
  uint64_t Wait(int64_t generation, v1::KeyScope scope, std::vector<std::string> keys,
                absl::Time now, absl::Duration timeout, WaitDone done);
  // Removes a held wait (its caller went away). True when removed: `done` will never be
  // called. False when it already completed or is completing.
  bool CancelWait(uint64_t ticket);

  // Expires waits whose deadline is <= now.
  void Tick(absl::Time now);

  // The generation moved on to `generation` (> current): GENERATION keys are dropped,
  // every held wait fails with FAILED_PRECONDITION (its generation is over). Completions
  // go to *deferred. Lower or equal generations are ignored.
  void AdvanceGeneration(int64_t generation, Deferred* deferred);

  // Refuses every later operation with `status` and fails every held wait with it.
  void Close(const absl::Status& status, Deferred* deferred);

  int64_t generation() const;
  int64_t held_waits() const { return held_waits_.load(std::memory_order_relaxed); }
  int64_t total_bytes() const;
  int64_t op_count(StoreOp op) const {
    return op_counts_[static_cast<int>(op)].load(std::memory_order_relaxed);
  }

 private:
  struct Waiter;
  struct KeyWaiters {
    std::vector<uint64_t> ids;  // may hold ids of waiters that are gone (lazy removal)
    size_t stale = 0;
  };
  using Map = absl::flat_hash_map<std::string, std::string>;

  absl::Status CheckLocked(int64_t generation, v1::KeyScope scope, const std::string& key,
                           const char* rpc) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  Map& MapFor(v1::KeyScope scope) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stores value and wakes the key's waiters (their completions go to *deferred).
  absl::Status PutLocked(v1::KeyScope scope, const std::string& key, std::string value,
                         Deferred* deferred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeLocked(v1::KeyScope scope, const std::string& key, Deferred* deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes a waiter from the index (not from key_waiters_: lazily) and returns it.
  std::unique_ptr<Waiter> TakeWaiterLocked(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailAllLocked(const absl::Status& status, Deferred* deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Count(StoreOp op) { op_counts_[static_cast<int>(op)].fetch_add(1, std::memory_order_relaxed); }

  const StoreLimits limits_;
  mutable absl::Mutex mu_;
  int64_t generation_ ABSL_GUARDED_BY(mu_);
  absl::Status closed_ ABSL_GUARDED_BY(mu_);  // OK while open
  Map generation_kv_ ABSL_GUARDED_BY(mu_);
  Map job_kv_ ABSL_GUARDED_BY(mu_);
  int64_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;

  uint64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Waiter>> waiters_ ABSL_GUARDED_BY(mu_);
  // Scoped key (a scope byte + the key) -> ids of the waiters that wait for it.
  absl::flat_hash_map<std::string, KeyWaiters> key_waiters_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, uint64_t> deadlines_ ABSL_GUARDED_BY(mu_);

  std::atomic<int64_t> held_waits_{0};
  std::atomic<int64_t> op_counts_[static_cast<int>(StoreOp::kCount)] = {};
};

}  // namespace colossus::launcher
