// PrefixStore: a view of another Store in which every key is "<prefix>/<key>".
//
// Scopes one group (or one generation of a group) inside a shared store: a group that
// is rebuilt after a failure takes a fresh prefix, so keys left by the previous
// generation (addresses, arrival markers) are never read by the new one. Prefixes
// nest: PrefixStore(PrefixStore(s, "job"), "gen3") uses "job/gen3/<key>".
//
// Thread safety: as the underlying store. Ownership: shares the underlying store.
#pragma once

#include <memory>
#include <string>

#include "colossus/comm/store.h"

namespace colossus::comm {

class PrefixStore final : public Store {
 public:
  // REQUIRES: base != nullptr.
  PrefixStore(std::shared_ptr<Store> base, std::string prefix);

  const std::string& prefix() const { return prefix_; }

  absl::Status Set(std::string_view key, std::string_view value) override;
  absl::StatusOr<std::string> Get(std::string_view key) override;
  absl::Status Wait(const std::vector<std::string>& keys, absl::Duration timeout) override;
  // The base store's WaitGet (one round trip where it has one).
  using Store::WaitGet;
  absl::StatusOr<std::vector<std::string>> WaitGet(const std::vector<std::string>& keys,
                                                   absl::Duration timeout) override;
  absl::StatusOr<int64_t> Add(std::string_view key, int64_t delta) override;
  absl::StatusOr<CompareSetResult> CompareSet(std::string_view key,
                                              std::optional<std::string_view> expected,
                                              std::string_view desired) override;
  absl::StatusOr<bool> Delete(std::string_view key) override;

 private:
  std::string Key(std::string_view key) const;

  std::shared_ptr<Store> base_;
  std::string prefix_;
};

}  // namespace colossus::comm
