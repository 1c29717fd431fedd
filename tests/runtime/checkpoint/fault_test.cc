// Faults in storage and in the run: a corrupt or truncated shard falls back to the
// previous commit naming the file; a full disk fails the save naming the file and keeps
// the previous commit; a mismatched config is refused naming the field.
#include <sys/mount.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "checkpoint_test_util.h"
#include "gmock/gmock.h"

namespace colossus::checkpoint::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// Two committed steps (1 and 2) of different states, at 2 ranks.
class TwoCommits : public ::testing::Test {
 protected:
  void SetUp() override {
    Group group(dir_.path(), 2);
    ASSERT_TRUE(group.SaveAndCommit(1, first_));
    ASSERT_TRUE(group.SaveAndCommit(2, second_));
  }
  std::string Shard(int64_t step, int rank) const {
    return StepDir(dir_.path(), step) + "/" + ShardFileName(rank, 2);
  }
  // Loads the latest valid step as one rank that needs everything.
  absl::StatusOr<LoadOutcome> LoadAll(TestState* into, int rank = 0) const {
    LoadRequest req = BaseRequest(rank);
    for (int i = 0; i < kNumStateVectors; ++i) {
      req.pieces.push_back({{static_cast<StateVector>(i), 0, kNumel}, into->v[i].data()});
    }
    return LoadLatestValid(dir_.path(), req);
  }

  static constexpr int64_t kNumel = 3000;
  TempDir dir_;
  const TestState first_ = TestState::Random(kNumel, 11);
  const TestState second_ = TestState::Random(kNumel, 22);
};

TEST_F(TwoCommits, LatestLoadsWhenIntact) {
  TestState got = TestState::Zero(kNumel);
  absl::StatusOr<LoadOutcome> out = LoadAll(&got);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->loaded.meta.step, 2);
  EXPECT_TRUE(out->skipped.empty());
  EXPECT_TRUE(got.BitEqual(second_));
}

TEST_F(TwoCommits, CorruptShardFallsBackNamingTheFile) {
  // One flipped byte in the middle of rank 1's data.
  FlipByte(Shard(2, 1), 4096 + 5000);
  TestState got = TestState::Zero(kNumel);
  absl::StatusOr<LoadOutcome> out = LoadAll(&got);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->loaded.meta.step, 1);
  EXPECT_TRUE(got.BitEqual(first_));
  ASSERT_EQ(out->skipped.size(), 1u);
  EXPECT_EQ(out->skipped[0].step, 2);
  EXPECT_EQ(out->skipped[0].why.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(out->skipped[0].why.message(),
              AllOf(HasSubstr("shard-1-of-2.bin"), HasSubstr("checksum mismatch")));
}

TEST_F(TwoCommits, CorruptHeaderFallsBackNamingTheFile) {
  FlipByte(Shard(2, 0), 40);  // inside the JSON header
  TestState got = TestState::Zero(kNumel);
  absl::StatusOr<LoadOutcome> out = LoadAll(&got);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->loaded.meta.step, 1);
  ASSERT_EQ(out->skipped.size(), 1u);
  EXPECT_THAT(out->skipped[0].why.message(),
              AllOf(HasSubstr("shard-0-of-2.bin"), HasSubstr("header")));
}

TEST_F(TwoCommits, TruncatedShardFallsBackNamingTheFile) {
  fs::resize_file(Shard(2, 0), fs::file_size(Shard(2, 0)) - 100);
  TestState got = TestState::Zero(kNumel);
  absl::StatusOr<LoadOutcome> out = LoadAll(&got);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->loaded.meta.step, 1);
  EXPECT_TRUE(got.BitEqual(first_));
  ASSERT_EQ(out->skipped.size(), 1u);
  EXPECT_THAT(out->skipped[0].why.message(),
              AllOf(HasSubstr("shard-0-of-2.bin"), HasSubstr("truncated")));
}

TEST_F(TwoCommits, CorruptCommitFileFallsBack) {
  std::ofstream(StepDir(dir_.path(), 2) + "/COMMIT.json") << "{\"format\": \"colossus-check";
  TestState got = TestState::Zero(kNumel);
  absl::StatusOr<LoadOutcome> out = LoadAll(&got);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->loaded.meta.step, 1);
  ASSERT_EQ(out->skipped.size(), 1u);
  EXPECT_THAT(out->skipped[0].why.message(), HasSubstr("COMMIT.json"));
}

TEST_F(TwoCommits, EveryStepCorruptIsDataLossListingThem) {
  FlipByte(Shard(2, 1), 4096 + 10);
  FlipByte(Shard(1, 0), 4096 + 10);
  TestState got = TestState::Zero(kNumel);
  absl::StatusOr<LoadOutcome> out = LoadAll(&got);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(out.status().message(), AllOf(HasSubstr("step 2: "), HasSubstr("step 1: ")));
}

TEST_F(TwoCommits, ModelConfigMismatchIsRefusedWithoutFallback) {
  LoadRequest req = BaseRequest(0);
  req.model.n_layer = 3;
  absl::StatusOr<LoadOutcome> out = LoadLatestValid(dir_.path(), req);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(out.status().message(),
              AllOf(HasSubstr("model_config.n_layer is 2 in the checkpoint, 3 in this run"),
                    HasSubstr(StepDirName(2))));
}

TEST_F(TwoCommits, OptimizerConfigMismatchIsRefusedUnlessAllowed) {
  LoadRequest req = BaseRequest(0);
  req.optimizer.beta2 = 0.999f;
  absl::StatusOr<LoadOutcome> out = LoadLatestValid(dir_.path(), req);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(out.status().message(), HasSubstr("optimizer_config.beta2"));
  req.check_optimizer = false;
  out = LoadLatestValid(dir_.path(), req);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->loaded.meta.step, 2);
}

// An all-reduce of "loaded" over n threads (a stand-in for the group's communicator).
class ThreadAgreement {
 public:
  explicit ThreadAgreement(int n) : n_(n) {}
  bool AllOk(bool mine) {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t round = round_;
    all_ok_ = all_ok_ && mine;
    if (++arrived_ == n_) {
      result_ = all_ok_;
      all_ok_ = true;
      arrived_ = 0;
      ++round_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return round_ != round; });
    }
    return result_;
  }

 private:
  int n_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t round_ = 0;
  bool all_ok_ = true;
  bool result_ = true;
};

// Resharded to 2 new ranks that each read only their half: the corrupt block is in
// rank 1's half only, yet both ranks must fall back together.
TEST_F(TwoCommits, RanksFallBackTogether) {
  FlipByte(Shard(2, 1), fs::file_size(Shard(2, 1)) - 8);  // the last block of adam_v
  ThreadAgreement agreement(2);
  std::vector<absl::StatusOr<LoadOutcome>> outs(2, absl::UnknownError("not run"));
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      TestState scratch = TestState::Zero(kNumel);
      LoadRequest req = BaseRequest(r);
      const int64_t a = SplitBegin(kNumel, r, 2), b = SplitBegin(kNumel, r + 1, 2);
      for (int i = 0; i < kNumStateVectors; ++i) {
        req.pieces.push_back({{static_cast<StateVector>(i), a, b - a}, scratch.v[i].data() + a});
      }
      outs[r] = LoadLatestValid(dir_.path(), req, [&](bool ok) -> absl::StatusOr<bool> {
        return agreement.AllOk(ok);
      });
    });
  }
  for (std::thread& t : ranks) t.join();
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(outs[r].ok()) << outs[r].status();
    EXPECT_EQ(outs[r]->loaded.meta.step, 1) << "rank " << r;
    ASSERT_EQ(outs[r]->skipped.size(), 1u);
  }
  EXPECT_EQ(outs[0]->skipped[0].why.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(outs[1]->skipped[0].why.message(), HasSubstr("shard-1-of-2.bin"));
}

// A tmpfs of 256 KiB: step 1 (small) fits, step 2 (about 720 KiB) does not.
class FullDisk : public ::testing::Test {
 protected:
  void SetUp() override {
    mount_ = dir_.path() + "/mnt";
    fs::create_directories(mount_);
    if (::mount("tmpfs", mount_.c_str(), "tmpfs", 0, "size=256k") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs here (needs root): " << std::strerror(errno);
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) ::umount2(mount_.c_str(), MNT_DETACH);
  }
  TempDir dir_;
  std::string mount_;
  bool mounted_ = false;
};

TEST_F(FullDisk, SaveFailsNamingTheFileAndThePreviousCommitSurvives) {
  const std::string ckpt = mount_ + "/ckpt";
  Group group(ckpt, 2);
  const TestState small = TestState::Random(1000, 1);
  ASSERT_TRUE(group.SaveAndCommit(1, small));

  const TestState big = TestState::Random(60000, 2);
  for (auto& r : group.Save(2, big)) ASSERT_TRUE(r.ok()) << r.status();
  std::vector<absl::Status> flushed = group.Flush();
  bool named = false;
  for (const absl::Status& s : flushed) {
    // The full disk reaches both ranks as ResourceExhausted (one of them through the
    // store), and the message names the shard file.
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    named |= s.message().find(std::string(StepDirName(2)) + "/shard-") != std::string_view::npos;
  }
  EXPECT_TRUE(named) << flushed[0] << " / " << flushed[1];
  EXPECT_FALSE(fs::exists(StepDir(ckpt, 2) + "/COMMIT.json"));
  for (int r = 0; r < 2; ++r) {
    EXPECT_FALSE(fs::exists(StepDir(ckpt, 2) + "/" + ShardFileName(r, 2) + ".tmp"));
  }
  absl::StatusOr<CommittedStep> latest = FindLatestCommitted(ckpt);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->step, 1);
  EXPECT_TRUE(LoadAsRanks(latest->step_dir, 1000, 2).BitEqual(small));

  // Training goes on; the next save fits again, commits, and sweeps the failed step.
  ASSERT_TRUE(group.SaveAndCommit(3, small));
  EXPECT_FALSE(fs::exists(StepDir(ckpt, 2)));
  EXPECT_EQ(FindLatestCommitted(ckpt)->step, 3);
}

TEST_F(FullDisk, NextSaveReportsThePreviousFailure) {
  const std::string ckpt = mount_ + "/ckpt";
  Group group(ckpt, 1);
  ASSERT_TRUE(group.Save(1, TestState::Random(100000, 3))[0].ok());
  // Without a Flush: the failure of step 1 comes back with the next Save, which still
  // starts (and, being small, commits).
  absl::StatusOr<SaveResult> next = group.Save(2, TestState::Random(100, 4))[0];
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->previous.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(next->previous.message(), HasSubstr(StepDirName(1) + "/shard-0-of-1.bin"));
  EXPECT_TRUE(group.writer(0).Flush().ok());
  EXPECT_TRUE(group.writer(0).last_completed().committed);
  EXPECT_EQ(FindLatestCommitted(ckpt)->step, 2);
}

}  // namespace
}  // namespace colossus::checkpoint::testing
