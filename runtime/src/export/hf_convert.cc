// Export to and import from a Hugging Face GPT-2 directory (hf_export.h): tensor data
// moved between our layouts and theirs.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "colossus/check.h"
#include "colossus/hf_export.h"
#include "colossus/safetensors.h"
#include "file_util.h"

namespace colossus::hf {
namespace {

namespace fs = std::filesystem;

// GPT2LMHeadModel.save_pretrained prefixes the body's tensors with this.
constexpr char kBodyPrefix[] = "transformer.";
constexpr char kLmHead[] = "lm_head.weight";

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// dst [cols, rows] = transpose of src [rows, cols], both row-major.
void Transpose(const float* src, int64_t rows, int64_t cols, float* dst) {
  // Blocks of 64 x 64 keep both the rows read and the rows written in cache.
  constexpr int64_t kBlock = 64;
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock) {
    for (int64_t c0 = 0; c0 < cols; c0 += kBlock) {
      const int64_t r1 = std::min(rows, r0 + kBlock), c1 = std::min(cols, c0 + kBlock);
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * cols + c];
      }
    }
  }
}

// The Hugging Face shape of our parameter `p` under `config`.
std::vector<int64_t> HfShape(const Tensor& p, const HfName& hf, const GPTConfig& config) {
  if (p.name == "wte") return {config.vocab_size, p.shape[1]};
  if (hf.transposed) {
    CHECK(p.shape.size() == 2) << p.DebugString();
    return {p.shape[1], p.shape[0]};
  }
  return p.shape;
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot be opened"));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return ss.str();
}

}  // namespace

std::vector<HfTensor> ToHuggingFace(const GPT& model) {
  const GPTConfig& config = model.config();
  std::vector<HfTensor> out;
  out.reserve(model.params().size());
  std::vector<float> host;
  for (const Tensor& p : model.params()) {
    CHECK(p.dtype == DType::kF32) << "master weights are f32: " << p.DebugString();
    const HfName hf = HuggingFaceName(p.name);
    HfTensor t;
    t.name = hf.name;
    t.shape = HfShape(p, hf, config);
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    t.data.resize(static_cast<size_t>(numel));
    if (hf.transposed) {
      host.resize(static_cast<size_t>(p.numel()));
      model.backend()->CopyToHost(host.data(), p.data, p.bytes());
      Transpose(host.data(), p.shape[0], p.shape[1], t.data.data());
    } else {
      // wte: its first V rows are the leading V * C elements (row-major), the padding
      // rows follow; every other tensor is copied whole.
      model.backend()->CopyToHost(t.data.data(), p.data, t.data.size() * sizeof(float));
    }
    out.push_back(std::move(t));
  }
  return out;
}

absl::Status ExportHuggingFace(const GPT& model, const std::string& out_dir) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat(out_dir, ": cannot create directory: ", ec.message()));

  const std::vector<HfTensor> tensors = ToHuggingFace(model);
  std::vector<SafetensorsTensor> entries;
  entries.reserve(tensors.size());
  for (const HfTensor& t : tensors) {
    entries.push_back({t.name, SafetensorsDType::kF32, t.shape, t.data.data()});
  }
  // from_pretrained refuses a safetensors checkpoint without this metadata.
  const std::string weights = (fs::path(out_dir) / kWeightsFileName).string();
  if (absl::Status s = WriteSafetensors(weights, entries, {{"format", "pt"}}); !s.ok()) return s;

  const std::string config_text = HuggingFaceConfigJson(model.config());
  const std::string config_path = (fs::path(out_dir) / kConfigFileName).string();
  return internal::WriteFileAtomically(config_path, {{config_text.data(), config_text.size()}});
}

absl::StatusOr<GPTConfig> ReadHuggingFaceConfig(const std::string& hf_dir,
                                                int padded_vocab_override) {
  const std::string path = (fs::path(hf_dir) / kConfigFileName).string();
  absl::StatusOr<std::string> text = ReadTextFile(path);
  if (!text.ok()) return text.status();
  return ParseHuggingFaceConfig(*text, path, padded_vocab_override);
}

absl::Status ImportHuggingFace(const std::string& hf_dir, GPT* model) {
  const std::string path = (fs::path(hf_dir) / kWeightsFileName).string();
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  if (!file.ok()) return file.status();
  const GPTConfig& config = model->config();

  // Our name for each tensor in the file, the prefix dropped.
  std::map<std::string, const SafetensorsEntry*> by_name;
  const SafetensorsEntry* lm_head = nullptr;
  std::vector<std::string> problems;
  for (const SafetensorsEntry& e : file->entries()) {
    std::string name = e.name;
    if (absl::StartsWith(name, kBodyPrefix)) name = name.substr(std::strlen(kBodyPrefix));
    if (name == kLmHead) {
      lm_head = &e;
    } else if (absl::EndsWith(name, ".attn.bias") || absl::EndsWith(name, ".attn.masked_bias")) {
      // The causal-mask buffers older transformers releases saved: not weights.
    } else if (!by_name.emplace(name, &e).second) {
      problems.push_back(absl::StrCat("tensor '", name, "' appears twice (with and without '",
                                      kBodyPrefix, "')"));
    }
  }

  struct Plan {
    const Tensor* param;
    const SafetensorsEntry* entry;
    bool transposed;
  };
  std::vector<Plan> plans;
  std::set<std::string> used;
  for (const Tensor& p : model->params()) {
    const HfName hf = HuggingFaceName(p.name);
    const std::vector<int64_t> want = HfShape(p, hf, config);
    auto it = by_name.find(hf.name);
    if (it == by_name.end()) {
      problems.push_back(absl::StrCat("missing tensor '", hf.name, "' (F32 ", ShapeString(want),
                                      ", our ", p.name, ")"));
      continue;
    }
    used.insert(hf.name);
    const SafetensorsEntry& e = *it->second;
    if (e.dtype != SafetensorsDType::kF32) {
      problems.push_back(absl::StrCat("tensor '", e.name, "' is ", SafetensorsDTypeName(e.dtype),
                                      ", expected F32"));
    } else if (e.shape != want) {
      problems.push_back(absl::StrCat("tensor '", e.name, "' has shape ", ShapeString(e.shape),
                                      ", expected ", ShapeString(want),
                                      hf.transposed ? " (Conv1D layout [in, out])" : ""));
    } else {
      plans.push_back({&p, &e, hf.transposed});
    }
  }
  for (const auto& [name, e] : by_name) {
    if (used.count(name) == 0) {
      problems.push_back(absl::StrCat("unexpected tensor '", e->name, "' ", e->DebugString()));
    }
  }
  // A head that differs from wte cannot be represented: our output projection is wte.
  if (lm_head != nullptr) {
    auto wte = by_name.find("wte.weight");
    if (wte != by_name.end() &&
        (lm_head->dtype != wte->second->dtype || lm_head->shape != wte->second->shape ||
         lm_head->bytes != wte->second->bytes ||
         std::memcmp(lm_head->data, wte->second->data, lm_head->bytes) != 0)) {
      problems.push_back(absl::StrCat("tensor '", lm_head->name,
                                      "' differs from wte.weight: an untied output head cannot be "
                                      "imported (our head is tied to the token embedding)"));
    }
  }
  if (!problems.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": does not fit GPT ", config.DebugString(), ": ", absl::StrJoin(problems, "; ")));
  }

  std::vector<float> host;
  for (const Plan& plan : plans) {
    const Tensor& p = *plan.param;
    host.assign(static_cast<size_t>(p.numel()), 0.0f);  // wte's padding rows stay zero
    if (plan.transposed) {
      std::vector<float> theirs(static_cast<size_t>(p.numel()));
      std::memcpy(theirs.data(), plan.entry->data, plan.entry->bytes);
      Transpose(theirs.data(), p.shape[1], p.shape[0], host.data());
    } else {
      std::memcpy(host.data(), plan.entry->data, plan.entry->bytes);
    }
    model->backend()->CopyFromHost(p.data, host.data(), p.bytes());
  }
  model->SyncComputeWeights();
  return absl::OkStatus();
}

}  // namespace colossus::hf
