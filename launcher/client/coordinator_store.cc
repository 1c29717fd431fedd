// CoordinatorStore: comm::Store's contract mapped onto the coordinator's store RPCs.
#include "colossus/launcher/coordinator_store.h"

#include <utility>

namespace colossus::launcher {

CoordinatorStore::CoordinatorStore(std::shared_ptr<CoordinatorClient> client, v1::KeyScope scope)
    : client_(std::move(client)), scope_(scope) {}

absl::Status CoordinatorStore::Set(std::string_view key, std::string_view value) {
  return client_->StoreSet(key, value, scope_);
}

absl::StatusOr<std::string> CoordinatorStore::Get(std::string_view key) {
  return client_->StoreGet(key, scope_);
}

absl::Status CoordinatorStore::Wait(const std::vector<std::string>& keys, absl::Duration timeout) {
  // The contract: an empty list returns at once (no round trip needed for that).
  if (keys.empty()) return absl::OkStatus();
  return client_->StoreWait(keys, timeout, scope_).status();
}

absl::StatusOr<std::vector<std::string>> CoordinatorStore::WaitGet(
    const std::vector<std::string>& keys, absl::Duration timeout) {
  if (keys.empty()) return std::vector<std::string>();
  return client_->StoreWait(keys, timeout, scope_);
}

absl::StatusOr<int64_t> CoordinatorStore::Add(std::string_view key, int64_t delta) {
  return client_->StoreAdd(key, delta, scope_);
}

absl::StatusOr<comm::CompareSetResult> CoordinatorStore::CompareSet(
    std::string_view key, std::optional<std::string_view> expected, std::string_view desired) {
  absl::StatusOr<v1::StoreCompareSetResponse> r =
      client_->StoreCompareSet(key, expected, desired, scope_);
  if (!r.ok()) return r.status();
  comm::CompareSetResult result;
  result.swapped = r->swapped();
  if (r->has_value()) result.value = std::move(*r->mutable_value());
  return result;
}

absl::StatusOr<bool> CoordinatorStore::Delete(std::string_view key) {
  return client_->StoreDelete(key, scope_);
}

}  // namespace colossus::launcher
