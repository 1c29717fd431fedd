// CheckpointWriter: one rank's asynchronous shard writer.
//
// Save(request) is the only part the training loop waits for:
//   1. it waits for the previous save, if one is still in flight (at most one is:
//      that wait is reported as stall),
//   2. copies the rank's pieces into a host staging buffer (reused from save to save;
//      Reserve() pre-faults it at start-up so the first save does not pay for that),
//   3. hands the staging buffer to the writer's background thread and returns.
// The background thread then checksums the data, writes <step_dir>/shard-r-of-d.bin.tmp,
// fsyncs it, renames it into place, fsyncs the directory, and reports the shard to the
// ShardCommitter (committer.h), which commits the step once every rank's shard is in.
//
// Errors of a background save (a full disk, EIO, a rank that failed) are surfaced by the
// next Save (SaveResult::previous) and by Flush, naming the file; such a step never gets
// a COMMIT.json, and earlier committed steps are untouched (retention only runs after a
// commit). Save itself still starts the new save when only the previous one failed, so
// every rank keeps starting every save and the ranks never disagree about which step a
// store key belongs to; the caller decides what a failure means (log it, count it, stop).
//
// Thread safety: Save, Flush, Reserve and last_completed from one thread (the training
// thread); the background thread is internal. The destructor waits for the in-flight
// save (call Flush first to see its outcome) and stops the thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "colossus/checkpoint/committer.h"
#include "colossus/checkpoint/format.h"
#include "colossus/checkpoint/state.h"
#include "colossus/kernels/backend.h"

namespace colossus::checkpoint {

struct CheckpointWriterOptions {
  std::string dir;  // the checkpoint directory (created if missing)
  int rank = 0;     // this rank of the data-parallel group
  int world = 1;    // ranks that write shards of each step (d)
  // Called on the background thread. Shared: the caller may keep using it.
  std::shared_ptr<ShardCommitter> committer;
  int64_t block_bytes = kDefaultBlockBytes;  // checksum granularity (format.h)
  // Threads that copy host memory into the staging buffer (more than one helps when
  // one core cannot saturate memory bandwidth).
  int copy_threads = 2;
};

struct SaveRequest {
  // Step, P, data position, configs, and meta.tp (1 unless tensor parallel): the
  // layout recorded is dp = world / tp x tp (InvalidArgument when tp does not divide
  // the world).
  StepMeta meta;
  std::vector<SourcePiece> pieces;        // what this rank writes (state.h)
  std::map<std::string, std::string> rng;  // named RNG states, raw bytes, this rank's
  // Where the pieces' memory is: nullptr or a CPU backend = host memory; otherwise
  // copied with backend->CopyToHost (which orders itself after the backend's work).
  kernels::Backend* backend = nullptr;
};

struct SaveResult {
  double wait_seconds = 0.0;  // waiting for the previous save
  double copy_seconds = 0.0;  // copying into the staging buffer
  int64_t bytes = 0;          // data bytes staged
  // The outcome of the previous save, reported here once (OK when it succeeded or
  // there was none): e.g. ResourceExhausted naming the shard file of a full disk.
  absl::Status previous;
  double stall_seconds() const { return wait_seconds + copy_seconds; }
};

struct CompletedSave {
  int64_t step = -1;           // -1: none yet
  bool committed = false;      // as far as this rank knows (committer.h)
  absl::Status status;         // of that save
  double write_seconds = 0.0;  // background time: checksum, write, fsync, rename, report
  std::string path;            // the shard file
};

class CheckpointWriter {
 public:
  // InvalidArgument naming the field for a bad rank/world/block size or no committer.
  static absl::StatusOr<std::unique_ptr<CheckpointWriter>> Create(
      const CheckpointWriterOptions& options);
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Allocates and pre-faults a staging buffer of at least `bytes` (the data bytes of
  // one save). ResourceExhausted naming the size when memory is short.
  absl::Status Reserve(int64_t bytes);

  // Starts saving `request` (see the file comment). A non-OK result means THIS request
  // was refused and nothing started: InvalidArgument for pieces outside [0, P) or
  // overlapping, FailedPrecondition when the step directory already holds a
  // COMMIT.json (a step is committed once: DiscardStepsAfter at resume clears steps
  // beyond the one resumed from), ResourceExhausted when staging memory is short.
  absl::StatusOr<SaveResult> Save(const SaveRequest& request);

  // Waits for the in-flight save and returns its outcome (OK if there was none or it was
  // already reported by Save). Call before exiting so the last step is committed.
  absl::Status Flush();

  // The last save the background thread finished. Waits for nothing.
  CompletedSave last_completed() const;

  const CheckpointWriterOptions& options() const { return options_; }

 private:
  struct Impl;
  explicit CheckpointWriter(const CheckpointWriterOptions& options);

  CheckpointWriterOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace colossus::checkpoint
