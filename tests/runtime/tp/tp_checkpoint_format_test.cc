// Strided checkpoint pieces (checkpoint/state.h's PieceRef::run/stride), what makes a
// tensor-parallel rank's column block of a matrix one piece: saved by two "ranks" of a
// column split (one listing its block row by row, the other as one strided piece),
// committed as format version 2 with the layout it was saved at, and loaded whole, as
// another column split, and as a window, bit for bit. Bad pieces are refused.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "colossus/checkpoint/committer.h"
#include "colossus/checkpoint/reader.h"
#include "colossus/checkpoint/writer.h"
#include "colossus/comm/in_memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace colossus::checkpoint {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kRows = 6, kCols = 8;  // the matrix: logical [0, 48)
constexpr int64_t kTail = 10;            // a contiguous vector after it: [48, 58)
constexpr int64_t kNumel = kRows * kCols + kTail;

std::string FreshDir(const std::string& name) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/colossus_strided_", name);
  std::filesystem::remove_all(dir);
  return dir;
}

std::vector<float> Values() {
  std::vector<float> v(kNumel);
  for (int64_t i = 0; i < kNumel; ++i) v[i] = 0.5f + static_cast<float>(i) * 1.25f;
  return v;
}

// Columns [c0, c1) of every row, packed row-major: what a TP rank holds.
std::vector<float> ColumnBlock(const std::vector<float>& all, int64_t c0, int64_t c1) {
  std::vector<float> out;
  for (int64_t r = 0; r < kRows; ++r) {
    for (int64_t c = c0; c < c1; ++c) out.push_back(all[r * kCols + c]);
  }
  return out;
}

StepMeta Meta(int64_t step) {
  StepMeta m;
  m.step = step;
  m.numel = kNumel;
  m.tp = 2;  // two writers: dp 1 x tp 2
  return m;
}

// Two writers on one store, as two TP ranks would be; waits for the commit.
void SaveTwoRanks(const std::string& dir, int64_t step, const SaveRequest& r0,
                  const SaveRequest& r1) {
  auto store = std::make_shared<comm::InMemoryStore>();
  std::vector<std::unique_ptr<CheckpointWriter>> writers;
  for (int rank = 0; rank < 2; ++rank) {
    StoreCommitterOptions so;
    so.rank = rank;
    so.world = 2;
    CheckpointWriterOptions wo;
    wo.dir = dir;
    wo.rank = rank;
    wo.world = 2;
    wo.block_bytes = 64;  // several checksum blocks per shard
    wo.committer = std::make_shared<StoreShardCommitter>(store, so);
    auto w = CheckpointWriter::Create(wo);
    ASSERT_TRUE(w.ok()) << w.status();
    writers.push_back(*std::move(w));
  }
  ASSERT_TRUE(writers[0]->Save(r0).ok());
  ASSERT_TRUE(writers[1]->Save(r1).ok());
  for (auto& w : writers) ASSERT_TRUE(w->Flush().ok());
}

absl::StatusOr<LoadedCheckpoint> Load(const std::string& step_dir, std::vector<DestPiece> pieces) {
  LoadRequest req;
  req.rank = 0;
  req.pieces = std::move(pieces);
  req.check_optimizer = false;
  req.model = GPTConfig();  // as saved (Meta): the default config
  return LoadCheckpoint(step_dir, req);
}

TEST(StridedPieces, DataRangeCutsABlockIntoAtMostThreePieces) {
  const PieceRef block{StateVector::kFirstMoment, 3, 6 * 4, 4, 8};  // 6 runs of 4, stride 8
  const std::vector<PieceRef> got = DataRange(block, 2, 19);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], (PieceRef{StateVector::kFirstMoment, 5, 2}));          // tail of run 0
  EXPECT_EQ(got[1], (PieceRef{StateVector::kFirstMoment, 11, 12, 4, 8}));  // runs 1..3
  EXPECT_EQ(got[2], (PieceRef{StateVector::kFirstMoment, 35, 3}));         // head of run 4
  EXPECT_EQ(DataRange(block, 4, 8), (std::vector<PieceRef>{{StateVector::kFirstMoment, 11, 4}}));
  EXPECT_EQ(SpanEnd(block), 3 + 5 * 8 + 4);
  EXPECT_THAT(WellFormed({StateVector::kParams, 0, 10, 3, 8}), HasSubstr("run 3"));
  EXPECT_THAT(WellFormed({StateVector::kParams, 0, 12, 3, 2}), HasSubstr("stride 2"));
  EXPECT_EQ(WellFormed(block), "");
}

TEST(StridedPieces, ColumnSplitSavesAsVersion2AndLoadsInAnyShape) {
  const std::string dir = FreshDir("split");
  const std::vector<float> all = Values();
  const std::vector<float> left = ColumnBlock(all, 0, 4), right = ColumnBlock(all, 4, 8);

  SaveRequest r0, r1;
  r0.meta = r1.meta = Meta(7);
  // Rank 0 lists its block row by row; the writer must store it as one strided piece.
  for (int64_t r = 0; r < kRows; ++r) {
    r0.pieces.push_back({{StateVector::kParams, r * kCols, 4}, left.data() + r * 4});
  }
  r0.pieces.push_back({{StateVector::kParams, 48, 5}, all.data() + 48});
  r1.pieces.push_back({{StateVector::kParams, 4, kRows * 4, 4, kCols}, right.data()});
  r1.pieces.push_back({{StateVector::kParams, 53, 5}, all.data() + 53});
  SaveTwoRanks(dir, 7, r0, r1);

  const std::string step_dir = StepDir(dir, 7);
  std::ifstream in(step_dir + "/" + kCommitFileName);
  const nlohmann::json commit = nlohmann::json::parse(in);
  EXPECT_EQ(commit["version"], 2);
  EXPECT_EQ(commit["layout"]["tp"], 2);
  EXPECT_EQ(commit["layout"]["dp"], 1);
  ASSERT_EQ(commit["shards"].size(), 2u);
  ASSERT_EQ(commit["shards"][0]["pieces"].size(), 2u);  // one strided + one contiguous
  EXPECT_EQ(commit["shards"][0]["pieces"][0]["run"], 4);
  EXPECT_EQ(commit["shards"][0]["pieces"][0]["stride"], kCols);
  EXPECT_TRUE(VerifyCheckpoint(step_dir).ok());

  // Whole, contiguous: the state as one process holds it.
  std::vector<float> whole(kNumel, -1.0f);
  auto loaded = Load(step_dir, {{{StateVector::kParams, 0, kNumel}, whole.data()}});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(std::memcmp(whole.data(), all.data(), kNumel * 4), 0);
  EXPECT_EQ(loaded->meta.tp, 2);

  // Another column split (what a different TP size holds): columns [2, 6) packed.
  std::vector<float> middle(kRows * 4, -1.0f);
  loaded = Load(step_dir, {{{StateVector::kParams, 2, kRows * 4, 4, kCols}, middle.data()}});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(middle, ColumnBlock(all, 2, 6));

  // A window across both ranks' columns and into the tail, as three pieces.
  std::vector<float> window(3 * 3 + 2, -1.0f);
  loaded = Load(step_dir, {{{StateVector::kParams, 1 * kCols + 3, 9, 3, kCols}, window.data()},
                           {{StateVector::kParams, 52, 2}, window.data() + 9}});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) EXPECT_EQ(window[r * 3 + c], all[(1 + r) * kCols + 3 + c]);
  }
  EXPECT_EQ(window[9], all[52]);
  EXPECT_EQ(window[10], all[53]);

  // Moments were never saved: asking for them names the vector.
  std::vector<float> m(4);
  loaded = Load(step_dir, {{{StateVector::kFirstMoment, 0, 4}, m.data()}});
  EXPECT_TRUE(absl::IsFailedPrecondition(loaded.status())) << loaded.status();
  EXPECT_THAT(loaded.status().message(), HasSubstr("adam_m"));
}

TEST(StridedPieces, ContiguousSavesStayVersion1) {
  const std::string dir = FreshDir("plain");
  const std::vector<float> all = Values();
  SaveRequest r0, r1;
  r0.meta = r1.meta = Meta(3);
  r0.meta.tp = r1.meta.tp = 1;
  r0.pieces.push_back({{StateVector::kParams, 0, 29}, all.data()});
  r1.pieces.push_back({{StateVector::kParams, 29, kNumel - 29}, all.data() + 29});
  SaveTwoRanks(dir, 3, r0, r1);
  std::ifstream in(StepDir(dir, 3) + "/" + kCommitFileName);
  const nlohmann::json commit = nlohmann::json::parse(in);
  EXPECT_EQ(commit["version"], 1);
  EXPECT_EQ(commit["layout"]["dp"], 2);
  EXPECT_EQ(commit["layout"]["tp"], 1);
}

TEST(StridedPieces, MalformedOrInterleavedPiecesAreRefused) {
  const std::string dir = FreshDir("bad");
  const std::vector<float> all = Values();
  StoreCommitterOptions so;
  CheckpointWriterOptions wo;
  wo.dir = dir;
  wo.committer = std::make_shared<StoreShardCommitter>(std::make_shared<comm::InMemoryStore>(), so);
  auto w = CheckpointWriter::Create(wo);
  ASSERT_TRUE(w.ok());
  SaveRequest req;
  req.meta = Meta(1);
  req.meta.tp = 1;
  req.pieces = {{{StateVector::kParams, 0, 10, 3, kCols}, all.data()}};  // 3 does not divide 10
  auto r = (*w)->Save(req);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("run 3"));
  // Two column blocks of one matrix in one shard: their spans interleave.
  req.pieces = {{{StateVector::kParams, 0, 24, 4, kCols}, all.data()},
                {{StateVector::kParams, 4, 24, 4, kCols}, all.data()}};
  r = (*w)->Save(req);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("overlap"));
  // A strided piece whose last run leaves the vector.
  req.pieces = {{{StateVector::kParams, 20, 24, 4, 10}, all.data()}};
  r = (*w)->Save(req);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("outside"));
  // A tp that does not divide the writing ranks.
  req.pieces = {{{StateVector::kParams, 0, kNumel}, all.data()}};
  req.meta.tp = 2;
  r = (*w)->Save(req);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("tensor-parallel size 2"));
}

}  // namespace
}  // namespace colossus::checkpoint
