// KvTable: the semantics of Store's operations on a plain map, shared by
// InMemoryStore and TcpStoreServer so both behave identically. Not thread-safe: the
// owner holds its lock (InMemoryStore) or owns the only thread (the server loop).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "colossus/comm/store.h"

namespace colossus::comm::internal {

class KvTable {
 public:
  void Set(std::string_view key, std::string_view value);
  std::optional<std::string> Get(std::string_view key) const;
  absl::StatusOr<int64_t> Add(std::string_view key, int64_t delta);
  CompareSetResult CompareSet(std::string_view key, std::optional<std::string_view> expected,
                              std::string_view desired);
  bool Delete(std::string_view key);

  // The keys of `keys` that are absent, in the given order.
  std::vector<std::string> Missing(const std::vector<std::string>& keys) const;

 private:
  std::map<std::string, std::string, std::less<>> data_;
};

// "[a, b, c]" with at most `limit` keys shown: error messages name keys, but a
// 100,000-rank wait must not produce a megabyte of text.
std::string FormatKeys(const std::vector<std::string>& keys, size_t limit = 16);

// The DeadlineExceeded status of a Wait, naming the missing keys.
absl::Status WaitTimeoutError(std::string_view store, const std::vector<std::string>& missing,
                              size_t total, absl::Duration timeout);

}  // namespace colossus::comm::internal
