#include "colossus/comm/in_memory_store.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "store/kv_table.h"
#include "sv.h"

namespace colossus::comm {

InMemoryStore::InMemoryStore() : table_(std::make_unique<internal::KvTable>()) {}
InMemoryStore::~InMemoryStore() = default;

absl::Status InMemoryStore::Set(std::string_view key, std::string_view value) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    table_->Set(key, value);
  }
  changed_.notify_all();
  return absl::OkStatus();
}

absl::StatusOr<std::string> InMemoryStore::Get(std::string_view key) {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<std::string> v = table_->Get(key);
  if (!v) return absl::NotFoundError(absl::StrCat("in-memory store: key '", internal::Sv(key), "' not found"));
  return *std::move(v);
}

absl::Status InMemoryStore::Wait(const std::vector<std::string>& keys, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    std::vector<std::string> missing = table_->Missing(keys);
    if (missing.empty()) return absl::OkStatus();
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return internal::WaitTimeoutError("in-memory store", missing, keys.size(), timeout);
    }
    // Cap each sleep so an infinite timeout does not overflow the clock arithmetic.
    changed_.wait_for(lock, absl::ToChronoMilliseconds(std::min(left, absl::Hours(1))) +
                                std::chrono::milliseconds(1));
  }
}

absl::StatusOr<int64_t> InMemoryStore::Add(std::string_view key, int64_t delta) {
  absl::StatusOr<int64_t> r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    r = table_->Add(key, delta);
  }
  changed_.notify_all();
  return r;
}

absl::StatusOr<CompareSetResult> InMemoryStore::CompareSet(
    std::string_view key, std::optional<std::string_view> expected, std::string_view desired) {
  CompareSetResult r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    r = table_->CompareSet(key, expected, desired);
  }
  if (r.swapped) changed_.notify_all();
  return r;
}

absl::StatusOr<bool> InMemoryStore::Delete(std::string_view key) {
  std::lock_guard<std::mutex> lock(mu_);
  return table_->Delete(key);
}

}  // namespace colossus::comm
