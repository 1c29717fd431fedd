// Split on 4 processes: a 2 x 2 grid of data-parallel and tensor-parallel groups, with
// collectives inside each, interleaved with the parent; and a rank that opts out.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "colossus/comm/gloo.h"
#include "gtest/gtest.h"
#include "multiproc.h"

namespace colossus::comm::testing {
namespace {

absl::Status Fail(const RankEnv& env, const std::string& what) {
  return absl::InternalError(absl::StrCat("rank ", env.rank, ": ", what));
}

std::unique_ptr<Communicator> World(const RankEnv& env, absl::Status* error) {
  GlooOptions o;
  o.comm.timeout = absl::Seconds(20);
  o.comm.init_timeout = absl::Seconds(20);
  auto comm = CreateGlooCommunicator(env.store, env.rank, env.size, o);
  if (!comm.ok()) {
    *error = comm.status();
    return nullptr;
  }
  return *std::move(comm);
}

// World rank w = dp * 2 + tp. TP groups are consecutive ranks {0,1} {2,3}; DP groups
// take one rank of each TP group, {0,2} {1,3}.
absl::Status GridBody(const RankEnv& env) {
  absl::Status error;
  std::unique_ptr<Communicator> world = World(env, &error);
  if (!world) return error;
  const int w = env.rank, tp_rank = w % 2, dp_rank = w / 2;
  // Keys reverse the order inside DP groups to check that key, not rank, orders them.
  auto tp = world->Split(/*color=*/dp_rank, /*key=*/tp_rank, "tp");
  if (!tp.ok()) return tp.status();
  auto dp = world->Split(/*color=*/tp_rank, /*key=*/-dp_rank, "dp");
  if (!dp.ok()) return dp.status();
  if (!*tp || !*dp) return Fail(env, "split returned no group");
  Communicator& t = **tp;
  Communicator& d = **dp;
  if (t.size() != 2 || d.size() != 2) return Fail(env, "group sizes are not 2");
  if (t.rank() != tp_rank) return Fail(env, absl::StrCat("tp rank ", t.rank(), " != ", tp_rank));
  if (d.rank() != 1 - dp_rank) return Fail(env, absl::StrCat("dp rank ", d.rank()));
  if (t.name() != "tp" || d.name() != "dp") return Fail(env, "group names");

  for (int round = 0; round < 3; ++round) {
    // All-gather of world ranks tells each rank exactly who its peers are.
    int32_t me = w;
    int32_t tp_members[2], dp_members[2];
    if (auto s = t.AllGather(&me, tp_members, 1, DataType::kI32).Wait(); !s.ok()) return s;
    if (auto s = d.AllGather(&me, dp_members, 1, DataType::kI32).Wait(); !s.ok()) return s;
    if (tp_members[0] != dp_rank * 2 || tp_members[1] != dp_rank * 2 + 1) {
      return Fail(env, absl::StrCat("tp members ", tp_members[0], ",", tp_members[1]));
    }
    // DP is ordered by key = -dp_rank: world rank 2 or 3 first.
    if (dp_members[0] != 2 + tp_rank || dp_members[1] != tp_rank) {
      return Fail(env, absl::StrCat("dp members ", dp_members[0], ",", dp_members[1]));
    }
    // Sums inside each group, then over the world, in between.
    std::vector<float> g(1000);
    for (size_t i = 0; i < g.size(); ++i) g[i] = static_cast<float>(w * 1000 + i % 7) + 0.5f;
    std::vector<float> tp_sum = g, dp_sum = g;
    if (auto s = t.AllReduce(tp_sum.data(), tp_sum.data(), g.size(), DataType::kF32, ReduceOp::kSum).Wait(); !s.ok()) return s;
    if (auto s = world->Barrier().Wait(); !s.ok()) return s;
    if (auto s = d.AllReduce(dp_sum.data(), dp_sum.data(), g.size(), DataType::kF32, ReduceOp::kSum).Wait(); !s.ok()) return s;
    for (size_t i = 0; i < g.size(); ++i) {
      const float base = static_cast<float>(i % 7) + 0.5f;
      const float tp_want = 1000.0f * static_cast<float>(dp_rank * 2 + dp_rank * 2 + 1) + 2 * base;
      const float dp_want = 1000.0f * static_cast<float>(tp_rank + tp_rank + 2) + 2 * base;
      if (tp_sum[i] != tp_want || dp_sum[i] != dp_want) {
        return Fail(env, absl::StrCat("round ", round, " element ", i, ": tp ", tp_sum[i], " want ",
                                      tp_want, ", dp ", dp_sum[i], " want ", dp_want));
      }
    }
  }
  int64_t all = w;
  if (auto s = world->AllReduce(&all, &all, 1, DataType::kI64, ReduceOp::kSum).Wait(); !s.ok()) return s;
  if (all != 6) return Fail(env, absl::StrCat("world sum ", all));
  return absl::OkStatus();
}

TEST(SplitTest, TwoByTwoGridGivesDataAndTensorParallelGroups) {
  ExpectAllOk(RunRanks(4, GridBody, absl::Seconds(60)));
}

TEST(SplitTest, ARankWithNoColorGetsNoGroupAndTheOthersFormOne) {
  ExpectAllOk(RunRanks(
      4,
      [](const RankEnv& env) -> absl::Status {
        absl::Status error;
        std::unique_ptr<Communicator> world = World(env, &error);
        if (!world) return error;
        const bool out = env.rank == 1;
        auto sub = world->Split(out ? kSplitNoColor : 7, env.rank);
        if (!sub.ok()) return sub.status();
        if (out) return *sub ? Fail(env, "opted out but got a group") : absl::OkStatus();
        if (!*sub || (*sub)->size() != 3) return Fail(env, "expected a group of 3");
        const int want_rank = env.rank == 0 ? 0 : env.rank - 1;
        if ((*sub)->rank() != want_rank) return Fail(env, "wrong rank in the group");
        if ((*sub)->name() != "world.7") return Fail(env, "default name " + (*sub)->name());
        int32_t v = env.rank, sum = 0;
        if (auto s = (*sub)->AllReduce(&v, &sum, 1, DataType::kI32, ReduceOp::kSum).Wait(); !s.ok()) return s;
        return sum == 0 + 2 + 3 ? absl::OkStatus() : Fail(env, absl::StrCat("sum ", sum));
      },
      absl::Seconds(60)));
}

}  // namespace
}  // namespace colossus::comm::testing
