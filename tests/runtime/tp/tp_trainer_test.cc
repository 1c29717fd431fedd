// The real Trainer with parallel.tensor_parallel = 2 on real processes (tests/runtime/
// parallel's harness: corpus, tiny config with clipping, warmup and decay, 20 steps,
// validation, samples) against one plain process with the same global batch.
#include <filesystem>

#include "dp_harness.h"
#include "gtest/gtest.h"

namespace colossus::testing {
namespace {

void ExpectMatchesOneProcess(int ranks, const std::string& name) {
  const std::string corpus = MakeCorpus(name + "_corpus");
  const TrainConfig base = TinyDpConfig(corpus);
  const RunOutput one = RunTraining(base, 0, ::testing::TempDir() + "/" + name + "_one");
  TrainConfig tp = base;
  tp.tensor_parallel = 2;
  const RunOutput many = RunTraining(tp, ranks, ::testing::TempDir() + "/" + name + "_tp");
  ASSERT_TRUE(one.ok && many.ok);
  ASSERT_EQ(many.losses.size(), static_cast<size_t>(base.steps));
  EXPECT_LT(MaxRelativeDifference(many.losses, one.losses), 1e-5);
  EXPECT_LT(MaxRelativeDifference(many.grad_norms, one.grad_norms), 1e-5);
  ASSERT_EQ(many.val_losses.size(), one.val_losses.size());
  EXPECT_LT(MaxRelativeDifference(many.val_losses, one.val_losses), 1e-5);
  std::string worst;
  EXPECT_LT(MaxRelativeDifference(many.ranks[0].weights_path, one.ranks[0].weights_path, &worst),
            1e-5)
      << worst;
  for (int r = 0; r < ranks; ++r) {
    // Every rank gathered the same whole model; only rank 0 wrote the outputs.
    EXPECT_TRUE(BitIdentical(many.ranks[r].weights_path, many.ranks[0].weights_path)) << r;
    EXPECT_EQ(many.ranks[r].wrote_metrics, r == 0) << r;
    EXPECT_EQ(many.ranks[r].wrote_weights, r == 0) << r;
    // Each rank holds roughly half of the big matrices' optimizer state.
    EXPECT_LT(many.ranks[r].state_bytes, one.ranks[0].state_bytes * 3 / 4) << r;
  }
}

TEST(TensorParallelTrainer, TwoTensorParallelRanksMatchOneProcess) {
  ExpectMatchesOneProcess(2, "tp2");
}

TEST(TensorParallelTrainer, TwoByTwoTpDpMatchesOneProcess) {
  ExpectMatchesOneProcess(4, "tp2dp2");
}

}  // namespace
}  // namespace colossus::testing
