#include "colossus/launcher/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "colossus/check.h"

namespace colossus::launcher {
namespace {

constexpr char kFileMagic[] = "CLSJRNL1";
constexpr int64_t kFileHeaderBytes = 8;
constexpr uint32_t kRecordMagic = 0x52534C43;  // "CLSR" read as a little-endian u32
constexpr int64_t kRecordHeaderBytes = 16;     // magic, length, xxh64
constexpr uint32_t kMaxPayloadBytes = uint32_t{64} << 20;

void PutU32(uint32_t v, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void PutU64(uint64_t v, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint32_t GetU32(const char* in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<unsigned char>(in[i])} << (8 * i);
  return v;
}
uint64_t GetU64(const char* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
  return v;
}

// xxh64 (seed 0) of the four length bytes followed by the payload: the length is covered
// so that a flipped length bit cannot pass as a shorter record with a valid checksum.
uint64_t RecordChecksum(const char* length_bytes, std::string_view payload) {
  std::unique_ptr<XXH64_state_t, decltype(&XXH64_freeState)> state(XXH64_createState(),
                                                                   &XXH64_freeState);
  CHECK(state != nullptr) << "XXH64_createState: out of memory";
  CHECK(XXH64_reset(state.get(), 0) == XXH_OK);
  CHECK(XXH64_update(state.get(), length_bytes, 4) == XXH_OK);
  CHECK(XXH64_update(state.get(), payload.data(), payload.size()) == XXH_OK);
  return XXH64_digest(state.get());
}

absl::Status ErrnoError(int err, const std::string& what) {
  return absl::ErrnoToStatus(err, what);
}

// Reads exactly n bytes at offset. The file is locked and its size known, so a short read
// means it changed under us (or the device lies): an error, not a torn record.
absl::Status ReadAt(int fd, int64_t offset, char* out, size_t n, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, out + done, n - done, offset + static_cast<int64_t>(done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("journal ", path, ": read at offset ",
                                            offset + static_cast<int64_t>(done)));
    }
    if (r == 0) {
      return absl::DataLossError(absl::StrCat("journal ", path, ": file shrank while being read ",
                                              "(end of file at offset ",
                                              offset + static_cast<int64_t>(done), ")"));
    }
    done += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

// Writes all of data at offset; the error says how far it got.
absl::Status WriteAt(int fd, int64_t offset, const char* data, size_t n,
                     const std::string& path) {
  size_t done = 0;
  while (done < n) {
    const ssize_t w = ::pwrite(fd, data + done, n - done, offset + static_cast<int64_t>(done));
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("journal ", path, ": write of ", n,
                                            " bytes at offset ", offset, " failed after ", done));
    }
    // A short write (a signal, the disk filling up) is not an error yet: the next pwrite
    // either goes on or reports why it cannot.
    done += static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

absl::Status SyncData(int fd, const std::string& path) {
  while (::fdatasync(fd) != 0) {
    if (errno == EINTR) continue;
    return ErrnoError(errno, absl::StrCat("journal ", path, ": fdatasync"));
  }
  return absl::OkStatus();
}

absl::Status Truncate(int fd, int64_t size, const std::string& path) {
  while (::ftruncate(fd, size) != 0) {
    if (errno == EINTR) continue;
    return ErrnoError(errno, absl::StrCat("journal ", path, ": truncate to ", size, " bytes"));
  }
  return absl::OkStatus();
}

// A new file's directory entry is only durable once the directory itself is synced.
absl::Status SyncParentDirectory(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0                ? "/"
                                                      : path.substr(0, slash);
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoError(errno, absl::StrCat("journal ", path, ": open of its directory ", dir));
  }
  int rc;
  while ((rc = ::fsync(fd)) != 0 && errno == EINTR) {
  }
  const int err = errno;
  ::close(fd);
  if (rc != 0) {
    return ErrnoError(err, absl::StrCat("journal ", path, ": fsync of its directory ", dir));
  }
  return absl::OkStatus();
}

// Closes the descriptor on every early return of Open until ownership passes to Journal.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// The outcome of scanning the records after the header.
struct Scan {
  std::vector<std::string> records;
  int64_t good_bytes = kFileHeaderBytes;  // end of the last good record
  std::string problem;                    // empty when the whole file was good
};

absl::StatusOr<Scan> ScanRecords(int fd, int64_t file_size, const std::string& path) {
  Scan scan;
  int64_t offset = kFileHeaderBytes;
  char header[kRecordHeaderBytes];
  while (offset < file_size) {
    const int64_t left = file_size - offset;
    if (left < kRecordHeaderBytes) {
      scan.problem = absl::StrCat("torn record header (", left, " of ", kRecordHeaderBytes,
                                  " bytes present)");
      break;
    }
    if (absl::Status s = ReadAt(fd, offset, header, sizeof(header), path); !s.ok()) return s;
    const uint32_t magic = GetU32(header);
    const uint32_t length = GetU32(header + 4);
    const uint64_t stored = GetU64(header + 8);
    if (magic != kRecordMagic) {
      scan.problem = absl::StrFormat("bad record magic 0x%08x (expected 0x%08x)", magic,
                                     kRecordMagic);
      break;
    }
    if (length > kMaxPayloadBytes) {
      scan.problem = absl::StrCat("record length ", length, " is above the limit of ",
                                  kMaxPayloadBytes, " bytes (corrupt length)");
      break;
    }
    if (static_cast<int64_t>(length) > left - kRecordHeaderBytes) {
      scan.problem = absl::StrCat("record of ", length, " payload bytes runs past the end of the ",
                                  "file at ", file_size, " (torn write or corrupt length)");
      break;
    }
    std::string payload(length, '\0');
    if (absl::Status s = ReadAt(fd, offset + kRecordHeaderBytes, payload.data(), length, path);
        !s.ok()) {
      return s;
    }
    const uint64_t computed = RecordChecksum(header + 4, payload);
    if (computed != stored) {
      scan.problem = absl::StrFormat(
          "checksum mismatch over %u payload bytes (stored %016x, computed %016x)", length,
          stored, computed);
      break;
    }
    scan.records.push_back(std::move(payload));
    offset += kRecordHeaderBytes + length;
    scan.good_bytes = offset;
  }
  return scan;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const std::string& path,
                                                       JournalReplay* replay) {
  CHECK(replay != nullptr) << "Journal::Open(" << path << "): replay must not be null";
  *replay = JournalReplay{};

  FdGuard fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (fd.get() < 0) return ErrnoError(errno, absl::StrCat("journal ", path, ": open"));

  // The lock comes before anything is read or written: a second coordinator on the same
  // run directory must not truncate the tail the first one is appending to.
  while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "journal ", path, " is locked by another process (is another coordinator running ",
          "on this run directory?)"));
    }
    return ErrnoError(errno, absl::StrCat("journal ", path, ": flock"));
  }

  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return ErrnoError(errno, absl::StrCat("journal ", path, ": fstat"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("journal ", path, " is not a regular file"));
  }
  const int64_t file_size = st.st_size;

  char header[kFileHeaderBytes] = {};
  const int64_t header_present = std::min(file_size, kFileHeaderBytes);
  if (header_present > 0) {
    if (absl::Status s = ReadAt(fd.get(), 0, header, static_cast<size_t>(header_present), path);
        !s.ok()) {
      return s;
    }
  }
  if (std::memcmp(header, kFileMagic, static_cast<size_t>(header_present)) != 0) {
    std::string shown;
    for (int64_t i = 0; i < header_present; ++i) {
      const unsigned char c = static_cast<unsigned char>(header[i]);
      shown += (c >= 0x20 && c < 0x7f) ? std::string(1, static_cast<char>(c))
                                       : absl::StrFormat("\\x%02x", c);
    }
    return absl::DataLossError(absl::StrCat("journal ", path, ": not a journal (the file starts ",
                                            "with \"", shown, "\", expected \"", kFileMagic,
                                            "\"); left untouched"));
  }

  if (file_size < kFileHeaderBytes) {
    // Absent, empty, or a header cut short by a crash during creation (a prefix of ours,
    // checked above): nothing was ever recorded, so (re)write the header.
    if (file_size > 0) {
      replay->warning = absl::StrCat("journal ", path, ": dropped ", file_size,
                                     " bytes from offset 0: torn file header; started afresh");
    }
    absl::Status s = WriteAt(fd.get(), 0, kFileMagic, kFileHeaderBytes, path);
    if (s.ok()) s = SyncData(fd.get(), path);
    if (s.ok()) s = SyncParentDirectory(path);
    if (!s.ok()) {
      // An empty file reads as a fresh journal next time; a torn header would too.
      (void)Truncate(fd.get(), 0, path);
      return s;
    }
    replay->good_bytes = kFileHeaderBytes;
    return std::unique_ptr<Journal>(new Journal(path, fd.release(), kFileHeaderBytes));
  }

  absl::StatusOr<Scan> scan = ScanRecords(fd.get(), file_size, path);
  if (!scan.ok()) return scan.status();
  if (!scan->problem.empty()) {
    replay->warning = absl::StrCat("journal ", path, ": dropped ", file_size - scan->good_bytes,
                                   " bytes from offset ", scan->good_bytes, ": ", scan->problem,
                                   "; kept ", scan->records.size(), " good record(s) before it");
    // Truncate now, not at the next append: the file must not keep a tail that a later
    // crash-free reopen would again have to explain, and appends must follow good data.
    absl::Status s = Truncate(fd.get(), scan->good_bytes, path);
    if (s.ok()) s = SyncData(fd.get(), path);
    if (!s.ok()) return s;
  }
  replay->records = std::move(scan->records);
  replay->good_bytes = scan->good_bytes;
  return std::unique_ptr<Journal>(new Journal(path, fd.release(), scan->good_bytes));
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);  // also releases the flock
}

absl::Status Journal::Append(std::string_view payload) {
  if (payload.size() > kMaxPayloadBytes) {
    return absl::InvalidArgumentError(absl::StrCat("journal ", path_, ": record of ",
                                                   payload.size(), " bytes is above the limit of ",
                                                   kMaxPayloadBytes));
  }
  std::string record(static_cast<size_t>(kRecordHeaderBytes) + payload.size(), '\0');
  PutU32(kRecordMagic, record.data());
  PutU32(static_cast<uint32_t>(payload.size()), record.data() + 4);
  PutU64(RecordChecksum(record.data() + 4, payload), record.data() + 8);
  std::memcpy(record.data() + kRecordHeaderBytes, payload.data(), payload.size());

  // pwrite at our own idea of the end (not O_APPEND): should a failed append's truncation
  // fail too, the next record overwrites the debris instead of following it.
  absl::Status s = WriteAt(fd_, size_, record.data(), record.size(), path_);
  if (s.ok()) s = SyncData(fd_, path_);
  if (s.ok()) {
    size_ += static_cast<int64_t>(record.size());
    return absl::OkStatus();
  }
  // Take the partial record back so that the file is as it was before the call. The sync
  // makes the truncation durable where it can, so a record reported as failed does not
  // reappear after a crash; if either fails, the next Open drops the debris as a torn tail.
  absl::Status undo = Truncate(fd_, size_, path_);
  if (undo.ok()) undo = SyncData(fd_, path_);
  if (!undo.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), "; undoing the partial record ",
                                               "also failed: ", undo.message()));
  }
  return s;
}

}  // namespace colossus::launcher
