// The GPT model on the CPU backend: shapes, errors, gradient semantics. The full
// numerical check against an independent implementation is tests/torch_ref.
#include "colossus/model.h"

#include <cmath>
#include <map>
#include <string>
#include <random>
#include <vector>

#include "colossus/kernels/profiling_backend.h"
#include "colossus/optimizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus {
namespace {

using ::testing::HasSubstr;

struct Fixture {
  explicit Fixture(GPTConfig c, int B = 3, int T = 11, uint64_t seed = std::random_device{}())
      : config(c), B(B), T(T), seed(seed), backend(kernels::MakeCpuBackend(2)) {
    model = std::move(*GPT::Create(config, backend.get(), B, T));
    model->InitWeights(seed);
    std::mt19937 rng(seed);
    tokens.resize(B * T);
    targets.resize(B * T);
    for (auto& t : tokens) t = rng() % config.vocab_size;
    for (auto& t : targets) t = rng() % config.vocab_size;
  }
  std::vector<float> Host(const Tensor& t) const {
    std::vector<float> h(t.numel());
    backend->CopyToHost(h.data(), t.data, t.bytes());
    return h;
  }
  GPTConfig config;
  int B, T;
  uint64_t seed;
  std::unique_ptr<kernels::Backend> backend;
  std::unique_ptr<GPT> model;
  std::vector<int32_t> tokens, targets;
};

GPTConfig Ragged() {
  GPTConfig c;
  c.n_layer = 2;
  c.n_head = 3;
  c.n_embd = 24;
  c.block_size = 16;
  c.vocab_size = 77;  // padded to 128
  return c;
}

TEST(GPT, InitialLossIsNearUniform) {
  Fixture f(Ragged());
  auto loss = f.model->Forward(f.tokens.data(), f.targets.data(), f.B, f.T);
  ASSERT_TRUE(loss.ok()) << loss.status();
  // Small random weights give nearly uniform predictions over the real vocabulary.
  EXPECT_NEAR(*loss, std::log(77.0f), 0.1f) << "seed " << f.seed;
}

TEST(GPT, ParametersAreContiguousInLayoutOrder) {
  Fixture f(Ragged());
  const auto& p = f.model->params();
  ASSERT_EQ(p.size(), 2u + 12u * 2u + 2u);
  EXPECT_EQ(p[0].name, "wte");
  EXPECT_EQ(p[0].shape, (std::vector<int64_t>{128, 24}));
  EXPECT_EQ(p[4].name, "h.0.attn.qkv.weight");
  EXPECT_EQ(p[4].shape, (std::vector<int64_t>{72, 24}));
  EXPECT_EQ(p.back().name, "ln_f.bias");
  EXPECT_EQ(f.model->num_parameters(), f.config.NumParameters());
  for (size_t i = 1; i < p.size(); ++i) EXPECT_GT(p[i].data, p[i - 1].data);
  EXPECT_NE(f.model->FindParam("h.1.mlp.proj.weight"), nullptr);
  EXPECT_EQ(f.model->FindParam("nope"), nullptr);
}

TEST(GPT, InitIsDeterministicPerSeed) {
  Fixture a(Ragged(), 3, 11, 7), b(Ragged(), 3, 11, 7), c(Ragged(), 3, 11, 8);
  EXPECT_EQ(a.Host(a.model->params()[2 + 2]), b.Host(b.model->params()[2 + 2]));
  EXPECT_NE(a.Host(a.model->params()[2 + 2]), c.Host(c.model->params()[2 + 2]));
  // Padded vocabulary rows start (and stay) zero.
  std::vector<float> wte = a.Host(a.model->params()[0]);
  for (size_t i = 77 * 24; i < wte.size(); ++i) ASSERT_EQ(wte[i], 0.0f);
}

TEST(GPT, BadInputsAreErrorsNamingThePosition) {
  Fixture f(Ragged());
  f.tokens[2 * f.T + 5] = 77;
  auto loss = f.model->Forward(f.tokens.data(), f.targets.data(), f.B, f.T);
  ASSERT_FALSE(loss.ok());
  EXPECT_THAT(loss.status().message(), HasSubstr("batch row 2, position 5"));
  f.tokens[2 * f.T + 5] = 0;
  f.targets[4] = 1000;
  EXPECT_THAT(f.model->Forward(f.tokens.data(), f.targets.data(), f.B, f.T).status().message(),
              HasSubstr("target 1000"));
  EXPECT_FALSE(f.model->Forward(f.tokens.data(), nullptr, f.B + 1, f.T).ok());
  EXPECT_FALSE(f.model->Forward(f.tokens.data(), nullptr, f.B, f.T + 1).ok());
}

TEST(GPT, CreateRefusesSequencesLongerThanThePositionTable) {
  auto backend = kernels::MakeCpuBackend(1);
  auto m = GPT::Create(Ragged(), backend.get(), 2, 17);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("block_size = 16"));
  GPTConfig bad = Ragged();
  bad.n_head = 5;
  EXPECT_THAT(GPT::Create(bad, backend.get(), 2, 8).status().message(), HasSubstr("n_head"));
}

// The gradient along a direction d must match the central difference of the loss
// along d. d is half the gradient's own direction and half a random one (both unit
// length): along a purely random direction in ~30k dimensions the change in loss is
// too small for fp32 to resolve, and along the gradient alone a wrong component
// orthogonal to it would go unseen. This checks every layer's backward to ~1e-2; the
// precise check is tests/torch_ref.
TEST(GPT, GradientMatchesDirectionalFiniteDifference) {
  Fixture f(Ragged());
  auto& m = *f.model;
  ASSERT_TRUE(m.Forward(f.tokens.data(), f.targets.data(), f.B, f.T).ok());
  m.ZeroGrad();
  m.Backward();
  const kernels::View params = m.flat_params();
  std::vector<float> w(params.numel), g(params.numel), r(params.numel), d(params.numel);
  f.backend->CopyToHost(w.data(), params.data, params.bytes());
  f.backend->CopyToHost(g.data(), m.flat_grads().data, params.bytes());
  std::mt19937 rng(f.seed);
  std::normal_distribution<float> normal;
  double gg = 0, rr = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    r[i] = normal(rng);
    gg += double(g[i]) * g[i];
    rr += double(r[i]) * r[i];
  }
  ASSERT_GT(gg, 0);
  double gd = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    d[i] = static_cast<float>(g[i] / std::sqrt(gg) + r[i] / std::sqrt(rr));
    gd += double(g[i]) * d[i];
  }
  auto loss_at = [&](float h) {
    std::vector<float> x(w);
    for (size_t i = 0; i < x.size(); ++i) x[i] += h * d[i];
    f.backend->CopyFromHost(params.data, x.data(), params.bytes());
    return static_cast<double>(*m.Forward(f.tokens.data(), f.targets.data(), f.B, f.T));
  };
  const float h = 1e-3f;
  const double numeric = (loss_at(h) - loss_at(-h)) / (2.0 * h);
  EXPECT_NEAR(numeric, gd, 1e-2 * std::abs(gd)) << "seed " << f.seed;
}

TEST(GPT, BackwardAccumulatesAndScales) {
  Fixture f(Ragged());
  auto& m = *f.model;
  auto grads = [&] {
    std::vector<float> g(m.flat_grads().numel);
    f.backend->CopyToHost(g.data(), m.flat_grads().data, m.flat_grads().bytes());
    return g;
  };
  m.ZeroGrad();
  ASSERT_TRUE(m.Forward(f.tokens.data(), f.targets.data(), f.B, f.T).ok());
  m.Backward(1.0f);
  const std::vector<float> once = grads();
  m.ZeroGrad();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(m.Forward(f.tokens.data(), f.targets.data(), f.B, f.T).ok());
    m.Backward(0.5f);
  }
  const std::vector<float> twice_half = grads();
  double num = 0, den = 0;
  for (size_t i = 0; i < once.size(); ++i) {
    num += (once[i] - twice_half[i]) * (once[i] - twice_half[i]);
    den += once[i] * once[i];
  }
  EXPECT_GT(den, 0);
  EXPECT_LT(std::sqrt(num / den), 1e-5);
  // Padded vocabulary rows never receive gradient.
  const std::vector<float> g = grads();
  for (size_t i = 77 * 24; i < 128 * 24; ++i) ASSERT_EQ(g[i], 0.0f) << i;
}

TEST(GPT, IgnoredTargetsDoNotCount) {
  Fixture f(Ragged());
  auto full = f.model->Forward(f.tokens.data(), f.targets.data(), f.B, f.T);
  ASSERT_TRUE(full.ok());
  std::vector<int32_t> masked(f.targets.size(), -1);
  masked[0] = f.targets[0];
  auto one = f.model->Forward(f.tokens.data(), masked.data(), f.B, f.T);
  ASSERT_TRUE(one.ok());
  EXPECT_NE(*one, *full);
  std::vector<int32_t> none(f.targets.size(), -1);
  EXPECT_EQ(*f.model->Forward(f.tokens.data(), none.data(), f.B, f.T), 0.0f);
}

TEST(GPT, OverfitsOneBatch) {
  Fixture f(Ragged());
  OptimizerConfig oc;
  oc.lr = 1e-2f;
  oc.weight_decay = 0.0f;
  auto opt = *AdamW::Create(oc, f.model.get());
  float first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    f.model->ZeroGrad();
    float loss = *f.model->Forward(f.tokens.data(), f.targets.data(), f.B, f.T);
    f.model->Backward();
    opt->Step(step);
    if (step == 0) first = loss;
    last = loss;
  }
  EXPECT_LT(last, 0.3f * first) << "first " << first << " last " << last;
}

TEST(GPT, SmallerBatchThanPlannedMatchesItsOwnPlan) {
  Fixture big(Ragged(), 3, 11, 5);
  Fixture small(Ragged(), 1, 6, 5);
  auto a = big.model->Forward(small.tokens.data(), small.targets.data(), 1, 6);
  auto b = small.model->Forward(small.tokens.data(), small.targets.data(), 1, 6);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FLOAT_EQ(*a, *b);
}

// A training step through the profiler: every op the step runs is counted as often as
// the model's structure says, and the profiled step trains exactly like a plain one.
TEST(GPT, ProfiledStepCountsEachOpOfTheStructureAndChangesNothing) {
  const GPTConfig c = Ragged();
  const uint64_t seed = 7;
  Fixture plain(c, 3, 11, seed);
  auto cpu = kernels::MakeCpuBackend(2);
  kernels::ProfilingBackend prof(cpu.get());
  auto model = std::move(*GPT::Create(c, &prof, 3, 11));
  model->InitWeights(seed);
  OptimizerConfig oc;
  auto plain_opt = *AdamW::Create(oc, plain.model.get());
  auto opt = *AdamW::Create(oc, model.get());
  for (int step = 0; step < 2; ++step) {
    if (step == 1) prof.Start();
    model->ZeroGrad();
    const float loss = *model->Forward(plain.tokens.data(), plain.targets.data(), 3, 11);
    model->Backward();
    opt->Step(step);
    plain.model->ZeroGrad();
    const float want = *plain.model->Forward(plain.tokens.data(), plain.targets.data(), 3, 11);
    plain.model->Backward();
    plain_opt->Step(step);
    EXPECT_EQ(loss, want) << "step " << step;
  }
  const kernels::OpProfile p = prof.Stop(1);
  std::map<std::string, int64_t> calls;
  for (const kernels::OpStats& s : p.ops) calls[s.op] = s.calls;
  const int L = c.n_layer;
  EXPECT_EQ(calls["AttentionForward"], L);
  EXPECT_EQ(calls["AttentionBackward"], L);
  EXPECT_EQ(calls["MatmulGeluForward"], L);             // the MLP's first Linear
  EXPECT_EQ(calls["MatmulForward"], 3 * L + 1);         // qkv, attention proj, MLP proj; LM head
  EXPECT_EQ(calls["MatmulBackward"], 4 * L + 1);        // the same five per layer, backward
  EXPECT_EQ(calls["EmbeddingForward"], 1);
  EXPECT_EQ(calls["EmbeddingBackward"], 1);
  EXPECT_EQ(calls["CrossEntropyForward"], 1);
  EXPECT_EQ(calls["CrossEntropyBackward"], 1);
  EXPECT_EQ(calls["AdamW"], 1);                        // fused over every parameter
  EXPECT_GT(p.CategoryMs(kernels::OpCategory::kGemm), 0.0);
  EXPECT_GT(p.span_ms, 0.0);
  auto weights = [](kernels::Backend& be, kernels::View v) {
    std::vector<float> h(static_cast<size_t>(v.numel));
    be.CopyToHost(h.data(), v.data, v.bytes());
    return h;
  };
  EXPECT_EQ(weights(*plain.backend, plain.model->flat_params()), weights(*cpu, model->flat_params()))
      << "weights after two steps, profiled or not";
}

}  // namespace
}  // namespace colossus
