#include "tp_harness.h"

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace colossus::testing {

GPTConfig SmallTpConfig() {
  GPTConfig c;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 32;
  c.block_size = 16;
  c.vocab_size = 251;
  c.padded_vocab_size = 0;  // 256
  return c;
}

OptimizerConfig SmallTpOptimizer() {
  OptimizerConfig o;
  o.lr = 3e-3f;
  o.min_lr = 3e-4f;
  o.warmup_steps = 2;
  o.total_steps = 10;
  o.weight_decay = 0.1f;
  // Low enough that the first steps are clipped (the norm starts well above it).
  o.grad_clip = 0.5f;
  return o;
}

void MakeBatch(int64_t step, int B, int T, int V, std::vector<int32_t>* tokens,
               std::vector<int32_t>* targets) {
  tokens->resize(static_cast<size_t>(B) * T);
  targets->resize(tokens->size());
  uint64_t x = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(step + 1);
  for (size_t i = 0; i < tokens->size(); ++i) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 29;
    x += 0x632BE59BD9B4E5Bull;
    (*tokens)[i] = static_cast<int32_t>(x % V);
    // Position 5 of every row is ignored: each row counts the same number of targets,
    // so the mean of data-parallel replicas' means is the global mean.
    (*targets)[i] = i % T == 5 ? -1 : static_cast<int32_t>((x >> 17) % V);
  }
}

namespace {
HostTensors CopyAll(const GPT& model, const std::vector<Tensor>& ts) {
  HostTensors out;
  for (const Tensor& t : ts) {
    out.emplace_back(t.numel());
    model.backend()->CopyToHost(out.back().data(), t.data, t.bytes());
  }
  return out;
}
}  // namespace

HostTensors CopyParams(const GPT& model) { return CopyAll(model, model.params()); }
HostTensors CopyGrads(const GPT& model) { return CopyAll(model, model.grads()); }

absl::Status RunReference(const GPTConfig& config, const OptimizerConfig& opt, int steps, int B,
                          int T, uint64_t seed, ReferenceRun* out) {
  std::unique_ptr<kernels::Backend> backend = kernels::MakeCpuBackend(1);
  auto model = GPT::Create(config, backend.get(), B, T);
  if (!model.ok()) return model.status();
  (*model)->InitWeights(seed);
  auto adamw = AdamW::Create(opt, model->get());
  if (!adamw.ok()) return adamw.status();
  std::vector<int32_t> tokens, targets;
  for (int s = 0; s < steps; ++s) {
    MakeBatch(s, B, T, config.vocab_size, &tokens, &targets);
    (*model)->ZeroGrad();
    auto loss = (*model)->Forward(tokens.data(), targets.data(), B, T);
    if (!loss.ok()) return loss.status();
    (*model)->Backward();
    if (s == 0) out->first_grads = CopyGrads(**model);
    out->losses.push_back(*loss);
    out->grad_norms.push_back((*adamw)->Step(s).grad_norm);
  }
  out->final_weights = CopyParams(**model);
  return absl::OkStatus();
}

absl::Status CompareTensors(const GPT& names, const HostTensors& got, const HostTensors& want,
                            double tol, const std::string& what) {
  if (got.size() != want.size()) {
    return absl::InternalError(absl::StrCat(what, ": ", got.size(), " tensors vs ", want.size()));
  }
  for (size_t i = 0; i < want.size(); ++i) {
    const std::string& name = names.params()[i].name;
    const bool qkv_bias = absl::EndsWith(name, ".attn.qkv.bias");
    const size_t third = want[i].size() / 3;
    double diff = 0, norm = 0;
    for (size_t k = 0; k < want[i].size(); ++k) {
      if (qkv_bias && k >= third && k < 2 * third) continue;  // the key bias, see the header
      const double d = static_cast<double>(got[i][k]) - want[i][k];
      diff += d * d;
      norm += static_cast<double>(want[i][k]) * want[i][k];
    }
    const double rel = norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
    if (!(rel <= tol)) {
      return absl::InternalError(absl::StrCat(what, ": ", name, " differs by ", rel,
                                              " (relative L2; |want| = ", std::sqrt(norm),
                                              "), tolerance ", tol));
    }
  }
  return absl::OkStatus();
}

absl::Status CompareScalars(const std::vector<float>& got, const std::vector<float>& want,
                            double tol, const std::string& what) {
  if (got.size() != want.size()) {
    return absl::InternalError(absl::StrCat(what, ": ", got.size(), " values vs ", want.size()));
  }
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::fabs(static_cast<double>(got[i]) - want[i]) <= tol * std::fabs(want[i]))) {
      return absl::InternalError(
          absl::StrCat(what, "[", i, "] = ", got[i], ", want ", want[i], " (tolerance ", tol, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace colossus::testing
