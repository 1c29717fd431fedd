#include <fstream>

#include "colossus/config.h"
#include "colossus/train_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus {
namespace {

using ::testing::HasSubstr;

TEST(GPTConfig, Gpt2SmallHasTheKnownParameterCount) {
  auto c = GPTPreset("gpt2-124m");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->PaddedVocab(), 50304);
  // 124,475,904 with the vocabulary padded to 50304, as llm.c reports it.
  EXPECT_EQ(c->NumParameters(), 124475904);
  EXPECT_TRUE(c->Validate().ok());
}

TEST(GPTConfig, VocabPadsToMultipleOf128UnlessGiven) {
  GPTConfig c;
  c.vocab_size = 256;
  EXPECT_EQ(c.PaddedVocab(), 256);
  c.vocab_size = 257;
  EXPECT_EQ(c.PaddedVocab(), 384);
  c.padded_vocab_size = 300;
  EXPECT_EQ(c.PaddedVocab(), 300);
}

TEST(GPTConfig, BadShapesNameTheField) {
  GPTConfig c = *GPTPreset("tiny");
  c.n_head = 0;
  EXPECT_THAT(c.Validate().message(), HasSubstr("model.n_head"));
  c = *GPTPreset("tiny");
  c.n_embd = 66;
  c.n_head = 4;
  EXPECT_THAT(c.Validate().message(), HasSubstr("not divisible by model.n_head"));
  c = *GPTPreset("tiny");
  c.n_layer = -1;
  EXPECT_THAT(c.Validate().message(), HasSubstr("model.n_layer"));
  c = *GPTPreset("tiny");
  c.padded_vocab_size = 100;
  EXPECT_THAT(c.Validate().message(), HasSubstr("padded_vocab_size"));
  c = *GPTPreset("tiny");
  c.vocab_size = 70000;
  EXPECT_THAT(c.Validate().message(), HasSubstr("model.vocab_size"));
}

TEST(GPTConfig, UnknownPresetListsTheKnownOnes) {
  auto c = GPTPreset("gpt5");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("gpt2-124m"));
}

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(TrainConfig, LoadsYamlWithPresetAndOverrides) {
  const std::string path = WriteFile("ok.yaml",
                                     "training:\n  steps: 7\n  seq_len: 32\n"
                                     "model:\n  n_layer: 3\n  preset: tiny\n"
                                     "data:\n  train: a_*.bin\n");
  auto c = LoadTrainConfig(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->steps, 7);
  // The preset applies first, whatever its position; explicit keys then win.
  EXPECT_EQ(c->model.n_layer, 3);
  EXPECT_EQ(c->model.n_embd, 64);
  ASSERT_TRUE(ApplyOverride(&*c, "optimizer.lr=0.01").ok());
  EXPECT_FLOAT_EQ(c->optimizer.lr, 0.01f);
}

TEST(TrainConfig, UnknownKeyNamesFileLineAndKey) {
  const std::string path = WriteFile("typo.yaml", "data:\n  train: x.bin\ntraining:\n  stepz: 5\n");
  auto c = LoadTrainConfig(path);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("typo.yaml:4"));
  EXPECT_THAT(c.status().message(), HasSubstr("training.stepz"));
}

TEST(TrainConfig, WrongTypeNamesTheKey) {
  const std::string path = WriteFile("type.yaml", "data:\n  train: x.bin\ntraining:\n  steps: many\n");
  auto c = LoadTrainConfig(path);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("training.steps"));
  EXPECT_THAT(c.status().message(), HasSubstr("'many'"));
}

TEST(TrainConfig, ContextLongerThanPositionTableIsRefused) {
  TrainConfig c;
  c.model = *GPTPreset("tiny");  // block_size 64
  c.train_data = "x.bin";
  c.seq_len = 65;
  EXPECT_THAT(c.Validate().message(), HasSubstr("training.seq_len = 65 exceeds model.block_size = 64"));
}

TEST(TrainConfig, MalformedYamlAndMissingFile) {
  auto bad = LoadTrainConfig(WriteFile("bad.yaml", "training: [1, 2\n"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("bad.yaml:"));
  auto missing = LoadTrainConfig("/nonexistent/config.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/config.yaml"));
}

TEST(TrainConfig, OverrideSyntaxErrors) {
  TrainConfig c;
  EXPECT_THAT(ApplyOverride(&c, "training.steps").message(), HasSubstr("section.key=value"));
  EXPECT_THAT(ApplyOverride(&c, "training.nope=1").message(), HasSubstr("unknown key 'training.nope'"));
}

}  // namespace
}  // namespace colossus
