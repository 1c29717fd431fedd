#include "colossus/comm/store.h"

namespace colossus::comm {

absl::StatusOr<std::vector<std::string>> Store::WaitGet(const std::vector<std::string>& keys,
                                                        absl::Duration timeout) {
  if (absl::Status s = Wait(keys, timeout); !s.ok()) return s;
  std::vector<std::string> values;
  values.reserve(keys.size());
  for (const std::string& key : keys) {
    absl::StatusOr<std::string> v = Get(key);
    if (!v.ok()) return v.status();
    values.push_back(*std::move(v));
  }
  return values;
}

absl::StatusOr<std::string> Store::WaitGet(std::string_view key, absl::Duration timeout) {
  absl::StatusOr<std::vector<std::string>> values = WaitGet(std::vector<std::string>{std::string(key)}, timeout);
  if (!values.ok()) return values.status();
  return std::move(values->front());
}

}  // namespace colossus::comm
