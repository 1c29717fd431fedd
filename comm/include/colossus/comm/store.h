// Store: the small key-value service that rendezvous and the watchdog need.
//
// Communicators exchange addresses (Gloo), unique ids (NCCL) and "arrived at
// collective s" markers through a Store. Implementations:
//   InMemoryStore  threads of one process (in_memory_store.h)
//   TcpStore       a client of TcpStoreServer, for processes of one job (tcp_store.h)
//   PrefixStore    a view of another store under a key prefix (prefix_store.h)
//   (later) the coordinator's gRPC client.
//
// Keys and values are arbitrary byte strings. A group that is rebuilt after a failure
// uses a fresh prefix (PrefixStore) so that nothing left by the previous generation is
// mistaken for the new one's.
//
// Errors (absl::Status, every message names the key or keys):
//   NotFound          Get of an absent key.
//   DeadlineExceeded  Wait ran past its timeout; names the keys still missing.
//   Unavailable       the store itself cannot be reached (server gone, connection lost).
//   InvalidArgument   Add on a value that is not a decimal int64.
//
// Thread safety: every implementation is safe to call from several threads at once.
// A Wait blocks only its caller: another thread may Set the awaited key meanwhile.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace colossus::comm {

// Result of Store::CompareSet.
struct CompareSetResult {
  bool swapped = false;               // true when desired was written
  std::optional<std::string> value;   // the value stored after the call (nullopt: absent)
};

class Store {
 public:
  virtual ~Store() = default;

  // Sets key to value, replacing an earlier value, and wakes waiters on key.
  virtual absl::Status Set(std::string_view key, std::string_view value) = 0;

  // Returns the value of key without waiting; NotFound when absent.
  virtual absl::StatusOr<std::string> Get(std::string_view key) = 0;

  // Blocks until every key exists. DeadlineExceeded after `timeout`, naming the keys
  // still missing. An empty key list returns at once.
  virtual absl::Status Wait(const std::vector<std::string>& keys, absl::Duration timeout) = 0;

  // Atomically adds delta to the decimal int64 at key (an absent key counts as 0),
  // stores the sum as decimal text and returns it.
  virtual absl::StatusOr<int64_t> Add(std::string_view key, int64_t delta) = 0;

  // Atomically: if the current value equals `expected` (nullopt: the key is absent),
  // sets key to `desired`. Returns whether it swapped and the value now stored.
  virtual absl::StatusOr<CompareSetResult> CompareSet(std::string_view key,
                                                      std::optional<std::string_view> expected,
                                                      std::string_view desired) = 0;

  // Removes key; returns whether it existed. Waiters on it keep waiting.
  virtual absl::StatusOr<bool> Delete(std::string_view key) = 0;

  // Blocks until every key exists, then returns their values in the order of `keys`:
  // what a rendezvous wants (an NCCL id, a peer's address) in one call where the store
  // can answer a wait with values (CoordinatorStore: one StoreWait, not a StoreWait and
  // a StoreGet per rank). Errors as Wait's, then Get's. The default is Wait then a Get
  // per key. Overriders add `using comm::Store::WaitGet;` to keep the one-key form.
  virtual absl::StatusOr<std::vector<std::string>> WaitGet(const std::vector<std::string>& keys,
                                                           absl::Duration timeout);

  // WaitGet of one key.
  absl::StatusOr<std::string> WaitGet(std::string_view key, absl::Duration timeout);
};

}  // namespace colossus::comm
