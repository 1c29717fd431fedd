// The vocabulary-parallel softmax + cross-entropy on its own, 2 and 4 Gloo processes,
// against the CPU backend's fused kernel on the whole row: odd real vocabularies, ranks
// whose columns are all padding, padding logits large enough to win if they counted.
#include "colossus/parallel/tp_cross_entropy.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "colossus/comm/gloo.h"
#include "colossus/kernels/backend.h"
#include "gtest/gtest.h"
#include "multiproc.h"

namespace colossus::parallel {
namespace {

using comm::testing::RankEnv;

struct CeCase {
  int tp;
  int V;
  int Vp;
};

absl::Status CheckRank(const RankEnv& env, const CeCase& c) {
  auto comm = comm::CreateGlooCommunicator(env.store, env.rank, env.size);
  if (!comm.ok()) return comm.status();
  const int64_t N = 24, Vl = c.Vp / c.tp, v0 = env.rank * Vl;
  std::vector<float> logits(N * c.Vp);
  std::vector<int32_t> targets(N);
  uint64_t x = 12345;
  for (int64_t i = 0; i < N; ++i) {
    for (int j = 0; j < c.Vp; ++j) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      // Real logits in [-4, 4); padding at 50, which would take all the probability.
      const float real = static_cast<float>((x >> 40) % 8000) / 1000.0f - 4.0f;
      logits[i * c.Vp + j] = j < c.V ? real : 50.0f;
    }
    // Targets spread over every rank's real columns, the last real one, and ignored rows.
    targets[i] = i % 7 == 3 ? -1 : (i == 0 ? c.V - 1 : static_cast<int32_t>((i * 37) % c.V));
  }
  // The reference: the backend's kernel on whole rows (CPU backend memory is host memory).
  auto backend = kernels::MakeCpuBackend(1);
  std::vector<float> want_loss(N), want_lse(N), want_d(N * c.Vp);
  backend->CrossEntropyForward(want_loss.data(), want_lse.data(),
                               kernels::View(logits.data(), N * c.Vp), targets.data(), N, c.V,
                               c.Vp);
  const float dloss = 0.37f;
  backend->CrossEntropyBackward(kernels::View(want_d.data(), N * c.Vp),
                                kernels::View(logits.data(), N * c.Vp), want_lse.data(),
                                targets.data(), dloss, N, c.V, c.Vp);

  std::vector<float> mine(N * Vl);
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < Vl; ++j) mine[i * Vl + j] = logits[i * c.Vp + v0 + j];
  }
  int reductions = 0;
  const HostAllReduceFn reduce = [&](float* data, int64_t n, comm::ReduceOp op) {
    ++reductions;
    return (*comm)->AllReduce(data, data, n, comm::DataType::kF32, op).Wait();
  };
  const VocabSlice slice{v0, Vl, c.V};
  std::vector<float> loss(N), lse(N), scratch(3 * N);
  if (absl::Status s = VocabParallelCrossEntropyForward(mine.data(), targets.data(), N, slice,
                                                        reduce, loss.data(), lse.data(),
                                                        scratch.data());
      !s.ok()) {
    return s;
  }
  if (reductions != 2) return absl::InternalError(absl::StrCat(reductions, " all-reduces, want 2"));
  for (int64_t i = 0; i < N; ++i) {
    if (!(std::fabs(loss[i] - want_loss[i]) <= 1e-5 * std::max(1.0f, std::fabs(want_loss[i])))) {
      return absl::InternalError(absl::StrCat("rank ", env.rank, " row ", i, ": loss ", loss[i],
                                              ", want ", want_loss[i]));
    }
  }
  VocabParallelCrossEntropyBackward(mine.data(), mine.data(), lse.data(), targets.data(), dloss,
                                    N, slice);
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < Vl; ++j) {
      const float got = mine[i * Vl + j], want = want_d[i * c.Vp + v0 + j];
      if (v0 + j >= c.V && got != 0.0f) {
        return absl::InternalError(absl::StrCat("padding column ", v0 + j, " got gradient ", got));
      }
      if (!(std::fabs(got - want) <= 1e-6)) {
        return absl::InternalError(absl::StrCat("rank ", env.rank, " dlogits[", i, ", ", v0 + j,
                                                "] = ", got, ", want ", want));
      }
    }
  }
  return absl::OkStatus();
}

class VocabParallelCe : public ::testing::TestWithParam<CeCase> {};

TEST_P(VocabParallelCe, MatchesTheFusedKernelOnWholeRows) {
  const CeCase c = GetParam();
  comm::testing::ExpectAllOk(comm::testing::RunRanks(
      c.tp, [&](const RankEnv& env) { return CheckRank(env, c); }, absl::Seconds(60)));
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, VocabParallelCe,
    ::testing::Values(CeCase{2, 251, 256},   // odd vocabulary, padding on the last rank
                      CeCase{4, 251, 256},
                      CeCase{4, 100, 256},   // ranks 2 and 3 hold padding only
                      CeCase{3, 7, 9}),      // an odd group size
    [](const ::testing::TestParamInfo<CeCase>& info) {
      return absl::StrCat("tp", info.param.tp, "_V", info.param.V, "_Vp", info.param.Vp);
    });

}  // namespace
}  // namespace colossus::parallel
