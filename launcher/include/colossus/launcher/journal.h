// Journal: an append-only file of checksummed records, fsynced one by one.
//
// The coordinator writes a record for every generation it forms, every checkpoint it
// commits and the job's end; a coordinator killed and restarted on the same run
// directory replays the records to stand where it stood. Records are opaque bytes here
// (the coordinator stores serialized colossus.coordinator.v1.JournalRecord messages).
//
// File format (little-endian):
//   header   8 bytes  "CLSJRNL1"
//   record   u32 magic 0x52534C43 ("CLSR"), u32 payload length, u64 xxh64 of
//            (length bytes ++ payload), payload bytes
//
// Recovery: Open reads records up to the last good one. A torn tail (a record cut short
// by a crash mid-write) or a corrupt record (checksum mismatch, bad magic, a length past
// the end of the file) ends the replay: the records before it are returned, a warning
// names the file, the byte offset and what was wrong, and the file is truncated to the
// last good record so that new appends follow it. A record that is valid after a corrupt
// one is not trusted (it cannot be told from garbage) and is dropped with the rest.
//
// Durability: Append returns OK only after the record and the file's length are on
// stable storage (fdatasync). An Append that fails (ENOSPC, EIO) leaves the file as it
// was before the call (the partial record is truncated away) and returns the error,
// naming the file; the caller must not report the event as durable.
//
// Thread safety: a Journal is not thread-safe; the coordinator serialises its appends.
// Only one process may have a journal open: Open takes an exclusive flock and fails with
// FailedPrecondition when another process holds it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace colossus::launcher {

struct JournalReplay {
  std::vector<std::string> records;  // payloads of the good records, in order
  std::string warning;               // empty, or what was dropped and why (file, offset)
  int64_t good_bytes = 0;            // file length after recovery
};

class Journal {
 public:
  // Opens `path`, creating it (and its header) when absent, and replays it into *replay.
  // Errors: DataLoss when the header itself is not a journal's (the file is left
  // untouched: it is not ours to truncate); FailedPrecondition when locked by another
  // process; the errno of open/read/write otherwise, each naming the path. A file shorter
  // than the header whose bytes are a prefix of it (a crash while creating the journal)
  // holds no record: it is started afresh, with a warning.
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const std::string& path,
                                                       JournalReplay* replay);
  ~Journal();

  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Appends one record durably (see Durability). Payloads above 64 MiB are refused with
  // InvalidArgument.
  absl::Status Append(std::string_view payload);

  const std::string& path() const { return path_; }
  int64_t size_bytes() const { return size_; }

 private:
  Journal(std::string path, int fd, int64_t size) : path_(std::move(path)), fd_(fd), size_(size) {}
  std::string path_;
  int fd_ = -1;
  int64_t size_ = 0;
};

}  // namespace colossus::launcher
