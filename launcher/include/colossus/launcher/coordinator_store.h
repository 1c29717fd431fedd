// CoordinatorStore: comm's Store over the coordinator's key-value RPCs, for the workers'
// NCCL and Gloo rendezvous at scale (in place of the TcpStore).
//
// Keys live in one scope of the coordinator's store: GENERATION (the default) keys belong
// to the client's current generation and vanish when the next one forms, so a group
// rebuilt after a failure never sees the old group's addresses; JOB keys live as long as
// the job. The generation is the client's (CoordinatorClient::generation()), read at
// each call.
//
// Errors follow comm/include/colossus/comm/store.h, every message naming the key(s) and
// the coordinator:
//   NotFound          Get of an absent key.
//   DeadlineExceeded  Wait past its timeout, naming the keys still missing (the
//                     coordinator's answer; all requested keys if it never answered).
//   Unavailable       the coordinator cannot be reached (after the client's retries).
//   InvalidArgument   Add on a value that is not a decimal int64 (also an empty key).
// and, beyond that contract, what the coordinator refuses with: FailedPrecondition (a
// stale generation: this worker's group has been replaced), Unauthenticated,
// ResourceExhausted (key over 1 KiB, value over 1 MiB, store full).
//
// Thread safety: as the client, every method from any thread; a Wait blocks only its
// caller (each call is its own RPC, multiplexed on the client's connection).
#pragma once

#include <memory>

#include "colossus/comm/store.h"
#include "colossus/launcher/coordinator_client.h"

namespace colossus::launcher {

class CoordinatorStore final : public comm::Store {
 public:
  explicit CoordinatorStore(std::shared_ptr<CoordinatorClient> client,
                            v1::KeyScope scope = v1::KEY_SCOPE_GENERATION);

  absl::Status Set(std::string_view key, std::string_view value) override;
  absl::StatusOr<std::string> Get(std::string_view key) override;
  absl::Status Wait(const std::vector<std::string>& keys, absl::Duration timeout) override;
  // One StoreWait (it returns the values), not a wait and a Get per key.
  using comm::Store::WaitGet;
  absl::StatusOr<std::vector<std::string>> WaitGet(const std::vector<std::string>& keys,
                                                   absl::Duration timeout) override;
  absl::StatusOr<int64_t> Add(std::string_view key, int64_t delta) override;
  absl::StatusOr<comm::CompareSetResult> CompareSet(std::string_view key,
                                                    std::optional<std::string_view> expected,
                                                    std::string_view desired) override;
  absl::StatusOr<bool> Delete(std::string_view key) override;

  CoordinatorClient& client() { return *client_; }
  v1::KeyScope scope() const { return scope_; }

 private:
  const std::shared_ptr<CoordinatorClient> client_;
  const v1::KeyScope scope_;
};

}  // namespace colossus::launcher
