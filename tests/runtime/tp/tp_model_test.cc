// TensorParallelGPT against the plain GPT: tp = 1, 2, 4 and tp x dp = 2 x 2 on real
// Gloo processes, from the same initial weights, for several AdamW steps. Every rank
// runs the one-rank reference itself (the model is tiny) and compares: per-step losses
// and gradient norms, the logits of its vocabulary slice, every gradient of step 0
// gathered back into a full GPT, and the final weights; padding rows of the vocabulary
// never get a gradient and stay zero; replicated tensors stay bit-identical across the
// TP group (GatherTo refuses otherwise).
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "colossus/comm/gloo.h"
#include "colossus/parallel/tensor_parallel.h"
#include "gtest/gtest.h"
#include "multiproc.h"
#include "tp_harness.h"

namespace colossus::parallel {
namespace {

using comm::testing::RankEnv;
using testing::HostTensors;

constexpr double kTol = 1e-5;
constexpr int kSteps = 10;
constexpr int kGlobalBatch = 4;
constexpr int kSeq = 16;
constexpr uint64_t kSeed = 1234;

#define RETURN_IF_ERROR(expr)                 \
  do {                                        \
    absl::Status _s = (expr);                 \
    if (!_s.ok()) return _s;                  \
  } while (0)

absl::StatusOr<std::unique_ptr<comm::Communicator>> World(const RankEnv& env) {
  comm::GlooOptions go;
  go.comm.timeout = absl::Seconds(60);
  go.comm.init_timeout = absl::Seconds(60);
  return comm::CreateGlooCommunicator(env.store, env.rank, env.size, go);
}

// The vocabulary padding rows [V, Vp) of wte: all exactly zero?
absl::Status PaddingRowsZero(const GPTConfig& c, const std::vector<float>& wte, const char* what) {
  const int64_t first = static_cast<int64_t>(c.vocab_size) * c.n_embd;
  for (int64_t k = first; k < static_cast<int64_t>(wte.size()); ++k) {
    if (wte[k] != 0.0f) {
      return absl::InternalError(
          absl::StrCat(what, ": padding row ", k / c.n_embd, " holds ", wte[k]));
    }
  }
  return absl::OkStatus();
}

// One rank of a tp x dp run (dp = world / tp), compared with the reference.
absl::Status RunRank(const RankEnv& env, int tp) {
  const GPTConfig config = testing::SmallTpConfig();
  const OptimizerConfig opt = testing::SmallTpOptimizer();
  testing::ReferenceRun ref;
  RETURN_IF_ERROR(testing::RunReference(config, opt, kSteps, kGlobalBatch, kSeq, kSeed, &ref));

  auto world = World(env);
  if (!world.ok()) return world.status();
  auto groups = SplitTpDp(**world, tp);
  if (!groups.ok()) return groups.status();
  const int dp = env.size / tp;
  const int B = kGlobalBatch / dp;
  std::unique_ptr<kernels::Backend> backend = kernels::MakeCpuBackend(1);
  auto full = GPT::Create(config, backend.get(), B, kSeq);
  if (!full.ok()) return full.status();
  (*full)->InitWeights(kSeed);
  auto model = TensorParallelGPT::Create(config, backend.get(), groups->tp.get(), B, kSeq);
  if (!model.ok()) return model.status();
  TensorParallelGPT& m = **model;
  RETURN_IF_ERROR(m.LoadFrom(**full));
  auto adamw = TpAdamW::Create(opt, &m, groups->dp.get());
  if (!adamw.ok()) return adamw.status();

  std::vector<float> losses, norms;
  std::vector<int32_t> tokens, targets;
  for (int s = 0; s < kSteps; ++s) {
    testing::MakeBatch(s, kGlobalBatch, kSeq, config.vocab_size, &tokens, &targets);
    // This DP replica's contiguous rows of the global batch.
    const size_t off = static_cast<size_t>(groups->dp_index) * B * kSeq;
    m.ZeroGrad();
    auto loss = m.Forward(tokens.data() + off, targets.data() + off, B, kSeq);
    if (!loss.ok()) return loss.status();
    if (s == 0) {
      // The loss came without the full logits; this rank's slice still equals the
      // matching columns of the plain model's.
      auto r = (*full)->Forward(tokens.data() + off, nullptr, B, kSeq);
      if (!r.ok()) return r.status();
      const Tensor mine = m.local_logits();
      const Tensor all = (*full)->logits();
      const int64_t Vp = config.PaddedVocab(), Vl = m.local_vocab();
      for (int64_t row = 0; row < static_cast<int64_t>(B) * kSeq; ++row) {
        for (int64_t j = 0; j < Vl; ++j) {
          const float got = mine.as<float>()[row * Vl + j];
          const float want = all.as<float>()[row * Vp + m.vocab_begin() + j];
          if (!(std::fabs(got - want) <= 1e-5 * std::max(1.0f, std::fabs(want)))) {
            return absl::InternalError(absl::StrCat("logit [", row, ", ", m.vocab_begin() + j,
                                                    "] = ", got, ", want ", want));
          }
        }
      }
    }
    RETURN_IF_ERROR(m.Backward(1.0f / dp));
    auto stats = (*adamw)->Step(s);
    if (!stats.ok()) return stats.status();
    if (s == 0) {
      // After Step the flat gradients hold the DP sum: the whole batch's gradient.
      RETURN_IF_ERROR(m.GatherTo(full->get(), /*grads=*/true));
      const HostTensors g = testing::CopyGrads(**full);
      RETURN_IF_ERROR(
          testing::CompareTensors(**full, g, ref.first_grads, kTol, "step 0 gradients"));
      RETURN_IF_ERROR(PaddingRowsZero(config, g[0], "step 0 wte gradient"));
    }
    // The global mean loss: the mean of the replicas' means (equal counts per row).
    float global = *loss / dp;
    RETURN_IF_ERROR(groups->dp->AllReduce(&global, &global, 1, comm::DataType::kF32,
                                          comm::ReduceOp::kSum).Wait());
    losses.push_back(global);
    norms.push_back(stats->grad_norm);
  }
  RETURN_IF_ERROR(testing::CompareScalars(losses, ref.losses, kTol, "loss"));
  RETURN_IF_ERROR(testing::CompareScalars(norms, ref.grad_norms, kTol, "grad norm"));
  if (!(ref.grad_norms[0] > opt.grad_clip)) {
    return absl::InternalError("the reference was never clipped: the test lost its point");
  }
  RETURN_IF_ERROR(m.GatherTo(full->get(), /*grads=*/false));
  const HostTensors w = testing::CopyParams(**full);
  RETURN_IF_ERROR(testing::CompareTensors(**full, w, ref.final_weights, kTol,
                                          absl::StrCat("weights after ", kSteps, " steps")));
  RETURN_IF_ERROR(PaddingRowsZero(config, w[0], "final wte"));
  // The run moved the weights: a comparison with the initial weights would fail.
  (*full)->InitWeights(kSeed);
  if (testing::CompareTensors(**full, testing::CopyParams(**full), w, kTol, "moved").ok()) {
    return absl::InternalError("training did not change the weights");
  }
  return absl::OkStatus();
}

TEST(TensorParallel, OneRankThroughTheTpPathMatchesGpt) {
  comm::testing::ExpectAllOk(comm::testing::RunRanks(
      1, [](const RankEnv& env) { return RunRank(env, 1); }, absl::Seconds(60)));
}

TEST(TensorParallel, TwoRanksMatchOneRank) {
  comm::testing::ExpectAllOk(comm::testing::RunRanks(
      2, [](const RankEnv& env) { return RunRank(env, 2); }, absl::Seconds(60)));
}

TEST(TensorParallel, FourRanksMatchOneRank) {
  comm::testing::ExpectAllOk(comm::testing::RunRanks(
      4, [](const RankEnv& env) { return RunRank(env, 4); }, absl::Seconds(90)));
}

TEST(TensorParallel, TwoByTwoTpDpMatchesOneRank) {
  comm::testing::ExpectAllOk(comm::testing::RunRanks(
      4, [](const RankEnv& env) { return RunRank(env, 2); }, absl::Seconds(90)));
}

TEST(TensorParallel, FourDataParallelReplicasOfTpOneMatchOneRank) {
  comm::testing::ExpectAllOk(comm::testing::RunRanks(
      4, [](const RankEnv& env) { return RunRank(env, 1); }, absl::Seconds(90)));
}

// Layouts that cannot split give errors naming the field, on every rank, before any
// training; nothing crashes.
TEST(TensorParallel, BadLayoutsAreRefusedWithClearErrors) {
  comm::testing::ExpectAllOk(comm::testing::RunRanks(
      4,
      [](const RankEnv& env) -> absl::Status {
        auto world = World(env);
        if (!world.ok()) return world.status();
        auto backend = kernels::MakeCpuBackend(1);
        auto expect = [](const absl::Status& s, const std::string& needle) -> absl::Status {
          if (s.code() != absl::StatusCode::kInvalidArgument ||
              s.message().find(needle) == std::string::npos) {
            return absl::InternalError(absl::StrCat("want InvalidArgument mentioning '", needle,
                                                    "', got ", s.ToString()));
          }
          return absl::OkStatus();
        };
        GPTConfig heads = testing::SmallTpConfig();
        heads.n_head = 2;  // 2 heads on 4 ranks
        RETURN_IF_ERROR(expect(
            TensorParallelGPT::Create(heads, backend.get(), world->get(), 1, 8).status(),
            "model.n_head = 2 is not divisible by the tensor-parallel size 4"));
        GPTConfig vocab = testing::SmallTpConfig();
        vocab.padded_vocab_size = 254;  // >= V, but not a multiple of 4
        RETURN_IF_ERROR(expect(
            TensorParallelGPT::Create(vocab, backend.get(), world->get(), 1, 8).status(),
            "padded vocabulary 254"));
        RETURN_IF_ERROR(expect(SplitTpDp(**world, 3).status(), "does not divide the world size 4"));
        // The group is still usable after the refusals.
        auto groups = SplitTpDp(**world, 2);
        if (!groups.ok()) return groups.status();
        return TensorParallelGPT::Create(testing::SmallTpConfig(), backend.get(),
                                         groups->tp.get(), 1, 8).status();
      },
      absl::Seconds(60)));
}

}  // namespace
}  // namespace colossus::parallel
