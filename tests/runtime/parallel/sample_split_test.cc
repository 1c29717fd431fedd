// The data-parallel sample split: contiguous slices of each step's global batch.
#include "colossus/parallel/sample_split.h"

#include <set>

#include "gtest/gtest.h"

namespace colossus::parallel {
namespace {

TEST(SampleSplit, RanksTakeContiguousSlicesOfTheStepsGlobalBatch) {
  // Global batch 8 = 2 samples x 2 micro-batches x 2 ranks: rank 1 reads 4..7 of a step.
  EXPECT_EQ(FirstSampleOf(3, 0, 0, 2, 2, 2), 24);
  EXPECT_EQ(FirstSampleOf(3, 1, 0, 2, 2, 2), 26);
  EXPECT_EQ(FirstSampleOf(3, 0, 1, 2, 2, 2), 28);
  EXPECT_EQ(FirstSampleOf(3, 1, 1, 2, 2, 2), 30);
  // One micro-batch per rank: data.h's "rank r of R reads Batch(s*R*B + r*B, B)".
  EXPECT_EQ(FirstSampleOf(5, 0, 3, 4, 16, 1), 5 * 4 * 16 + 3 * 16);
}

TEST(SampleSplit, EverySplitOfAGlobalBatchReadsTheSameSamplesOnce) {
  const int global = 24, B = 2;
  for (int dp : {1, 2, 3, 4, 6, 12}) {
    const int k = global / (B * dp);
    for (int64_t step : {0, 7}) {
      std::multiset<int64_t> seen;
      for (int r = 0; r < dp; ++r) {
        for (int m = 0; m < k; ++m) {
          const int64_t first = FirstSampleOf(step, m, r, dp, B, k);
          for (int i = 0; i < B; ++i) seen.insert(first + i);
        }
      }
      ASSERT_EQ(seen.size(), static_cast<size_t>(global)) << dp << " ranks";
      EXPECT_EQ(*seen.begin(), step * global);
      EXPECT_EQ(*seen.rbegin(), (step + 1) * global - 1);
      EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), seen.size()) << "repeats";
    }
  }
}

}  // namespace
}  // namespace colossus::parallel
