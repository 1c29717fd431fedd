#include "colossus/model.h"

#include <cmath>
#include <cstddef>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "colossus/check.h"
#include "colossus/memory_plan.h"
#include "gpt_block_layout.h"
#include "init_rng.h"

namespace colossus {

using kernels::DType;
using kernels::View;

using namespace gpt_layout;  // NOLINT: the block layout's names, shared with parallel/tp_model.cc

struct GPT::Impl {
  explicit Impl(kernels::Backend* b)
      : param_plan(b, "parameters"),
        // Element offsets equal to param_plan's (16 elements per alignment unit, see
        // memory_plan.h), so one AdamW call updates masters and copies alike.
        compute_plan(b, "compute weights",
                     static_cast<size_t>(kernels::kAdamWDecayGranule) *
                         kernels::DTypeSize(b->compute_dtype())),
        grad_plan(b, "gradients"),
        act_plan(b, "activations") {}
  MemoryPlan param_plan;    // f32 master weights, what the optimizer updates
  MemoryPlan compute_plan;  // copies in the activation dtype; empty when that is f32
  MemoryPlan grad_plan;     // f32 always: gradients accumulate across micro-batches
  MemoryPlan act_plan;
  DType act_dtype = DType::kF32;

  // Activation indices into act_plan.
  size_t tokens, targets, encoded, lnf, lnf_mean, lnf_rstd, logits, losses, lse;
  std::vector<BlockActs> blocks;
  // Backward scratch: gradients of activations, reused by every block.
  size_t dresidual, dbtc, dqkv, dfch_gelu, dfch;

  // State of the last Forward.
  int B = 0, T = 0;
  bool have_targets = false;
  // The staged batch has targets. Unlike have_targets, Backward does not clear it: the
  // per-row losses survive Backward (it consumes only the logits), and ReadLoss reads
  // them after a replayed forward and backward (graph_step.h).
  bool staged_targets = false;
  int64_t counted = 0;  // positions with a non-negative target
  std::vector<float> host_losses;

  View act(size_t i) const { return act_plan[i].view(); }
  float* actf(size_t i) const { return act_plan[i].as<float>(); }
};

GPT::GPT(const GPTConfig& config, kernels::Backend* backend, int max_batch, int max_seq)
    : config_(config), backend_(backend), max_batch_(max_batch), max_seq_(max_seq),
      impl_(std::make_unique<Impl>(backend)) {}

GPT::~GPT() = default;

absl::StatusOr<std::unique_ptr<GPT>> GPT::Create(const GPTConfig& config,
                                                 kernels::Backend* backend, int max_batch,
                                                 int max_seq, int64_t flat_multiple) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  CHECK(backend != nullptr);
  if (max_batch <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat("batch size %d must be >= 1", max_batch));
  }
  if (max_seq <= 0 || max_seq > config.block_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "sequence length %d must be in [1, model.block_size = %d] (the position table has "
        "block_size rows)", max_seq, config.block_size));
  }
  if (flat_multiple < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("flat buffer multiple %d must be >= 1", flat_multiple));
  }
  std::unique_ptr<GPT> model(new GPT(config, backend, max_batch, max_seq));
  if (absl::Status s = model->Plan(flat_multiple); !s.ok()) return s;
  return model;
}

absl::Status GPT::Plan(int64_t flat_multiple) {
  const int64_t C = config_.n_embd, Vp = config_.PaddedVocab(), L = config_.n_layer;
  const int64_t NH = config_.n_head;
  const int64_t B = max_batch_, T = max_seq_;
  Impl& m = *impl_;

  // Parameters and gradients: same names, shapes and order.
  // The activation dtype is the backend's: f32 on the CPU, bf16 on CUDA, where the ops
  // read bf16 copies of the f32 master weights.
  m.act_dtype = backend_->compute_dtype();
  const bool copies = m.act_dtype != DType::kF32;
  auto add_param = [&](const std::string& name, std::vector<int64_t> shape) {
    m.param_plan.Add(name, shape, DType::kF32);
    if (copies) m.compute_plan.Add(name, shape, m.act_dtype);
    m.grad_plan.Add(name, std::move(shape), DType::kF32);
  };
  add_param("wte", {Vp, C});
  add_param("wpe", {config_.block_size, C});
  for (int64_t l = 0; l < L; ++l) {
    const std::vector<std::vector<int64_t>> shapes = {
        {C}, {C}, {3 * C, C}, {3 * C}, {C, C}, {C}, {C}, {C}, {4 * C, C}, {4 * C}, {C, 4 * C}, {C}};
    for (int p = 0; p < kNumBlockParams; ++p) {
      add_param(absl::StrCat("h.", l, ".", kBlockParamNames[p]), shapes[p]);
    }
  }
  add_param("ln_f.weight", {C});
  add_param("ln_f.bias", {C});
  // Zero padding so the flat buffers split into flat_multiple equal shards; it is not a
  // parameter (dropped from params_ below) and nothing ever writes it.
  const int64_t unpadded = static_cast<int64_t>(m.param_plan.bytes() / 4);
  flat_numel_ = (unpadded + flat_multiple - 1) / flat_multiple * flat_multiple;
  const bool padded = flat_numel_ > unpadded;
  if (padded) {
    m.param_plan.Add("(flat padding)", {flat_numel_ - unpadded}, DType::kF32);
    m.grad_plan.Add("(flat padding)", {flat_numel_ - unpadded}, DType::kF32);
    if (copies) m.compute_plan.Add("(flat padding)", {flat_numel_ - unpadded}, m.act_dtype);
  }

  // Activations for the largest batch; smaller batches use a prefix of each buffer.
  const DType A = m.act_dtype, F32 = DType::kF32;
  auto act = [&](const std::string& name, std::vector<int64_t> shape, DType dt) {
    return m.act_plan.Add(name, std::move(shape), dt);
  };
  m.tokens = act("tokens", {B, T}, DType::kI32);
  m.targets = act("targets", {B, T}, DType::kI32);
  m.encoded = act("encoded", {B, T, C}, A);
  for (int64_t l = 0; l < L; ++l) {
    m.blocks.push_back(gpt_layout::PlanBlockActs(m.act_plan, l, B, T, C, NH, C, 4 * C, A));
  }
  m.lnf = act("lnf", {B, T, C}, A);
  m.lnf_mean = act("lnf_mean", {B, T}, F32);
  m.lnf_rstd = act("lnf_rstd", {B, T}, F32);
  m.logits = act("logits", {B, T, Vp}, A);
  m.losses = act("losses", {B, T}, F32);
  m.lse = act("lse", {B, T}, F32);
  m.dresidual = act("d.residual", {B, T, C}, A);
  m.dbtc = act("d.btc", {B, T, C}, A);
  m.dqkv = act("d.qkv", {B, T, 3 * C}, A);
  m.dfch_gelu = act("d.fch_gelu", {B, T, 4 * C}, A);
  m.dfch = act("d.fch", {B, T, 4 * C}, A);

  for (MemoryPlan* plan : {&m.param_plan, &m.compute_plan, &m.grad_plan, &m.act_plan}) {
    if (absl::Status s = plan->Allocate(); !s.ok()) return s;
  }
  params_ = m.param_plan.tensors();
  grads_ = m.grad_plan.tensors();
  if (padded) {
    params_.pop_back();
    grads_.pop_back();
  }
  compute_params_ = copies ? m.compute_plan.tensors() : params_;
  if (copies && padded) compute_params_.pop_back();
  // The mirror flat_compute_params() promises (the plans' alignments make it so).
  for (size_t i = 0; copies && i < params_.size(); ++i) {
    const ptrdiff_t copy_bytes =
        static_cast<char*>(compute_params_[i].data) - static_cast<char*>(m.compute_plan.base());
    const ptrdiff_t master_bytes =
        static_cast<char*>(params_[i].data) - static_cast<char*>(m.param_plan.base());
    CHECK(copy_bytes == master_bytes / 4 * static_cast<ptrdiff_t>(DTypeSize(m.act_dtype)))
        << params_[i].name << ": compute copy not at its master weight's element offset";
  }
  num_params_ = 0;
  for (const Tensor& t : params_) num_params_ += t.numel();
  CHECK(num_params_ == config_.NumParameters()) << num_params_ << " vs " << config_.NumParameters();
  return absl::OkStatus();
}

View GPT::flat_params() const {
  return View(impl_->param_plan.base(), DType::kF32, flat_numel_);
}

View GPT::flat_compute_params() const {
  if (impl_->compute_plan.size() == 0) return flat_params();
  return View(impl_->compute_plan.base(), impl_->act_dtype, flat_numel_);
}

View GPT::flat_grads() const {
  return View(impl_->grad_plan.base(), DType::kF32, flat_numel_);
}

const Tensor* GPT::FindParam(const std::string& name) const {
  for (const Tensor& t : params_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

void GPT::InitWeights(uint64_t seed) {
  const int V = config_.vocab_size, C = config_.n_embd;
  const float std = 0.02f;
  // GPT-2 scales the two projections that write into the residual stream so the
  // stream's variance does not grow with depth.
  const float residual_std = std / std::sqrt(2.0f * config_.n_layer);
  std::vector<float> host;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& t = params_[i];
    host.assign(t.numel(), 0.0f);
    const std::string& n = t.name;
    auto ends_with = [&](const char* suffix) {
      const size_t k = std::char_traits<char>::length(suffix);
      return n.size() >= k && n.compare(n.size() - k, k, suffix) == 0;
    };
    // Each tensor draws from its own stream (seed, index), so the values do not
    // depend on the order or number of other tensors' draws.
    NormalRng rng(seed, i);
    if (n == "wte") {
      // Padded vocabulary rows stay zero: no token ever selects them.
      for (int64_t k = 0; k < static_cast<int64_t>(V) * C; ++k) host[k] = std * rng.Next();
    } else if (ends_with("ln_1.weight") || ends_with("ln_2.weight") || n == "ln_f.weight") {
      std::fill(host.begin(), host.end(), 1.0f);
    } else if (ends_with("attn.proj.weight") || ends_with("mlp.proj.weight")) {
      for (float& x : host) x = residual_std * rng.Next();
    } else if (ends_with(".weight") || n == "wpe") {
      for (float& x : host) x = std * rng.Next();
    }  // biases stay zero
    backend_->CopyFromHost(t.data, host.data(), t.bytes());
  }
  SyncComputeWeights();
}

void GPT::SyncComputeWeights() {
  if (compute_params_.empty() || compute_params_[0].data == params_[0].data) return;
  for (size_t i = 0; i < params_.size(); ++i) {
    backend_->Cast(compute_params_[i].view(), params_[i].view(), params_[i].numel());
  }
}

absl::Status GPT::Stage(const int32_t* tokens, const int32_t* targets, int B, int T) {
  if (B <= 0 || B > max_batch_ || T <= 0 || T > max_seq_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "batch %d x %d tokens does not fit the planned %d x %d", B, T, max_batch_, max_seq_));
  }
  const int64_t N = static_cast<int64_t>(B) * T;
  absl::StatusOr<int64_t> checked =
      gpt_layout::CheckBatchIds(tokens, targets, N, T, config_.vocab_size);
  if (!checked.ok()) return checked.status();
  Impl& m = *impl_;
  m.B = B;
  m.T = T;
  m.have_targets = targets != nullptr;
  m.staged_targets = targets != nullptr;
  m.counted = *checked;
  backend_->CopyFromHost(m.act_plan[m.tokens].data, tokens, N * sizeof(int32_t));
  if (targets != nullptr) {
    backend_->CopyFromHost(m.act_plan[m.targets].data, targets, N * sizeof(int32_t));
  }
  return absl::OkStatus();
}

absl::StatusOr<float> GPT::Forward(const int32_t* tokens, const int32_t* targets, int B,
                                   int T) {
  if (absl::Status s = Stage(tokens, targets, B, T); !s.ok()) return s;
  EnqueueForward();
  if (targets == nullptr) {
    backend_->Synchronize();
    return 0.0f;
  }
  return ReadLoss();
}

void GPT::EnqueueForward() {
  Impl& m = *impl_;
  const int B = m.B, T = m.T;
  CHECK(B > 0) << "GPT::EnqueueForward needs a staged batch (Stage) first";
  const int V = config_.vocab_size, Vp = config_.PaddedVocab(), C = config_.n_embd;
  const int NH = config_.n_head, L = config_.n_layer;
  const int64_t N = static_cast<int64_t>(B) * T;
  const int32_t* dtokens = m.act_plan[m.tokens].as<int32_t>();
  // The ops read the compute copies (the master weights themselves on f32 backends).
  const Tensor* P = compute_params_.data();
  const size_t lnf_index = 2 + static_cast<size_t>(L) * kNumBlockParams;

  backend_->EmbeddingForward(m.act(m.encoded), dtokens, P[0].view(), P[1].view(), B, T, C);
  // Block l's first LayerNorm is fused into the residual add that ends block l-1 (the
  // last block's feeds ln_f), so only block 0 runs a plain LayerNorm.
  backend_->LayerNormForward(m.act(m.blocks[0].ln1), m.actf(m.blocks[0].ln1_mean),
                             m.actf(m.blocks[0].ln1_rstd), m.act(m.encoded),
                             P[2 + kLn1W].view(), P[2 + kLn1B].view(), N, C);
  View residual = m.act(m.encoded);
  for (int l = 0; l < L; ++l) {
    const Tensor* w = P + 2 + static_cast<size_t>(l) * kNumBlockParams;
    const BlockActs& a = m.blocks[l];
    backend_->MatmulForward(m.act(a.qkv), m.act(a.ln1), w[kQkvW].view(), w[kQkvB].view(), N, C,
                            3 * C);
    backend_->AttentionForward(m.act(a.atty), m.actf(a.att_lse), m.act(a.qkv), B, T, C, NH);
    backend_->MatmulForward(m.act(a.attproj), m.act(a.atty), w[kProjW].view(), w[kProjB].view(),
                            N, C, C);
    backend_->ResidualLayerNormForward(m.act(a.res2), m.act(a.ln2), m.actf(a.ln2_mean),
                                       m.actf(a.ln2_rstd), residual, m.act(a.attproj),
                                       w[kLn2W].view(), w[kLn2B].view(), N, C);
    backend_->MatmulGeluForward(m.act(a.fch_gelu), m.act(a.fch), m.act(a.ln2), w[kFcW].view(),
                                w[kFcB].view(), N, C, 4 * C);
    backend_->MatmulForward(m.act(a.fcproj), m.act(a.fch_gelu), w[kFcProjW].view(),
                            w[kFcProjB].view(), N, 4 * C, C);
    // The next LayerNorm: block l+1's ln_1, or ln_f after the last block.
    const bool last = l == L - 1;
    const Tensor* next_w = last ? P + lnf_index : P + 2 + (l + 1) * kNumBlockParams + kLn1W;
    const BlockActs* next = last ? nullptr : &m.blocks[l + 1];
    backend_->ResidualLayerNormForward(
        m.act(a.res3), last ? m.act(m.lnf) : m.act(next->ln1),
        last ? m.actf(m.lnf_mean) : m.actf(next->ln1_mean),
        last ? m.actf(m.lnf_rstd) : m.actf(next->ln1_rstd), m.act(a.res2), m.act(a.fcproj),
        next_w[0].view(), next_w[1].view(), N, C);
    residual = m.act(a.res3);
  }
  // The output projection is the token embedding itself (tied weights), no bias.
  backend_->MatmulForward(m.act(m.logits), m.act(m.lnf), P[0].view(), View(), N, C, Vp);
  if (!m.have_targets) return;
  backend_->CrossEntropyForward(m.actf(m.losses), m.actf(m.lse), m.act(m.logits),
                                m.act_plan[m.targets].as<int32_t>(), N, V, Vp);
}

float GPT::ReadLoss() {
  Impl& m = *impl_;
  CHECK(m.staged_targets) << "GPT::ReadLoss needs a staged batch with targets";
  const int64_t N = static_cast<int64_t>(m.B) * m.T;
  m.host_losses.resize(N);
  backend_->CopyToHost(m.host_losses.data(), m.actf(m.losses), N * sizeof(float));
  // Ignored positions have loss 0, so the sum over all rows is the sum over counted ones.
  double sum = std::accumulate(m.host_losses.begin(), m.host_losses.end(), 0.0);
  return m.counted > 0 ? static_cast<float>(sum / m.counted) : 0.0f;
}

int64_t GPT::counted_targets() const { return impl_->counted; }

void GPT::Backward(float loss_scale, const GradsReadyFn& grads_ready) {
  Impl& m = *impl_;
  CHECK(m.have_targets) << "GPT::Backward needs a Forward with targets first";
  const int B = m.B, T = m.T;
  const int V = config_.vocab_size, Vp = config_.PaddedVocab(), C = config_.n_embd;
  const int NH = config_.n_head, L = config_.n_layer;
  const int64_t N = static_cast<int64_t>(B) * T;
  const Tensor* P = compute_params_.data();
  const Tensor* G = grads_.data();

  // d(loss_scale * mean loss)/d(row loss) is the same for every counted row.
  const float dloss = m.counted > 0 ? loss_scale / static_cast<float>(m.counted) : 0.0f;
  const int32_t* dtargets = m.act_plan[m.targets].as<int32_t>();
  const int32_t* dtokens = m.act_plan[m.tokens].as<int32_t>();
  // The logits are consumed: their buffer becomes dlogits.
  backend_->CrossEntropyBackward(m.act(m.logits), m.act(m.logits), m.actf(m.lse), dtargets,
                                 dloss, N, V, Vp);
  backend_->MatmulBackward(m.act(m.dbtc), G[0].view(), View(), m.act(m.logits), m.act(m.lnf),
                           P[0].view(), N, C, Vp);

  // dresidual carries d(loss)/d(residual stream) down through the blocks; the
  // LayerNorm backwards accumulate into it, so it starts at zero.
  View dres = m.act(m.dresidual);
  backend_->Fill(View(dres.data, dres.dtype, N * C), 0.0f);
  const size_t lnf_index = 2 + static_cast<size_t>(L) * kNumBlockParams;
  View last_residual = L > 0 ? m.act(m.blocks[L - 1].res3) : m.act(m.encoded);
  backend_->LayerNormBackward(dres, G[lnf_index].view(), G[lnf_index + 1].view(), m.act(m.dbtc),
                              last_residual, P[lnf_index].view(), m.actf(m.lnf_mean),
                              m.actf(m.lnf_rstd), N, C);
  if (grads_ready) grads_ready(lnf_index, lnf_index + 2);

  for (int l = L - 1; l >= 0; --l) {
    const size_t base = 2 + static_cast<size_t>(l) * kNumBlockParams;
    const Tensor* w = P + base;
    const Tensor* g = G + base;
    const BlockActs& a = m.blocks[l];
    View block_in = l > 0 ? m.act(m.blocks[l - 1].res3) : m.act(m.encoded);
    // res3 = res2 + fcproj: both receive dres.
    backend_->MatmulBackward(m.act(m.dfch_gelu), g[kFcProjW].view(), g[kFcProjB].view(), dres,
                             m.act(a.fch_gelu), w[kFcProjW].view(), N, 4 * C, C);
    backend_->GeluBackward(m.act(m.dfch), m.act(a.fch), m.act(m.dfch_gelu), N * 4 * C);
    backend_->MatmulBackward(m.act(m.dbtc), g[kFcW].view(), g[kFcB].view(), m.act(m.dfch),
                             m.act(a.ln2), w[kFcW].view(), N, C, 4 * C);
    backend_->LayerNormBackward(dres, g[kLn2W].view(), g[kLn2B].view(), m.act(m.dbtc),
                                m.act(a.res2), w[kLn2W].view(), m.actf(a.ln2_mean),
                                m.actf(a.ln2_rstd), N, C);
    // res2 = block_in + attproj: both receive dres (now including the MLP branch).
    backend_->MatmulBackward(m.act(m.dbtc), g[kProjW].view(), g[kProjB].view(), dres,
                             m.act(a.atty), w[kProjW].view(), N, C, C);
    backend_->AttentionBackward(m.act(m.dqkv), m.act(m.dbtc), m.act(a.qkv), m.act(a.atty),
                                m.actf(a.att_lse), B, T, C, NH);
    backend_->MatmulBackward(m.act(m.dbtc), g[kQkvW].view(), g[kQkvB].view(), m.act(m.dqkv),
                             m.act(a.ln1), w[kQkvW].view(), N, C, 3 * C);
    backend_->LayerNormBackward(dres, g[kLn1W].view(), g[kLn1B].view(), m.act(m.dbtc), block_in,
                                w[kLn1W].view(), m.actf(a.ln1_mean), m.actf(a.ln1_rstd), N, C);
    if (grads_ready) grads_ready(base, base + kNumBlockParams);
  }
  backend_->EmbeddingBackward(G[0].view(), G[1].view(), dres, dtokens, B, T, C);
  if (grads_ready) grads_ready(0, 2);
  // The logits buffer now holds their gradient; a new Forward is needed for logits.
  m.have_targets = false;
}

void GPT::ZeroGrad() { backend_->Fill(flat_grads(), 0.0f); }

Tensor GPT::logits() const {
  Tensor t = impl_->act_plan[impl_->logits];
  t.shape = {impl_->B, impl_->T, config_.PaddedVocab()};
  return t;
}

std::vector<float> GPT::LogitsAt(int b, int t) const {
  CHECK(b >= 0 && b < impl_->B && t >= 0 && t < impl_->T) << "LogitsAt(" << b << ", " << t << ")";
  const Tensor& logits = impl_->act_plan[impl_->logits];
  const size_t elem = kernels::DTypeSize(logits.dtype);
  const int64_t row = static_cast<int64_t>(b) * impl_->T + t;
  const char* src = static_cast<const char*>(logits.data) + row * config_.PaddedVocab() * elem;
  std::vector<float> out(config_.vocab_size);
  if (logits.dtype == DType::kF32) {
    backend_->CopyToHost(out.data(), src, out.size() * sizeof(float));
  } else {
    CHECK(logits.dtype == DType::kBF16) << "LogitsAt: logits in " << kernels::DTypeName(logits.dtype);
    std::vector<uint16_t> raw(out.size());
    backend_->CopyToHost(raw.data(), src, raw.size() * sizeof(uint16_t));
    for (size_t i = 0; i < raw.size(); ++i) out[i] = kernels::Bf16ToFloat(raw[i]);
  }
  return out;
}

std::vector<std::pair<std::string, size_t>> GPT::MemoryUsage() const {
  return {{"parameters", impl_->param_plan.bytes()},
          {"compute weights", impl_->compute_plan.bytes()},
          {"gradients", impl_->grad_plan.bytes()},
          {"activations", impl_->act_plan.bytes()}};
}

}  // namespace colossus
