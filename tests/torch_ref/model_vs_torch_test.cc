// The whole model and optimizer against PyTorch (tests/torch_ref/gpt_reference.py), an
// implementation nobody here wrote: fresh random weights and a random batch go to both
// through safetensors files; logits, loss, every parameter gradient, and ten AdamW
// steps (losses, learning rates, gradient norms, final weights) must agree.
//
// Two sides of ours against the same float32 PyTorch: the CPU backend (float32, to 1e-4)
// and, on a machine with a GPU, the CUDA backend (bf16 activations and weights for
// compute, f32 master weights; bf16 tolerances, and no final-weights comparison: see
// kCudaTolerances). The CUDA cases skip, naming the CUDA error, without a GPU.
//
// Fails, never skips, when torch cannot be imported. Reproduce a failure with
// COLOSSUS_TEST_SEED=<the printed seed>; the exchange directory is kept on failure.
// The interpreter is COLOSSUS_TORCH_PYTHON from the environment if set (a GPU host's
// own python3), else the one the build was configured with.

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "colossus/config.h"
#include "colossus/kernels/cuda_backend.h"
#include "colossus/model.h"
#include "colossus/optimizer.h"
#include "colossus/safetensors.h"
#include "colossus/weights.h"
#include "gtest/gtest.h"

namespace colossus {
namespace {

namespace fs = std::filesystem;

// float32 on both sides with different summation orders: 1e-4 relative in the L2 norm
// of the difference, and each element within 1e-3 of the tensor's largest magnitude
// (elementwise relative error is meaningless for elements that are near zero).
constexpr double kRelTol = 1e-4;
constexpr double kMaxAbsTolOfScale = 1e-3;

// How close each side of ours must be to PyTorch.
struct Tolerances {
  double rel;                // forward and backward tensors, ||ours - torch|| / ||torch||
  double abs_of_scale;       // and each element, as a fraction of the tensor's largest
  double grad_rel;           // parameter gradients
  double step_rel;           // per-step losses and gradient norms, elementwise
  bool compare_final_weights;
};
constexpr Tolerances kCpuTolerances = {kRelTol, kMaxAbsTolOfScale, kRelTol, kRelTol, true};
// bf16 keeps 8 significant bits: each rounding is up to 2^-9 relative, and a logit or a
// gradient is many roundings deep. The kernels' own bf16 tests hold 2e-2 (issue 3); the
// whole model's gradients get 5e-2. The final weights are not compared: Adam divides
// each update by the gradient's own magnitude, so bf16 noise in a small gradient moves
// its weight by a full lr step either way; the ten-step losses show the training agrees.
constexpr Tolerances kCudaTolerances = {2e-2, 5e-2, 5e-2, 2e-2, false};

std::string TorchPython() {
  const char* env = std::getenv("COLOSSUS_TORCH_PYTHON");
  return env != nullptr && *env != '\0' ? env : COLOSSUS_TORCH_PYTHON;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string Fmt(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

// Exact decimal for a float: 9 significant digits round-trip.
std::string FloatText(float v) { return Fmt("%.9g", v); }

// Runs a shell command and returns its exit status (-1 if it could not run).
int Shell(const std::string& command) {
  int rc = std::system(command.c_str());
  if (rc == -1) return -1;
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

uint64_t TestSeed() {
  if (const char* env = std::getenv("COLOSSUS_TEST_SEED")) return std::strtoull(env, nullptr, 10);
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) | rd();
}

struct Diff {
  double rel = 0;      // ||a - b|| / ||b||
  double max_abs = 0;  // max |a - b|
  double scale = 0;    // max |b|
  int64_t argmax = -1;
};

Diff Compare(const float* ours, const float* theirs, int64_t n) {
  double num = 0, den = 0;
  Diff d;
  for (int64_t i = 0; i < n; ++i) {
    const double a = ours[i], b = theirs[i];
    num += (a - b) * (a - b);
    den += b * b;
    if (!(std::abs(a - b) <= d.max_abs)) {  // also catches NaN
      d.max_abs = std::isnan(a - b) ? INFINITY : std::abs(a - b);
      d.argmax = i;
    }
    d.scale = std::max(d.scale, std::abs(b));
  }
  d.rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (std::isnan(d.rel)) d.rel = INFINITY;
  return d;
}

// One config, one seed: everything the test compares, tensor by tensor.
class ModelVsTorch {
 public:
  // kInit: the weights InitWeights gives, the state every training run starts from.
  // kRich: every parameter drawn at a scale where each op matters: linear weights
  // N(0, 1/fan_in) so pre-activations are ~N(0, 1) (GELU's tanh approximation visible,
  // attention far from uniform), LayerNorm gains U(0.5, 1.5), biases N(0, 0.2). At
  // GPT-2's initialisation (std 0.02, zero biases, unit gains) activations are so small
  // that exact-erf GELU, a wrong attention scale or a dropped bias pass unnoticed.
  enum class Weights { kInit, kRich };

  ModelVsTorch(const GPTConfig& config, int B, int T, Weights weights, DeviceKind device)
      : config_(config), B_(B), T_(T), weights_(weights), device_(device),
        tol_(device == DeviceKind::kCUDA ? kCudaTolerances : kCpuTolerances) {}

  void Run() {
    ASSERT_NO_FATAL_FAILURE(RequireTorch());
    const uint64_t seed = TestSeed();
    std::cout << DeviceKindName(device_) << " backend, config " << config_.DebugString() << " B"
              << B_ << " T" << T_ << ", "
              << (weights_ == Weights::kInit ? "InitWeights" : "rich random weights") << ", seed "
              << seed << " (rerun with COLOSSUS_TEST_SEED=" << seed << ")\n";
    ::testing::Test::RecordProperty("seed", std::to_string(seed));

    std::string tmpl = (fs::temp_directory_path() / "colossus_torch_ref_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    RunInDir(seed);
    // Kept after any failure (including a fatal one inside RunInDir) for a rerun.
    if (::testing::Test::HasFailure()) {
      std::cout << "kept the exchange directory " << dir_ << " (rerun: " << TorchCommand()
                << ")\n";
    } else {
      fs::remove_all(dir_);
    }
  }

 private:
  void RunInDir(uint64_t seed) {
    if (device_ == DeviceKind::kCUDA) {
      absl::StatusOr<std::unique_ptr<kernels::Backend>> cuda = kernels::MakeCudaBackend(0);
      ASSERT_TRUE(cuda.ok()) << cuda.status();
      backend_ = std::move(*cuda);
    } else {
      backend_ = kernels::MakeCpuBackend(2);
    }
    absl::StatusOr<std::unique_ptr<GPT>> model = GPT::Create(config_, backend_.get(), B_, T_);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    model_->InitWeights(seed);
    if (weights_ == Weights::kRich) {
      ASSERT_NO_FATAL_FAILURE(LoadRichWeights(seed));
    }
    MakeBatch(seed);
    ASSERT_NO_FATAL_FAILURE(WriteInputs());
    ASSERT_NO_FATAL_FAILURE(RunTorch());
    absl::StatusOr<SafetensorsFile> out = SafetensorsFile::Open(File("out.safetensors"));
    ASSERT_TRUE(out.ok()) << out.status();
    out_ = std::move(*out);

    ASSERT_NO_FATAL_FAILURE(CompareForwardBackward());
    CompareOptimizerSteps();
  }

  std::string File(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  OptimizerConfig Opt() const {
    OptimizerConfig o;
    o.lr = 1e-3f;
    o.min_lr = 1e-4f;
    o.warmup_steps = 3;
    o.total_steps = kSteps;
    o.beta1 = 0.9f;
    o.beta2 = 0.95f;
    o.eps = 1e-8f;
    o.weight_decay = 0.1f;
    // Fresh GPT-2 weights give gradient norms of ~1-4 that grow as the loss falls, so
    // 2.0 exercises both the unclipped and the clipped path within ten steps.
    o.grad_clip = 2.0f;
    return o;
  }

  void RequireTorch() {
    const std::string err = (fs::temp_directory_path() / "colossus_torch_probe.txt").string();
    const int rc = Shell(Quote(TorchPython()) + " -c 'import torch' 2> " + Quote(err));
    const std::string text = ReadText(err);
    fs::remove(err);
    ASSERT_EQ(rc, 0)
        << "PyTorch cannot be imported by " << TorchPython()
        << ", and this test needs it as the independent reference.\n"
        << "Install it with: apt-get install python3-torch   (Debian's build imports only "
           "under /usr/bin/python3)\n"
        << "or point the build at another interpreter: cmake -DCOLOSSUS_TORCH_PYTHON=/path/to/"
           "python (or set COLOSSUS_TORCH_PYTHON when running the test)\n"
        << "Python said:\n"
        << text;
  }

  // Replaces the weights through our own safetensors writer and LoadWeights.
  void LoadRichWeights(uint64_t seed) {
    std::mt19937_64 rng(seed ^ 0x5851f42d4c957f2dull);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> gain(0.5f, 1.5f);
    std::vector<std::vector<float>> storage;
    storage.reserve(model_->params().size());
    std::vector<SafetensorsTensor> tensors;
    for (const Tensor& p : model_->params()) {
      std::vector<float> v(static_cast<size_t>(p.numel()));
      const bool is_gain = p.shape.size() == 1 && p.name.find("ln_") != std::string::npos &&
                           p.name.find(".weight") != std::string::npos;
      // Embeddings are read row by row, not summed over a fan-in: std 0.5.
      const float std = p.shape.size() == 2
                            ? (p.name == "wte" || p.name == "wpe"
                                   ? 0.5f
                                   : 1.0f / std::sqrt(static_cast<float>(p.shape[1])))
                            : 0.2f;
      for (float& x : v) x = is_gain ? gain(rng) : std * normal(rng);
      storage.push_back(std::move(v));
      tensors.push_back({p.name, SafetensorsDType::kF32, p.shape, storage.back().data()});
    }
    ASSERT_TRUE(WriteSafetensors(File("rich.safetensors"), tensors, {}).ok());
    absl::Status s = LoadWeights(model_.get(), File("rich.safetensors"));
    ASSERT_TRUE(s.ok()) << s;
  }

  void MakeBatch(uint64_t seed) {
    std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
    std::uniform_int_distribution<int32_t> token(0, config_.vocab_size - 1);
    std::bernoulli_distribution ignored(0.1);
    tokens_.resize(static_cast<size_t>(B_) * T_);
    targets_.resize(tokens_.size());
    for (size_t i = 0; i < tokens_.size(); ++i) {
      tokens_[i] = token(rng);
      targets_[i] = ignored(rng) ? -1 : token(rng);
    }
    // The extremes of the vocabulary take part whatever the seed.
    tokens_[0] = config_.vocab_size - 1;
    targets_[1] = config_.vocab_size - 1;
    targets_[2] = 0;
  }

  void WriteInputs() {
    absl::Status s = SaveWeights(*model_, File("weights.safetensors"));
    ASSERT_TRUE(s.ok()) << s;
    const OptimizerConfig o = Opt();
    std::map<std::string, std::string> meta = {
        {"lr", FloatText(o.lr)},
        {"min_lr", FloatText(o.min_lr)},
        {"warmup_steps", std::to_string(o.warmup_steps)},
        {"total_steps", std::to_string(o.total_steps)},
        {"beta1", FloatText(o.beta1)},
        {"beta2", FloatText(o.beta2)},
        {"eps", FloatText(o.eps)},
        {"weight_decay", FloatText(o.weight_decay)},
        {"grad_clip", FloatText(o.grad_clip)},
        {"steps", std::to_string(kSteps)},
    };
    const std::vector<int64_t> shape = {B_, T_};
    s = WriteSafetensors(File("batch.safetensors"),
                         {{"tokens", SafetensorsDType::kI32, shape, tokens_.data()},
                          {"targets", SafetensorsDType::kI32, shape, targets_.data()}},
                         meta);
    ASSERT_TRUE(s.ok()) << s;
  }

  std::string TorchCommand() const {
    return Quote(TorchPython()) + " " +
           Quote(std::string(COLOSSUS_SOURCE_DIR) + "/tests/torch_ref/gpt_reference.py") +
           " --dir " + Quote(dir_) + " --threads 1";
  }

  void RunTorch() {
    const int rc = Shell(TorchCommand() + " > " + Quote(File("torch_stdout.txt")) + " 2> " +
                         Quote(File("torch_stderr.txt")));
    ASSERT_EQ(rc, 0) << "the PyTorch reference failed (exit " << rc << "): " << TorchCommand()
                     << "\nstderr:\n"
                     << ReadText(File("torch_stderr.txt")) << "\nstdout:\n"
                     << ReadText(File("torch_stdout.txt"));
  }

  // Checks ours against the reference tensor `name`; logs one line per tensor.
  void Expect(const std::string& what, const std::string& name, const std::vector<float>& ours,
              double rel_tol, double abs_tol_of_scale) {
    const SafetensorsEntry* ref = out_.Find(name);
    ASSERT_NE(ref, nullptr) << "out.safetensors has no '" << name << "'";
    ASSERT_EQ(ref->dtype, SafetensorsDType::kF32) << name;
    ASSERT_EQ(static_cast<size_t>(ref->numel()), ours.size()) << name << ": " << ref->DebugString();
    std::vector<float> theirs(ours.size());
    std::memcpy(theirs.data(), ref->data, ref->bytes);
    const Diff d = Compare(ours.data(), theirs.data(), static_cast<int64_t>(ours.size()));
    worst_[what] = std::max(worst_[what], d.rel);
    std::cout << "  " << what << " " << name << ": rel " << Fmt("%.2e", d.rel) << ", max|diff| "
              << Fmt("%.2e", d.max_abs) << " (scale " << Fmt("%.2e", d.scale) << ")\n";
    EXPECT_LE(d.rel, rel_tol) << name << " differs from PyTorch: ||ours - torch|| / ||torch|| = "
                              << d.rel << "; largest difference at flat index " << d.argmax
                              << ": ours " << (d.argmax >= 0 ? ours[d.argmax] : 0.0f)
                              << ", torch " << (d.argmax >= 0 ? theirs[d.argmax] : 0.0f);
    EXPECT_LE(d.max_abs, abs_tol_of_scale * std::max(d.scale, 1e-30))
        << name << ": max |ours - torch| = " << d.max_abs << " at flat index " << d.argmax
        << " (ours " << (d.argmax >= 0 ? ours[d.argmax] : 0.0f) << ", torch "
        << (d.argmax >= 0 ? theirs[d.argmax] : 0.0f) << "), more than " << abs_tol_of_scale
        << " of the tensor's largest magnitude " << d.scale;
  }

  std::vector<float> Theirs(const std::string& name) const {
    const SafetensorsEntry* ref = out_.Find(name);
    EXPECT_NE(ref, nullptr) << "out.safetensors has no '" << name << "'";
    if (ref == nullptr) return {};
    std::vector<float> v(static_cast<size_t>(ref->numel()));
    std::memcpy(v.data(), ref->data, std::min(ref->bytes, v.size() * sizeof(float)));
    return v;
  }

  std::vector<float> ToHost(const Tensor& t) const {
    std::vector<float> host(static_cast<size_t>(t.numel()));
    backend_->CopyToHost(host.data(), t.data, t.bytes());
    return host;
  }

  void CompareForwardBackward() {
    absl::StatusOr<float> loss = model_->Forward(tokens_.data(), targets_.data(), B_, T_);
    ASSERT_TRUE(loss.ok()) << loss.status();
    Tensor logits = model_->logits();
    const size_t n = static_cast<size_t>(B_) * T_ * config_.PaddedVocab();
    ASSERT_GE(logits.numel(), static_cast<int64_t>(n)) << logits.DebugString();
    // f32 on the CPU, bf16 on CUDA.
    ASSERT_EQ(logits.dtype, backend_->compute_dtype()) << logits.DebugString();
    std::vector<float> host(n);
    if (logits.dtype == DType::kBF16) {
      std::vector<uint16_t> bits(n);
      backend_->CopyToHost(bits.data(), logits.data, n * sizeof(uint16_t));
      for (size_t i = 0; i < n; ++i) host[i] = kernels::Bf16ToFloat(bits[i]);
    } else {
      backend_->CopyToHost(host.data(), logits.data, n * sizeof(float));
    }
    Expect("logits", "logits", host, tol_.rel, tol_.abs_of_scale);
    Expect("loss", "loss", {*loss}, tol_.rel, tol_.rel);

    model_->ZeroGrad();
    model_->Backward(1.0f);
    for (size_t i = 0; i < model_->grads().size(); ++i) {
      const std::string& param = model_->params()[i].name;
      const std::vector<float> ours = ToHost(model_->grads()[i]);
      Expect("grad", "grad." + param, ours, tol_.grad_rel, tol_.abs_of_scale);
      // Elements whose gradient the two sides agree on to 1e-4: the others are sums
      // that cancel to rounding noise (the key bias, exactly; a few others by chance).
      const std::vector<float> theirs = Theirs("grad." + param);
      ASSERT_EQ(theirs.size(), ours.size()) << param;
      std::vector<bool>& ok = well_conditioned_[param];
      ok.resize(ours.size());
      for (size_t k = 0; k < ours.size(); ++k) {
        ok[k] = std::abs(double{ours[k]} - theirs[k]) <= 1e-4 * std::abs(double{theirs[k]});
      }
    }
  }

  void CompareOptimizerSteps() {
    const OptimizerConfig o = Opt();
    absl::StatusOr<std::unique_ptr<AdamW>> adamw = AdamW::Create(o, model_.get());
    ASSERT_TRUE(adamw.ok()) << adamw.status();
    std::vector<float> losses, lrs, norms;
    for (int step = 0; step < kSteps; ++step) {
      model_->ZeroGrad();
      absl::StatusOr<float> loss = model_->Forward(tokens_.data(), targets_.data(), B_, T_);
      ASSERT_TRUE(loss.ok()) << loss.status();
      model_->Backward(1.0f);
      StepStats stats = (*adamw)->Step(step);
      EXPECT_FLOAT_EQ(stats.lr, LearningRateAt(o, step));
      losses.push_back(*loss);
      lrs.push_back(stats.lr);
      norms.push_back(stats.grad_norm);
    }
    // Elementwise here: every step's value must agree, not just the vector's norm.
    Expect("lr schedule", "lrs", lrs, 1e-6, 1e-6);
    Expect("grad norm per step", "grad_norms", norms, tol_.grad_rel, tol_.grad_rel);
    Expect("loss per step", "losses", losses, tol_.step_rel, tol_.step_rel);
    std::cout << "  losses:";
    for (float l : losses) std::cout << " " << l;
    std::cout << "\n  grad norms:";
    for (float n : norms) std::cout << " " << n;
    std::cout << "\n";
    if (!tol_.compare_final_weights) return;

    // The final weights after ten updates, over the elements whose gradient is
    // well-conditioned. Adam divides by the gradient's own magnitude, so an element
    // whose gradient cancels to rounding noise takes an update set by that noise
    // (PyTorch in float32 and in float64 disagree there as much as we do). Two kinds:
    //  * the key third of each attn.qkv.bias, whose gradient is zero in exact
    //    arithmetic (softmax is shift-invariant per query): left out always, since
    //    both sides may round the first step's alike and diverge later;
    //  * elements whose first gradient the two sides do not reproduce to 1e-4 (a sum
    //    that cancels by chance): a few in a thousand.
    // Their effect on the model shows in the losses above.
    const int C = config_.n_embd;
    int64_t left_out = 0, total = 0;
    for (const Tensor& p : model_->params()) {
      std::vector<float> ours = ToHost(p);
      const std::string name = "final." + p.name;
      const std::vector<float> theirs = Theirs(name);
      ASSERT_EQ(theirs.size(), ours.size()) << name;
      std::vector<bool> ok = well_conditioned_.at(p.name);
      if (p.name.find("attn.qkv.bias") != std::string::npos) {
        std::fill(ok.begin() + C, ok.begin() + 2 * C, false);
      }
      for (size_t k = 0; k < ours.size(); ++k) {
        if (!ok[k]) {
          ours[k] = theirs[k];
          ++left_out;
        }
      }
      total += static_cast<int64_t>(ours.size());
      // 2e-4: ten steps of a chaotic map from float32 gradients; across 160 seeded
      // runs the worst tensor was at 3.2e-5, while a weight-decay group mistake (decay
      // on gains and biases, or none on wte) shows at ~6e-4.
      Expect("final weights", name, ours, 2e-4, kMaxAbsTolOfScale);
    }
    std::cout << "  final weights: " << left_out << " of " << total
              << " elements left out (gradient not reproducible to 1e-4)\n";
    // A bug that breaks gradients shows above; this guards the filter itself.
    EXPECT_LE(left_out, total / 50) << "too many noise-dominated gradients to trust the "
                                        "final-weights comparison";
  }

  static constexpr int kSteps = 10;
  GPTConfig config_;
  int B_, T_;
  Weights weights_;
  DeviceKind device_;
  Tolerances tol_;
  std::string dir_;
  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<GPT> model_;
  std::vector<int32_t> tokens_, targets_;
  SafetensorsFile out_;
  std::map<std::string, double> worst_;
  std::map<std::string, std::vector<bool>> well_conditioned_;  // param -> element mask

 public:
  const std::map<std::string, double>& worst() const { return worst_; }
};

void RunCase(const GPTConfig& config, int B, int T, ModelVsTorch::Weights weights,
             DeviceKind device = DeviceKind::kCPU) {
  ModelVsTorch run(config, B, T, weights, device);
  run.Run();
  std::cout << "worst relative error per class:";
  for (const auto& [what, rel] : run.worst()) std::cout << "  " << what << " " << Fmt("%.2e", rel);
  std::cout << "\n";
}

GPTConfig Config(int L, int H, int C, int block, int V) {
  GPTConfig c;
  c.n_layer = L;
  c.n_head = H;
  c.n_embd = C;
  c.block_size = block;
  c.vocab_size = V;
  c.padded_vocab_size = 0;
  return c;
}

// Ragged everything: 3 heads of 16, T = 13 (not a power of two) inside a block of 16
// (rows 13..15 of wpe get no gradient), V = 77 padded to 128.
GPTConfig Ragged() { return Config(2, 3, 48, 16, 77); }
// Deeper, 4 heads, the sequence filling the block, no vocabulary padding.
GPTConfig FullBlock() { return Config(3, 4, 64, 32, 256); }

TEST(ModelVsTorchTest, RaggedInitWeights) {
  ASSERT_EQ(Ragged().PaddedVocab(), 128);
  RunCase(Ragged(), /*B=*/3, /*T=*/13, ModelVsTorch::Weights::kInit);
}

TEST(ModelVsTorchTest, RaggedRichWeights) {
  RunCase(Ragged(), /*B=*/3, /*T=*/13, ModelVsTorch::Weights::kRich);
}

TEST(ModelVsTorchTest, FullBlockInitWeights) {
  ASSERT_EQ(FullBlock().PaddedVocab(), 256);
  RunCase(FullBlock(), /*B=*/2, /*T=*/32, ModelVsTorch::Weights::kInit);
}

TEST(ModelVsTorchTest, FullBlockRichWeights) {
  RunCase(FullBlock(), /*B=*/2, /*T=*/32, ModelVsTorch::Weights::kRich);
}

// ---- the CUDA backend (bf16), on a machine with a GPU -----------------------------------

// Head size 64 (the tensor-core attention path), T not a multiple of its tiles, V = 77
// padded to 128.
GPTConfig CudaRagged() { return Config(2, 2, 128, 64, 77); }
// Head size 128, the sequence filling a longer block.
GPTConfig CudaFullBlock() { return Config(2, 2, 256, 128, 256); }

class ModelVsTorchCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<kernels::Backend>> cuda = kernels::MakeCudaBackend(0);
    if (!cuda.ok()) GTEST_SKIP() << "no usable GPU: " << cuda.status().message();
  }
};

TEST_F(ModelVsTorchCudaTest, RaggedInitWeights) {
  RunCase(CudaRagged(), /*B=*/2, /*T=*/61, ModelVsTorch::Weights::kInit, DeviceKind::kCUDA);
}

TEST_F(ModelVsTorchCudaTest, RaggedRichWeights) {
  RunCase(CudaRagged(), /*B=*/2, /*T=*/61, ModelVsTorch::Weights::kRich, DeviceKind::kCUDA);
}

TEST_F(ModelVsTorchCudaTest, FullBlockRichWeights) {
  RunCase(CudaFullBlock(), /*B=*/2, /*T=*/128, ModelVsTorch::Weights::kRich, DeviceKind::kCUDA);
}

}  // namespace
}  // namespace colossus
