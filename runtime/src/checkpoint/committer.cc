#include "colossus/checkpoint/committer.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoint/io.h"
#include "file_util.h"

namespace colossus::checkpoint {
namespace {

using colossus::internal::DirName;
using colossus::internal::WriteFileAtomically;

std::string Join(const std::string& dir, const std::string& name) {
  return absl::StrCat(dir, "/", name);
}

// Store values: a rank's report is its JSON (starts with '{'); a failure is
// "failed <code>\n<message>", so that the code (ResourceExhausted for a full disk)
// reaches every rank unchanged.
constexpr const char* kCommitted = "committed";
constexpr const char* kFailedPrefix = "failed ";

std::string EncodeFailure(const absl::Status& s) {
  return absl::StrCat(kFailedPrefix, static_cast<int>(s.code()), "\n", s.message());
}

bool DecodeFailure(const std::string& v, absl::Status* out) {
  if (v.rfind(kFailedPrefix, 0) != 0) return false;
  const size_t nl = v.find('\n');
  int code = static_cast<int>(absl::StatusCode::kUnknown);
  if (nl == std::string::npos ||
      !absl::SimpleAtoi(v.substr(std::char_traits<char>::length(kFailedPrefix),
                                 nl - std::char_traits<char>::length(kFailedPrefix)),
                        &code)) {
    *out = absl::UnknownError(v);
    return true;
  }
  *out = absl::Status(static_cast<absl::StatusCode>(code),
                      nl == std::string::npos ? "" : v.substr(nl + 1));
  return true;
}

std::string StepKey(int64_t step) { return absl::StrCat("checkpoint/", step); }
std::string ShardKey(int64_t step, int rank) {
  return absl::StrCat(StepKey(step), "/shard/", rank);
}
std::string OutcomeKey(int64_t step) { return absl::StrCat(StepKey(step), "/outcome"); }

}  // namespace

absl::Status CommitStep(const std::string& step_dir, const std::vector<ShardReport>& reports,
                        const RetentionPolicy& retention, std::string* retention_note) {
  const std::string commit_path = Join(step_dir, kCommitFileName);
  if (reports.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(commit_path, ": no shard reports"));
  }
  const StepMeta& meta = reports[0].meta;
  const int d = reports[0].shard.num_shards;
  if (d < 1 || static_cast<int>(reports.size()) != d) {
    return absl::FailedPreconditionError(absl::StrCat(
        step_dir, ": ", reports.size(), " shard reports for a step of ", d, " shards"));
  }
  std::vector<ShardInfo> shards(static_cast<size_t>(d));
  std::vector<bool> seen(static_cast<size_t>(d), false);
  for (const ShardReport& r : reports) {
    const ShardInfo& s = r.shard;
    if (s.rank < 0 || s.rank >= d || seen[s.rank] || s.num_shards != d) {
      return absl::FailedPreconditionError(absl::StrCat(step_dir, ": shard report of rank ", s.rank,
                                                        " of ", s.num_shards, " does not fit ", d,
                                                        " shards (missing, repeated or foreign)"));
    }
    if (r.meta.step != meta.step || r.meta.numel != meta.numel || r.meta.dp != meta.dp ||
        r.meta.tp != meta.tp) {
      return absl::FailedPreconditionError(absl::StrCat(
          step_dir, ": rank ", s.rank, " reported step ", r.meta.step, " with ", r.meta.numel,
          " elements at dp ", r.meta.dp, " x tp ", r.meta.tp, ", rank ", reports[0].shard.rank,
          " step ", meta.step, " with ", meta.numel, " at dp ", meta.dp, " x tp ", meta.tp));
    }
    seen[s.rank] = true;
    shards[s.rank] = s;
    // The shard must be on disk as reported: a rank that lies (or a disk that lost the
    // rename) must not produce a commit that cannot load.
    const std::string path = Join(step_dir, s.file);
    absl::StatusOr<int64_t> size = internal::FileSize(path);
    if (!size.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(step_dir, ": shard of rank ", s.rank,
                                                        " is missing: ", size.status().message()));
    }
    if (*size != s.bytes) {
      return absl::FailedPreconditionError(absl::StrCat(path, ": ", *size, " bytes on disk, rank ",
                                                        s.rank, " reported ", s.bytes));
    }
  }
  if (absl::Status s = CheckCoverage(shards, meta.numel); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(step_dir, ": ", s.message()));
  }
  CommitRecord record;
  record.meta = meta;
  record.shards = std::move(shards);
  const std::string text = EncodeCommit(record);
  // The step directory's own entry must be durable before the commit inside it is.
  internal::SyncDir(DirName(step_dir));
  if (absl::Status s = WriteFileAtomically(commit_path, {{text.data(), text.size()}}); !s.ok()) {
    return s;
  }
  std::string note = ApplyRetention(DirName(step_dir), meta.step, retention);
  if (retention_note != nullptr) *retention_note = std::move(note);
  return absl::OkStatus();
}

std::string ApplyRetention(const std::string& dir, int64_t committed_step,
                           const RetentionPolicy& retention) {
  absl::StatusOr<std::vector<std::string>> names = internal::ListDir(dir);
  if (!names.ok()) return std::string(names.status().message());
  std::vector<int64_t> committed;
  std::vector<int64_t> stale;
  for (const std::string& name : *names) {
    int64_t step = 0;
    if (!ParseStepDirName(name, &step)) continue;
    if (internal::Exists(Join(Join(dir, name), kCommitFileName))) {
      committed.push_back(step);
    } else if (step < committed_step) {
      stale.push_back(step);  // a crashed or failed save older than the new commit
    }
  }
  std::sort(committed.rbegin(), committed.rend());
  const size_t keep = static_cast<size_t>(std::max(1, retention.keep_last));
  std::vector<int64_t> doomed = stale;
  if (committed.size() > keep) doomed.insert(doomed.end(), committed.begin() + keep, committed.end());
  std::vector<std::string> failures;
  for (int64_t step : doomed) {
    if (absl::Status s = internal::RemoveTree(StepDir(dir, step), kCommitFileName); !s.ok()) {
      failures.push_back(std::string(s.message()));
    }
  }
  if (!doomed.empty()) internal::SyncDir(dir);
  return absl::StrJoin(failures, "; ");
}

// ---- StoreShardCommitter ------------------------------------------------------------------

StoreShardCommitter::StoreShardCommitter(std::shared_ptr<comm::Store> store,
                                         const StoreCommitterOptions& options)
    : store_(std::move(store)), options_(options) {}

absl::StatusOr<bool> StoreShardCommitter::Report(const std::string& step_dir,
                                                 const ShardReport& report) {
  const int64_t step = report.meta.step;
  if (absl::Status s = store_->Set(ShardKey(step, report.shard.rank), EncodeShardReport(report));
      !s.ok()) {
    return s;
  }
  if (report.shard.rank == 0) return Commit(step_dir, report);
  // Every rank learns the outcome, so that all of them see a failure at the same save.
  absl::StatusOr<std::string> outcome = store_->WaitGet(OutcomeKey(step), options_.timeout);
  if (!outcome.ok()) {
    return absl::Status(outcome.status().code(),
                        absl::StrCat(step_dir, ": waiting for rank 0 to commit step ", step, ": ",
                                     outcome.status().message()));
  }
  absl::Status failure;
  if (DecodeFailure(*outcome, &failure)) return failure;
  return *outcome == kCommitted;
}

absl::StatusOr<bool> StoreShardCommitter::Commit(const std::string& step_dir, const ShardReport& own) {
  const int64_t step = own.meta.step;
  const int d = options_.world;
  std::vector<std::string> keys;
  for (int r = 0; r < d; ++r) keys.push_back(ShardKey(step, r));
  absl::Status result = store_->Wait(keys, options_.timeout);
  if (!result.ok()) {
    result = absl::Status(result.code(), absl::StrCat(step_dir, ": waiting for the shards of step ",
                                                      step, ": ", result.message()));
  }
  std::vector<ShardReport> reports;
  for (int r = 0; r < d && result.ok(); ++r) {
    if (r == 0) {
      reports.push_back(own);
      continue;
    }
    absl::StatusOr<std::string> v = store_->Get(keys[r]);
    if (!v.ok()) {
      result = v.status();
      break;
    }
    absl::Status failure;
    if (DecodeFailure(*v, &failure)) {
      // Keep the failing rank's code: a full disk stays ResourceExhausted.
      result = absl::Status(failure.code(), absl::StrCat("step ", step, " not committed: rank ", r,
                                                         " failed: ", failure.message()));
      break;
    }
    absl::StatusOr<ShardReport> decoded = DecodeShardReport(*v, keys[r]);
    if (!decoded.ok()) {
      result = decoded.status();
      break;
    }
    reports.push_back(*std::move(decoded));
  }
  if (result.ok()) result = CommitStep(step_dir, reports, options_.retention);
  // Publish the outcome even when it is a failure: the other ranks are waiting for it.
  absl::Status published =
      store_->Set(OutcomeKey(step), result.ok() ? std::string(kCommitted) : EncodeFailure(result));
  if (!result.ok()) return result;
  if (!published.ok()) return published;
  return true;
}

void StoreShardCommitter::Abandon(const std::string& step_dir, int64_t step, int rank,
                                  const absl::Status& why) {
  (void)step_dir;
  // Rank 0 decides the step: its own failure is the outcome. Another rank's failure
  // takes the place of its report, so rank 0 stops waiting for it.
  const std::string key = rank == 0 ? OutcomeKey(step) : ShardKey(step, rank);
  (void)store_->Set(key, EncodeFailure(why));
}

// ---- CoordinatorShardCommitter ------------------------------------------------------------

CoordinatorShardCommitter::CoordinatorShardCommitter(ReportShardFn report_shard,
                                                     RetentionPolicy retention)
    : report_shard_(std::move(report_shard)), retention_(retention) {}

absl::StatusOr<bool> CoordinatorShardCommitter::Report(const std::string& step_dir,
                                                       const ShardReport& report) {
  const ShardInfo& s = report.shard;
  // The report file first: whichever rank completes the step assembles COMMIT.json
  // from all of them, so each must be durable before the coordinator counts it.
  const std::string text = EncodeShardReport(report);
  if (absl::Status st = colossus::internal::WriteFileAtomically(
          Join(step_dir, ShardReportFileName(s.rank, s.num_shards)), {{text.data(), text.size()}});
      !st.ok()) {
    return st;
  }
  CoordinatorShardReport r;
  r.step = report.meta.step;
  r.rank = s.rank;
  r.num_shards = s.num_shards;
  r.path = Join(step_dir, s.file);
  r.bytes = s.bytes;
  r.checksum = Hex64(s.xxh64);
  r.directory = step_dir;
  absl::StatusOr<CoordinatorShardAck> ack = report_shard_(r);
  if (!ack.ok()) {
    return absl::Status(ack.status().code(), absl::StrCat(r.path, ": reporting the shard of step ",
                                                          r.step, " to the coordinator: ",
                                                          ack.status().message()));
  }
  if (!ack->committed) return false;
  if (absl::Status st = CompleteCommitFromReports(step_dir, retention_); !st.ok()) return st;
  return true;
}

absl::Status CompleteCommitFromReports(const std::string& step_dir,
                                       const RetentionPolicy& retention) {
  absl::StatusOr<std::vector<std::string>> names = internal::ListDir(step_dir);
  if (!names.ok()) return names.status();
  // The shard count from any report file's name: shard-<r>-of-<d>.json.
  int d = 0;
  for (const std::string& name : *names) {
    int r = 0, n = 0;
    char tail[8] = {0};
    if (std::sscanf(name.c_str(), "shard-%d-of-%d.%7s", &r, &n, tail) == 3 &&
        std::string(tail) == "json" && name == ShardReportFileName(r, n)) {
      d = n;
      break;
    }
  }
  if (d < 1) {
    return absl::NotFoundError(absl::StrCat(step_dir, ": no shard report files (shard-*-of-*.json)"));
  }
  std::vector<ShardReport> reports;
  for (int r = 0; r < d; ++r) {
    const std::string path = Join(step_dir, ShardReportFileName(r, d));
    absl::StatusOr<std::string> text = internal::ReadSmallFile(path);
    if (!text.ok()) return text.status();
    absl::StatusOr<ShardReport> report = DecodeShardReport(*text, path);
    if (!report.ok()) return report.status();
    reports.push_back(*std::move(report));
  }
  return CommitStep(step_dir, reports, retention);
}

}  // namespace colossus::checkpoint
