#include "dp_harness.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "colossus/data.h"
#include "colossus/parallel/process_group.h"
#include "colossus/safetensors.h"
#include "colossus/trainer.h"
#include "colossus/weights.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace colossus::testing {
namespace {

std::string PatternText(int lines) {
  std::string s;
  for (int i = 0; i < lines; ++i) {
    s += "the quick brown fox jumps over the lazy dog number " + std::to_string(i % 10) + ".\n";
  }
  return s;
}

bool IsQkvBias(const std::string& name) {
  const std::string suffix = ".attn.qkv.bias";
  return name.size() > suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Runs in the child: trains, then records what the test needs.
absl::Status TrainRank(const TrainConfig& base, int rank, int ranks,
                       std::shared_ptr<comm::Store> store, const std::string& run_dir) {
  TrainConfig c = base;
  c.output_dir = absl::StrCat(run_dir, "/out.rank", rank);
  std::unique_ptr<parallel::ProcessGroup> group;
  if (ranks > 0) {
    parallel::DistEnv env;
    env.rank = rank;
    env.world_size = ranks;
    env.local_rank = rank;
    env.gloo_hostname = "127.0.0.1";
    parallel::ProcessGroupOptions po;
    po.timeout = absl::Seconds(60);
    po.init_timeout = absl::Seconds(60);
    po.store_factory = [store](const parallel::DistEnv&) { return store; };
    auto g = parallel::ProcessGroup::Create(env, po);
    if (!g.ok()) return g.status();
    group = *std::move(g);
  }
  auto trainer = Trainer::Create(c, std::move(group));
  if (!trainer.ok()) return trainer.status();
  auto summary = (*trainer)->Run();
  if (!summary.ok()) return summary.status();

  Trainer& t = **trainer;
  const std::string weights = absl::StrCat(run_dir, "/weights.rank", rank, ".safetensors");
  if (absl::Status s = SaveWeights(t.model(), weights); !s.ok()) return s;
  nlohmann::json j;
  j["weights"] = weights;
  j["state_bytes"] = t.optimizer_state_bytes();
  j["val_loss"] = summary->val_loss;
  j["flat_numel"] = t.model().flat_params().numel;
  j["buckets"] = 0;
  if (t.data_parallel() != nullptr && t.data_parallel()->reducer() != nullptr) {
    const parallel::GradReducer& r = *t.data_parallel()->reducer();
    j["buckets"] = r.buckets().size();
    j["launched_by_hook"] = r.last_step().launched_by_hook;
    j["launched_by_finish"] = r.last_step().launched_by_finish;
    j["launched_after_calls"] = r.last_step().launched_after_calls;
  }
  std::ofstream(absl::StrCat(run_dir, "/rank", rank, ".json")) << j.dump();
  return absl::OkStatus();
}

}  // namespace

std::string MakeCorpus(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string text = PatternText(400);
  std::vector<uint16_t> tok(text.begin(), text.end());
  const size_t split = tok.size() * 9 / 10;
  EXPECT_TRUE(WriteTokenShard(dir + "/train_000000.bin", tok.data(), split, 256).ok());
  EXPECT_TRUE(
      WriteTokenShard(dir + "/val_000000.bin", tok.data() + split, tok.size() - split, 256).ok());
  return dir;
}

TrainConfig TinyDpConfig(const std::string& corpus_dir) {
  TrainConfig c;
  c.model = *GPTPreset("tiny");
  c.train_data = corpus_dir + "/train_*.bin";
  c.val_data = corpus_dir + "/val_*.bin";
  c.batch_size = 2;
  c.seq_len = 32;
  c.global_batch = 8;
  c.steps = 20;
  c.optimizer.lr = 3e-3f;
  c.optimizer.warmup_steps = 5;
  c.optimizer.grad_clip = 1.0f;
  c.eval_every = 10;
  c.eval_batches = 4;
  c.sample_tokens = 8;
  c.sample_prompt = "the ";
  c.device = "cpu";
  c.threads = 1;
  c.log_every = 1000;
  return c;
}

RunOutput RunTraining(const TrainConfig& config, int ranks, const std::string& run_dir,
                      absl::Duration deadline) {
  std::filesystem::remove_all(run_dir);
  std::filesystem::create_directories(run_dir);
  RunOutput out;
  const int procs = ranks == 0 ? 1 : ranks;
  const auto results = comm::testing::RunRanks(
      procs,
      [&](const comm::testing::RankEnv& env) {
        return TrainRank(config, env.rank, ranks, env.store, run_dir);
      },
      deadline);
  comm::testing::ExpectAllOk(results);
  out.ok = !results.empty();
  for (const auto& r : results) out.ok = out.ok && r.ok();
  if (!out.ok) return out;
  for (int r = 0; r < procs; ++r) {
    std::ifstream in(absl::StrCat(run_dir, "/rank", r, ".json"));
    const nlohmann::json j = nlohmann::json::parse(in);
    RankOutput o;
    o.weights_path = j["weights"];
    o.state_bytes = j["state_bytes"];
    o.val_loss = j["val_loss"];
    o.flat_numel = j["flat_numel"];
    o.buckets = j["buckets"];
    if (j.contains("launched_by_hook")) {
      o.launched_by_hook = j["launched_by_hook"];
      o.launched_by_finish = j["launched_by_finish"];
      o.launched_after_calls = j["launched_after_calls"].get<std::vector<int>>();
    }
    const std::string dir = absl::StrCat(run_dir, "/out.rank", r);
    o.wrote_metrics = std::filesystem::exists(dir + "/metrics.jsonl");
    o.wrote_weights = std::filesystem::exists(dir + "/model.safetensors");
    out.ranks.push_back(o);
  }
  for (const auto& j : ReadJsonLines(run_dir + "/out.rank0/metrics.jsonl")) {
    if (j.contains("loss")) {
      out.losses.push_back(j["loss"].get<double>());
      out.grad_norms.push_back(j["grad_norm"].get<double>());
    } else if (j.contains("val_loss")) {
      out.val_losses.push_back(j["val_loss"].get<double>());
    }
  }
  return out;
}

double MaxRelativeDifference(const std::string& a_path, const std::string& b_path,
                             std::string* worst_tensor) {
  auto a = SafetensorsFile::Open(a_path);
  auto b = SafetensorsFile::Open(b_path);
  if (!a.ok() || !b.ok()) {
    ADD_FAILURE() << "cannot open " << a_path << " or " << b_path;
    return INFINITY;
  }
  double worst = 0;
  EXPECT_EQ(a->entries().size(), b->entries().size());
  for (const SafetensorsEntry& eb : b->entries()) {
    const SafetensorsEntry* ea = a->Find(eb.name);
    if (ea == nullptr || ea->bytes != eb.bytes) {
      ADD_FAILURE() << a_path << " lacks " << eb.DebugString();
      return INFINITY;
    }
    std::vector<float> va(ea->numel()), vb(eb.numel());
    std::memcpy(va.data(), ea->data, ea->bytes);
    std::memcpy(vb.data(), eb.data, eb.bytes);
    const bool qkv_bias = IsQkvBias(eb.name);
    const size_t C = vb.size() / 3;
    double diff = 0, norm = 0;
    for (size_t i = 0; i < vb.size(); ++i) {
      if (qkv_bias && i >= C && i < 2 * C) continue;  // the key bias: noise, see the header
      diff += (double(va[i]) - vb[i]) * (double(va[i]) - vb[i]);
      norm += double(vb[i]) * vb[i];
    }
    const double rel = norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
    if (rel > worst) {
      worst = rel;
      if (worst_tensor != nullptr) *worst_tensor = eb.name;
    }
  }
  return worst;
}

double KeyBiasNorm(const std::string& path) {
  auto f = SafetensorsFile::Open(path);
  if (!f.ok()) {
    ADD_FAILURE() << f.status();
    return INFINITY;
  }
  double worst = 0;
  for (const SafetensorsEntry& e : f->entries()) {
    if (!IsQkvBias(e.name)) continue;
    std::vector<float> v(e.numel());
    std::memcpy(v.data(), e.data, e.bytes);
    const size_t C = v.size() / 3;
    double norm = 0;
    for (size_t i = C; i < 2 * C; ++i) norm += double(v[i]) * v[i];
    worst = std::max(worst, std::sqrt(norm));
  }
  return worst;
}

bool BitIdentical(const std::string& a_path, const std::string& b_path) {
  auto a = SafetensorsFile::Open(a_path);
  auto b = SafetensorsFile::Open(b_path);
  if (!a.ok() || !b.ok() || a->entries().size() != b->entries().size()) return false;
  for (const SafetensorsEntry& eb : b->entries()) {
    const SafetensorsEntry* ea = a->Find(eb.name);
    if (ea == nullptr || ea->bytes != eb.bytes || std::memcmp(ea->data, eb.data, eb.bytes) != 0) {
      return false;
    }
  }
  return true;
}

double MaxRelativeDifference(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(std::abs(b[i]), 1e-30));
  }
  return a.size() == b.size() ? worst : INFINITY;
}

}  // namespace colossus::testing
