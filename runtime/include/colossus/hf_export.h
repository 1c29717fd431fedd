// Hugging Face GPT-2 interop: a GPT's weights as the model.safetensors + config.json
// pair that transformers' GPT2LMHeadModel.from_pretrained(dir) loads, and back.
//
// Tensor map (ours, model.h -> Hugging Face). Names are GPT2Model's without the
// "transformer." prefix, as the hub's own gpt2 checkpoint stores them; from_pretrained
// adds the prefix when it loads them into a GPT2LMHeadModel. HF's GPT-2 uses Conv1D,
// y = x W + b with W [in, out]: the transpose of our nn.Linear [out, in].
//   wte [Vp, C]                   -> wte.weight [V, C]       padding rows dropped
//   wpe [T, C]                    -> wpe.weight [T, C]
//   h.{l}.ln_1.weight/.bias [C]   -> h.{l}.ln_1.weight/.bias
//   h.{l}.attn.qkv.weight [3C, C] -> h.{l}.attn.c_attn.weight [C, 3C]  transposed
//   h.{l}.attn.qkv.bias [3C]      -> h.{l}.attn.c_attn.bias
//   h.{l}.attn.proj.weight [C, C] -> h.{l}.attn.c_proj.weight [C, C]   transposed
//   h.{l}.attn.proj.bias [C]      -> h.{l}.attn.c_proj.bias
//   h.{l}.ln_2.weight/.bias [C]   -> h.{l}.ln_2.weight/.bias
//   h.{l}.mlp.fc.weight [4C, C]   -> h.{l}.mlp.c_fc.weight [C, 4C]     transposed
//   h.{l}.mlp.fc.bias [4C]        -> h.{l}.mlp.c_fc.bias
//   h.{l}.mlp.proj.weight [C, 4C] -> h.{l}.mlp.c_proj.weight [4C, C]   transposed
//   h.{l}.mlp.proj.bias [C]       -> h.{l}.mlp.c_proj.bias
//   ln_f.weight/.bias [C]         -> ln_f.weight/.bias
// No lm_head.weight is written: the head is tied to wte (tie_word_embeddings), and
// from_pretrained ties it after loading (a safetensors file cannot hold shared storage,
// so HF's own save_pretrained drops it too). The file's metadata is {"format": "pt"},
// which from_pretrained requires of a safetensors checkpoint. Both sides share the
// fused QKV order (all query heads, then keys, then values; kernels/backend.h).
//
// The padded vocabulary rows (V..Vp-1 of wte) are dropped on export and zero-filled on
// import; a model from InitWeights keeps them zero through training (no token selects
// them, so they get no gradient and weight decay of zero is zero), so a round trip is
// bit-exact for every parameter.
//
// config.json: a GPT2Config (model_type "gpt2", vocab_size V, n_positions block_size,
// n_embd, n_layer, n_head, n_inner null, activation_function "gelu_new" (GELU's tanh
// form, ours), layer_norm_epsilon 1e-5 (our LayerNorm kernels' fixed epsilon), dropouts
// 0 (we train without dropout), tie_word_embeddings true) plus
// "colossus_padded_vocab_size": Vp, which transformers ignores and import uses.
//
// Thread safety: free functions; a GPT argument must not be used concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "colossus/checkpoint/reader.h"
#include "colossus/config.h"
#include "colossus/kernels/backend.h"
#include "colossus/model.h"

namespace colossus::hf {

inline constexpr char kWeightsFileName[] = "model.safetensors";
inline constexpr char kConfigFileName[] = "config.json";
// The epsilon of our LayerNorm kernels (kernels/backend.h); HF's config must match it.
inline constexpr double kLayerNormEpsilon = 1e-5;

// The Hugging Face name of our parameter `name` (model.h), and whether its data is
// transposed on the way ([out, in] <-> Conv1D's [in, out]). CHECK-fails on a name that
// is not one of model.h's (an invariant: the model only has those).
struct HfName {
  std::string name;
  bool transposed = false;
};
HfName HuggingFaceName(const std::string& name);

// One tensor in Hugging Face's naming and layout: owned host f32, row-major.
struct HfTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Every parameter of `model` in Hugging Face's names, shapes and layouts, in model.h's
// order (wte unpadded to [V, C]). Copies through the model's backend (any backend).
std::vector<HfTensor> ToHuggingFace(const GPT& model);

// config.json for `config` (see the file comment), pretty-printed.
std::string HuggingFaceConfigJson(const GPTConfig& config);

// Parses a GPT-2 config.json into our config. Refuses, naming `path` and the field, a
// config our model cannot represent: model_type other than "gpt2", an activation
// other than the tanh GELU ("gelu_new", "gelu_pytorch_tanh"), layer_norm_epsilon other
// than 1e-5, n_inner other than null or 4 * n_embd, untied embeddings, unscaled
// attention or attention scaled by the inverse layer index. padded_vocab_size comes
// from `padded_vocab_override` when > 0, else "colossus_padded_vocab_size", else 0
// (GPTConfig's default rounding). InvalidArgument for all of these.
absl::StatusOr<GPTConfig> ParseHuggingFaceConfig(const std::string& text, const std::string& path,
                                                 int padded_vocab_override = 0);

// Writes <out_dir>/model.safetensors (atomically, see WriteSafetensors) and
// <out_dir>/config.json, creating out_dir. Errors name the file.
absl::Status ExportHuggingFace(const GPT& model, const std::string& out_dir);

// The config of the Hugging Face model in `hf_dir` (ParseHuggingFaceConfig of its
// config.json). NotFound naming the file when there is none.
absl::StatusOr<GPTConfig> ReadHuggingFaceConfig(const std::string& hf_dir,
                                                int padded_vocab_override = 0);

// Replaces every parameter of `model` with <hf_dir>/model.safetensors's tensors and
// refreshes the compute copies. Names may carry GPT2LMHeadModel's "transformer."
// prefix; "lm_head.weight", when present, must equal wte (an untied head has no place
// in our model); HF's attention-mask buffers (attn.bias, attn.masked_bias) are ignored.
// Every tensor must be F32 in its Hugging Face shape for model->config(). Everything is
// checked first, so on error the model is unchanged; the InvalidArgument lists every
// missing name, wrong shape or dtype and unexpected tensor, naming the file.
absl::Status ImportHuggingFace(const std::string& hf_dir, GPT* model);

// A GPT on its own CPU backend (batch 1, sequence 1: enough to hold weights) and where
// its weights came from. Members are destroyed model first, then the backend.
struct LoadedModel {
  std::unique_ptr<kernels::Backend> backend;
  std::unique_ptr<GPT> model;
  std::string source;  // the step directory or the file read
  int64_t step = -1;   // the checkpoint step loaded; -1 for a weights file
  // Newer committed steps the loader could not use (LoadLatestValid's fallback), and
  // newer step directories that were never committed: why each was passed over.
  std::vector<checkpoint::SkippedStep> skipped;
};

// A model of `config` on a fresh CPU backend, weights zero.
absl::StatusOr<LoadedModel> MakeCpuModel(const GPTConfig& config);

// The parameters of a committed checkpoint under `dir` (checkpoint/format.h). With
// `step`, exactly that step: FailedPrecondition naming the step directory when it has
// no COMMIT.json (not committed), NotFound when it does not exist, the reader's
// DataLoss naming the file when a shard is missing or corrupt. Without, the newest
// step that loads (checkpoint::LoadLatestValid: corrupt or truncated newer steps are
// skipped and listed in `skipped`); NotFound naming `dir` when nothing is committed.
absl::StatusOr<LoadedModel> LoadCheckpointModel(const std::string& dir,
                                                std::optional<int64_t> step);

// The parameters of a weights file written by SaveWeights (its config from the
// file's metadata).
absl::StatusOr<LoadedModel> LoadWeightsModel(const std::string& path);

}  // namespace colossus::hf
