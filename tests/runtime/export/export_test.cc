// colossus-export (colossus/hf_export.h): the name map and Conv1D layout on tensors
// with known values, bit-exact round trips (library and tool, from checkpoints and
// weights files), the checkpoint reader's fallback rules as the tool reports them, and
// import errors that name the tensor or field.
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "colossus/check.h"
#include "colossus/checkpoint/format.h"
#include "colossus/config.h"
#include "colossus/hf_export.h"
#include "colossus/model.h"
#include "colossus/safetensors.h"
#include "colossus/weights.h"
#include "export_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::hf {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace ::colossus::hf::testing;

// V = 10 is padded to Vp = 128: export must drop 118 rows, import restore them.
GPTConfig Small() {
  GPTConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 8;
  c.block_size = 6;
  c.vocab_size = 10;
  return c;
}

LoadedModel Make(const GPTConfig& c = Small()) {
  absl::StatusOr<LoadedModel> m = MakeCpuModel(c);
  CHECK(m.ok()) << m.status();
  return *std::move(m);
}

std::map<std::string, HfTensor> ByName(std::vector<HfTensor> v) {
  std::map<std::string, HfTensor> out;
  for (HfTensor& t : v) out[t.name] = std::move(t);
  return out;
}

TEST(HfExport, NamesAndShapesAreGpt2s) {
  LoadedModel m = Make();
  const std::vector<HfTensor> t = ToHuggingFace(*m.model);
  std::vector<std::string> names;
  for (const HfTensor& x : t) names.push_back(x.name);
  std::vector<std::string> want = {"wte.weight", "wpe.weight"};
  for (int l = 0; l < 2; ++l) {
    for (const char* s : {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                          "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                          "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"}) {
      want.push_back("h." + std::to_string(l) + "." + s);
    }
  }
  want.push_back("ln_f.weight");
  want.push_back("ln_f.bias");
  EXPECT_EQ(names, want);  // and no lm_head.weight: tied
  auto by = ByName(t);
  EXPECT_EQ(by["wte.weight"].shape, (std::vector<int64_t>{10, 8}));  // V, not Vp
  EXPECT_EQ(by["wpe.weight"].shape, (std::vector<int64_t>{6, 8}));
  EXPECT_EQ(by["h.1.attn.c_attn.weight"].shape, (std::vector<int64_t>{8, 24}));
  EXPECT_EQ(by["h.1.attn.c_attn.bias"].shape, (std::vector<int64_t>{24}));
  EXPECT_EQ(by["h.1.attn.c_proj.weight"].shape, (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(by["h.1.mlp.c_fc.weight"].shape, (std::vector<int64_t>{8, 32}));
  EXPECT_EQ(by["h.1.mlp.c_proj.weight"].shape, (std::vector<int64_t>{32, 8}));
}

// Our Linear weight [out, in] element (o, i) is Conv1D's [in, out] element (i, o).
TEST(HfExport, Conv1DWeightsAreTransposedOnKnownValues) {
  LoadedModel m = Make();
  // Every element's value encodes its position: 1000 * row + column (exact in f32).
  std::map<std::string, int64_t> cols;
  for (const Tensor& p : m.model->params()) cols[p.name] = p.shape.size() == 2 ? p.shape[1] : 1;
  FillParams(m.model.get(), [&](const std::string& name, int64_t k) {
    return static_cast<float>(1000 * (k / cols[name]) + k % cols[name]);
  });
  auto by = ByName(ToHuggingFace(*m.model));

  const HfTensor& qkv = by["h.1.attn.c_attn.weight"];  // ours [24, 8] -> [8, 24]
  for (int64_t o = 0; o < 24; ++o) {
    for (int64_t i = 0; i < 8; ++i) {
      ASSERT_EQ(qkv.data[i * 24 + o], 1000.0f * o + i) << "c_attn.weight[" << i << "][" << o << "]";
    }
  }
  const HfTensor& attn_proj = by["h.1.attn.c_proj.weight"];  // square [8, 8]: shape alone cannot tell
  for (int64_t o = 0; o < 8; ++o) {
    for (int64_t i = 0; i < 8; ++i) ASSERT_EQ(attn_proj.data[i * 8 + o], 1000.0f * o + i);
  }
  const HfTensor& fc = by["h.0.mlp.c_fc.weight"];  // ours [32, 8] -> [8, 32]
  const HfTensor& proj = by["h.0.mlp.c_proj.weight"];  // ours [8, 32] -> [32, 8]
  for (int64_t o = 0; o < 32; ++o) {
    for (int64_t i = 0; i < 8; ++i) {
      ASSERT_EQ(fc.data[i * 32 + o], 1000.0f * o + i);
      ASSERT_EQ(proj.data[o * 8 + i], 1000.0f * i + o);
    }
  }
  // Not transposed: embeddings (rows are tokens / positions), biases, LayerNorms.
  const HfTensor& wte = by["wte.weight"];
  ASSERT_EQ(wte.data.size(), 80u);
  for (int64_t k = 0; k < 80; ++k) ASSERT_EQ(wte.data[k], 1000.0f * (k / 8) + k % 8);
  EXPECT_EQ(by["h.0.attn.c_attn.bias"].data[23], 23000.0f);  // 1-D: one column
}

TEST(HfExport, ConfigJsonIsGpt2ConfigAndParsesBack) {
  GPTConfig c = Small();
  c.padded_vocab_size = 16;
  const std::string text = HuggingFaceConfigJson(c);
  EXPECT_THAT(text, HasSubstr("\"model_type\": \"gpt2\""));
  EXPECT_THAT(text, HasSubstr("\"activation_function\": \"gelu_new\""));
  EXPECT_THAT(text, HasSubstr("\"layer_norm_epsilon\": 1e-05"));
  EXPECT_THAT(text, HasSubstr("\"tie_word_embeddings\": true"));
  EXPECT_THAT(text, HasSubstr("\"n_positions\": 6"));
  EXPECT_THAT(text, HasSubstr("\"vocab_size\": 10"));
  absl::StatusOr<GPTConfig> back = ParseHuggingFaceConfig(text, "x/config.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->DebugString(), c.DebugString());
  EXPECT_EQ(back->PaddedVocab(), 16);
  absl::StatusOr<GPTConfig> over = ParseHuggingFaceConfig(text, "x/config.json", 64);
  ASSERT_TRUE(over.ok());
  EXPECT_EQ(over->PaddedVocab(), 64);
}

TEST(HfExport, ConfigsWeCannotRepresentAreRefusedNamingTheField) {
  const std::string base = HuggingFaceConfigJson(Small());
  auto with = [&](const std::string& from, const std::string& to) {
    std::string t = base;
    const size_t at = t.find(from);
    CHECK(at != std::string::npos) << from;
    return t.replace(at, from.size(), to);
  };
  struct Case {
    std::string text, field;
  } cases[] = {
      {with("\"gelu_new\"", "\"relu\""), "activation_function"},
      {with("1e-05", "1e-06"), "layer_norm_epsilon"},
      {with("\"n_inner\": null", "\"n_inner\": 16"), "n_inner"},
      {with("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false"), "tie_word_embeddings"},
      {with("\"scale_attn_by_inverse_layer_idx\": false", "\"scale_attn_by_inverse_layer_idx\": true"),
       "scale_attn_by_inverse_layer_idx"},
      {with("\"model_type\": \"gpt2\"", "\"model_type\": \"llama\""), "model_type"},
      {with("\"n_head\": 2", "\"n_head\": 3"), "n_head"},  // 8 is not divisible by 3
      {with("\"n_embd\": 8", "\"n_embd\": \"8\""), "n_embd"},
      {with("\"n_layer\": 2,", ""), "n_layer"},
      {"{not json", "not valid JSON"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<GPTConfig> r = ParseHuggingFaceConfig(c.text, "hf/config.json");
    ASSERT_FALSE(r.ok()) << c.field;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("hf/config.json"));
    EXPECT_THAT(r.status().message(), HasSubstr(c.field));
  }
}

TEST(HfExport, LibraryRoundTripIsBitExact) {
  TempDir tmp;
  LoadedModel a = Make();
  RandomBits(a.model.get(), 7);
  ASSERT_TRUE(ExportHuggingFace(*a.model, tmp / "hf").ok());
  absl::StatusOr<GPTConfig> c = ReadHuggingFaceConfig(tmp / "hf");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->DebugString(), Small().DebugString());
  LoadedModel b = Make(*c);
  absl::Status s = ImportHuggingFace(tmp / "hf", b.model.get());
  ASSERT_TRUE(s.ok()) << s;
  ExpectBitEqual(*a.model, *b.model);
}

// The user's path: a checkpoint saved by 2 ranks -> colossus-export -> --import -> our
// weights file, which LoadWeights reads back bit for bit.
TEST(HfExportTool, CheckpointToHuggingFaceAndBack) {
  TempDir tmp;
  const std::string ckpt = tmp / "ckpt";
  LoadedModel s10 = Make(), s20 = Make();
  RandomBits(s10.model.get(), 10);
  RandomBits(s20.model.get(), 20);
  ASSERT_TRUE(WriteCheckpoint(*s10.model, ckpt, 10, 2));
  ASSERT_TRUE(WriteCheckpoint(*s20.model, ckpt, 20, 2));

  for (int64_t step : {int64_t{-1}, int64_t{10}}) {
    const std::string out = tmp / ("hf" + std::to_string(step));
    ToolResult r = RunTool("--checkpoint " + ckpt + (step >= 0 ? " --step 10" : "") + " --out " + out);
    ASSERT_EQ(r.rc, 0) << r.output;
    const int64_t want_step = step >= 0 ? 10 : 20;
    EXPECT_THAT(r.output, HasSubstr("exported step " + std::to_string(want_step)));
    EXPECT_TRUE(fs::exists(fs::path(out) / "config.json"));
    absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(out + "/model.safetensors");
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->metadata().at("format"), "pt");

    ToolResult back = RunTool("--import " + out + " --out " + out + "/ours.safetensors");
    ASSERT_EQ(back.rc, 0) << back.output;
    LoadedModel got = Make();
    absl::Status s = LoadWeights(got.model.get(), out + "/ours.safetensors");
    ASSERT_TRUE(s.ok()) << s;
    ExpectBitEqual(step >= 0 ? *s10.model : *s20.model, *got.model);
  }
}

TEST(HfExportTool, WeightsFileToHuggingFaceAndBack) {
  TempDir tmp;
  LoadedModel a = Make();
  RandomBits(a.model.get(), 3);
  ASSERT_TRUE(SaveWeights(*a.model, tmp / "model.safetensors").ok());
  ToolResult r = RunTool("--weights " + (tmp / "model.safetensors") + " --out " + (tmp / "hf"));
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_THAT(r.output, Not(HasSubstr("step")));
  r = RunTool("--import " + (tmp / "hf") + " --out " + (tmp / "back.safetensors"));
  ASSERT_EQ(r.rc, 0) << r.output;
  LoadedModel b = Make();
  ASSERT_TRUE(LoadWeights(b.model.get(), tmp / "back.safetensors").ok());
  ExpectBitEqual(*a.model, *b.model);
}

// A corrupt newest step: the reader falls back, the tool says which step it exported
// and names the bad file; asking for that step explicitly is an error naming it.
TEST(HfExportTool, CorruptLatestStepFallsBackAndNamesTheFile) {
  TempDir tmp;
  const std::string ckpt = tmp / "ckpt";
  LoadedModel s10 = Make(), s20 = Make();
  RandomBits(s10.model.get(), 11);
  RandomBits(s20.model.get(), 21);
  ASSERT_TRUE(WriteCheckpoint(*s10.model, ckpt, 10, 2));
  ASSERT_TRUE(WriteCheckpoint(*s20.model, ckpt, 20, 2));
  const std::string shard = checkpoint::StepDir(ckpt, 20) + "/shard-1-of-2.bin";
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-1, std::ios::end);
    char c = 0;
    f.get(c);
    f.seekp(-1, std::ios::end);
    f.put(static_cast<char>(c ^ 0x5a));
  }
  ToolResult r = RunTool("--checkpoint " + ckpt + " --out " + (tmp / "hf"));
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("passed over step 20"));
  EXPECT_THAT(r.output, HasSubstr(shard));
  EXPECT_THAT(r.output, HasSubstr("exported step 10"));
  LoadedModel got = Make();
  ASSERT_TRUE(ImportHuggingFace(tmp / "hf", got.model.get()).ok());
  ExpectBitEqual(*s10.model, *got.model);

  r = RunTool("--checkpoint " + ckpt + " --step 20 --out " + (tmp / "hf20"));
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr(shard));
  EXPECT_FALSE(fs::exists(tmp / "hf20/model.safetensors"));
}

TEST(HfExportTool, UncommittedAndMissingStepsAreNamed) {
  TempDir tmp;
  const std::string ckpt = tmp / "ckpt";
  {
    ToolResult r = RunTool("--checkpoint " + ckpt + " --out " + (tmp / "hf"));
    EXPECT_EQ(r.rc, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr(ckpt));
  }
  fs::create_directories(ckpt);
  {
    ToolResult r = RunTool("--checkpoint " + ckpt + " --out " + (tmp / "hf"));
    EXPECT_EQ(r.rc, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr("no committed checkpoint"));
  }
  LoadedModel s10 = Make();
  RandomBits(s10.model.get(), 12);
  ASSERT_TRUE(WriteCheckpoint(*s10.model, ckpt, 10, 1));
  // A save cut off before its commit: shard files but no COMMIT.json.
  const std::string step30 = checkpoint::StepDir(ckpt, 30);
  fs::create_directories(step30);
  fs::copy_file(checkpoint::StepDir(ckpt, 10) + "/shard-0-of-1.bin", step30 + "/shard-0-of-1.bin");

  ToolResult r = RunTool("--checkpoint " + ckpt + " --out " + (tmp / "hf"));
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("exported step 10"));
  EXPECT_THAT(r.output, HasSubstr("passed over step 30"));
  EXPECT_THAT(r.output, HasSubstr(step30 + "/COMMIT.json"));

  r = RunTool("--checkpoint " + ckpt + " --step 30 --out " + (tmp / "hf30"));
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr(step30 + "/COMMIT.json"));
  EXPECT_THAT(r.output, HasSubstr("never committed"));
  EXPECT_THAT(r.output, HasSubstr("committed steps in " + ckpt + ": 10"));

  r = RunTool("--checkpoint " + ckpt + " --step 99 --out " + (tmp / "hf99"));
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr(checkpoint::StepDir(ckpt, 99) + " does not exist"));
}

TEST(HfExportTool, UsageErrorsExitTwo) {
  EXPECT_EQ(RunTool("--out /tmp/x").rc, 2);
  EXPECT_EQ(RunTool("--checkpoint a --weights b --out c").rc, 2);
  EXPECT_EQ(RunTool("--weights b --step 3 --out c").rc, 2);
}

// Import of files that do not fit: every problem named, the model untouched.
class HfImport : public ::testing::Test {
 protected:
  void SetUp() override {
    source_ = Make();
    RandomBits(source_.model.get(), 5);
    tensors_ = ToHuggingFace(*source_.model);
  }
  // Writes tensors_ (after `edit`) and the config to a fresh HF directory.
  std::string Write(const std::vector<HfTensor>& tensors) {
    const std::string dir = tmp_ / ("hf" + std::to_string(n_++));
    fs::create_directories(dir);
    std::vector<SafetensorsTensor> e;
    for (const HfTensor& t : tensors) e.push_back({t.name, SafetensorsDType::kF32, t.shape, t.data.data()});
    CHECK(WriteSafetensors(dir + "/model.safetensors", e, {{"format", "pt"}}).ok());
    std::ofstream(dir + "/config.json") << HuggingFaceConfigJson(Small());
    return dir;
  }
  HfTensor& Get(std::vector<HfTensor>& v, const std::string& name) {
    for (HfTensor& t : v) {
      if (t.name == name) return t;
    }
    CHECK(false) << name;
    return v[0];
  }
  // Imports `dir` into a model of zeros; on failure checks the model stayed zero.
  absl::Status Import(const std::string& dir) {
    target_ = Make();
    absl::Status s = ImportHuggingFace(dir, target_.model.get());
    if (!s.ok()) {
      for (const Tensor& p : target_.model->params()) {
        for (int64_t i = 0; i < p.numel(); ++i) EXPECT_EQ(p.as<float>()[i], 0.0f) << p.name;
      }
    }
    return s;
  }

  TempDir tmp_;
  int n_ = 0;
  LoadedModel source_, target_;
  std::vector<HfTensor> tensors_;
};

TEST_F(HfImport, WrongShapesAndMissingNamesAreAllListed) {
  std::vector<HfTensor> t = tensors_;
  HfTensor& fc = Get(t, "h.0.mlp.c_fc.weight");
  fc.shape = {32, 8};  // nn.Linear's layout instead of Conv1D's
  std::vector<HfTensor> kept;
  for (HfTensor& x : t) {
    if (x.name != "ln_f.bias") kept.push_back(x);
  }
  kept.push_back({"h.0.attn.rotary", {2}, {1, 2}});
  const std::string dir = Write(kept);
  absl::Status s = Import(dir);
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr(dir + "/model.safetensors"));
  EXPECT_THAT(s.message(), HasSubstr("'h.0.mlp.c_fc.weight' has shape [32, 8], expected [8, 32]"));
  EXPECT_THAT(s.message(), HasSubstr("missing tensor 'ln_f.bias'"));
  EXPECT_THAT(s.message(), HasSubstr("unexpected tensor 'h.0.attn.rotary'"));

  // The tool reports the same and exits 1, writing nothing.
  ToolResult r = RunTool("--import " + dir + " --out " + (tmp_ / "w.safetensors"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.output, HasSubstr("'h.0.mlp.c_fc.weight' has shape [32, 8], expected [8, 32]"));
  EXPECT_FALSE(fs::exists(tmp_ / "w.safetensors"));
}

TEST_F(HfImport, WrongVocabularyInTheTensorsIsNamed) {
  std::vector<HfTensor> t = tensors_;
  HfTensor& wte = Get(t, "wte.weight");
  wte.shape = {128, 8};  // the padded table, not what config.json's vocab_size says
  wte.data.resize(128 * 8);
  absl::Status s = Import(Write(t));
  EXPECT_THAT(s.message(), HasSubstr("'wte.weight' has shape [128, 8], expected [10, 8]"));
}

TEST_F(HfImport, SavePretrainedNamesWithTiedHeadAreAccepted) {
  // GPT2LMHeadModel.save_pretrained(safe_serialization=False)-style names: prefixed,
  // with the head and the mask buffers.
  std::vector<HfTensor> t;
  for (const HfTensor& x : tensors_) {
    t.push_back({"transformer." + x.name, x.shape, x.data});
    if (x.name == "wte.weight") t.push_back({"lm_head.weight", x.shape, x.data});
  }
  t.push_back({"transformer.h.0.attn.bias", {1}, {1.0f}});
  absl::Status s = Import(Write(t));
  ASSERT_TRUE(s.ok()) << s;
  ExpectBitEqual(*source_.model, *target_.model);
}

TEST_F(HfImport, UntiedHeadIsRefused) {
  std::vector<HfTensor> t = tensors_;
  HfTensor head = Get(t, "wte.weight");
  head.name = "lm_head.weight";
  head.data[3] = 0.5f;
  t.push_back(head);
  absl::Status s = Import(Write(t));
  EXPECT_THAT(s.message(), HasSubstr("'lm_head.weight' differs from wte.weight"));
}

TEST_F(HfImport, NonF32IsNamed) {
  const std::string dir = Write(tensors_);
  // Rewrite with one BF16 tensor.
  std::vector<SafetensorsTensor> e;
  std::vector<uint16_t> half(8, 0);
  for (const HfTensor& t : tensors_) {
    if (t.name == "ln_f.weight") {
      e.push_back({t.name, SafetensorsDType::kBF16, t.shape, half.data()});
    } else {
      e.push_back({t.name, SafetensorsDType::kF32, t.shape, t.data.data()});
    }
  }
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", e, {{"format", "pt"}}).ok());
  absl::Status s = Import(dir);
  EXPECT_THAT(s.message(), HasSubstr("'ln_f.weight' is BF16, expected F32"));
}

}  // namespace
}  // namespace colossus::hf
