// GraphStep (colossus/graph_step.h) on the CPU through kernels::RecordingBackend: steps
// launched as recorded op graphs train bit for bit like eager steps, across a changing
// learning rate, clipping, gradient accumulation and a batch whose ignored targets change
// the frozen loss gradient; a backend that cannot capture says so.
#include "colossus/graph_step.h"

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "colossus/kernels/recording_backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus {
namespace {

using ::testing::HasSubstr;

GPTConfig Small() {
  GPTConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 40;  // not a multiple of 16: gaps between the flat buffer's tensors
  c.block_size = 16;
  c.vocab_size = 61;
  return c;
}

OptimizerConfig Schedule() {
  OptimizerConfig o;
  o.lr = 3e-3f;
  o.min_lr = 3e-4f;
  o.warmup_steps = 2;  // the lr changes every step: a frozen lr would show
  o.total_steps = 8;
  o.grad_clip = 0.5f;  // small enough to clip
  return o;
}

struct Batch {
  std::vector<int32_t> tokens, targets;
};

// Batches for `steps` steps of `micro` micro-batches; step 3's second micro-batch
// ignores some targets (another loss gradient per row: not the captured graph's).
std::vector<std::vector<Batch>> Batches(int steps, int micro, int B, int T, int V) {
  std::mt19937 rng(11);
  std::vector<std::vector<Batch>> all(steps);
  for (int s = 0; s < steps; ++s) {
    for (int k = 0; k < micro; ++k) {
      Batch b;
      for (int i = 0; i < B * T; ++i) {
        b.tokens.push_back(static_cast<int32_t>(rng() % V));
        b.targets.push_back(static_cast<int32_t>(rng() % V));
      }
      if (s == 3 && k == 1) b.targets[0] = b.targets[5] = -1;
      all[s].push_back(std::move(b));
    }
  }
  return all;
}

std::vector<float> Weights(const GPT& model) {
  const kernels::View v = model.flat_params();
  std::vector<float> host(static_cast<size_t>(v.numel));
  model.backend()->CopyToHost(host.data(), v.data, v.bytes());
  return host;
}

TEST(GraphStep, RecordedGraphsTrainBitForBitLikeEagerSteps) {
  const int B = 2, T = 12, kSteps = 6, kMicro = 2;
  const auto batches = Batches(kSteps, kMicro, B, T, Small().vocab_size);

  auto eager_cpu = kernels::MakeCpuBackend(1);
  auto eager = *GPT::Create(Small(), eager_cpu.get(), B, T);
  eager->InitWeights(5);
  auto eager_opt = *AdamW::Create(Schedule(), eager.get());

  auto graph_cpu = kernels::MakeCpuBackend(1);
  kernels::RecordingBackend recorder(graph_cpu.get());
  auto model = *GPT::Create(Small(), &recorder, B, T);
  model->InitWeights(5);
  auto opt = *AdamW::Create(Schedule(), model.get());
  GraphStep graphs(model.get(), opt.get());

  for (int step = 0; step < kSteps; ++step) {
    SCOPED_TRACE(testing::Message() << "step " << step);
    eager->ZeroGrad();
    model->ZeroGrad();
    for (int k = 0; k < kMicro; ++k) {
      const Batch& b = batches[step][k];
      const float want = *eager->Forward(b.tokens.data(), b.targets.data(), B, T);
      eager->Backward(1.0f / kMicro);
      absl::StatusOr<float> got =
          graphs.MicroBatch(b.tokens.data(), b.targets.data(), B, T, 1.0f / kMicro);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, want) << "micro-batch " << k;
    }
    const StepStats want = eager_opt->Step(step);
    absl::StatusOr<StepStats> got = graphs.Update(step);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->lr, want.lr);
    EXPECT_EQ(got->grad_norm, want.grad_norm);
    EXPECT_EQ(got->clip_scale, want.clip_scale);
    ASSERT_EQ(Weights(*model), Weights(*eager)) << "weights after the update";
  }
  // Step 0 ran eagerly, step 1 captured both graphs, later steps replayed them; the batch
  // with ignored targets ran eagerly and the next one replayed the graph again.
  EXPECT_EQ(graphs.captures(), 2);
  EXPECT_GT(graphs.forward_backward_nodes(), 20);
  EXPECT_LT(eager_opt->Step(kSteps).clip_scale, 1.0f) << "clipping was exercised";
}

TEST(GraphStep, ABackendThatCannotCaptureSaysSo) {
  auto cpu = kernels::MakeCpuBackend(1);
  auto model = *GPT::Create(Small(), cpu.get(), 1, 4);
  auto opt = *AdamW::Create(Schedule(), model.get());
  GraphStep graphs(model.get(), opt.get());
  const std::vector<int32_t> tokens = {1, 2, 3, 4}, targets = {2, 3, 4, 5};
  ASSERT_TRUE(graphs.MicroBatch(tokens.data(), targets.data(), 1, 4).ok()) << "eager warm-up";
  absl::StatusOr<float> second = graphs.MicroBatch(tokens.data(), targets.data(), 1, 4);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("cannot capture op graphs"));
  // A bad batch is the model's error, before any capture.
  const std::vector<int32_t> bad = {1, 2, 99, 4};
  EXPECT_THAT(std::string(graphs.MicroBatch(bad.data(), targets.data(), 1, 4).status().message()),
              HasSubstr("99"));
}

TEST(RecordingBackend, HostCopiesAndSynchronizeWhileCapturingAbortNamingTheCall) {
  auto cpu = kernels::MakeCpuBackend(1);
  kernels::RecordingBackend recorder(cpu.get());
  float x = 0;
  ASSERT_TRUE(recorder.BeginCapture().ok());
  EXPECT_EQ(recorder.BeginCapture().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_DEATH(recorder.CopyToHost(&x, &x, 4), "CopyToHost while capturing an op graph");
  EXPECT_DEATH(recorder.Synchronize(), "Synchronize while capturing an op graph");
  // Recorded ops do not run until replayed.
  std::vector<float> a(8, 1.0f);
  recorder.Fill(kernels::View(a.data(), 8), 7.0f);
  EXPECT_EQ(a[0], 1.0f);
  auto graph = recorder.EndCapture();
  ASSERT_TRUE(graph.ok());
  EXPECT_EQ((*graph)->size(), 1);
  (*graph)->Replay();
  EXPECT_EQ(a[0], 7.0f);
  EXPECT_EQ(recorder.EndCapture().status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace colossus
