#include "gloo_backend/exceptions.h"

#include <exception>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gloo/common/error.h"
#include "gloo/common/logging.h"

namespace colossus::comm::internal {

absl::Status RunCatching(const std::function<void()>& body) {
  try {
    body();
    return absl::OkStatus();
  } catch (const gloo::IoException& e) {
    // Gloo has a single IoException type; its timeout messages are "Timed out waiting
    // ..." (unbound buffers), "Read timeout", "Connect timeout".
    const std::string what = e.what();
    if (absl::StrContains(absl::AsciiStrToLower(what), "timed out") ||
        absl::StrContains(absl::AsciiStrToLower(what), "timeout")) {
      return absl::DeadlineExceededError(what);
    }
    return absl::UnavailableError(what);
  } catch (const gloo::EnforceNotMet& e) {
    return absl::InternalError(absl::StrCat("gloo check failed: ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("gloo threw: ", e.what()));
  } catch (...) {
    return absl::InternalError("gloo threw a non-standard exception");
  }
}

}  // namespace colossus::comm::internal
