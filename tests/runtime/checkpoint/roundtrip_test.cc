// Round trips and resharding: what a job saves at d ranks comes back bit for bit at d'
// ranks, including through a real GPT's flat layout (alignment gaps, ZeRO padding).
#include <cstring>
#include <tuple>

#include "checkpoint_test_util.h"
#include "colossus/kernels/backend.h"
#include "colossus/model.h"
#include "colossus/optimizer.h"
#include "gmock/gmock.h"

namespace colossus::checkpoint::testing {
namespace {

using ::testing::HasSubstr;

class RoundTrip : public ::testing::TestWithParam<std::tuple<int, int64_t>> {};

TEST_P(RoundTrip, SameSizeIsBitExact) {
  const auto [world, numel] = GetParam();
  TempDir dir;
  const TestState state = TestState::Random(numel, 7u * world + numel);
  Group group(dir.path(), world);
  ASSERT_TRUE(group.SaveAndCommit(12, state));

  absl::StatusOr<CommittedStep> latest = FindLatestCommitted(dir.path());
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->step, 12);
  EXPECT_EQ(latest->record.meta.dp, world);
  EXPECT_EQ(latest->record.meta.data_position, 12 * 96);
  EXPECT_EQ(static_cast<int>(latest->record.shards.size()), world);
  // The recorded whole-file checksums are the files' (what a coordinator is told).
  EXPECT_TRUE(VerifyCheckpoint(latest->step_dir).ok());

  EXPECT_TRUE(LoadAsRanks(latest->step_dir, numel, world).BitEqual(state));
}

// P = 3 on 4 ranks leaves a rank with nothing to write; 1000 floats do not fill whole
// 256-byte checksum blocks.
INSTANTIATE_TEST_SUITE_P(Worlds, RoundTrip,
                         ::testing::Combine(::testing::Values(1, 2, 4),
                                            ::testing::Values(int64_t{3}, int64_t{1000},
                                                              int64_t{12345})));

TEST(Checkpoint, ShardFileFollowsTheDocumentedLayout) {
  TempDir dir;
  const TestState state = TestState::Random(1000, 3);
  Group group(dir.path(), 2);
  ASSERT_TRUE(group.SaveAndCommit(5, state));
  const std::string step_dir = StepDir(dir.path(), 5);
  EXPECT_TRUE(fs::exists(step_dir + "/COMMIT.json"));
  for (int r = 0; r < 2; ++r) {
    const std::string path = step_dir + "/" + ShardFileName(r, 2);
    std::ifstream in(path, std::ios::binary);
    char magic[8];
    in.read(magic, 8);
    EXPECT_EQ(std::memcmp(magic, kShardMagic, 8), 0);
    // Header padded to 4096, then 3 vectors x 500 floats.
    EXPECT_EQ(fs::file_size(path), 4096u + 3 * 500 * 4);
    EXPECT_FALSE(fs::exists(path + ".tmp"));
  }
  // A flipped data byte is caught by the whole-file check, naming the file.
  FlipByte(step_dir + "/" + ShardFileName(1, 2), 4096 + 17);
  absl::Status v = VerifyCheckpoint(step_dir);
  EXPECT_EQ(v.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(v.message(), HasSubstr("shard-1-of-2.bin"));
}

struct Reshard {
  int from;
  int to;
};

class Resharding : public ::testing::TestWithParam<Reshard> {};

TEST_P(Resharding, LoadsBitExactAtAnotherWorldSize) {
  const Reshard p = GetParam();
  const int64_t numel = 10007;  // prime: no split boundary lines up with another
  TempDir dir;
  const TestState state = TestState::Random(numel, 100 + p.from);
  Group group(dir.path(), p.from);
  ASSERT_TRUE(group.SaveAndCommit(3, state));
  const std::string step_dir = StepDir(dir.path(), 3);
  EXPECT_TRUE(LoadAsRanks(step_dir, numel, p.to).BitEqual(state));

  // A run that straddles every old shard boundary, read by one rank.
  std::vector<float> window(static_cast<size_t>(numel / 2));
  LoadRequest req = BaseRequest(0);
  req.pieces.push_back({{StateVector::kSecondMoment, numel / 4, numel / 2}, window.data()});
  absl::StatusOr<LoadedCheckpoint> loaded = LoadCheckpoint(step_dir, req);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(std::memcmp(window.data(), state.v[2].data() + numel / 4, window.size() * 4), 0);
  // It read its quarter-to-three-quarters plus at most a block on each side per shard.
  EXPECT_LE(loaded->bytes_read, numel / 2 * 4 + 2 * 256 * p.from);
}

INSTANTIATE_TEST_SUITE_P(Worlds, Resharding,
                         ::testing::Values(Reshard{4, 2}, Reshard{2, 3}, Reshard{1, 4},
                                           Reshard{3, 1}),
                         [](const ::testing::TestParamInfo<Reshard>& info) {
                           return std::to_string(info.param.from) + "to" +
                                  std::to_string(info.param.to);
                         });

// A real GPT: its flat buffers have alignment gaps and, for ZeRO on 3 ranks, end
// padding. Save as ZeRO-1 on 3 ranks (moments held as flat shards), load as plain DP on 2
// ranks (everything whole): every parameter and moment lands where it belongs.
TEST(Checkpoint, GptZeroShardsLoadIntoPlainDataParallel) {
  TempDir dir;
  auto backend = kernels::MakeCpuBackend(1);
  const GPTConfig config = TestModel();
  const int zero_world = 3;
  std::vector<std::unique_ptr<GPT>> models;
  for (int r = 0; r < zero_world; ++r) {
    absl::StatusOr<std::unique_ptr<GPT>> m = GPT::Create(config, backend.get(), 1, 8, zero_world);
    ASSERT_TRUE(m.ok()) << m.status();
    (*m)->InitWeights(42);
    models.push_back(*std::move(m));
  }
  const kernels::View flat = models[0]->flat_params();
  const FlatLayout layout = FlatLayout::FromModel(*models[0]);
  ASSERT_EQ(layout.numel(), models[0]->num_parameters());
  ASSERT_GT(flat.numel, layout.numel());  // gaps and padding exist
  // Moments: the value of logical element i is i + 0.5 (m) and -i (v); every rank
  // holds its ZeRO shard [r*S, (r+1)*S) of the padded flat buffer.
  const int64_t S = flat.numel / zero_world;
  std::vector<std::vector<float>> m(zero_world, std::vector<float>(S)),
      v(zero_world, std::vector<float>(S));
  for (int r = 0; r < zero_world; ++r) {
    for (const LayoutSegment& s : layout.FlatToLogical(r * S, (r + 1) * S)) {
      for (int64_t k = 0; k < s.numel; ++k) {
        m[r][s.flat - r * S + k] = static_cast<float>(s.logical + k) + 0.5f;
        v[r][s.flat - r * S + k] = -static_cast<float>(s.logical + k);
      }
    }
  }
  {
    Group group(dir.path(), zero_world);
    for (int r = 0; r < zero_world; ++r) {
      HeldState held{models[r]->flat_params().as<float>(), m[r].data(), v[r].data(), r * S,
                     (r + 1) * S};
      SaveRequest req;
      req.meta = MetaFor(8, layout.numel());
      req.pieces = PiecesToSave(layout, held, r, zero_world);
      req.backend = backend.get();
      ASSERT_TRUE(group.writer(r).Save(req).ok());
    }
    for (const absl::Status& s : group.Flush()) ASSERT_TRUE(s.ok()) << s;
  }

  for (int r = 0; r < 2; ++r) {
    absl::StatusOr<std::unique_ptr<GPT>> model = GPT::Create(config, backend.get(), 1, 8, 1);
    ASSERT_TRUE(model.ok());
    const int64_t n = (*model)->flat_params().numel;
    std::vector<float> mm(n, 7.0f), vv(n, 7.0f);
    const FlatLayout dp_layout = FlatLayout::FromModel(**model);
    HeldState held{(*model)->flat_params().as<float>(), mm.data(), vv.data(), 0, n};
    LoadRequest req = BaseRequest(r);
    req.pieces = PiecesToLoad(dp_layout, held);
    req.backend = backend.get();
    absl::StatusOr<LoadedCheckpoint> loaded = LoadCheckpoint(StepDir(dir.path(), 8), req);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    for (size_t t = 0; t < models[0]->params().size(); ++t) {
      const Tensor& want = models[0]->params()[t];
      const Tensor& got = (*model)->params()[t];
      ASSERT_EQ(std::memcmp(want.data, got.data, want.bytes()), 0) << want.name;
    }
    for (const LayoutSegment& s : dp_layout.segments()) {
      for (int64_t k = 0; k < s.numel; ++k) {
        ASSERT_EQ(mm[s.flat + k], static_cast<float>(s.logical + k) + 0.5f) << s.logical + k;
        ASSERT_EQ(vv[s.flat + k], -static_cast<float>(s.logical + k)) << s.logical + k;
      }
    }
    // Gaps between tensors were not written.
    int gaps = 0;
    const auto& segs = dp_layout.segments();
    for (size_t k = 0; k + 1 < segs.size(); ++k) {
      if (segs[k].flat + segs[k].numel < segs[k + 1].flat) {
        ++gaps;
        EXPECT_EQ(mm[segs[k].flat + segs[k].numel], 7.0f);
      }
    }
    EXPECT_GT(gaps, 0);
  }
}

// Training resumed from a checkpoint continues exactly: 6 AdamW steps in one go equal
// 3 steps, a save, and 3 more steps in a fresh model and optimizer loaded from it, bit
// for bit (the state a checkpoint holds is all the optimizer needs).
TEST(Checkpoint, AdamWResumeIsBitExact) {
  TempDir dir;
  auto backend = kernels::MakeCpuBackend(1);
  const GPTConfig config = TestModel();
  const OptimizerConfig opt = MetaFor(0, 0).optimizer;
  const int B = 2, T = 8;
  auto train = [&](GPT& model, AdamW& adamw, int64_t from, int64_t to) {
    for (int64_t step = from; step < to; ++step) {
      std::vector<int32_t> tokens(B * T), targets(B * T);
      std::mt19937 rng(static_cast<uint32_t>(step));  // the batch is a function of the step
      for (int i = 0; i < B * T; ++i) {
        tokens[i] = static_cast<int32_t>(rng() % config.vocab_size);
        targets[i] = static_cast<int32_t>(rng() % config.vocab_size);
      }
      model.ZeroGrad();
      ASSERT_TRUE(model.Forward(tokens.data(), targets.data(), B, T).ok());
      model.Backward();
      adamw.Step(step);
    }
  };
  auto held_of = [](GPT& model, AdamW& adamw) {
    return HeldState{model.flat_params().as<float>(), adamw.first_moment().as<float>(),
                     adamw.second_moment().as<float>(), 0, model.flat_params().numel};
  };

  auto straight = *GPT::Create(config, backend.get(), B, T);
  straight->InitWeights(5);
  auto straight_opt = *AdamW::Create(opt, straight.get());
  train(*straight, *straight_opt, 0, 6);

  {
    auto model = *GPT::Create(config, backend.get(), B, T);
    model->InitWeights(5);
    auto adamw = *AdamW::Create(opt, model.get());
    train(*model, *adamw, 0, 3);
    Group group(dir.path(), 1);
    SaveRequest req;
    req.meta = MetaFor(3, model->num_parameters());
    req.pieces = PiecesToSave(FlatLayout::FromModel(*model), held_of(*model, *adamw), 0, 1);
    req.backend = backend.get();
    ASSERT_TRUE(group.writer(0).Save(req).ok());
    // Training goes on while the shard is written: the save holds the step-3 state.
    train(*model, *adamw, 3, 5);
    ASSERT_TRUE(group.writer(0).Flush().ok());
  }

  auto resumed = *GPT::Create(config, backend.get(), B, T);
  auto resumed_opt = *AdamW::Create(opt, resumed.get());
  LoadRequest req = BaseRequest(0);
  req.pieces = PiecesToLoad(FlatLayout::FromModel(*resumed), held_of(*resumed, *resumed_opt));
  req.backend = backend.get();
  absl::StatusOr<LoadOutcome> out = LoadLatestValid(dir.path(), req);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->loaded.meta.step, 3);
  resumed->SyncComputeWeights();
  train(*resumed, *resumed_opt, out->loaded.meta.step, 6);

  const kernels::View a = straight->flat_params(), b = resumed->flat_params();
  ASSERT_EQ(a.numel, b.numel);
  EXPECT_EQ(std::memcmp(a.data, b.data, a.bytes()), 0);
  EXPECT_EQ(std::memcmp(straight_opt->second_moment().data, resumed_opt->second_moment().data,
                        straight_opt->second_moment().bytes()),
            0);
}

TEST(Checkpoint, OverlappingPiecesAreRefused) {
  TempDir dir;
  Group group(dir.path(), 1);
  TestState state = TestState::Random(100, 1);
  SaveRequest req;
  req.meta = MetaFor(1, 100);
  req.pieces = {{{StateVector::kParams, 0, 60}, state.v[0].data()},
                {{StateVector::kParams, 50, 50}, state.v[0].data() + 50}};
  absl::StatusOr<SaveResult> r = group.writer(0).Save(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("overlap"));
  req.pieces = {{{StateVector::kParams, 90, 20}, state.v[0].data()}};
  EXPECT_EQ(group.writer(0).Save(req).status().code(), absl::StatusCode::kInvalidArgument);
}

// A rank's pieces that leave part of a vector to nobody never commit.
TEST(Checkpoint, AHoleInTheStateIsNotCommitted) {
  TempDir dir;
  Group group(dir.path(), 1);
  TestState state = TestState::Random(100, 1);
  SaveRequest req;
  req.meta = MetaFor(1, 100);
  req.pieces = {{{StateVector::kParams, 0, 40}, state.v[0].data()},
                {{StateVector::kParams, 50, 50}, state.v[0].data() + 50}};
  ASSERT_TRUE(group.writer(0).Save(req).ok());
  absl::Status s = group.writer(0).Flush();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("params: elements [40, 50)"));
  EXPECT_FALSE(fs::exists(StepDir(dir.path(), 1) + "/COMMIT.json"));
}

}  // namespace
}  // namespace colossus::checkpoint::testing
