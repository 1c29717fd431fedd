// Shared helpers of the export tests: temporary directories, running colossus-export,
// models with known weights, and committed checkpoints written through the real
// CheckpointWriter (several ranks in this process, one InMemoryStore).
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "colossus/checkpoint/committer.h"
#include "colossus/checkpoint/state.h"
#include "colossus/checkpoint/writer.h"
#include "colossus/comm/in_memory_store.h"
#include "colossus/hf_export.h"
#include "colossus/model.h"
#include "gtest/gtest.h"

namespace colossus::hf::testing {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "colossus_export_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

struct ToolResult {
  int rc = -1;
  std::string output;  // stdout and stderr together
};

// Runs colossus-export with `args` (already shell-quoted where needed).
inline ToolResult RunTool(const std::string& args) {
  ToolResult r;
  const std::string cmd = std::string(COLOSSUS_EXPORT_BIN) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// Fills every parameter from `fill(name, index within the tensor)`, then refreshes the
// compute copies. wte's padding rows (>= V) stay zero, as training keeps them.
template <typename Fill>
void FillParams(GPT* model, Fill fill) {
  const int64_t V = model->config().vocab_size, C = model->config().n_embd;
  std::vector<float> host;
  for (const Tensor& p : model->params()) {
    host.assign(static_cast<size_t>(p.numel()), 0.0f);
    const int64_t n = p.name == "wte" ? V * C : p.numel();
    for (int64_t i = 0; i < n; ++i) host[i] = fill(p.name, i);
    model->backend()->CopyFromHost(p.data, host.data(), p.bytes());
  }
  model->SyncComputeWeights();
}

// Random bit patterns (NaNs, infinities, denormals): any conversion would show.
inline void RandomBits(GPT* model, uint32_t seed) {
  std::mt19937 rng(seed);
  FillParams(model, [&](const std::string&, int64_t) {
    const uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  });
}

// Every parameter's bytes equal (memcmp: NaN payloads included); failures name it.
inline void ExpectBitEqual(const GPT& a, const GPT& b) {
  ASSERT_EQ(a.params().size(), b.params().size());
  for (size_t i = 0; i < a.params().size(); ++i) {
    const Tensor& x = a.params()[i];
    const Tensor& y = b.params()[i];
    ASSERT_EQ(x.name, y.name);
    ASSERT_EQ(x.shape, y.shape) << x.name;
    std::vector<char> hx(x.bytes()), hy(y.bytes());
    a.backend()->CopyToHost(hx.data(), x.data, x.bytes());
    b.backend()->CopyToHost(hy.data(), y.data, y.bytes());
    EXPECT_EQ(std::memcmp(hx.data(), hy.data(), hx.size()), 0) << x.name << " differs";
  }
}

// Saves `model`'s parameters as committed step `step` under `dir`, written by `world`
// ranks (each its split, as data-parallel ranks do). Returns whether it committed.
inline bool WriteCheckpoint(const GPT& model, const std::string& dir, int64_t step, int world) {
  using namespace checkpoint;
  auto store = std::make_shared<comm::InMemoryStore>();
  std::vector<std::unique_ptr<CheckpointWriter>> writers;
  for (int r = 0; r < world; ++r) {
    StoreCommitterOptions co;
    co.rank = r;
    co.world = world;
    co.timeout = absl::Seconds(20);
    CheckpointWriterOptions wo;
    wo.dir = dir;
    wo.rank = r;
    wo.world = world;
    wo.block_bytes = 4096;
    wo.committer = std::make_shared<StoreShardCommitter>(store, co);
    absl::StatusOr<std::unique_ptr<CheckpointWriter>> w = CheckpointWriter::Create(wo);
    if (!w.ok()) {
      ADD_FAILURE() << w.status();
      return false;
    }
    writers.push_back(*std::move(w));
  }
  const FlatLayout layout = FlatLayout::FromModel(model);
  bool ok = true;
  for (int r = 0; r < world; ++r) {
    SaveRequest req;
    req.meta.step = step;
    req.meta.numel = layout.numel();
    req.meta.data_position = step * 8;
    req.meta.dp = world;
    req.meta.model = model.config();
    req.pieces = SplitPieces(layout, StateVector::kParams, model.flat_params().as<float>(), r, world);
    absl::StatusOr<SaveResult> s = writers[r]->Save(req);
    EXPECT_TRUE(s.ok()) << s.status();
    ok = ok && s.ok();
  }
  for (auto& w : writers) {
    absl::Status s = w->Flush();
    EXPECT_TRUE(s.ok()) << s;
    ok = ok && s.ok() && w->last_completed().committed;
  }
  return ok;
}

}  // namespace colossus::hf::testing
