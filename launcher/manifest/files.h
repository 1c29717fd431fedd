// The machine's side of a manifest: reading the files it names, resolving paths, and
// telling whether a host is this machine. Internal to colossus_manifest.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace colossus::launcher::manifest_internal {

// The whole file, refused (InvalidArgument) past `max_bytes`. Errors name the path and
// carry errno's code (NotFound, PermissionDenied, ...) and text.
absl::StatusOr<std::string> ReadTextFile(const std::string& path, int64_t max_bytes);

// `path` when absolute, else base_dir/path; lexically normalised ("a/./b/../c" -> "a/c").
std::string ResolvePath(absl::string_view base_dir, absl::string_view path);

// The directory part of `path` made absolute against the working directory.
std::string AbsoluteDirectoryOf(absl::string_view path);
std::string CurrentDirectory();

// This machine's names and interface addresses, read once: IsThisMachine asks the system
// on every call, which a 12,500-node manifest would feel.
class ThisMachine {
 public:
  ThisMachine();
  bool Is(absl::string_view host) const;

 private:
  std::string hostname_;  // lower case
  std::set<std::string> addresses_;
};

}  // namespace colossus::launcher::manifest_internal
