// InMemoryStore: a Store shared by the threads of one process (tests, single-process
// groups). Not visible to other processes: use TcpStore for those.
//
// Thread safety: all methods may be called concurrently; Wait blocks on a condition
// variable (no polling) and any Set/Add/CompareSet wakes it.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "colossus/comm/store.h"

namespace colossus::comm {

namespace internal {
class KvTable;
}

class InMemoryStore final : public Store {
 public:
  InMemoryStore();
  ~InMemoryStore() override;
  InMemoryStore(const InMemoryStore&) = delete;
  InMemoryStore& operator=(const InMemoryStore&) = delete;

  absl::Status Set(std::string_view key, std::string_view value) override;
  absl::StatusOr<std::string> Get(std::string_view key) override;
  absl::Status Wait(const std::vector<std::string>& keys, absl::Duration timeout) override;
  absl::StatusOr<int64_t> Add(std::string_view key, int64_t delta) override;
  absl::StatusOr<CompareSetResult> CompareSet(std::string_view key,
                                              std::optional<std::string_view> expected,
                                              std::string_view desired) override;
  absl::StatusOr<bool> Delete(std::string_view key) override;

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::unique_ptr<internal::KvTable> table_;  // guarded by mu_
};

}  // namespace colossus::comm
