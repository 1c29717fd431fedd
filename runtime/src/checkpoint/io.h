// Small file-system helpers of the checkpoint module (POSIX underneath; every error names
// the path). Internal: not part of the public headers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace colossus::checkpoint::internal {

// The whole file (for COMMIT.json and report files: small). NotFound when absent.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path);
// Size in bytes; NotFound when absent.
absl::StatusOr<int64_t> FileSize(const std::string& path);
bool Exists(const std::string& path);
// mkdir -p; an existing directory is fine (several ranks race to create it).
absl::Status MakeDirs(const std::string& path);
// Names in `dir` (no "." or ".."), unsorted. NotFound when `dir` does not exist.
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir);
// Deletes a directory tree, removing `first` inside it before anything else (COMMIT.json:
// a deletion cut short must leave an uncommitted directory, never a commit whose shards
// are gone). Errors name what could not be removed.
absl::Status RemoveTree(const std::string& dir, const std::string& first);
// fsync of a directory, so that entries created in it survive a crash. Best effort.
void SyncDir(const std::string& dir);
// pread of exactly `bytes` at `offset`; DataLoss naming the file when it ends early.
absl::Status ReadExact(int fd, void* dst, int64_t bytes, int64_t offset, const std::string& path);

}  // namespace colossus::checkpoint::internal
