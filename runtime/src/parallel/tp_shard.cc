// TensorParallelGPT <-> GPT: which part of each full tensor a TP rank holds, and the
// copies both ways (tensor_parallel.h: LoadFrom, GatherTo).
#include <cstring>

#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "colossus/check.h"
#include "colossus/parallel/tensor_parallel.h"

namespace colossus::parallel {
namespace {

// A rank's shard of a full tensor seen as a [rows, cols] matrix (1-D: cols = 1): the
// concatenation, in order, of the row ranges `rows`, each restricted to the columns
// [col_begin, col_end). Replicated tensors take every row and column.
struct ShardSpec {
  int64_t full_rows = 0, full_cols = 1;
  std::vector<std::pair<int64_t, int64_t>> rows;
  int64_t col_begin = 0, col_end = 1;
};

ShardSpec SpecFor(const Tensor& full, const GPTConfig& config, int tp, int r) {
  ShardSpec s;
  s.full_rows = full.shape[0];
  s.full_cols = full.shape.size() > 1 ? full.shape[1] : 1;
  s.col_end = s.full_cols;
  const int64_t C = config.n_embd;
  const std::string& n = full.name;
  auto row_block = [&](int64_t width) { s.rows = {{r * width, (r + 1) * width}}; };
  if (n == "wte") {
    row_block(config.PaddedVocab() / tp);
  } else if (absl::EndsWith(n, "attn.qkv.weight") || absl::EndsWith(n, "attn.qkv.bias")) {
    // This rank's heads in each of the q, k and v sections.
    const int64_t w = C / tp;
    for (int64_t sec = 0; sec < 3; ++sec) {
      s.rows.push_back({sec * C + r * w, sec * C + (r + 1) * w});
    }
  } else if (absl::EndsWith(n, "mlp.fc.weight") || absl::EndsWith(n, "mlp.fc.bias")) {
    row_block(4 * C / tp);
  } else if (absl::EndsWith(n, "attn.proj.weight")) {
    s.rows = {{0, s.full_rows}};
    s.col_begin = r * (C / tp);
    s.col_end = (r + 1) * (C / tp);
  } else if (absl::EndsWith(n, "mlp.proj.weight")) {
    s.rows = {{0, s.full_rows}};
    s.col_begin = r * (4 * C / tp);
    s.col_end = (r + 1) * (4 * C / tp);
  } else {
    s.rows = {{0, s.full_rows}};
  }
  return s;
}

int64_t ShardNumel(const ShardSpec& s) {
  int64_t rows = 0;
  for (const auto& [b, e] : s.rows) rows += e - b;
  return rows * (s.col_end - s.col_begin);
}

// Copies between a full tensor (host, [full_rows, full_cols]) and a packed shard.
void CopyShard(const ShardSpec& s, float* full, float* shard, bool to_shard) {
  const int64_t w = s.col_end - s.col_begin;
  int64_t k = 0;
  for (const auto& [b, e] : s.rows) {
    for (int64_t row = b; row < e; ++row, k += w) {
      float* f = full + row * s.full_cols + s.col_begin;
      if (to_shard) {
        std::memcpy(shard + k, f, w * sizeof(float));
      } else {
        std::memcpy(f, shard + k, w * sizeof(float));
      }
    }
  }
}

absl::Status CheckSameConfig(const GPTConfig& a, const GPTConfig& b) {
  if (a.DebugString() != b.DebugString() || a.PaddedVocab() != b.PaddedVocab()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "the full model (%s) and the tensor-parallel model (%s) have different configs",
        b.DebugString(), a.DebugString()));
  }
  return absl::OkStatus();
}

}  // namespace

int64_t TensorParallelGPT::flat_offset(size_t i) const {
  return (static_cast<const char*>(params_[i].data) -
          static_cast<const char*>(flat_params().data)) / 4;
}

std::vector<checkpoint::PieceRef> TensorParallelGPT::PlaceInFull(const GPT& full, size_t i) const {
  CHECK(i < params_.size() && full.params().size() == params_.size());
  const Tensor& f = full.params()[i];
  CHECK(f.name == params_[i].name) << f.name << " vs " << params_[i].name;
  const ShardSpec s = SpecFor(f, config_, tp_size(), tp_rank());
  const int64_t w = s.col_end - s.col_begin;
  std::vector<checkpoint::PieceRef> out;
  for (const auto& [b, e] : s.rows) {
    checkpoint::PieceRef p;
    p.offset = b * s.full_cols + s.col_begin;
    p.numel = (e - b) * w;
    if (w < s.full_cols) {  // a column block: one run of w per row
      p.run = w;
      p.stride = s.full_cols;
    }
    out.push_back(checkpoint::Normalized(p));
  }
  return out;
}

absl::Status TensorParallelGPT::LoadFrom(const GPT& full) {
  if (absl::Status s = CheckSameConfig(config_, full.config()); !s.ok()) return s;
  CHECK(full.params().size() == params_.size());
  std::vector<float> host, shard;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& f = full.params()[i];
    CHECK(f.name == params_[i].name) << f.name << " vs " << params_[i].name;
    const ShardSpec spec = SpecFor(f, config_, tp_size(), tp_rank());
    CHECK(ShardNumel(spec) == params_[i].numel()) << f.name;
    host.resize(f.numel());
    shard.resize(params_[i].numel());
    full.backend()->CopyToHost(host.data(), f.data, f.bytes());
    CopyShard(spec, host.data(), shard.data(), /*to_shard=*/true);
    backend_->CopyFromHost(params_[i].data, shard.data(), params_[i].bytes());
  }
  return absl::OkStatus();
}

absl::Status TensorParallelGPT::GatherTo(GPT* full, bool grads) {
  CHECK(full != nullptr);
  if (absl::Status s = CheckSameConfig(config_, full->config()); !s.ok()) return s;
  const int tp = tp_size();
  // Every rank's flat buffer has the same layout, so one all-gather brings them all.
  MemoryPlan gathered(backend_, "tp gather");
  gathered.Add("all", {tp * flat_numel_}, DType::kF32);
  if (absl::Status s = gathered.Allocate(); !s.ok()) return s;
  const kernels::View mine = grads ? flat_grads() : flat_params();
  float* all = gathered[0].as<float>();
  if (absl::Status s = tp_->AllGather(mine.data, all, static_cast<size_t>(flat_numel_),
                                      comm::DataType::kF32)
                           .Wait();
      !s.ok()) {
    return absl::Status(s.code(),
                        absl::StrFormat("tensor-parallel rank %d of %d, gathering the %s: %s",
                                        tp_rank(), tp, grads ? "gradients" : "weights",
                                        s.message()));
  }
  std::vector<float> host_all(static_cast<size_t>(tp * flat_numel_));
  backend_->CopyToHost(host_all.data(), all, host_all.size() * sizeof(float));
  const char* local_base = static_cast<const char*>(grads ? flat_grads().data : flat_params().data);
  const std::vector<Tensor>& local = grads ? grads_ : params_;
  const std::vector<Tensor>& dest = grads ? full->grads() : full->params();
  std::vector<float> host;
  for (size_t i = 0; i < local.size(); ++i) {
    const int64_t offset = (static_cast<const char*>(local[i].data) - local_base) / 4;
    host.assign(dest[i].numel(), 0.0f);
    for (int r = 0; r < tp; ++r) {
      float* shard = host_all.data() + r * flat_numel_ + offset;
      if (!sharded_[i] && r > 0 &&
          std::memcmp(shard, host_all.data() + offset, local[i].bytes()) != 0) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "replicated %s %s differs between tensor-parallel ranks 0 and %d (replicas must "
            "stay bit-identical)", grads ? "gradient" : "parameter", local[i].name, r));
      }
      if (!sharded_[i] && r > 0) continue;
      CopyShard(SpecFor(dest[i], config_, tp, r), host.data(), shard, /*to_shard=*/false);
    }
    full->backend()->CopyFromHost(dest[i].data, host.data(), dest[i].bytes());
  }
  if (!grads) full->SyncComputeWeights();
  return absl::OkStatus();
}

}  // namespace colossus::parallel
