// Finding and loading committed checkpoints, resharded to whatever this rank needs.
//
// A committed step is a step directory whose COMMIT.json parses (format.h). A rank
// loads by naming the runs it needs (DestPiece, state.h): for each, the loader finds the
// shards whose pieces overlap it (from COMMIT.json, no other file is opened), opens only
// those, checks their header (magic, version, header checksum, step, size), and reads
// only the checksum blocks that hold the overlap, verifying each block's xxh64. So a job
// saved at d ranks loads at any d' (resharding is the same code path as a same-size
// resume), and a rank reads roughly its share plus what it keeps replicated.
//
// Resume at start-up, every rank:
//   LoadOutcome out = LoadLatestValid(dir, request, agree);
//   -> NotFound: no checkpoint, start from scratch.
//   -> FailedPrecondition: this run's model/optimizer config differs (names the field):
//      a user error, never "fall back".
//   -> OK: out.loaded.step etc.; out.skipped lists newer steps that were not usable
//      and why (a truncated or corrupt shard names the file). Then (rank 0)
//      DiscardStepsAfter(dir, out.loaded.step) so that the steps the resumed run will
//      save again start from empty directories, and a barrier.
// With a coordinator, its GetLatestCheckpoint is the authority: if it names a step
// whose directory has no COMMIT.json (the committing rank died after the commit),
// CompleteCommitFromReports(step_dir) first (committer.h).
//
// Thread safety: free functions; concurrent loads of one directory are fine.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "colossus/checkpoint/format.h"
#include "colossus/checkpoint/state.h"
#include "colossus/config.h"
#include "colossus/kernels/backend.h"
#include "colossus/optimizer.h"

namespace colossus::checkpoint {

// One step directory with a COMMIT.json.
struct CommittedStep {
  int64_t step = 0;
  std::string step_dir;
  // OK when COMMIT.json parsed and every shard file exists with its recorded size;
  // otherwise why not (DataLoss naming the file: truncated, missing, unparseable).
  absl::Status status;
  CommitRecord record;  // valid when status is OK
};

// Every step directory under `dir` that holds a COMMIT.json, newest first. NotFound when
// `dir` does not exist; an existing empty directory gives an empty list.
absl::StatusOr<std::vector<CommittedStep>> ListCommitted(const std::string& dir);
// The newest committed step whose shards are all present with their recorded sizes.
// NotFound (naming the directory) when there is none.
absl::StatusOr<CommittedStep> FindLatestCommitted(const std::string& dir);

struct LoadRequest {
  int rank = 0;                  // this rank in the new layout (which RNG state it gets)
  std::vector<DestPiece> pieces;  // what to fill (state.h)
  GPTConfig model;               // must equal the checkpoint's (FailedPrecondition)
  OptimizerConfig optimizer;     // likewise, unless !check_optimizer
  bool check_optimizer = true;
  // Where the pieces' memory is (nullptr or a CPU backend: host memory).
  kernels::Backend* backend = nullptr;
};

struct LoadedCheckpoint {
  std::string step_dir;
  StepMeta meta;            // step, data position, P, the layout it was saved at
  // The RNG states rank `rank` saved, when the checkpoint had that rank (rng_found).
  std::map<std::string, std::string> rng;
  bool rng_found = false;
  int64_t bytes_read = 0;   // data bytes read from shard files (blocks, whole)
};

// Loads `request` from the committed step in `step_dir`. Errors name the file:
// DataLoss (checksum mismatch, bad header, truncated file), NotFound (a shard file
// gone), FailedPrecondition (config mismatch, naming the field; a requested vector the
// checkpoint lacks), InvalidArgument (a piece outside [0, P)). On error the pieces may
// be partly overwritten.
absl::StatusOr<LoadedCheckpoint> LoadCheckpoint(const std::string& step_dir,
                                                const LoadRequest& request);

// A committed step that LoadLatestValid did not use, and why.
struct SkippedStep {
  int64_t step = 0;
  std::string step_dir;
  absl::Status why;
  // Whether this rank's own read failed (why names the file); false: this rank loaded
  // the step and another rank did not (why says only that).
  bool seen_here = true;
};
struct LoadOutcome {
  LoadedCheckpoint loaded;
  std::vector<SkippedStep> skipped;  // newest first
};

// Called once per candidate step with whether this rank loaded it; returns whether
// EVERY rank did (e.g. an all-reduce of min over the group). Lets the ranks fall back
// together: a rank whose shard reads were fine must not keep a step another rank found
// corrupt. nullptr: this rank decides alone (one process).
using AgreeFn = std::function<absl::StatusOr<bool>(bool loaded_here)>;

// Tries the committed steps under `dir` newest first (ListCommitted) and returns the
// first that loads (on every rank, through `agree`). Steps with a missing, truncated or
// corrupt shard are skipped (listed in `skipped` with the file named). A config
// mismatch or an error of `agree` ends the search at once. NotFound when `dir` holds no
// committed step; DataLoss listing every skipped step when none loads. `skipped`, when
// given, receives the skipped steps whatever the outcome (the DataLoss case included).
absl::StatusOr<LoadOutcome> LoadLatestValid(const std::string& dir, const LoadRequest& request,
                                            const AgreeFn& agree = nullptr,
                                            std::vector<SkippedStep>* skipped = nullptr);

// Reads every shard of the committed step in full and compares its xxh64 with
// COMMIT.json's (what the coordinator was told). Slow: for tools and tests, not resume.
// DataLoss naming the file on a mismatch.
absl::Status VerifyCheckpoint(const std::string& step_dir);

// Removes the step directories under `dir` newer than `step`: uncommitted ones are
// deleted; committed ones (skipped as corrupt, or beyond the step a run chose to resume
// from) are renamed <name>.discarded-<unix seconds>, kept for inspection and never
// matched again. Errors name the directory that could not be moved.
absl::Status DiscardStepsAfter(const std::string& dir, int64_t step);

}  // namespace colossus::checkpoint
