// Shared helpers of the checkpoint tests: a random logical state, a group of writers
// (one per rank, all in this process, committing through one InMemoryStore) and a
// resharded load that reassembles the state from any number of ranks.
#pragma once

#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "colossus/checkpoint/committer.h"
#include "colossus/checkpoint/format.h"
#include "colossus/checkpoint/reader.h"
#include "colossus/checkpoint/state.h"
#include "colossus/checkpoint/writer.h"
#include "colossus/comm/in_memory_store.h"
#include "colossus/config.h"
#include "gtest/gtest.h"

namespace colossus::checkpoint::testing {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "colossus_ckpt_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Three logical vectors of P floats with random BIT PATTERNS (NaNs and denormals
// included): a round trip that converted anything would not be bit-exact.
struct TestState {
  int64_t numel = 0;
  std::vector<float> v[kNumStateVectors];

  static TestState Random(int64_t numel, uint32_t seed) {
    TestState s;
    s.numel = numel;
    std::mt19937 rng(seed);
    for (auto& vec : s.v) {
      vec.resize(static_cast<size_t>(numel));
      for (float& f : vec) {
        const uint32_t bits = rng();
        std::memcpy(&f, &bits, 4);
      }
    }
    return s;
  }
  static TestState Zero(int64_t numel) {
    TestState s;
    s.numel = numel;
    for (auto& vec : s.v) vec.assign(static_cast<size_t>(numel), 0.0f);
    return s;
  }
  bool BitEqual(const TestState& o) const {
    if (numel != o.numel) return false;
    for (int i = 0; i < kNumStateVectors; ++i) {
      if (std::memcmp(v[i].data(), o.v[i].data(), v[i].size() * 4) != 0) return false;
    }
    return true;
  }
};

// Small, and with a width (36) whose LayerNorm vectors are not a multiple of 64 bytes,
// so the model's flat buffer has alignment gaps between tensors.
inline GPTConfig TestModel() {
  GPTConfig c;
  c.n_layer = 2;
  c.n_head = 3;
  c.n_embd = 36;
  c.block_size = 16;
  c.vocab_size = 100;
  return c;
}

inline StepMeta MetaFor(int64_t step, int64_t numel) {
  StepMeta m;
  m.step = step;
  m.numel = numel;
  m.data_position = step * 96;
  m.model = TestModel();
  m.optimizer.lr = 3e-4f;
  m.optimizer.total_steps = 1000;
  return m;
}

inline std::string RngBytes(int rank, int64_t step) {
  std::string s = "rng-of-rank-" + std::to_string(rank) + "-step-" + std::to_string(step);
  s.push_back('\0');
  s.push_back('\xff');
  return s;
}

// `world` writers (ranks) of one job in this process. Saves are started on every rank
// from the calling thread: Save only stages, the commit runs on the writers' threads.
class Group {
 public:
  struct Options {
    int keep_last = 3;
    int64_t block_bytes = 256;  // small: pieces span many blocks, reads start mid-block
    absl::Duration timeout = absl::Seconds(20);
  };

  Group(const std::string& dir, int world) : Group(dir, world, Options()) {}
  Group(const std::string& dir, int world, const Options& options)
      : dir_(dir), world_(world), store_(std::make_shared<comm::InMemoryStore>()) {
    for (int r = 0; r < world; ++r) {
      StoreCommitterOptions co;
      co.rank = r;
      co.world = world;
      co.retention.keep_last = options.keep_last;
      co.timeout = options.timeout;
      CheckpointWriterOptions wo;
      wo.dir = dir;
      wo.rank = r;
      wo.world = world;
      wo.block_bytes = options.block_bytes;
      wo.committer = std::make_shared<StoreShardCommitter>(store_, co);
      absl::StatusOr<std::unique_ptr<CheckpointWriter>> w = CheckpointWriter::Create(wo);
      EXPECT_TRUE(w.ok()) << w.status();
      writers_.push_back(*std::move(w));
    }
  }

  static SaveRequest Request(const TestState& state, int64_t step, int rank, int world) {
    SaveRequest req;
    req.meta = MetaFor(step, state.numel);
    const FlatLayout layout = FlatLayout::Identity(state.numel);
    for (int i = 0; i < kNumStateVectors; ++i) {
      std::vector<SourcePiece> p =
          SplitPieces(layout, static_cast<StateVector>(i), state.v[i].data(), rank, world);
      req.pieces.insert(req.pieces.end(), p.begin(), p.end());
    }
    req.rng["sampler"] = RngBytes(rank, step);
    return req;
  }

  // Starts the save of `step` on the ranks in `ranks` (all when empty).
  std::vector<absl::StatusOr<SaveResult>> Save(int64_t step, const TestState& state,
                                               std::vector<int> ranks = {}) {
    if (ranks.empty()) {
      for (int r = 0; r < world_; ++r) ranks.push_back(r);
    }
    std::vector<absl::StatusOr<SaveResult>> out;
    for (int r : ranks) out.push_back(writers_[r]->Save(Request(state, step, r, world_)));
    return out;
  }
  std::vector<absl::Status> Flush() {
    std::vector<absl::Status> out;
    for (auto& w : writers_) out.push_back(w->Flush());
    return out;
  }
  // Save + Flush on every rank; true when every rank saw the commit.
  bool SaveAndCommit(int64_t step, const TestState& state) {
    bool ok = true;
    for (auto& r : Save(step, state)) {
      EXPECT_TRUE(r.ok()) << r.status();
      ok = ok && r.ok();
    }
    for (const absl::Status& s : Flush()) {
      EXPECT_TRUE(s.ok()) << s;
      ok = ok && s.ok();
    }
    for (auto& w : writers_) ok = ok && w->last_completed().committed;
    return ok;
  }
  CheckpointWriter& writer(int r) { return *writers_[r]; }
  const std::shared_ptr<comm::InMemoryStore>& store() const { return store_; }

 private:
  std::string dir_;
  int world_;
  std::shared_ptr<comm::InMemoryStore> store_;
  std::vector<std::unique_ptr<CheckpointWriter>> writers_;
};

inline LoadRequest BaseRequest(int rank) {
  LoadRequest req;
  req.rank = rank;
  req.model = TestModel();
  req.optimizer = MetaFor(0, 0).optimizer;
  return req;
}

// Loads `step_dir` as `world` ranks, rank r taking its split of every vector, and
// reassembles the state. Each rank's load must succeed; its RNG must be the one that
// rank saved when the old layout had it.
inline TestState LoadAsRanks(const std::string& step_dir, int64_t numel, int world) {
  TestState out = TestState::Zero(numel);
  const FlatLayout layout = FlatLayout::Identity(numel);
  for (int r = 0; r < world; ++r) {
    LoadRequest req = BaseRequest(r);
    const int64_t a = SplitBegin(numel, r, world), b = SplitBegin(numel, r + 1, world);
    for (int i = 0; i < kNumStateVectors; ++i) {
      for (const LayoutSegment& s : layout.LogicalToFlat(a, b)) {
        req.pieces.push_back({{static_cast<StateVector>(i), s.logical, s.numel},
                              out.v[i].data() + s.flat});
      }
    }
    absl::StatusOr<LoadedCheckpoint> loaded = LoadCheckpoint(step_dir, req);
    EXPECT_TRUE(loaded.ok()) << "rank " << r << " of " << world << ": " << loaded.status();
    if (!loaded.ok()) continue;
    if (r < loaded->meta.dp) {
      EXPECT_TRUE(loaded->rng_found);
      EXPECT_EQ(loaded->rng.at("sampler"), RngBytes(r, loaded->meta.step));
    } else {
      EXPECT_FALSE(loaded->rng_found);
    }
  }
  return out;
}

inline void FlipByte(const std::string& path, int64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(offset);
  f.write(&c, 1);
}

}  // namespace colossus::checkpoint::testing
