// Committing a checkpoint step: every shard is reported, and only when all of them are in
// (and have the recorded sizes, and cover the state) is COMMIT.json written, atomically.
// Until then the step directory is not a checkpoint (format.h), so a crash at any point
// leaves the last committed step as the latest (ARCHITECTURE.md, principle 5).
//
// ShardCommitter is the seam; CheckpointWriter's background thread calls it after each
// shard is durably renamed into place. Two implementations:
//
//   StoreShardCommitter        jobs without a coordinator. Every rank puts its report
//     under "checkpoint/<step>/shard/<rank>" in a comm::Store; rank 0 waits for all of
//     them, checks them (CommitStep) and writes COMMIT.json, then publishes the outcome
//     under "checkpoint/<step>/outcome". Every rank waits for the outcome, so every rank
//     learns a failure at the same step (Report returns it). A rank whose write failed
//     reports that instead (Abandon), so rank 0 fails the step at once instead of
//     waiting out its timeout. A step is saved at most once per store (the process
//     group's store is per generation).
//
//   CoordinatorShardCommitter  jobs under colossus-launch. Each rank writes its report
//     next to its shard (shard-<r>-of-<d>.json, atomically) and then calls the
//     coordinator's ReportShard through a std::function (no launcher dependency here).
//     The coordinator journals the reports and commits the step when the last one
//     arrives; the rank whose report completed the step (ShardAck.committed) assembles
//     COMMIT.json from the report files. If that rank dies in between, the coordinator's
//     journal says committed and the disk does not: CompleteCommitFromReports(step_dir)
//     finishes it at resume (checkpoint_reader.h explains when).
//
// Retention (RetentionPolicy), applied by whoever wrote COMMIT.json, right after: the
// newest keep_last committed steps stay; older committed steps are deleted; step
// directories without a commit that are OLDER than the new commit (a crash's or a
// failed save's leftovers) are deleted. Newer uncommitted directories are left alone.
//
// Thread safety: Report and Abandon are called from one writer thread per rank; the
// implementations keep no per-call state, so one object may serve several writers only
// if each has its own rank.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "colossus/checkpoint/format.h"
#include "colossus/comm/store.h"

namespace colossus::checkpoint {

struct RetentionPolicy {
  int keep_last = 3;  // committed steps kept (>= 1)
};

class ShardCommitter {
 public:
  virtual ~ShardCommitter() = default;
  // `report` describes this rank's shard, already durable under its final name in
  // `step_dir`. Returns whether the step is known committed when the call returns
  // (always true on success for the store committer; only for the completing rank with
  // the coordinator). An error means the step is not committed and never will be by
  // this attempt; it names the step and the cause (a rank's failure, a missing shard).
  virtual absl::StatusOr<bool> Report(const std::string& step_dir, const ShardReport& report) = 0;
  // This rank could not write its shard of `step` (`why` names the file). Best effort:
  // lets the committer fail the step early; errors are ignored by the writer.
  virtual void Abandon(const std::string& step_dir, int64_t step, int rank,
                       const absl::Status& why) = 0;
};

// Checks the reports of one step (ranks 0..d-1 once each, same step and numel, every
// file present with its recorded size, the pieces covering the state), writes
// <step_dir>/COMMIT.json atomically, then applies `retention` to the parent directory.
// The commit is written from reports[0].meta. Errors name the step directory and the
// shard or field; nothing is written on error. Retention failures are not errors (the
// commit stands); they are returned through `retention_note` when it is non-null.
absl::Status CommitStep(const std::string& step_dir, const std::vector<ShardReport>& reports,
                        const RetentionPolicy& retention, std::string* retention_note = nullptr);

// Applies `retention` under `dir` given that `committed_step` was just committed.
// Returns what it could not delete (empty when all went well).
std::string ApplyRetention(const std::string& dir, int64_t committed_step,
                           const RetentionPolicy& retention);

struct StoreCommitterOptions {
  int rank = 0;
  int world = 1;
  RetentionPolicy retention;
  // How long rank 0 waits for the other ranks' reports, and the others for the outcome.
  absl::Duration timeout = absl::Minutes(10);
};

class StoreShardCommitter final : public ShardCommitter {
 public:
  // `store` is shared by every rank of the group (e.g. ProcessGroup::store()).
  StoreShardCommitter(std::shared_ptr<comm::Store> store, const StoreCommitterOptions& options);
  absl::StatusOr<bool> Report(const std::string& step_dir, const ShardReport& report) override;
  void Abandon(const std::string& step_dir, int64_t step, int rank,
               const absl::Status& why) override;

 private:
  absl::StatusOr<bool> Commit(const std::string& step_dir, const ShardReport& own);

  std::shared_ptr<comm::Store> store_;
  StoreCommitterOptions options_;
};

// The fields of the coordinator's v1::ShardReport and v1::ShardAck that matter here, so
// that the launcher's CoordinatorClient::ReportShard plugs in with a small lambda:
//   [client](const CoordinatorShardReport& r) -> absl::StatusOr<CoordinatorShardAck> {
//     v1::ShardReport p; p.set_step(r.step); p.set_rank(r.rank); ... (same names)
//     ASSIGN_OR_RETURN(v1::ShardAck a, client->ReportShard(p));
//     return CoordinatorShardAck{a.committed(), a.received(), a.latest().step(),
//                                a.latest().directory()};
//   }
struct CoordinatorShardReport {
  int64_t step = 0;
  int32_t rank = 0;
  int32_t num_shards = 1;
  std::string path;       // the shard's final path
  int64_t bytes = 0;
  std::string checksum;   // Hex64 of the file's xxh64
  std::string directory;  // the step directory
};
struct CoordinatorShardAck {
  bool committed = false;  // this report completed the step
  int32_t received = 0;
  int64_t latest_step = 0;
  std::string latest_directory;
};
using ReportShardFn =
    std::function<absl::StatusOr<CoordinatorShardAck>(const CoordinatorShardReport&)>;

class CoordinatorShardCommitter final : public ShardCommitter {
 public:
  CoordinatorShardCommitter(ReportShardFn report_shard, RetentionPolicy retention);
  absl::StatusOr<bool> Report(const std::string& step_dir, const ShardReport& report) override;
  // Nothing to tell: the coordinator never commits a step with a shard missing, and a
  // failed rank's restart forgets the step.
  void Abandon(const std::string&, int64_t, int, const absl::Status&) override {}

 private:
  ReportShardFn report_shard_;
  RetentionPolicy retention_;
};

// Writes COMMIT.json for a step whose every shard left its report file
// (CoordinatorShardCommitter): reads shard-*-of-<d>.json, then CommitStep. For a step
// the coordinator says is committed but whose COMMIT.json is missing. NotFound naming
// the first missing report file.
absl::Status CompleteCommitFromReports(const std::string& step_dir,
                                       const RetentionPolicy& retention);

}  // namespace colossus::checkpoint
