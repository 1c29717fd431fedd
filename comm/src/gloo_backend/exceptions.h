// Gloo reports failure by throwing; our boundary is absl::Status. RunCatching runs a
// piece of Gloo work and turns anything it throws into a Status, so no exception
// leaves the backend:
//   gloo::IoException mentioning a timeout   -> DeadlineExceeded
//   any other gloo::IoException              -> Unavailable (peer died, connection reset)
//   gloo::EnforceNotMet, other exceptions    -> Internal
// The message is Gloo's text, which names the peer address and the source line.
#pragma once

#include <functional>

#include "absl/status/status.h"

namespace colossus::comm::internal {

absl::Status RunCatching(const std::function<void()>& body);

}  // namespace colossus::comm::internal
