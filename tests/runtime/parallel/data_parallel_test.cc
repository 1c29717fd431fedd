// Data parallelism end to end: the real Trainer as 1, 2, 3 and 4 processes over Gloo,
// compared step by step and weight by weight.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "colossus/trainer.h"
#include "dp_harness.h"
#include "gtest/gtest.h"

namespace colossus::testing {
namespace {

std::string RunDir(const std::string& name) { return ::testing::TempDir() + "/dp_runs/" + name; }

// Samples of every rank differ, so if the split, the averaging or the clipping norm
// were wrong (a rank's gradient counted twice, a sum instead of a mean, a local norm)
// the losses would part after the first step by far more than these tolerances.
TEST(DataParallel, TwoAndFourRanksMatchOneRankWithTheSameGlobalBatch) {
  const TrainConfig c = TinyDpConfig(MakeCorpus("dp_equivalence"));
  const RunOutput one = RunTraining(c, 0, RunDir("one"));
  ASSERT_TRUE(one.ok);
  ASSERT_EQ(one.losses.size(), 20u);
  EXPECT_LT(one.losses.back(), one.losses.front() - 0.5) << "the reference run should learn";
  EXPECT_GT(one.grad_norms.front(), c.optimizer.grad_clip) << "clipping should be exercised";

  for (int dp : {2, 4}) {
    SCOPED_TRACE(absl::StrCat(dp, " ranks"));
    const RunOutput run = RunTraining(c, dp, RunDir(absl::StrCat("dp", dp)));
    ASSERT_TRUE(run.ok);
    EXPECT_LE(MaxRelativeDifference(run.losses, one.losses), 1e-5);
    EXPECT_LE(MaxRelativeDifference(run.grad_norms, one.grad_norms), 1e-5);
    ASSERT_EQ(run.val_losses.size(), one.val_losses.size());
    EXPECT_LE(MaxRelativeDifference(run.val_losses, one.val_losses), 1e-5);
    std::string worst;
    EXPECT_LE(MaxRelativeDifference(run.ranks[0].weights_path, one.ranks[0].weights_path, &worst),
              1e-5)
        << "worst tensor " << worst;
    // The key biases (left out above) have no gradient: they stay at noise level.
    EXPECT_LT(KeyBiasNorm(run.ranks[0].weights_path), 1e-3);
    EXPECT_LT(KeyBiasNorm(one.ranks[0].weights_path), 1e-3);
    for (int r = 0; r < dp; ++r) {
      // Every rank applies the same update to the same summed gradients.
      EXPECT_TRUE(BitIdentical(run.ranks[r].weights_path, run.ranks[0].weights_path))
          << "rank " << r << "'s weights differ from rank 0's";
      // Only rank 0 writes the run's outputs; every rank computes (the validation loss
      // is known everywhere).
      EXPECT_EQ(run.ranks[r].wrote_metrics, r == 0) << "rank " << r;
      EXPECT_EQ(run.ranks[r].wrote_weights, r == 0) << "rank " << r;
      EXPECT_FLOAT_EQ(run.ranks[r].val_loss, run.ranks[0].val_loss);
    }
  }
}

// Rounds n up to a multiple of m.
int64_t RoundUp(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

TEST(DataParallel, ZeroOneMatchesPlainDataParallelWithOneRanksShareOfTheState) {
  TrainConfig c = TinyDpConfig(MakeCorpus("dp_zero"));
  // 65 positions: the flat buffer is 1885 x 64 elements, not a multiple of 3, so the
  // 3-rank shards need padding.
  c.model.block_size = 65;
  for (int dp : {2, 3}) {
    SCOPED_TRACE(absl::StrCat(dp, " ranks"));
    c.global_batch = c.batch_size * dp;  // one micro-batch per rank; 3 ranks: 6 samples
    c.zero = 0;
    const RunOutput plain = RunTraining(c, dp, RunDir(absl::StrCat("plain", dp)));
    c.zero = 1;
    const RunOutput zero = RunTraining(c, dp, RunDir(absl::StrCat("zero", dp)));
    ASSERT_TRUE(plain.ok && zero.ok);
    ASSERT_EQ(zero.losses.size(), 20u);
    EXPECT_LE(MaxRelativeDifference(zero.losses, plain.losses), 1e-6);
    EXPECT_LE(MaxRelativeDifference(zero.grad_norms, plain.grad_norms), 1e-6);
    std::string worst;
    EXPECT_LE(MaxRelativeDifference(zero.ranks[0].weights_path, plain.ranks[0].weights_path,
                                    &worst),
              1e-6)
        << "worst tensor " << worst;

    // Plain AdamW holds two f32 moments per element of the flat buffer; ZeRO-1 holds
    // them for 1/dp of the buffer padded to a multiple of dp.
    const int64_t n = plain.ranks[0].flat_numel;
    const int64_t padded = RoundUp(n, dp);
    if (dp == 3) {
      EXPECT_NE(n % 3, 0) << "the 3-rank case is meant to need padding";
    }
    for (int r = 0; r < dp; ++r) {
      EXPECT_TRUE(BitIdentical(zero.ranks[r].weights_path, zero.ranks[0].weights_path))
          << "rank " << r << " did not receive the all-gathered parameters";
      EXPECT_EQ(plain.ranks[r].state_bytes, static_cast<size_t>(8 * n));
      EXPECT_EQ(zero.ranks[r].flat_numel, padded);
      EXPECT_EQ(zero.ranks[r].state_bytes, static_cast<size_t>(8 * padded / dp));
    }
    // 1/dp of plain DP's, up to the padding (fewer than dp elements).
    const int64_t sharded_total = static_cast<int64_t>(zero.ranks[0].state_bytes) * dp;
    EXPECT_GE(sharded_total, static_cast<int64_t>(plain.ranks[0].state_bytes));
    EXPECT_LT(sharded_total - static_cast<int64_t>(plain.ranks[0].state_bytes), 8 * dp);
  }
}

// Two ranks: every element is a + b, which is the same float whichever way the buffer
// is cut into buckets, so bucketing and overlap must not change a single bit.
TEST(DataParallel, BucketsSmallerThanALayerAndLargerThanTheModelGiveTheSameWeights) {
  TrainConfig c = TinyDpConfig(MakeCorpus("dp_buckets"));
  c.steps = 8;
  c.val_data.clear();
  const int L = c.model.n_layer;
  const int hook_calls = L + 2;  // ln_f, each block, the embeddings

  c.bucket_mb = 1.0f / 1024;  // 1 KiB: a block's qkv weight alone is 48 KiB
  const RunOutput small = RunTraining(c, 2, RunDir("small_buckets"));
  c.bucket_mb = 1024;  // 1 GiB: the tiny model is a few hundred KiB
  const RunOutput big = RunTraining(c, 2, RunDir("big_bucket"));
  c.bucket_mb = 1.0f / 1024;
  c.overlap = 0;
  const RunOutput after = RunTraining(c, 2, RunDir("no_overlap"));
  ASSERT_TRUE(small.ok && big.ok && after.ok);

  const RankOutput& s = small.ranks[0];
  EXPECT_GT(s.buckets, 2 * L + 2) << "more than one bucket per layer";
  EXPECT_EQ(s.launched_by_hook, s.buckets);
  EXPECT_EQ(s.launched_by_finish, 0);
  ASSERT_EQ(s.launched_after_calls.size(), static_cast<size_t>(s.buckets));
  // The first buckets (ln_f and the last block's) leave while the earlier blocks are
  // still in backward.
  EXPECT_LE(s.launched_after_calls.front(), 2);
  EXPECT_LT(s.launched_after_calls[s.buckets / 2], hook_calls);

  const RankOutput& b = big.ranks[0];
  EXPECT_EQ(b.buckets, 1);
  EXPECT_EQ(b.launched_by_hook, 1);
  EXPECT_EQ(b.launched_after_calls, std::vector<int>{hook_calls}) << "complete only at the end";

  const RankOutput& a = after.ranks[0];
  EXPECT_EQ(a.launched_by_hook, 0);
  EXPECT_EQ(a.launched_by_finish, a.buckets);

  EXPECT_EQ(small.losses, big.losses);
  EXPECT_EQ(after.losses, big.losses);
  EXPECT_TRUE(BitIdentical(small.ranks[0].weights_path, big.ranks[0].weights_path));
  EXPECT_TRUE(BitIdentical(after.ranks[0].weights_path, big.ranks[0].weights_path));
}

// A Trainer for rank env.rank of a group formed over the test's store.
absl::StatusOr<std::unique_ptr<Trainer>> CreateOnRank(const TrainConfig& config,
                                                      const comm::testing::RankEnv& env) {
  parallel::DistEnv de;
  de.rank = env.rank;
  de.world_size = env.size;
  parallel::ProcessGroupOptions po;
  po.store_factory = [store = env.store](const parallel::DistEnv&) { return store; };
  auto group = parallel::ProcessGroup::Create(de, po);
  if (!group.ok()) return group.status();
  return Trainer::Create(config, *std::move(group));
}

// Replicas that disagree (here: rank 1 has another seed, so other initial weights and
// samples) would train two different models in lockstep; Create refuses them.
TEST(DataParallel, RanksWithDifferentSettingsAreRefused) {
  TrainConfig c = TinyDpConfig(MakeCorpus("dp_mismatch"));
  c.val_data.clear();
  const auto results = comm::testing::RunRanks(
      2,
      [&](const comm::testing::RankEnv& env) -> absl::Status {
        TrainConfig mine = c;
        mine.output_dir = RunDir(absl::StrCat("mismatch/out.rank", env.rank));
        if (env.rank == 1) mine.seed += 1;
        absl::StatusOr<std::unique_ptr<Trainer>> t = CreateOnRank(mine, env);
        if (t.ok()) return absl::InternalError("ranks with different seeds were accepted");
        if (t.status().code() != absl::StatusCode::kFailedPrecondition ||
            std::string(t.status().message()).find("rank(s) 1 disagree with rank 0") ==
                std::string::npos) {
          return absl::InternalError(absl::StrCat("unclear error: ", t.status().ToString()));
        }
        return absl::OkStatus();
      },
      absl::Seconds(60));
  comm::testing::ExpectAllOk(results);
}

// Op graphs cannot hold the all-reduce hooks that run between ops: a data-parallel
// rank asked for them refuses at Create, naming the setting and the rank.
TEST(DataParallel, OpGraphsAreRefusedWithSeveralRanks) {
  TrainConfig c = TinyDpConfig(MakeCorpus("dp_graphs"));
  c.val_data.clear();
  c.graphs = 1;
  const auto results = comm::testing::RunRanks(
      2,
      [&](const comm::testing::RankEnv& env) -> absl::Status {
        TrainConfig mine = c;
        mine.output_dir = RunDir(absl::StrCat("graphs/out.rank", env.rank));
        absl::StatusOr<std::unique_ptr<Trainer>> t = CreateOnRank(mine, env);
        if (t.ok()) return absl::InternalError("runtime.graphs = 1 was accepted on 2 ranks");
        const std::string want = absl::StrCat("runtime.graphs = 1 needs a single process, and "
                                              "this is rank ", env.rank, " of 2");
        if (t.status().code() != absl::StatusCode::kInvalidArgument ||
            std::string(t.status().message()).find(want) == std::string::npos) {
          return absl::InternalError(absl::StrCat("unclear error: ", t.status().ToString()));
        }
        return absl::OkStatus();
      },
      absl::Seconds(60));
  comm::testing::ExpectAllOk(results);
}

// A port that was free a moment ago (the kernel picks it; the race with another
// process taking it meanwhile is remote on a test machine).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// The path a launcher takes: only the torchrun variables, rank 0 serving the store.
TEST(DataParallel, JoinsTheGroupFromTheTorchrunEnvironment) {
  TrainConfig c = TinyDpConfig(MakeCorpus("dp_env"));
  c.steps = 3;
  c.val_data.clear();
  const int port = FreePort();
  ASSERT_GT(port, 0);
  const std::string dir = RunDir("env");
  std::filesystem::remove_all(dir);
  const auto results = comm::testing::RunRanks(
      2,
      [&](const comm::testing::RankEnv& env) -> absl::Status {
        setenv("WORLD_SIZE", "2", 1);
        setenv("RANK", std::to_string(env.rank).c_str(), 1);
        setenv("MASTER_ADDR", "127.0.0.1", 1);
        setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
        TrainConfig mine = c;
        mine.output_dir = absl::StrCat(dir, "/out.rank", env.rank);
        auto trainer = Trainer::Create(mine);
        if (!trainer.ok()) return trainer.status();
        if ((*trainer)->ranks() != 2 || (*trainer)->rank() != env.rank ||
            (*trainer)->micro_batches_per_rank() != 2) {
          return absl::InternalError(absl::StrCat("joined as rank ", (*trainer)->rank(), " of ",
                                                  (*trainer)->ranks(), " with ",
                                                  (*trainer)->micro_batches_per_rank(),
                                                  " micro-batches"));
        }
        auto s = (*trainer)->Run();
        if (!s.ok()) return s.status();
        if (s->ranks != 2 || s->global_batch != 8) return absl::InternalError("summary");
        return absl::OkStatus();
      },
      absl::Seconds(60));
  comm::testing::ExpectAllOk(results);
  EXPECT_TRUE(std::filesystem::exists(dir + "/out.rank0/metrics.jsonl"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.rank1"));
}

}  // namespace
}  // namespace colossus::testing
