#include "store/kv_table.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sv.h"

namespace colossus::comm::internal {

void KvTable::Set(std::string_view key, std::string_view value) {
  data_.insert_or_assign(std::string(key), std::string(value));
}

std::optional<std::string> KvTable::Get(std::string_view key) const {
  auto it = data_.find(key);
  if (it == data_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<int64_t> KvTable::Add(std::string_view key, int64_t delta) {
  int64_t current = 0;
  auto it = data_.find(key);
  if (it != data_.end() && !absl::SimpleAtoi(it->second, &current)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store: Add on key '", Sv(key), "' whose value is not a decimal int64 (", it->second.size(),
        " bytes)"));
  }
  // Wrap-around is the caller's business; do it without signed-overflow UB.
  const int64_t sum = static_cast<int64_t>(static_cast<uint64_t>(current) +
                                           static_cast<uint64_t>(delta));
  Set(key, absl::StrCat(sum));
  return sum;
}

CompareSetResult KvTable::CompareSet(std::string_view key,
                                     std::optional<std::string_view> expected,
                                     std::string_view desired) {
  auto it = data_.find(key);
  const bool present = it != data_.end();
  const bool matches = expected.has_value() ? (present && it->second == *expected) : !present;
  CompareSetResult result;
  if (matches) {
    Set(key, desired);
    result.swapped = true;
    result.value = std::string(desired);
  } else if (present) {
    result.value = it->second;
  }
  return result;
}

bool KvTable::Delete(std::string_view key) {
  auto it = data_.find(key);
  if (it == data_.end()) return false;
  data_.erase(it);
  return true;
}

std::vector<std::string> KvTable::Missing(const std::vector<std::string>& keys) const {
  std::vector<std::string> missing;
  for (const auto& k : keys) {
    if (data_.find(k) == data_.end()) missing.push_back(k);
  }
  return missing;
}

std::string FormatKeys(const std::vector<std::string>& keys, size_t limit) {
  std::string out = "[";
  for (size_t i = 0; i < keys.size() && i < limit; ++i) {
    absl::StrAppend(&out, i ? ", " : "", "'", keys[i], "'");
  }
  if (keys.size() > limit) absl::StrAppend(&out, ", ... (", keys.size() - limit, " more)");
  out += "]";
  return out;
}

absl::Status WaitTimeoutError(std::string_view store, const std::vector<std::string>& missing,
                              size_t total, absl::Duration timeout) {
  return absl::DeadlineExceededError(absl::StrCat(
      Sv(store), ": Wait timed out after ", absl::FormatDuration(timeout), "; ", missing.size(),
      " of ", total, " keys missing: ", FormatKeys(missing)));
}

}  // namespace colossus::comm::internal
