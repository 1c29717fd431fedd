#include "colossus/weights.h"

#include <map>
#include <set>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "colossus/safetensors.h"

namespace colossus {
namespace {

constexpr const char* kFormat = "colossus-gpt";

struct ConfigField {
  const char* key;
  int GPTConfig::*field;
};

constexpr ConfigField kConfigFields[] = {
    {"n_layer", &GPTConfig::n_layer},
    {"n_head", &GPTConfig::n_head},
    {"n_embd", &GPTConfig::n_embd},
    {"block_size", &GPTConfig::block_size},
    {"vocab_size", &GPTConfig::vocab_size},
    {"padded_vocab_size", &GPTConfig::padded_vocab_size},
};

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// The config in `file`'s metadata; InvalidArgument naming the key if one is missing
// or not an integer.
absl::StatusOr<GPTConfig> ConfigFromMetadata(const SafetensorsFile& file) {
  GPTConfig config;
  for (const ConfigField& f : kConfigFields) {
    auto it = file.metadata().find(f.key);
    if (it == file.metadata().end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.path(), ": metadata has no '", f.key,
                       "' (not a weights file written by SaveWeights?)"));
    }
    if (!absl::SimpleAtoi(it->second, &(config.*f.field))) {
      return absl::InvalidArgumentError(absl::StrCat(
          file.path(), ": metadata '", f.key, "' is '", it->second, "', expected an integer"));
    }
  }
  if (absl::Status s = config.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.path(), ": the config in the metadata is invalid: ", s.message()));
  }
  return config;
}

bool HasAnyConfigKey(const SafetensorsFile& file) {
  for (const ConfigField& f : kConfigFields) {
    if (file.metadata().count(f.key) != 0) return true;
  }
  return false;
}

}  // namespace

absl::Status SaveWeights(const GPT& model, const std::string& path) {
  int64_t total = 0;
  for (const Tensor& p : model.params()) {
    if (p.dtype != DType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": parameter ", p.DebugString(), " is not f32; weights are saved as F32"));
    }
    total += p.numel();
  }
  // One host buffer for all parameters keeps the copies few and the pointers stable.
  std::vector<float> host(static_cast<size_t>(total));
  std::vector<SafetensorsTensor> tensors;
  tensors.reserve(model.params().size());
  int64_t offset = 0;
  for (const Tensor& p : model.params()) {
    float* dst = host.data() + offset;
    model.backend()->CopyToHost(dst, p.data, p.bytes());
    tensors.push_back({p.name, SafetensorsDType::kF32, p.shape, dst});
    offset += p.numel();
  }
  const GPTConfig& c = model.config();
  std::map<std::string, std::string> metadata = {{"format", kFormat}};
  for (const ConfigField& f : kConfigFields) metadata[f.key] = absl::StrCat(c.*f.field);
  metadata["padded_vocab_size"] = absl::StrCat(c.PaddedVocab());
  return WriteSafetensors(path, tensors, metadata);
}

absl::Status LoadWeights(GPT* model, const std::string& path) {
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  if (!file.ok()) return file.status();

  if (HasAnyConfigKey(*file)) {
    absl::StatusOr<GPTConfig> stored = ConfigFromMetadata(*file);
    if (!stored.ok()) return stored.status();
    GPTConfig mine = model->config();
    mine.padded_vocab_size = mine.PaddedVocab();
    for (const ConfigField& f : kConfigFields) {
      if ((*stored).*f.field != mine.*f.field) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": the file is for a model with ", f.key, " = ", (*stored).*f.field,
            ", this model has ", mine.*f.field, " (file: ", stored->DebugString(),
            "; model: ", mine.DebugString(), ")"));
      }
    }
  }

  // Check everything first so that a bad file leaves the model untouched.
  std::vector<const SafetensorsEntry*> sources;
  std::set<std::string> wanted;
  for (const Tensor& p : model->params()) {
    wanted.insert(p.name);
    const SafetensorsEntry* e = file->Find(p.name);
    if (e == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", p.name, "' is missing (the model needs ",
                       p.DebugString(), ")"));
    }
    if (e->dtype != SafetensorsDType::kF32) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", p.name, "' is ", SafetensorsDTypeName(e->dtype),
                       ", expected F32"));
    }
    if (e->shape != p.shape) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", p.name, "' has shape ", ShapeString(e->shape),
                       ", the model needs ", ShapeString(p.shape)));
    }
    if (p.dtype != DType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": parameter ", p.DebugString(), " is not f32; weights load as F32"));
    }
    sources.push_back(e);
  }
  for (const SafetensorsEntry& e : file->entries()) {
    if (wanted.count(e.name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor '", e.name, "' (", e.DebugString(), ") is not a parameter of ",
          model->config().DebugString()));
    }
  }
  for (size_t i = 0; i < sources.size(); ++i) {
    const Tensor& p = model->params()[i];
    model->backend()->CopyFromHost(p.data, sources[i]->data, sources[i]->bytes);
  }
  model->SyncComputeWeights();
  return absl::OkStatus();
}

absl::StatusOr<GPTConfig> ReadWeightsConfig(const std::string& path) {
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  if (!file.ok()) return file.status();
  return ConfigFromMetadata(*file);
}

}  // namespace colossus
