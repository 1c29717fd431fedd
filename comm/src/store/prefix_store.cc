#include "colossus/comm/prefix_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "colossus/check.h"
#include "sv.h"

namespace colossus::comm {

PrefixStore::PrefixStore(std::shared_ptr<Store> base, std::string prefix)
    : base_(std::move(base)), prefix_(std::move(prefix)) {
  CHECK(base_ != nullptr) << "PrefixStore '" << prefix_ << "' over a null store";
}

std::string PrefixStore::Key(std::string_view key) const { return absl::StrCat(prefix_, "/", internal::Sv(key)); }

absl::Status PrefixStore::Set(std::string_view key, std::string_view value) {
  return base_->Set(Key(key), value);
}

absl::StatusOr<std::string> PrefixStore::Get(std::string_view key) { return base_->Get(Key(key)); }

absl::Status PrefixStore::Wait(const std::vector<std::string>& keys, absl::Duration timeout) {
  std::vector<std::string> full;
  full.reserve(keys.size());
  for (const auto& k : keys) full.push_back(Key(k));
  return base_->Wait(full, timeout);
}

absl::StatusOr<std::vector<std::string>> PrefixStore::WaitGet(const std::vector<std::string>& keys,
                                                              absl::Duration timeout) {
  std::vector<std::string> full;
  full.reserve(keys.size());
  for (const auto& k : keys) full.push_back(Key(k));
  return base_->WaitGet(full, timeout);
}

absl::StatusOr<int64_t> PrefixStore::Add(std::string_view key, int64_t delta) {
  return base_->Add(Key(key), delta);
}

absl::StatusOr<CompareSetResult> PrefixStore::CompareSet(std::string_view key,
                                                         std::optional<std::string_view> expected,
                                                         std::string_view desired) {
  return base_->CompareSet(Key(key), expected, desired);
}

absl::StatusOr<bool> PrefixStore::Delete(std::string_view key) { return base_->Delete(Key(key)); }

}  // namespace colossus::comm
