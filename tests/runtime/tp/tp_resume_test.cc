// Checkpoints of tensor-parallel jobs through the real Trainer on real processes over
// Gloo (tests/runtime/parallel's harness):
//   - tp 2 and tp 2 x dp 2: 40 steps in one go and 20 steps, stop, the same command
//     again to 40, give the same losses and bit-identical final weights; COMMIT.json
//     records the layout it was saved at (tp 2 x dp 2 with ZeRO-1, and a refused config
//     change: tests/runtime/recovery/resume_test.cc);
//   - a tp 2 checkpoint resumes in one process, at dp 2, and at tp 2 x dp 2 with ZeRO-1,
//     and the next losses match continuing at tp 2 (to reduction order);
//   - colossus-export's loader reads a tp 2 checkpoint as the weights the job had;
//   - ZeRO-1 with tp 2 x dp 2 matches plain tp 2 x dp 2 within 1e-6 and holds 1/dp of
//     its optimizer state per rank.
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "colossus/hf_export.h"
#include "colossus/weights.h"
#include "dp_harness.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace colossus::testing {
namespace {

namespace fs = std::filesystem;

std::string Base(const std::string& name) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/colossus_tp_resume_", name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TrainConfig ResumeConfig(const std::string& corpus, const std::string& checkpoint_dir) {
  TrainConfig c = TinyDpConfig(corpus);
  // Micro-batches of 4 (global batch 8): half the tensor-parallel collectives per step.
  c.batch_size = 4;
  c.steps = 40;
  c.optimizer.total_steps = 40;  // the schedule must not depend on one invocation's steps
  c.eval_every = 0;
  c.checkpoint_dir = checkpoint_dir;
  c.checkpoint_every = 10;
  c.checkpoint_keep = 2;
  return c;
}

nlohmann::json ReadCommit(const std::string& dir, int64_t step) {
  std::ifstream in(absl::StrFormat("%s/step-%08d/COMMIT.json", dir, step));
  return nlohmann::json::parse(in);
}

struct Layout {
  int ranks;
  int tp;
  int zero;
};

class TpResumeTest : public ::testing::TestWithParam<Layout> {};

TEST_P(TpResumeTest, StoppedAndResumedRunEqualsOneRunBitForBit) {
  const Layout l = GetParam();
  const std::string name = absl::StrCat("r", l.ranks, "t", l.tp, "z", l.zero);
  const std::string corpus = MakeCorpus("tp_resume_" + name);
  const std::string base = Base(name);

  TrainConfig straight = ResumeConfig(corpus, base + "/ckpt_straight");
  straight.tensor_parallel = l.tp;
  straight.zero = l.zero;
  const RunOutput a = RunTraining(straight, l.ranks, base + "/straight");
  ASSERT_TRUE(a.ok);
  ASSERT_EQ(a.losses.size(), 40u);

  TrainConfig first = straight;
  first.checkpoint_dir = base + "/ckpt_split";
  first.steps = 20;
  const RunOutput b1 = RunTraining(first, l.ranks, base + "/split1");
  ASSERT_TRUE(b1.ok);
  ASSERT_EQ(b1.losses.size(), 20u);
  const nlohmann::json commit = ReadCommit(first.checkpoint_dir, 20);
  EXPECT_EQ(commit["layout"]["tp"], l.tp);
  EXPECT_EQ(commit["layout"]["dp"], l.ranks / l.tp);
  EXPECT_EQ(commit["num_shards"], l.ranks);
  EXPECT_EQ(commit["version"], 2);  // column blocks are strided pieces

  TrainConfig again = first;
  again.steps = 40;
  const RunOutput b2 = RunTraining(again, l.ranks, base + "/split2");
  ASSERT_TRUE(b2.ok);
  ASSERT_EQ(b2.losses.size(), 20u);  // it resumed at 20
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(b2.losses[i], a.losses[20 + i]) << "step " << 20 + i;
    EXPECT_EQ(b2.grad_norms[i], a.grad_norms[20 + i]) << "step " << 20 + i;
  }
  for (size_t r = 0; r < a.ranks.size(); ++r) {
    EXPECT_TRUE(BitIdentical(a.ranks[r].weights_path, b2.ranks[r].weights_path)) << "rank " << r;
  }
  EXPECT_TRUE(fs::exists(first.checkpoint_dir + "/step-00000040/COMMIT.json"));
  EXPECT_FALSE(fs::exists(first.checkpoint_dir + "/step-00000010"));  // keep 2
}

INSTANTIATE_TEST_SUITE_P(Layouts, TpResumeTest,
                         ::testing::Values(Layout{2, 2, 0}, Layout{4, 2, 0}),
                         [](const auto& info) {
                           const Layout& l = info.param;
                           return absl::StrCat("Tp", l.tp, "Dp", l.ranks / l.tp,
                                               l.zero ? "Zero1" : "");
                         });

// A tp 2 checkpoint at step 20 resumed elsewhere: the next steps' losses match those of
// continuing at tp 2 to summation order (bit-identity is not expected across layouts).
TEST(TpCheckpoint, Tp2CheckpointResumesAtOtherLayouts) {
  const std::string corpus = MakeCorpus("tp_relayout");
  const std::string base = Base("relayout");
  TrainConfig tp2 = ResumeConfig(corpus, base + "/ckpt_saved");
  tp2.tensor_parallel = 2;
  tp2.steps = 20;
  const RunOutput saved = RunTraining(tp2, 2, base + "/tp2_first");
  ASSERT_TRUE(saved.ok);

  // colossus-export's loader: the checkpoint holds exactly the weights the job had.
  auto exported = hf::LoadCheckpointModel(tp2.checkpoint_dir, 20);
  ASSERT_TRUE(exported.ok()) << exported.status();
  const std::string exported_path = base + "/exported.safetensors";
  ASSERT_TRUE(SaveWeights(*exported->model, exported_path).ok());
  EXPECT_TRUE(BitIdentical(exported_path, saved.ranks[0].weights_path));

  struct Variant {
    const char* name;
    int ranks;
    int tp;
    int zero;
  };
  std::vector<RunOutput> runs;
  for (const Variant& v : {Variant{"tp2", 2, 2, 0}, Variant{"one", 0, 1, 0},
                           Variant{"dp2", 2, 1, 0}, Variant{"tp2dp2zero", 4, 2, 1}}) {
    const std::string dir = absl::StrCat(base, "/ckpt_", v.name);
    fs::copy(tp2.checkpoint_dir, dir, fs::copy_options::recursive);
    TrainConfig c = tp2;
    c.checkpoint_dir = dir;
    c.steps = 40;
    c.tensor_parallel = v.tp;
    c.zero = v.zero;
    runs.push_back(RunTraining(c, v.ranks, absl::StrCat(base, "/", v.name)));
    ASSERT_TRUE(runs.back().ok) << v.name;
    ASSERT_EQ(runs.back().losses.size(), 20u) << v.name << " did not resume at step 20";
  }
  const RunOutput& cont = runs[0];
  for (size_t k = 1; k < runs.size(); ++k) {
    // The first steps after the resume: the same state, only summation orders differ.
    const std::vector<double> next(runs[k].losses.begin(), runs[k].losses.begin() + 5);
    const std::vector<double> want(cont.losses.begin(), cont.losses.begin() + 5);
    EXPECT_LT(MaxRelativeDifference(next, want), 1e-6) << "variant " << k;
    // And the rest stays on the same curve.
    EXPECT_LT(MaxRelativeDifference(runs[k].losses, cont.losses), 1e-5) << "variant " << k;
    std::string worst;
    EXPECT_LT(MaxRelativeDifference(runs[k].ranks[0].weights_path, cont.ranks[0].weights_path,
                                    &worst),
              1e-4)
        << "variant " << k << ": " << worst;
  }
}

// ZeRO-1 within each TP index's DP group against plain TP x DP: same curve, same
// weights to rounding, 1/dp of the optimizer state per rank.
TEST(TpZero, MatchesTpAndHoldsOneOverDpOfTheOptimizerState) {
  const std::string corpus = MakeCorpus("tp_zero");
  const std::string base = Base("zero");
  TrainConfig c = TinyDpConfig(corpus);
  c.tensor_parallel = 2;
  const RunOutput plain = RunTraining(c, 4, base + "/plain");
  c.zero = 1;
  const RunOutput zero = RunTraining(c, 4, base + "/zero");
  ASSERT_TRUE(plain.ok && zero.ok);
  ASSERT_EQ(zero.losses.size(), plain.losses.size());
  EXPECT_LT(MaxRelativeDifference(zero.losses, plain.losses), 1e-6);
  EXPECT_LT(MaxRelativeDifference(zero.grad_norms, plain.grad_norms), 1e-6);
  EXPECT_LT(MaxRelativeDifference(zero.val_losses, plain.val_losses), 1e-6);
  std::string worst;
  EXPECT_LT(MaxRelativeDifference(zero.ranks[0].weights_path, plain.ranks[0].weights_path,
                                  &worst),
            1e-6)
      << worst;
  for (size_t r = 0; r < zero.ranks.size(); ++r) {
    // Every rank gathered the same whole model (replicated tensors agreed: GatherTo).
    EXPECT_TRUE(BitIdentical(zero.ranks[r].weights_path, zero.ranks[0].weights_path)) << r;
    // Plain TP holds 8 bytes per element of its local flat buffer; ZeRO-1 over dp 2
    // holds 8 per element of half of it (the buffer padded to a multiple of 2).
    const size_t plain_elems = plain.ranks[r].state_bytes / 8;
    EXPECT_EQ(zero.ranks[r].state_bytes, 8 * ((plain_elems + 1) / 2)) << "rank " << r;
    EXPECT_GT(plain.ranks[r].state_bytes, 0u);
  }
}

}  // namespace
}  // namespace colossus::testing
