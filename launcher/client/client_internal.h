// Pieces of the coordinator client shared by its source files (not a public header).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "colossus/coordinator/v1/coordinator.grpc.pb.h"
#include "colossus/launcher/coordinator_client.h"

namespace colossus::launcher {

struct CoordinatorClient::Stubs {
  std::unique_ptr<v1::Coordinator::Stub> stub;
};

// One RPC as the retry loop and the error messages see it.
struct CoordinatorClient::Rpc {
  Rpc(std::string name_, std::string what_, bool retry_)
      : name(std::move(name_)), what(std::move(what_)), retry(retry_) {}
  std::string name;  // the method, "StoreGet"
  std::string what;  // what it is about ("'key'", "node n3"); may be empty
  bool retry = false;  // safe to repeat after UNAVAILABLE
  bool wait_for_ready = false;
  // Held calls: when the hold ends (the deadline is this plus call_timeout).
  absl::Time hold_until = absl::InfinitePast();
  // Added to the message when the client's own deadline passes without an answer
  // (StoreWait: the keys it waited for, which the coordinator would have named).
  std::string timeout_detail;
};

namespace client_internal {

// Debian's abseil has its own absl::string_view (not std's); bridge without a copy.
inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// A key as it appears in messages: quoted, with bytes outside printable ASCII escaped
// (keys are arbitrary bytes), and cut after 200 bytes.
std::string QuoteKey(std::string_view key);
// "'a', 'b', 'c'" (at most 20 keys named, then "and N more").
std::string QuoteKeys(const std::vector<std::string>& keys);

// The wait before retry attempt n (0-based) under `policy`, jittered.
absl::Duration Backoff(const RetryPolicy& policy, int attempt);

}  // namespace client_internal
}  // namespace colossus::launcher
