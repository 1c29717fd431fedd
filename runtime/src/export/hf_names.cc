// The name map and config.json of hf_export.h: pure functions over names and configs.
#include <cmath>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "colossus/check.h"
#include "colossus/hf_export.h"
#include "nlohmann/json.hpp"

namespace colossus::hf {
namespace {

struct SuffixRule {
  const char* ours;
  const char* theirs;
  bool transposed;
};

// The tensors of block l, after "h.{l}.". The Linear weights become Conv1D weights.
constexpr SuffixRule kBlockRules[] = {
    {"ln_1.weight", "ln_1.weight", false},
    {"ln_1.bias", "ln_1.bias", false},
    {"attn.qkv.weight", "attn.c_attn.weight", true},
    {"attn.qkv.bias", "attn.c_attn.bias", false},
    {"attn.proj.weight", "attn.c_proj.weight", true},
    {"attn.proj.bias", "attn.c_proj.bias", false},
    {"ln_2.weight", "ln_2.weight", false},
    {"ln_2.bias", "ln_2.bias", false},
    {"mlp.fc.weight", "mlp.c_fc.weight", true},
    {"mlp.fc.bias", "mlp.c_fc.bias", false},
    {"mlp.proj.weight", "mlp.c_proj.weight", true},
    {"mlp.proj.bias", "mlp.c_proj.bias", false},
};

// Activations that are GELU's tanh approximation in transformers' ACT2FN.
bool IsTanhGelu(const std::string& name) {
  return name == "gelu_new" || name == "gelu_pytorch_tanh";
}

using Json = nlohmann::json;

absl::Status Refuse(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// A required non-negative integer field that fits an int.
absl::Status GetInt(const Json& j, const char* key, const std::string& path, int* out) {
  auto it = j.find(key);
  if (it == j.end()) return Refuse(path, absl::StrCat("no '", key, "' (required)"));
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > (1 << 30)) {
    return Refuse(path, absl::StrCat("'", key, "' is ", it->dump(), ", expected a non-negative integer"));
  }
  *out = it->get<int>();
  return absl::OkStatus();
}

// Whether optional boolean `key` is absent or equals `want`; refusal names the field.
absl::Status CheckBool(const Json& j, const char* key, bool want, const std::string& path,
                       const char* why) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return Refuse(path, absl::StrCat("'", key, "' is ", it->dump(), ", expected a boolean"));
  if (it->get<bool>() != want) {
    return Refuse(path, absl::StrCat("'", key, "' is ", it->dump(), ": ", why));
  }
  return absl::OkStatus();
}

}  // namespace

HfName HuggingFaceName(const std::string& name) {
  if (name == "wte" || name == "wpe") return {name + ".weight", false};
  if (name == "ln_f.weight" || name == "ln_f.bias") return {name, false};
  // "h.<l>.<suffix>"
  CHECK(absl::StartsWith(name, "h.")) << "not a model.h parameter name: " << name;
  const size_t dot = name.find('.', 2);
  CHECK(dot != std::string::npos) << "not a model.h parameter name: " << name;
  int layer = 0;
  CHECK(absl::SimpleAtoi(name.substr(2, dot - 2), &layer)) << "not a model.h parameter name: " << name;
  const std::string suffix = name.substr(dot + 1);
  for (const SuffixRule& r : kBlockRules) {
    if (suffix == r.ours) return {absl::StrCat("h.", layer, ".", r.theirs), r.transposed};
  }
  CHECK(false) << "not a model.h parameter name: " << name;
  return {};
}

std::string HuggingFaceConfigJson(const GPTConfig& config) {
  nlohmann::ordered_json j;
  j["architectures"] = {"GPT2LMHeadModel"};
  j["model_type"] = "gpt2";
  j["vocab_size"] = config.vocab_size;
  j["n_positions"] = config.block_size;
  j["n_ctx"] = config.block_size;  // read by transformers releases before 4.x
  j["n_embd"] = config.n_embd;
  j["n_layer"] = config.n_layer;
  j["n_head"] = config.n_head;
  j["n_inner"] = nullptr;  // 4 * n_embd
  j["activation_function"] = "gelu_new";
  j["layer_norm_epsilon"] = kLayerNormEpsilon;
  // We train without dropout; 0 makes a model put in train() mode compute what ours does.
  j["resid_pdrop"] = 0.0;
  j["embd_pdrop"] = 0.0;
  j["attn_pdrop"] = 0.0;
  j["initializer_range"] = 0.02;
  j["scale_attn_weights"] = true;
  j["scale_attn_by_inverse_layer_idx"] = false;
  j["reorder_and_upcast_attn"] = false;
  j["tie_word_embeddings"] = true;
  j["use_cache"] = true;
  j["torch_dtype"] = "float32";
  j["colossus_padded_vocab_size"] = config.PaddedVocab();
  return j.dump(2) + "\n";
}

absl::StatusOr<GPTConfig> ParseHuggingFaceConfig(const std::string& text, const std::string& path,
                                                 int padded_vocab_override) {
  const Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Refuse(path, "not valid JSON");
  if (!j.is_object()) return Refuse(path, "not a JSON object");

  if (auto it = j.find("model_type"); it != j.end() && *it != "gpt2") {
    return Refuse(path, absl::StrCat("'model_type' is ", it->dump(), ", only \"gpt2\" is supported"));
  }
  GPTConfig c;
  if (absl::Status s = GetInt(j, "n_layer", path, &c.n_layer); !s.ok()) return s;
  if (absl::Status s = GetInt(j, "n_head", path, &c.n_head); !s.ok()) return s;
  if (absl::Status s = GetInt(j, "n_embd", path, &c.n_embd); !s.ok()) return s;
  if (absl::Status s = GetInt(j, "n_positions", path, &c.block_size); !s.ok()) return s;
  if (absl::Status s = GetInt(j, "vocab_size", path, &c.vocab_size); !s.ok()) return s;

  if (auto it = j.find("activation_function"); it != j.end()) {
    if (!it->is_string() || !IsTanhGelu(it->get<std::string>())) {
      return Refuse(path, absl::StrCat("'activation_function' is ", it->dump(),
                                       "; our MLP computes GELU's tanh form (\"gelu_new\")"));
    }
  }
  if (auto it = j.find("layer_norm_epsilon"); it != j.end()) {
    if (!it->is_number() || std::abs(it->get<double>() - kLayerNormEpsilon) > 1e-12) {
      return Refuse(path, absl::StrCat("'layer_norm_epsilon' is ", it->dump(),
                                       "; our LayerNorm kernels use 1e-05"));
    }
  }
  if (auto it = j.find("n_inner"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() != 4 * static_cast<int64_t>(c.n_embd)) {
      return Refuse(path, absl::StrCat("'n_inner' is ", it->dump(), "; our MLP is 4 * n_embd = ",
                                       4 * static_cast<int64_t>(c.n_embd), " wide"));
    }
  }
  if (absl::Status s = CheckBool(j, "tie_word_embeddings", true, path,
                                 "our output projection is tied to wte");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckBool(j, "scale_attn_weights", true, path,
                                 "our attention scales by 1/sqrt(head size)");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckBool(j, "scale_attn_by_inverse_layer_idx", false, path,
                                 "our attention does not scale by the layer index");
      !s.ok()) {
    return s;
  }

  if (padded_vocab_override > 0) {
    c.padded_vocab_size = padded_vocab_override;
  } else if (auto it = j.find("colossus_padded_vocab_size"); it != j.end()) {
    if (absl::Status s = GetInt(j, "colossus_padded_vocab_size", path, &c.padded_vocab_size);
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = c.Validate(); !s.ok()) {
    return Refuse(path, absl::StrCat("not a model we can build: ", s.message()));
  }
  return c;
}

}  // namespace colossus::hf
