// The commit protocol: a step is a checkpoint only once every shard is in and
// COMMIT.json is written; retention; the coordinator seam; resuming over newer steps.
#include <mutex>

#include "checkpoint_test_util.h"
#include "gmock/gmock.h"

namespace colossus::checkpoint::testing {
namespace {

using ::testing::HasSubstr;

// A committer that swallows reports: the process "crashed" after writing its shard
// and before anyone wrote COMMIT.json.
class CrashBeforeCommit final : public ShardCommitter {
 public:
  absl::StatusOr<bool> Report(const std::string&, const ShardReport&) override { return false; }
  void Abandon(const std::string&, int64_t, int, const absl::Status&) override {}
};

TEST(Commit, StepWithoutCommitFileIsNeverFound) {
  TempDir dir;
  const TestState old_state = TestState::Random(500, 1);
  {
    Group group(dir.path(), 2);
    ASSERT_TRUE(group.SaveAndCommit(10, old_state));
  }
  // Step 20: both shards written, fsynced and renamed, but no COMMIT.json.
  for (int r = 0; r < 2; ++r) {
    CheckpointWriterOptions wo;
    wo.dir = dir.path();
    wo.rank = r;
    wo.world = 2;
    wo.committer = std::make_shared<CrashBeforeCommit>();
    auto w = CheckpointWriter::Create(wo);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Save(Group::Request(TestState::Random(500, 2), 20, r, 2)).ok());
    ASSERT_TRUE((*w)->Flush().ok());
    EXPECT_FALSE((*w)->last_completed().committed);
  }
  ASSERT_TRUE(fs::exists(StepDir(dir.path(), 20) + "/" + ShardFileName(1, 2)));

  absl::StatusOr<std::vector<CommittedStep>> all = ListCommitted(dir.path());
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  absl::StatusOr<CommittedStep> latest = FindLatestCommitted(dir.path());
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->step, 10);
  absl::StatusOr<LoadOutcome> out = LoadLatestValid(dir.path(), BaseRequest(0));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->loaded.meta.step, 10);
  EXPECT_TRUE(out->skipped.empty());  // step 20 was never a candidate
}

TEST(Commit, RankThatNeverReportsLeavesNoCommit) {
  TempDir dir;
  Group::Options options;
  options.timeout = absl::Milliseconds(300);
  Group group(dir.path(), 3, options);
  const TestState state = TestState::Random(300, 4);
  ASSERT_TRUE(group.SaveAndCommit(1, state));
  // Rank 2 never saves step 2 (it died): rank 0 gives up after its timeout, rank 1
  // learns nothing within its own, and nobody writes COMMIT.json.
  for (auto& r : group.Save(2, state, {0, 1})) ASSERT_TRUE(r.ok());
  std::vector<absl::Status> flushed = group.Flush();
  EXPECT_EQ(flushed[0].code(), absl::StatusCode::kDeadlineExceeded) << flushed[0];
  EXPECT_THAT(flushed[0].message(), HasSubstr("checkpoint/2/shard/2"));
  EXPECT_FALSE(flushed[1].ok());
  EXPECT_FALSE(fs::exists(StepDir(dir.path(), 2) + "/COMMIT.json"));
  absl::StatusOr<CommittedStep> latest = FindLatestCommitted(dir.path());
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->step, 1);
}

TEST(Commit, MissingShardOfACommittedStepMakesItUnusable) {
  TempDir dir;
  Group group(dir.path(), 2);
  ASSERT_TRUE(group.SaveAndCommit(1, TestState::Random(400, 1)));
  ASSERT_TRUE(group.SaveAndCommit(2, TestState::Random(400, 2)));
  const std::string gone = StepDir(dir.path(), 2) + "/" + ShardFileName(1, 2);
  fs::remove(gone);
  absl::StatusOr<std::vector<CommittedStep>> all = ListCommitted(dir.path());
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT((*all)[0].status.message(), HasSubstr("shard-1-of-2.bin"));
  absl::StatusOr<CommittedStep> latest = FindLatestCommitted(dir.path());
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->step, 1);
}

TEST(Commit, RetentionKeepsTheLastNAndCleansStaleSteps) {
  TempDir dir;
  Group::Options options;
  options.keep_last = 2;
  Group group(dir.path(), 2, options);
  const TestState state = TestState::Random(200, 9);
  ASSERT_TRUE(group.SaveAndCommit(1, state));
  ASSERT_TRUE(group.SaveAndCommit(2, state));
  // Leftovers of a crash: an uncommitted step older than the next commit, and one newer.
  fs::create_directories(StepDir(dir.path(), 3));
  std::ofstream(StepDir(dir.path(), 3) + "/shard-0-of-2.bin.tmp") << "torn";
  fs::create_directories(StepDir(dir.path(), 90));
  ASSERT_TRUE(group.SaveAndCommit(4, state));
  ASSERT_TRUE(group.SaveAndCommit(5, state));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path())) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{StepDirName(4), StepDirName(5), StepDirName(90)}));
  EXPECT_TRUE(LoadAsRanks(StepDir(dir.path(), 5), 200, 2).BitEqual(state));
}

TEST(Commit, CommittedStepIsNotOverwrittenUntilDiscarded) {
  TempDir dir;
  Group group(dir.path(), 1);
  const TestState a = TestState::Random(100, 1), b = TestState::Random(100, 2);
  ASSERT_TRUE(group.SaveAndCommit(1, a));
  ASSERT_TRUE(group.SaveAndCommit(2, a));
  absl::StatusOr<SaveResult> again = group.writer(0).Save(Group::Request(b, 2, 0, 1));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(again.status().message(), HasSubstr(StepDirName(2)));
  // A run resumed from step 1 discards what came after it and saves step 2 afresh.
  ASSERT_TRUE(DiscardStepsAfter(dir.path(), 1).ok());
  absl::StatusOr<CommittedStep> latest = FindLatestCommitted(dir.path());
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->step, 1);
  Group resumed(dir.path(), 1);  // a new process: a new store
  ASSERT_TRUE(resumed.SaveAndCommit(2, b));
  EXPECT_TRUE(LoadAsRanks(StepDir(dir.path(), 2), 100, 1).BitEqual(b));
  bool kept_aside = false;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    kept_aside |= e.path().filename().string().rfind(StepDirName(2) + ".discarded-", 0) == 0;
  }
  EXPECT_TRUE(kept_aside);
}

// A fake coordinator: counts shard reports per step and acknowledges the last one as
// the commit, as the real one does after journaling.
class FakeCoordinator {
 public:
  explicit FakeCoordinator(int world) : world_(world) {}
  ReportShardFn fn() {
    return [this](const CoordinatorShardReport& r) -> absl::StatusOr<CoordinatorShardAck> {
      std::lock_guard<std::mutex> lock(mu_);
      reports_.push_back(r);
      CoordinatorShardAck ack;
      ack.received = ++received_[r.step];
      ack.committed = ack.received == world_;
      if (ack.committed) {
        latest_ = r.step;
        latest_dir_ = r.directory;
      }
      ack.latest_step = latest_;
      ack.latest_directory = latest_dir_;
      return ack;
    };
  }
  std::vector<CoordinatorShardReport> reports() {
    std::lock_guard<std::mutex> lock(mu_);
    return reports_;
  }

 private:
  int world_;
  std::mutex mu_;
  std::map<int64_t, int> received_;
  std::vector<CoordinatorShardReport> reports_;
  int64_t latest_ = 0;
  std::string latest_dir_;
};

TEST(Commit, CoordinatorCommitterAssemblesTheCommitFromReportFiles) {
  TempDir dir;
  const int world = 3;
  FakeCoordinator coordinator(world);
  std::vector<std::unique_ptr<CheckpointWriter>> writers;
  for (int r = 0; r < world; ++r) {
    CheckpointWriterOptions wo;
    wo.dir = dir.path();
    wo.rank = r;
    wo.world = world;
    wo.block_bytes = 512;
    wo.committer = std::make_shared<CoordinatorShardCommitter>(coordinator.fn(), RetentionPolicy{2});
    writers.push_back(*CheckpointWriter::Create(wo));
  }
  const TestState state = TestState::Random(999, 5);
  for (int step : {1, 2, 3}) {
    for (int r = 0; r < world; ++r) {
      ASSERT_TRUE(writers[r]->Save(Group::Request(state, step, r, world)).ok());
    }
    int committed = 0;
    for (auto& w : writers) {
      ASSERT_TRUE(w->Flush().ok());
      committed += w->last_completed().committed ? 1 : 0;
    }
    EXPECT_EQ(committed, 1);  // only the report that completed the step
  }
  const std::string step_dir = StepDir(dir.path(), 3);
  absl::StatusOr<CommittedStep> latest = FindLatestCommitted(dir.path());
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->step, 3);
  EXPECT_FALSE(fs::exists(StepDir(dir.path(), 1)));  // keep_last = 2
  // What the coordinator was told matches the commit.
  for (const CoordinatorShardReport& r : coordinator.reports()) {
    if (r.step != 3) continue;
    EXPECT_EQ(r.directory, step_dir);
    EXPECT_EQ(r.path, step_dir + "/" + ShardFileName(r.rank, world));
    EXPECT_EQ(r.num_shards, world);
    EXPECT_EQ(r.checksum, Hex64(latest->record.shards[r.rank].xxh64));
    EXPECT_EQ(r.bytes, latest->record.shards[r.rank].bytes);
  }
  EXPECT_TRUE(VerifyCheckpoint(step_dir).ok());
  EXPECT_TRUE(LoadAsRanks(step_dir, 999, 2).BitEqual(state));

  // The completing rank died before writing COMMIT.json: the coordinator still says
  // step 3; resume finishes the commit from the report files.
  fs::remove(step_dir + "/COMMIT.json");
  ASSERT_EQ(FindLatestCommitted(dir.path())->step, 2);
  ASSERT_TRUE(CompleteCommitFromReports(step_dir, RetentionPolicy{2}).ok());
  EXPECT_EQ(FindLatestCommitted(dir.path())->step, 3);
}

TEST(Commit, CoordinatorRefusalIsTheSaveError) {
  TempDir dir;
  CheckpointWriterOptions wo;
  wo.dir = dir.path();
  wo.committer = std::make_shared<CoordinatorShardCommitter>(
      [](const CoordinatorShardReport&) -> absl::StatusOr<CoordinatorShardAck> {
        return absl::FailedPreconditionError("generation 3 is stale, current is 4");
      },
      RetentionPolicy{});
  auto w = CheckpointWriter::Create(wo);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Save(Group::Request(TestState::Random(10, 1), 1, 0, 1)).ok());
  absl::Status s = (*w)->Flush();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("generation 3 is stale"));
  EXPECT_THAT(s.message(), HasSubstr("shard-0-of-1.bin"));
  EXPECT_FALSE(fs::exists(StepDir(dir.path(), 1) + "/COMMIT.json"));
}

}  // namespace
}  // namespace colossus::checkpoint::testing
