// Resume from a sharded checkpoint through the real Trainer: training to step 40 in one
// go, and training to step 20, stopping, and running the same config again to step 40,
// give bit-identical final weights and losses (ARCHITECTURE.md, principle 3), in one
// process, on 2 data-parallel ranks (plain DP and ZeRO-1) and on 4 ranks as tensor
// parallel 2 x data parallel 2 with ZeRO-1 (more TP layouts: tests/runtime/tp),
// checkpointing every 10; a run whose optimizer differs is refused on every rank.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "colossus/checkpoint/format.h"
#include "dp_harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace colossus::testing {
namespace {

std::string TempDir(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/colossus_resume_", name);
}

TrainConfig ResumeConfig(const std::string& corpus, const std::string& checkpoint_dir) {
  TrainConfig c = TinyDpConfig(corpus);
  c.steps = 40;
  // The schedule must not depend on how many steps one invocation runs.
  c.optimizer.total_steps = 40;
  c.eval_every = 0;
  c.checkpoint_dir = checkpoint_dir;
  c.checkpoint_every = 10;
  c.checkpoint_keep = 2;
  return c;
}

struct Layout {
  int ranks;  // 0: one process without a group
  int zero;
  int tp;
};

class ResumeTest : public ::testing::TestWithParam<Layout> {};

TEST_P(ResumeTest, StoppedAndResumedRunEqualsOneRunBitForBit) {
  const auto [ranks, zero, tp] = GetParam();
  const std::string name = absl::StrCat("r", ranks, "z", zero, "t", tp);
  const std::string corpus = MakeCorpus("resume_" + name);
  const std::string base = TempDir(name);
  std::filesystem::remove_all(base);

  TrainConfig straight = ResumeConfig(corpus, base + "/ckpt_straight");
  straight.zero = zero;
  straight.tensor_parallel = tp;
  const RunOutput a = RunTraining(straight, ranks, base + "/straight");
  ASSERT_TRUE(a.ok);
  ASSERT_EQ(a.losses.size(), 40u);

  TrainConfig first = ResumeConfig(corpus, base + "/ckpt_split");
  first.zero = zero;
  first.tensor_parallel = tp;
  first.steps = 20;
  const RunOutput b1 = RunTraining(first, ranks, base + "/split1");
  ASSERT_TRUE(b1.ok);
  ASSERT_EQ(b1.losses.size(), 20u);
  EXPECT_TRUE(std::filesystem::exists(base + "/ckpt_split/step-00000020/COMMIT.json"));

  TrainConfig again = first;
  again.steps = 40;  // the same run, told to go on to 40
  const RunOutput b2 = RunTraining(again, ranks, base + "/split2");
  ASSERT_TRUE(b2.ok);
  // It resumed at 20: only steps 20..39 ran, with exactly the straight run's losses.
  ASSERT_EQ(b2.losses.size(), 20u);
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(b2.losses[i], a.losses[20 + i]) << "step " << 20 + i;
  }
  for (size_t r = 0; r < a.ranks.size(); ++r) {
    EXPECT_TRUE(BitIdentical(a.ranks[r].weights_path, b2.ranks[r].weights_path)) << "rank " << r;
  }
  // keep 2: steps 30 and 40 remain committed, 10 and 20 were retired.
  EXPECT_TRUE(std::filesystem::exists(base + "/ckpt_split/step-00000040/COMMIT.json"));
  EXPECT_TRUE(std::filesystem::exists(base + "/ckpt_split/step-00000030/COMMIT.json"));
  EXPECT_FALSE(std::filesystem::exists(base + "/ckpt_split/step-00000010"));
  // COMMIT.json records whether ZeRO sharded the moments; a commit written before that
  // field existed (without layout.zero) still reads, as "not recorded".
  {
    const std::string path = base + "/ckpt_split/step-00000040/COMMIT.json";
    std::ifstream in(path);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    absl::StatusOr<checkpoint::CommitRecord> commit = checkpoint::DecodeCommit(text, path);
    ASSERT_TRUE(commit.ok()) << commit.status();
    EXPECT_EQ(commit->meta.zero, zero == 1 && ranks / tp > 1 ? 1 : 0);
    nlohmann::json old = nlohmann::json::parse(text);
    ASSERT_TRUE(old["layout"].contains("zero"));
    old["layout"].erase("zero");
    commit = checkpoint::DecodeCommit(old.dump(), path);
    ASSERT_TRUE(commit.ok()) << commit.status();
    EXPECT_EQ(commit->meta.zero, -1);
    EXPECT_EQ(commit->meta.dp, ranks == 0 ? 1 : ranks / tp);
    old["layout"]["zero"] = 2;
    EXPECT_THAT(checkpoint::DecodeCommit(old.dump(), path).status().message(),
                ::testing::HasSubstr("layout.zero"));
  }

  // A run whose optimizer differs from the checkpoint's is refused, not silently
  // restarted on top of it.
  TrainConfig other = again;
  other.steps = 50;
  other.optimizer.total_steps = 50;
  // (The harness reports each failed rank as a test failure: captured and checked here.)
  ::testing::TestPartResultArray failures;
  RunOutput refused;
  {
    ::testing::ScopedFakeTestPartResultReporter capture(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    refused = RunTraining(other, ranks, base + "/refused");
  }
  EXPECT_FALSE(refused.ok);
  ASSERT_EQ(failures.size(), ranks == 0 ? 1 : ranks);
  for (int i = 0; i < failures.size(); ++i) {
    EXPECT_THAT(failures.GetTestPartResult(i).message(),
                ::testing::HasSubstr("optimizer_config.total_steps is 40 in the checkpoint, 50 "
                                     "in this run"));
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, ResumeTest,
                         ::testing::Values(Layout{0, 0, 1}, Layout{2, 0, 1}, Layout{2, 1, 1},
                                           Layout{4, 1, 2}),
                         [](const auto& info) {
                           const Layout& l = info.param;
                           if (l.ranks == 0) return std::string("OneProcess");
                           return absl::StrCat(l.tp > 1 ? absl::StrCat("Tp", l.tp) : "", "Dp",
                                               l.ranks / l.tp, l.zero ? "Zero1" : "");
                         });

}  // namespace
}  // namespace colossus::testing
