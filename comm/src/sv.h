// Debian's abseil is built with its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW
// is 0), which std::string_view does not convert to. Our API speaks std::string_view;
// Sv() bridges it into absl::StrCat and absl::Status without a copy.
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace colossus::comm::internal {

inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace colossus::comm::internal
