#include "colossus/comm/store.h"

namespace colossus::comm {

absl::StatusOr<std::string> Store::WaitGet(std::string_view key, absl::Duration timeout) {
  if (absl::Status s = Wait({std::string(key)}, timeout); !s.ok()) return s;
  return Get(key);
}

}  // namespace colossus::comm
