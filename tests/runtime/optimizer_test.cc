#include "colossus/optimizer.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "colossus/kernels/profiling_backend.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus {
namespace {

using ::testing::HasSubstr;

TEST(LearningRate, WarmupThenCosineThenFloor) {
  OptimizerConfig c;
  c.lr = 1.0f;
  c.min_lr = 0.1f;
  c.warmup_steps = 10;
  c.total_steps = 110;
  EXPECT_FLOAT_EQ(LearningRateAt(c, 0), 0.1f);
  EXPECT_FLOAT_EQ(LearningRateAt(c, 4), 0.5f);
  EXPECT_FLOAT_EQ(LearningRateAt(c, 9), 1.0f);
  EXPECT_FLOAT_EQ(LearningRateAt(c, 10), 1.0f);
  EXPECT_NEAR(LearningRateAt(c, 60), 0.55f, 1e-6);  // halfway down the cosine
  EXPECT_NEAR(LearningRateAt(c, 109), 0.1f + 0.9f * 0.5f * (1 + std::cos(M_PI * 99 / 100)), 1e-6);
  EXPECT_FLOAT_EQ(LearningRateAt(c, 110), 0.1f);
  EXPECT_FLOAT_EQ(LearningRateAt(c, 5000), 0.1f);
  for (int s = 10; s < 110; ++s) EXPECT_LE(LearningRateAt(c, s + 1), LearningRateAt(c, s));
  c.total_steps = 0;
  EXPECT_FLOAT_EQ(LearningRateAt(c, 5000), 1.0f);
}

TEST(OptimizerConfig, ValidateNamesTheField) {
  OptimizerConfig c;
  c.lr = -1;
  EXPECT_THAT(c.Validate().message(), HasSubstr("optimizer.lr"));
  c = OptimizerConfig();
  c.beta2 = 1.0f;
  EXPECT_THAT(c.Validate().message(), HasSubstr("optimizer.beta2"));
  c = OptimizerConfig();
  c.min_lr = 1.0f;
  EXPECT_THAT(c.Validate().message(), HasSubstr("optimizer.min_lr"));
}

// One AdamW step on a real model against the formula computed here in double:
// clipping scale from the global norm, decay only on 2-D tensors.
TEST(AdamW, OneStepMatchesTheFormula) {
  auto backend = kernels::MakeCpuBackend(1);
  GPTConfig config = *GPTPreset("tiny");
  auto model = *GPT::Create(config, backend.get(), 2, 8);
  model->InitWeights(3);
  std::vector<int32_t> tokens(16), targets(16);
  for (int i = 0; i < 16; ++i) tokens[i] = (i * 37) % 256, targets[i] = (i * 11 + 3) % 256;
  model->ZeroGrad();
  ASSERT_TRUE(model->Forward(tokens.data(), targets.data(), 2, 8).ok());
  model->Backward();

  OptimizerConfig oc;
  oc.lr = 1e-2f;
  oc.warmup_steps = 0;
  oc.weight_decay = 0.1f;
  oc.grad_clip = 0.5f;  // small enough to clip
  auto opt = *AdamW::Create(oc, model.get());
  auto host = [&](const Tensor& t) {
    std::vector<float> h(t.numel());
    backend->CopyToHost(h.data(), t.data, t.bytes());
    return h;
  };
  std::vector<std::vector<float>> w0, g0;
  double sumsq = 0;
  for (size_t i = 0; i < model->params().size(); ++i) {
    w0.push_back(host(model->params()[i]));
    g0.push_back(host(model->grads()[i]));
    for (float g : g0.back()) sumsq += static_cast<double>(g) * g;
  }
  const StepStats stats = opt->Step(0);
  const double norm = std::sqrt(sumsq);
  EXPECT_NEAR(stats.grad_norm, norm, 1e-4 * norm);
  ASSERT_GT(norm, oc.grad_clip);
  const double scale = oc.grad_clip / (norm + 1e-6);
  EXPECT_NEAR(stats.clip_scale, scale, 1e-5);
  EXPECT_FLOAT_EQ(stats.lr, oc.lr);

  for (size_t i = 0; i < model->params().size(); ++i) {
    const Tensor& p = model->params()[i];
    const std::vector<float> w1 = host(p);
    const double wd = p.shape.size() >= 2 ? oc.weight_decay : 0.0;
    EXPECT_EQ(DecaysWeight(p), p.shape.size() >= 2) << p.name;
    for (size_t k = 0; k < w1.size(); k += 7) {
      const double g = g0[i][k] * scale;
      const double m = (1 - oc.beta1) * g, v = (1 - oc.beta2) * g * g;
      const double mhat = m / (1 - oc.beta1), vhat = v / (1 - oc.beta2);
      const double want = w0[i][k] - oc.lr * (mhat / (std::sqrt(vhat) + oc.eps) + wd * w0[i][k]);
      ASSERT_NEAR(w1[k], want, 1e-6 + 1e-5 * std::abs(want)) << p.name << "[" << k << "]";
    }
  }
  EXPECT_EQ(opt->state_bytes(), 2 * sizeof(float) * model->flat_params().numel);
}

// The step is one AdamW call over the whole flat buffer (weight decay by the mask), and
// its result is bit for bit that of one call per tensor with that tensor's decay.
TEST(AdamW, StepIsOneFusedCallEqualToOneCallPerTensor) {
  auto cpu = kernels::MakeCpuBackend(1);
  kernels::ProfilingBackend prof(cpu.get());
  GPTConfig config = *GPTPreset("tiny");
  config.n_embd = 40;  // tensors whose sizes are not multiples of 16: gaps between them
  config.n_head = 4;
  auto model = *GPT::Create(config, &prof, 2, 8);
  model->InitWeights(5);
  std::vector<int32_t> tokens(16), targets(16);
  for (int i = 0; i < 16; ++i) tokens[i] = (i * 29) % 256, targets[i] = (i * 13 + 1) % 256;
  model->ZeroGrad();
  ASSERT_TRUE(model->Forward(tokens.data(), targets.data(), 2, 8).ok());
  model->Backward();
  OptimizerConfig oc;
  oc.lr = 1e-2f;
  oc.weight_decay = 0.3f;
  oc.grad_clip = 0.5f;
  auto opt = *AdamW::Create(oc, model.get());

  // The reference: the same state, updated one tensor at a time.
  const kernels::View flat = model->flat_params();
  const char* base = static_cast<const char*>(flat.data);
  std::vector<float> w(flat.as<float>(), flat.as<float>() + flat.numel);
  const kernels::View grads = model->flat_grads();
  std::vector<float> g(grads.as<float>(), grads.as<float>() + grads.numel);
  std::vector<float> m(w.size(), 0.0f), v(w.size(), 0.0f);

  prof.Start();
  const StepStats stats = opt->Step(0);
  const kernels::OpProfile profile = prof.Stop();
  int64_t adamw_calls = 0;
  for (const kernels::OpStats& op : profile.ops) {
    if (op.op == "AdamW") adamw_calls = op.calls;
  }
  EXPECT_EQ(adamw_calls, 1) << "one fused call for " << model->params().size() << " tensors";

  for (const Tensor& t : model->params()) {
    const int64_t off = (static_cast<const char*>(t.data) - base) / 4;
    kernels::AdamWParams p = AdamWParamsFor(oc, stats, 0);
    p.weight_decay = DecaysWeight(t) ? oc.weight_decay : 0.0f;
    cpu->AdamW(kernels::View(w.data() + off, t.numel()), kernels::View(g.data() + off, t.numel()),
               m.data() + off, v.data() + off, kernels::View(), t.numel(), p);
  }
  const std::vector<float> got(flat.as<float>(), flat.as<float>() + flat.numel);
  ASSERT_EQ(got.size(), w.size());
  for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(got[i], w[i]) << "element " << i;
  const kernels::View m1 = opt->first_moment();
  EXPECT_EQ(0, std::memcmp(m1.data, m.data(), m.size() * 4));
}

}  // namespace
}  // namespace colossus
