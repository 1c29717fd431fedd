#include "file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace colossus::internal {

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

int Fd::Close() {
  const int rc = ::close(fd_);
  fd_ = -1;
  return rc;
}

absl::Status ErrnoStatus(int err, const std::string& what) {
  const std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

namespace {

absl::Status WriteAll(int fd, const void* data, size_t bytes, const std::string& path,
                      const std::string& tmp) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    // Linux moves at most ~2 GiB per write(); ask for 1 GiB at a time.
    const ssize_t w = ::write(fd, p, std::min<size_t>(bytes, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat(path, ": writing temporary file ", tmp));
    }
    // write(2) may return short (a signal, a quota edge): loop for the rest.
    p += w;
    bytes -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

// Writes and syncs the temporary file; the caller removes it on failure.
absl::Status WriteDurable(const std::string& path, const std::string& tmp,
                          const std::vector<ByteRange>& pieces) {
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    return ErrnoStatus(errno, absl::StrCat(path, ": creating temporary file ", tmp));
  }
  for (const ByteRange& piece : pieces) {
    if (piece.bytes == 0) continue;
    if (absl::Status s = WriteAll(fd.get(), piece.data, piece.bytes, path, tmp); !s.ok()) {
      return s;
    }
  }
  // Without fsync before the rename, a crash can leave the final name pointing at a
  // file whose blocks never reached the disk (zero-filled or empty).
  if (::fsync(fd.get()) != 0) return ErrnoStatus(errno, absl::StrCat(path, ": fsync of ", tmp));
  if (fd.Close() != 0) return ErrnoStatus(errno, absl::StrCat(path, ": closing ", tmp));
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, const std::vector<ByteRange>& pieces) {
  const std::string tmp = path + ".tmp";
  if (absl::Status s = WriteDurable(path, tmp, pieces); !s.ok()) {
    ::unlink(tmp.c_str());  // never leave a partial file behind, under either name
    return s;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status s = ErrnoStatus(errno, absl::StrCat(path, ": renaming ", tmp, " into place"));
    ::unlink(tmp.c_str());
    return s;
  }
  // The new name lives in the directory: sync it so the name survives a crash. The
  // file itself is complete either way, and some file systems refuse fsync on a
  // directory, so a failure here is not an error.
  Fd dir(::open(DirName(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) ::fsync(dir.get());
  return absl::OkStatus();
}

}  // namespace colossus::internal
