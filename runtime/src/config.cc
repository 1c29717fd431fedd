#include "colossus/config.h"

#include <map>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace colossus {

int GPTConfig::PaddedVocab() const {
  if (padded_vocab_size > 0) return padded_vocab_size;
  // 128 keeps the logits' leading dimension friendly to GEMM tiles on every backend.
  return (vocab_size + 127) / 128 * 128;
}

int64_t GPTConfig::NumParameters() const {
  const int64_t C = n_embd, L = n_layer;
  const int64_t per_layer = 2 * C            // ln_1
                            + 3 * C * C + 3 * C  // qkv
                            + C * C + C          // attention projection
                            + 2 * C              // ln_2
                            + 4 * C * C + 4 * C  // mlp fc
                            + 4 * C * C + C;     // mlp projection
  return static_cast<int64_t>(PaddedVocab()) * C + static_cast<int64_t>(block_size) * C +
         L * per_layer + 2 * C;
}

absl::Status GPTConfig::Validate() const {
  auto bad = [](const char* field, int value, const char* rule) {
    return absl::InvalidArgumentError(
        absl::StrFormat("model.%s = %d: %s", field, value, rule));
  };
  if (n_layer <= 0) return bad("n_layer", n_layer, "must be >= 1");
  if (n_head <= 0) return bad("n_head", n_head, "must be >= 1");
  if (n_embd <= 0) return bad("n_embd", n_embd, "must be >= 1");
  if (n_embd % n_head != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "model.n_embd = %d is not divisible by model.n_head = %d (each head needs an equal "
        "share of the width)", n_embd, n_head));
  }
  if (block_size <= 0) return bad("block_size", block_size, "must be >= 1");
  if (vocab_size <= 0) return bad("vocab_size", vocab_size, "must be >= 1");
  if (vocab_size > 65536) {
    return bad("vocab_size", vocab_size, "must be <= 65536 (token shards store uint16 tokens)");
  }
  if (padded_vocab_size != 0 && padded_vocab_size < vocab_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "model.padded_vocab_size = %d is smaller than model.vocab_size = %d",
        padded_vocab_size, vocab_size));
  }
  // 4C is the MLP width and must fit the kernels' int dimensions comfortably.
  if (n_embd > (1 << 20)) return bad("n_embd", n_embd, "must be <= 1048576");
  return absl::OkStatus();
}

std::string GPTConfig::DebugString() const {
  return absl::StrFormat("L%d H%d C%d T%d V%d (Vp %d, %.2fM parameters)", n_layer, n_head,
                         n_embd, block_size, vocab_size, PaddedVocab(),
                         NumParameters() / 1e6);
}

namespace {
const std::map<std::string, GPTConfig>& Presets() {
  static const auto* presets = new std::map<std::string, GPTConfig>{
      // GPT-2 small, the llm.c/nanoGPT reference size.
      {"gpt2-124m", {12, 12, 768, 1024, 50257, 0}},
      {"gpt2-350m", {24, 16, 1024, 1024, 50257, 0}},
      // Unit tests: small enough for a full forward/backward in milliseconds.
      {"tiny", {2, 2, 64, 64, 256, 0}},
      // The README demo: byte-level, learns English structure in minutes on 2 cores.
      {"demo", {4, 4, 128, 128, 256, 0}},
      // The CPU benchmark's fixed config (compute-dominated, as in PLATFORM.md).
      {"bench", {4, 4, 256, 256, 256, 0}},
  };
  return *presets;
}
}  // namespace

absl::StatusOr<GPTConfig> GPTPreset(const std::string& name) {
  auto it = Presets().find(name);
  if (it == Presets().end()) {
    return absl::NotFoundError(absl::StrFormat("unknown model preset '%s' (known: %s)", name,
                                               absl::StrJoin(GPTPresetNames(), ", ")));
  }
  return it->second;
}

std::vector<std::string> GPTPresetNames() {
  std::vector<std::string> names;
  for (const auto& [name, config] : Presets()) names.push_back(name);
  return names;
}

}  // namespace colossus
