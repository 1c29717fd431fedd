// The trainer end to end on the CPU: real shards on disk, a real config, real steps.
#include "colossus/trainer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "colossus/mfu.h"
#include "colossus/weights.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace colossus {
namespace {

// A text with structure a tiny model can learn in a few dozen steps.
std::string PatternText(int lines) {
  std::string s;
  for (int i = 0; i < lines; ++i) {
    s += "the quick brown fox jumps over the lazy dog number " + std::to_string(i % 10) + ".\n";
  }
  return s;
}

TrainConfig SmallRun(const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::string text = PatternText(400);
  std::vector<uint16_t> tok(text.begin(), text.end());
  const size_t split = tok.size() * 9 / 10;
  EXPECT_TRUE(WriteTokenShard(dir + "/train_000000.bin", tok.data(), split, 256).ok());
  EXPECT_TRUE(WriteTokenShard(dir + "/val_000000.bin", tok.data() + split, tok.size() - split, 256).ok());
  TrainConfig c;
  c.model = *GPTPreset("tiny");
  c.train_data = dir + "/train_*.bin";
  c.val_data = dir + "/val_*.bin";
  c.batch_size = 4;
  c.seq_len = 32;
  c.grad_accum = 2;
  c.steps = 30;
  c.optimizer.lr = 3e-3f;
  c.optimizer.warmup_steps = 5;
  c.eval_every = 10;
  c.eval_batches = 4;
  c.sample_tokens = 20;
  c.sample_prompt = "the ";
  c.device = "cpu";
  c.threads = 2;
  c.output_dir = dir + "/out";
  return c;
}

std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(Trainer, TrainsLogsEvaluatesAndSavesWeights) {
  const std::string dir = ::testing::TempDir() + "/trainer_e2e";
  std::filesystem::remove_all(dir);
  TrainConfig c = SmallRun(dir);
  auto trainer = Trainer::Create(c);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  auto s = (*trainer)->Run();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->steps, 30);
  EXPECT_LT(s->final_loss, s->first_loss - 1.0f);
  ASSERT_GE(s->val_loss, 0);
  EXPECT_LT(s->val_loss, s->unigram_val_loss) << "the model should beat byte frequencies";
  EXPECT_EQ(s->sample.rfind("the ", 0), 0u);
  EXPECT_EQ(s->sample.size(), 4u + 20u);

  const auto lines = ReadJsonLines(c.output_dir + "/metrics.jsonl");
  int steps = 0, evals = 0;
  for (const auto& j : lines) {
    if (j.contains("val_loss")) ++evals;
    if (j.contains("loss")) {
      EXPECT_EQ(j["step"], steps);
      EXPECT_GT(j["tokens_per_s"].get<double>(), 0);
      EXPECT_FALSE(j.contains("mfu")) << "no MFU on the CPU";
      ++steps;
    }
  }
  EXPECT_EQ(steps, 30);
  EXPECT_EQ(evals, 3);

  // The saved weights reproduce the trained model's validation loss.
  auto fresh = Trainer::Create(c);
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE(LoadWeights(&(*fresh)->model(), s->weights_path).ok());
  auto vl = (*fresh)->Evaluate();
  ASSERT_TRUE(vl.ok());
  EXPECT_FLOAT_EQ(*vl, s->val_loss);
}

TEST(Trainer, SameSeedSameLosses) {
  std::vector<float> losses[2];
  for (int run = 0; run < 2; ++run) {
    const std::string dir = ::testing::TempDir() + "/trainer_det" + std::to_string(run);
    std::filesystem::remove_all(dir);
    TrainConfig c = SmallRun(dir);
    c.steps = 5;
    c.val_data.clear();
    auto trainer = Trainer::Create(c);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    ASSERT_TRUE((*trainer)->Run().ok());
    for (const auto& j : ReadJsonLines(c.output_dir + "/metrics.jsonl")) {
      losses[run].push_back(j["loss"].get<float>());
    }
  }
  ASSERT_EQ(losses[0].size(), 5u);
  EXPECT_EQ(losses[0], losses[1]);
}

// runtime.graphs = 1 (each step as op graphs; recorded ops on the CPU) trains bit for bit
// like the eager loop, with gradient accumulation and a changing learning rate.
TEST(Trainer, StepsAsOpGraphsTrainLikeEagerSteps) {
  std::vector<float> losses[2];
  for (int graphs = 0; graphs < 2; ++graphs) {
    const std::string dir = ::testing::TempDir() + "/trainer_graphs" + std::to_string(graphs);
    std::filesystem::remove_all(dir);
    TrainConfig c = SmallRun(dir);
    c.steps = 6;
    c.grad_accum = 2;
    c.optimizer.warmup_steps = 2;
    c.val_data.clear();
    c.graphs = graphs;
    auto trainer = Trainer::Create(c);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    ASSERT_TRUE((*trainer)->Run().ok());
    for (const auto& j : ReadJsonLines(c.output_dir + "/metrics.jsonl")) {
      if (j.contains("loss")) losses[graphs].push_back(j["loss"].get<float>());
    }
  }
  ASSERT_EQ(losses[0].size(), 6u);
  EXPECT_EQ(losses[1], losses[0]);
}

TEST(Trainer, MissingDataIsAClearError) {
  TrainConfig c;
  c.model = *GPTPreset("tiny");
  c.seq_len = 16;
  c.train_data = ::testing::TempDir() + "/nothing_here_*.bin";
  auto t = Trainer::Create(c);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), ::testing::HasSubstr("nothing_here_*.bin"));
}

// Worked by hand for GPT-2 124M (Vp 50304) at T = 1024: N = 50304*768 (wte) + 1024*768
// (wpe) + 12 * 7,087,872 (a block: two LayerNorms 2*1536, qkv 1,771,776, attn proj
// 590,592, fc 2,362,368, mlp proj 2,360,064) + 1536 (ln_f) = 124,475,904;
// 6N = 746,855,424; 6*L*C*T = 6*12*768*1024 = 56,623,104; total 803,478,528.
TEST(Mfu, Gpt2SmallFlopsPerTokenByHand) {
  const GPTConfig c = *GPTPreset("gpt2-124m");
  EXPECT_EQ(c.NumParameters(), 124475904);
  EXPECT_DOUBLE_EQ(ModelFlopsPerToken(c, 1024), 803478528.0);
  // The attention term follows T; 6N does not.
  EXPECT_DOUBLE_EQ(ModelFlopsPerToken(c, 512), 746855424.0 + 56623104.0 / 2);
}

TEST(Mfu, AgainstThePeakOfTheGpuByName) {
  const GPTConfig c = *GPTPreset("gpt2-124m");
  const double h100 = PeakBf16Flops("cuda:0 (NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB)");
  EXPECT_DOUBLE_EQ(h100, 989e12);
  EXPECT_DOUBLE_EQ(PeakBf16Flops("cuda:0 (NVIDIA H200, sm_90, 132 SMs)"), 989e12);
  EXPECT_DOUBLE_EQ(PeakBf16Flops("cuda:1 (NVIDIA A100-SXM4-80GB, sm_80)"), 312e12);
  EXPECT_EQ(PeakBf16Flops("cuda:0 (NVIDIA L4, sm_89)"), 0.0);
  EXPECT_EQ(PeakBf16Flops("cpu (2 threads, OpenBLAS 0.3.21)"), 0.0);
  // The target: 550K tokens/s on an H100 is 44.7% MFU.
  EXPECT_NEAR(Mfu(ModelFlopsPerToken(c, 1024), 550e3, h100), 803478528.0 * 550e3 / 989e12, 1e-12);
  EXPECT_NEAR(Mfu(ModelFlopsPerToken(c, 1024), 550e3, h100), 0.4468, 1e-4);
  EXPECT_LT(Mfu(ModelFlopsPerToken(c, 1024), 550e3, 0.0), 0) << "no peak, no MFU";
}

TEST(Mfu, JsonLineCarriesMfuOnlyWhenKnown) {
  StepRecord r;
  r.tokens_per_s = 1000;
  EXPECT_FALSE(nlohmann::json::parse(StepRecordJson(r)).contains("mfu"));
  r.mfu = 0.45;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(StepRecordJson(r))["mfu"].get<double>(), 0.45);
}

TEST(Mfu, PeakTflopsIsAConfigKey) {
  TrainConfig c;
  EXPECT_EQ(c.peak_tflops, 0.0f);
  ASSERT_TRUE(ApplyOverride(&c, "runtime.peak_tflops=756").ok());
  EXPECT_EQ(c.peak_tflops, 756.0f);
  c.train_data = "x_*.bin";
  c.peak_tflops = -1;
  EXPECT_THAT(c.Validate().message(), ::testing::HasSubstr("runtime.peak_tflops"));
}

}  // namespace
}  // namespace colossus
