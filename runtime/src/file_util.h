// Files written so that a crash or a full disk never leaves a torn file under the final
// name: the one implementation every writer in the runtime uses (token shards,
// safetensors weights, and checkpoints after them).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace colossus::internal {

// An owned file descriptor (closed by the destructor).
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd();
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now, returning close(2)'s result: a deferred write error shows up here on
  // some file systems, and a destructor could not report it.
  int Close();

 private:
  int fd_;
};

// errno as the Status code a caller can act on: NotFound (ENOENT), PermissionDenied
// (EACCES, EPERM), ResourceExhausted (ENOSPC, EDQUOT, EFBIG: a full disk or quota),
// Internal otherwise. The message is "<what>: <strerror>".
absl::Status ErrnoStatus(int err, const std::string& what);

// "dir" of "dir/name"; "." for a bare name, "/" for "/name".
std::string DirName(const std::string& path);

struct ByteRange {
  const void* data;
  size_t bytes;
};

// Writes `pieces` in order to "<path>.tmp", fsyncs it, renames it onto `path` and
// fsyncs the directory, so `path` holds either its old contents or all the new bytes.
// On any failure the temporary file is removed and `path` is untouched; the error
// names `path`, the temporary file and the step that failed (ResourceExhausted for a
// full disk). A stale "<path>.tmp" left by a crashed writer is overwritten.
// Not safe for two concurrent writers of the same path.
absl::Status WriteFileAtomically(const std::string& path, const std::vector<ByteRange>& pieces);

}  // namespace colossus::internal
