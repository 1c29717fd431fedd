// The exported model in the implementation it is for: transformers' GPT2LMHeadModel
// (scripts/setup.sh's .venv-hf) loads colossus-export's directory (from a committed
// checkpoint, through the tool) and its logits on a fixed batch must match our forward.
//
// Fails, never skips, without the venv: CI runs scripts/setup.sh, which creates it.
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "colossus/config.h"
#include "colossus/hf_export.h"
#include "colossus/model.h"
#include "colossus/safetensors.h"
#include "export_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::hf {
namespace {

using namespace ::colossus::hf::testing;

const std::string kVenvPython = std::string(COLOSSUS_SOURCE_DIR) + "/.venv-hf/bin/python";

int Shell(const std::string& command) {
  const int rc = std::system(command.c_str());
  if (rc == -1) return -1;
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

void RequireVenv() {
  ASSERT_EQ(::access(kVenvPython.c_str(), X_OK), 0)
      << kVenvPython << " not found: run scripts/setup.sh (it creates .venv-hf with "
      << "transformers on top of Debian's torch)";
  ASSERT_EQ(Shell(kVenvPython + " -c 'import transformers, safetensors, torch' >/dev/null 2>&1"), 0)
      << kVenvPython << " cannot import transformers, safetensors and torch: run scripts/setup.sh";
}

// L2 H4 C64, context 32, V 100 (Vp 128: export unpads). Weights at a scale where every
// op matters (as in tests/torch_ref): linear weights N(0, 1/fan_in) so pre-activations
// are ~N(0, 1) and GELU's tanh form, the attention scale and LayerNorm's epsilon are
// all visible; gains U(0.5, 1.5); biases N(0, 0.2); embeddings N(0, 1). At GPT-2's
// initialisation (std 0.02, zero biases) a wrong GELU or a dropped bias would pass.
GPTConfig TestConfig() {
  GPTConfig c;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 64;
  c.block_size = 32;
  c.vocab_size = 100;
  return c;
}

void RichWeights(GPT* model, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> gain(0.5f, 1.5f);
  std::map<std::string, float> fan_in_std;
  for (const Tensor& p : model->params()) {
    if (p.shape.size() == 2) fan_in_std[p.name] = 1.0f / std::sqrt(static_cast<float>(p.shape[1]));
  }
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  FillParams(model, [&](const std::string& name, int64_t) {
    if (name == "wte" || name == "wpe") return normal(rng);
    if (ends_with(name, "ln_1.weight") || ends_with(name, "ln_2.weight") || name == "ln_f.weight") {
      return gain(rng);
    }
    if (ends_with(name, ".bias")) return 0.2f * normal(rng);
    return fan_in_std.at(name) * normal(rng);
  });
}

TEST(HfTransformers, GPT2LMHeadModelLogitsMatchOurs) {
  ASSERT_NO_FATAL_FAILURE(RequireVenv());
  TempDir tmp;
  const GPTConfig config = TestConfig();
  const int B = 2, T = config.block_size;  // every position row used

  auto backend = kernels::MakeCpuBackend(1);
  absl::StatusOr<std::unique_ptr<GPT>> model = GPT::Create(config, backend.get(), B, T);
  ASSERT_TRUE(model.ok()) << model.status();
  RichWeights(model->get(), 1234);
  ASSERT_TRUE(WriteCheckpoint(**model, tmp / "ckpt", 7, 2));

  ToolResult r = RunTool("--checkpoint " + (tmp / "ckpt") + " --out " + (tmp / "hf"));
  ASSERT_EQ(r.rc, 0) << r.output;
  std::cout << r.output;

  std::vector<int32_t> tokens(static_cast<size_t>(B * T));
  std::string json = "[";
  for (int b = 0; b < B; ++b) {
    json += b ? ",[" : "[";
    for (int t = 0; t < T; ++t) {
      // A fixed sequence that reaches the top of the vocabulary (V - 1 = 99).
      const int32_t tok = (b * 53 + t * 37 + 11) % config.vocab_size;
      tokens[b * T + t] = t == 5 ? config.vocab_size - 1 : tok;
      if (t > 0) json += ",";
      json += std::to_string(tokens[b * T + t]);
    }
    json += "]";
  }
  json += "]";
  std::ofstream(tmp / "tokens.json") << json;

  const std::string cmd = kVenvPython + " " + COLOSSUS_HF_LOGITS_PY + " --model " + (tmp / "hf") +
                          " --tokens " + (tmp / "tokens.json") + " --out " + (tmp / "hf_logits.safetensors");
  ASSERT_EQ(Shell(cmd), 0) << cmd;

  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(tmp / "hf_logits.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  const SafetensorsEntry* e = f->Find("logits");
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->dtype, SafetensorsDType::kF32);
  ASSERT_EQ(e->shape, (std::vector<int64_t>{B, T, config.vocab_size}));
  std::vector<float> theirs(static_cast<size_t>(e->numel()));
  std::memcpy(theirs.data(), e->data, e->bytes);

  ASSERT_TRUE((*model)->Forward(tokens.data(), nullptr, B, T).ok());
  // Relative to the largest logit: elementwise relative error means nothing for the
  // logits near zero, and both sides sum in different orders in f32.
  double max_diff = 0, scale = 0, num = 0, den = 0;
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < T; ++t) {
      const std::vector<float> ours = (*model)->LogitsAt(b, t);
      ASSERT_EQ(ours.size(), static_cast<size_t>(config.vocab_size));
      for (int v = 0; v < config.vocab_size; ++v) {
        const double a = ours[v], h = theirs[(static_cast<size_t>(b) * T + t) * config.vocab_size + v];
        const double d = std::abs(a - h);
        max_diff = std::isnan(d) ? INFINITY : std::max(max_diff, d);
        scale = std::max(scale, std::abs(h));
        num += d * d;
        den += h * h;
      }
    }
  }
  const double max_rel = max_diff / scale, l2_rel = std::sqrt(num / den);
  std::cout << "logits vs transformers: max |diff| " << max_diff << " of max |logit| " << scale
            << " (max rel " << max_rel << "), L2 rel " << l2_rel << "\n";
  ::testing::Test::RecordProperty("max_rel", std::to_string(max_rel));
  EXPECT_GT(scale, 1.0);  // logits far from zero: the comparison has something to compare
  EXPECT_LT(max_rel, 1e-4);
  EXPECT_LT(l2_rel, 1e-4);
}

}  // namespace
}  // namespace colossus::hf
