// TensorParallelGPT: planning, forward and backward (tensor_parallel.h). The op sequence
// mirrors GPT's (model.cc) with local widths; the comments here are about what the split
// changes.
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "colossus/check.h"
#include "colossus/parallel/tensor_parallel.h"
#include "colossus/parallel/tp_cross_entropy.h"
#include "gpt_block_layout.h"

namespace colossus::parallel {

using kernels::DType;
using kernels::View;

using namespace gpt_layout;  // NOLINT: the block layout's names, shared with model.cc

struct TensorParallelGPT::Impl {
  explicit Impl(kernels::Backend* b)
      : param_plan(b, "tp parameters"),
        grad_plan(b, "tp gradients"),
        act_plan(b, "tp activations") {}
  MemoryPlan param_plan;
  MemoryPlan grad_plan;
  MemoryPlan act_plan;

  size_t tokens, encoded, lnf, lnf_mean, lnf_rstd, logits;
  // The local embedding table with one extra ZERO row that tokens owned by other ranks
  // select (the kernel has no "skip this token"), and its gradient.
  size_t wte_ext, dwte_ext;
  size_t zero_wpe;  // what ranks other than 0 add as the position embedding
  size_t ce_stage;  // backend memory for the cross-entropy's reductions (3N)
  std::vector<BlockActs> blocks;
  size_t dresidual, dbtc, dqkv, dfch_gelu, dfch;

  int B = 0, T = 0;
  bool have_targets = false;
  int64_t counted = 0;
  // Host staging of the vocabulary-parallel cross-entropy (sized once in Plan).
  std::vector<int32_t> host_local_tokens, host_targets;
  std::vector<float> host_logits, host_losses, host_lse, host_scratch;

  View act(size_t i) const { return act_plan[i].view(); }
  float* actf(size_t i) const { return act_plan[i].as<float>(); }
};

absl::Status ValidateTensorParallel(const GPTConfig& config, int tp) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  if (tp < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("parallel.tensor_parallel = %d: must be >= 1", tp));
  }
  if (config.n_head % tp != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "model.n_head = %d is not divisible by the tensor-parallel size %d (each rank needs "
        "whole attention heads)", config.n_head, tp));
  }
  if (config.PaddedVocab() % tp != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "the padded vocabulary %d (model.padded_vocab_size, or model.vocab_size = %d rounded "
        "up to 128) is not divisible by the tensor-parallel size %d (each rank owns an equal "
        "share of the embedding rows)", config.PaddedVocab(), config.vocab_size, tp));
  }
  return absl::OkStatus();
}

TensorParallelGPT::TensorParallelGPT(const GPTConfig& config, kernels::Backend* backend,
                                     comm::Communicator* tp, int max_batch, int max_seq,
                                     int64_t flat_multiple)
    : config_(config), backend_(backend), tp_(tp), max_batch_(max_batch), max_seq_(max_seq),
      flat_multiple_(flat_multiple), impl_(std::make_unique<Impl>(backend)) {}

TensorParallelGPT::~TensorParallelGPT() = default;

absl::StatusOr<std::unique_ptr<TensorParallelGPT>> TensorParallelGPT::Create(
    const GPTConfig& config, kernels::Backend* backend, comm::Communicator* tp, int max_batch,
    int max_seq, int64_t flat_multiple) {
  CHECK(backend != nullptr && tp != nullptr);
  if (absl::Status s = ValidateTensorParallel(config, tp->size()); !s.ok()) return s;
  if (backend->compute_dtype() != DType::kF32) {
    return absl::UnimplementedError(absl::StrFormat(
        "tensor parallelism needs an f32 compute dtype (the CPU backend); %s computes in %s",
        backend->Describe(), kernels::DTypeName(backend->compute_dtype())));
  }
  if (max_batch <= 0 || max_seq <= 0 || max_seq > config.block_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "batch %d x sequence %d: need batch >= 1 and sequence in [1, model.block_size = %d]",
        max_batch, max_seq, config.block_size));
  }
  if (flat_multiple < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("flat buffer multiple %d must be >= 1", flat_multiple));
  }
  std::unique_ptr<TensorParallelGPT> model(
      new TensorParallelGPT(config, backend, tp, max_batch, max_seq, flat_multiple));
  if (absl::Status s = model->Plan(); !s.ok()) return s;
  return model;
}

int64_t TensorParallelGPT::local_vocab() const { return config_.PaddedVocab() / tp_size(); }
int64_t TensorParallelGPT::vocab_begin() const { return tp_rank() * local_vocab(); }

absl::Status TensorParallelGPT::Plan() {
  const int64_t tp = tp_size();
  const int64_t C = config_.n_embd, L = config_.n_layer;
  const int64_t Cl = C / tp, Fl = 4 * C / tp, Vl = local_vocab();
  const int64_t NHl = config_.n_head / tp;
  const int64_t B = max_batch_, T = max_seq_, N = B * T;
  Impl& m = *impl_;

  auto add_param = [&](const std::string& name, std::vector<int64_t> shape, bool sharded) {
    m.param_plan.Add(name, shape, DType::kF32);
    m.grad_plan.Add(name, std::move(shape), DType::kF32);
    sharded_.push_back(sharded);
  };
  add_param("wte", {Vl, C}, true);
  add_param("wpe", {config_.block_size, C}, false);
  for (int64_t l = 0; l < L; ++l) {
    const std::vector<int64_t> shapes[kNumBlockParams] = {
        {C}, {C}, {3 * Cl, C}, {3 * Cl}, {C, Cl}, {C}, {C}, {C}, {Fl, C}, {Fl}, {C, Fl}, {C}};
    const bool sharded[kNumBlockParams] = {false, false, true, true,  true, false,
                                           false, false, true, true,  true, false};
    for (int p = 0; p < kNumBlockParams; ++p) {
      add_param(absl::StrCat("h.", l, ".", kBlockParamNames[p]), shapes[p], sharded[p]);
    }
  }
  add_param("ln_f.weight", {C}, false);
  add_param("ln_f.bias", {C}, false);
  // Zero padding so that the flat buffers split into flat_multiple equal shards (ZeRO-1
  // over the data-parallel group); not a parameter, dropped from params_ below.
  const int64_t unpadded = static_cast<int64_t>(m.param_plan.bytes() / 4);
  flat_numel_ = (unpadded + flat_multiple_ - 1) / flat_multiple_ * flat_multiple_;
  const bool padded = flat_numel_ > unpadded;
  if (padded) {
    m.param_plan.Add("(flat padding)", {flat_numel_ - unpadded}, DType::kF32);
    m.grad_plan.Add("(flat padding)", {flat_numel_ - unpadded}, DType::kF32);
  }

  const DType A = DType::kF32, F32 = DType::kF32;
  auto act = [&](const std::string& name, std::vector<int64_t> shape, DType dt) {
    return m.act_plan.Add(name, std::move(shape), dt);
  };
  m.tokens = act("local_tokens", {B, T}, DType::kI32);
  m.encoded = act("encoded", {B, T, C}, A);
  for (int64_t l = 0; l < L; ++l) {
    m.blocks.push_back(gpt_layout::PlanBlockActs(m.act_plan, l, B, T, C, NHl, Cl, Fl, A));
  }
  m.lnf = act("lnf", {B, T, C}, A);
  m.lnf_mean = act("lnf_mean", {B, T}, F32);
  m.lnf_rstd = act("lnf_rstd", {B, T}, F32);
  m.logits = act("logits", {B, T, Vl}, A);
  m.wte_ext = act("wte_ext", {Vl + 1, C}, A);
  m.dwte_ext = act("d.wte_ext", {Vl + 1, C}, F32);
  m.zero_wpe = act("zero_wpe", {T, C}, A);
  m.ce_stage = act("ce_stage", {3 * N}, F32);
  m.dresidual = act("d.residual", {B, T, C}, A);
  m.dbtc = act("d.btc", {B, T, C}, A);
  m.dqkv = act("d.qkv", {B, T, 3 * Cl}, A);
  m.dfch_gelu = act("d.fch_gelu", {B, T, Fl}, A);
  m.dfch = act("d.fch", {B, T, Fl}, A);

  for (MemoryPlan* plan : {&m.param_plan, &m.grad_plan, &m.act_plan}) {
    if (absl::Status s = plan->Allocate(); !s.ok()) return s;
  }
  params_ = m.param_plan.tensors();
  grads_ = m.grad_plan.tensors();
  if (padded) {
    params_.pop_back();
    grads_.pop_back();
  }
  num_local_params_ = 0;
  for (const Tensor& t : params_) num_local_params_ += t.numel();
  m.host_local_tokens.resize(N);
  m.host_targets.resize(N);
  m.host_logits.resize(N * Vl);
  m.host_losses.resize(N);
  m.host_lse.resize(N);
  m.host_scratch.resize(3 * N);
  return absl::OkStatus();
}

View TensorParallelGPT::flat_params() const {
  return View(impl_->param_plan.base(), DType::kF32, flat_numel_);
}
View TensorParallelGPT::flat_grads() const {
  return View(impl_->grad_plan.base(), DType::kF32, flat_numel_);
}

void TensorParallelGPT::ZeroGrad() { backend_->Fill(flat_grads(), 0.0f); }

Tensor TensorParallelGPT::local_logits() const {
  Tensor t = impl_->act_plan[impl_->logits];
  t.shape = {impl_->B, impl_->T, local_vocab()};
  return t;
}

absl::Status TensorParallelGPT::AllReduceSum(void* data, int64_t n, const char* what) {
  absl::Status s =
      tp_->AllReduce(data, data, static_cast<size_t>(n), comm::DataType::kF32, comm::ReduceOp::kSum)
          .Wait();
  if (s.ok()) return s;
  return absl::Status(s.code(),
                      absl::StrFormat("tensor-parallel rank %d of %d, all-reduce of %s: %s",
                                      tp_rank(), tp_size(), what, s.message()));
}

absl::StatusOr<float> TensorParallelGPT::Forward(const int32_t* tokens, const int32_t* targets,
                                                 int B, int T) {
  if (B <= 0 || B > max_batch_ || T <= 0 || T > max_seq_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "batch %d x %d tokens does not fit the planned %d x %d", B, T, max_batch_, max_seq_));
  }
  const int V = config_.vocab_size, C = config_.n_embd, L = config_.n_layer;
  const int tp = tp_size();
  const int Cl = C / tp, Fl = 4 * C / tp, NHl = config_.n_head / tp;
  const int64_t Vl = local_vocab(), v0 = vocab_begin();
  const int64_t N = static_cast<int64_t>(B) * T;
  Impl& m = *impl_;
  absl::StatusOr<int64_t> checked = CheckBatchIds(tokens, targets, N, T, V);
  if (!checked.ok()) return checked.status();
  const int64_t counted = *checked;
  for (int64_t i = 0; i < N; ++i) {
    // Tokens of other ranks' rows select the zero row Vl of wte_ext.
    const int64_t local = tokens[i] - v0;
    m.host_local_tokens[i] = static_cast<int32_t>(local >= 0 && local < Vl ? local : Vl);
  }
  m.B = B;
  m.T = T;
  m.have_targets = targets != nullptr;
  m.counted = counted;
  const Tensor& tok = m.act_plan[m.tokens];
  backend_->CopyFromHost(tok.data, m.host_local_tokens.data(), N * sizeof(int32_t));
  const int32_t* dtokens = tok.as<int32_t>();
  const Tensor* P = params_.data();
  const size_t lnf_index = 2 + static_cast<size_t>(L) * kNumBlockParams;
  const bool first = tp_rank() == 0;

  // Vocabulary-parallel embedding: each rank embeds the tokens it owns (zeros for the
  // rest), rank 0 adds the positions, and the all-reduce completes every row.
  backend_->Copy(m.act_plan[m.wte_ext].data, P[0].data, P[0].bytes());
  backend_->EmbeddingForward(m.act(m.encoded), dtokens, m.act(m.wte_ext),
                             first ? P[1].view() : m.act(m.zero_wpe), B, T, C);
  if (absl::Status s = AllReduceSum(m.act_plan[m.encoded].data, N * C, "the token embedding");
      !s.ok()) {
    return s;
  }
  backend_->LayerNormForward(m.act(m.blocks[0].ln1), m.actf(m.blocks[0].ln1_mean),
                             m.actf(m.blocks[0].ln1_rstd), m.act(m.encoded),
                             P[2 + kLn1W].view(), P[2 + kLn1B].view(), N, C);
  View residual = m.act(m.encoded);
  for (int l = 0; l < L; ++l) {
    const Tensor* w = P + 2 + static_cast<size_t>(l) * kNumBlockParams;
    const BlockActs& a = m.blocks[l];
    // Column-parallel qkv on this rank's heads, attention on them alone.
    backend_->MatmulForward(m.act(a.qkv), m.act(a.ln1), w[kQkvW].view(), w[kQkvB].view(), N, C,
                            3 * Cl);
    backend_->AttentionForward(m.act(a.atty), m.actf(a.att_lse), m.act(a.qkv), B, T, Cl, NHl);
    // Row-parallel projection: a partial sum; the replicated bias is added once (rank 0).
    backend_->MatmulForward(m.act(a.attproj), m.act(a.atty), w[kProjW].view(),
                            first ? w[kProjB].view() : View(), N, Cl, C);
    if (absl::Status s = AllReduceSum(m.act_plan[a.attproj].data, N * C, "an attention output");
        !s.ok()) {
      return s;
    }
    backend_->ResidualLayerNormForward(m.act(a.res2), m.act(a.ln2), m.actf(a.ln2_mean),
                                       m.actf(a.ln2_rstd), residual, m.act(a.attproj),
                                       w[kLn2W].view(), w[kLn2B].view(), N, C);
    backend_->MatmulGeluForward(m.act(a.fch_gelu), m.act(a.fch), m.act(a.ln2), w[kFcW].view(),
                                w[kFcB].view(), N, C, Fl);
    backend_->MatmulForward(m.act(a.fcproj), m.act(a.fch_gelu), w[kFcProjW].view(),
                            first ? w[kFcProjB].view() : View(), N, Fl, C);
    if (absl::Status s = AllReduceSum(m.act_plan[a.fcproj].data, N * C, "an MLP output");
        !s.ok()) {
      return s;
    }
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
  // The tied output projection, vocabulary-parallel: this rank's Vl columns only.
  backend_->MatmulForward(m.act(m.logits), m.act(m.lnf), P[0].view(), View(), N, C,
                          static_cast<int>(Vl));
  if (targets == nullptr) {
    backend_->Synchronize();
    return 0.0f;
  }
  std::copy(targets, targets + N, m.host_targets.begin());
  backend_->CopyToHost(m.host_logits.data(), m.act_plan[m.logits].data, N * Vl * sizeof(float));
  const VocabSlice slice{v0, Vl, V};
  float* stage = m.actf(m.ce_stage);
  // The cross-entropy's reductions go through backend memory, where a communicator
  // expects its buffers.
  const HostAllReduceFn reduce = [&](float* data, int64_t n, comm::ReduceOp op) {
    backend_->CopyFromHost(stage, data, n * sizeof(float));
    absl::Status s =
        tp_->AllReduce(stage, stage, static_cast<size_t>(n), comm::DataType::kF32, op).Wait();
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrFormat(
                                        "tensor-parallel rank %d of %d, vocabulary-parallel "
                                        "cross-entropy all-reduce (%s): %s",
                                        tp_rank(), tp_size(), comm::ReduceOpName(op), s.message()));
    }
    backend_->CopyToHost(data, stage, n * sizeof(float));
    return absl::OkStatus();
  };
  if (absl::Status s = VocabParallelCrossEntropyForward(
          m.host_logits.data(), m.host_targets.data(), N, slice, reduce, m.host_losses.data(),
          m.host_lse.data(), m.host_scratch.data());
      !s.ok()) {
    return s;
  }
  // Every rank holds the same per-row losses (built from all-reduced values).
  double sum = std::accumulate(m.host_losses.begin(), m.host_losses.begin() + N, 0.0);
  return counted > 0 ? static_cast<float>(sum / counted) : 0.0f;
}

absl::Status TensorParallelGPT::Backward(float loss_scale) {
  Impl& m = *impl_;
  CHECK(m.have_targets) << "TensorParallelGPT::Backward needs a Forward with targets first";
  const int B = m.B, T = m.T;
  const int C = config_.n_embd, L = config_.n_layer;
  const int tp = tp_size();
  const int Cl = C / tp, Fl = 4 * C / tp, NHl = config_.n_head / tp;
  const int64_t Vl = local_vocab();
  const int64_t N = static_cast<int64_t>(B) * T;
  const Tensor* P = params_.data();
  const Tensor* G = grads_.data();

  const float dloss = m.counted > 0 ? loss_scale / static_cast<float>(m.counted) : 0.0f;
  VocabParallelCrossEntropyBackward(m.host_logits.data(), m.host_logits.data(), m.host_lse.data(),
                                    m.host_targets.data(), dloss, N,
                                    VocabSlice{vocab_begin(), Vl, config_.vocab_size});
  backend_->CopyFromHost(m.act_plan[m.logits].data, m.host_logits.data(), N * Vl * sizeof(float));
  // lnf feeds every rank's vocabulary slice: its gradient is the sum of the slices' ("f").
  backend_->MatmulBackward(m.act(m.dbtc), G[0].view(), View(), m.act(m.logits), m.act(m.lnf),
                           P[0].view(), N, C, static_cast<int>(Vl));
  if (absl::Status s =
          AllReduceSum(m.act_plan[m.dbtc].data, N * C, "the final LayerNorm's gradient");
      !s.ok()) {
    return s;
  }

  View dres = m.act(m.dresidual);
  backend_->Fill(View(dres.data, dres.dtype, N * C), 0.0f);
  const size_t lnf_index = 2 + static_cast<size_t>(L) * kNumBlockParams;
  View last_residual = L > 0 ? m.act(m.blocks[L - 1].res3) : m.act(m.encoded);
  backend_->LayerNormBackward(dres, G[lnf_index].view(), G[lnf_index + 1].view(), m.act(m.dbtc),
                              last_residual, P[lnf_index].view(), m.actf(m.lnf_mean),
                              m.actf(m.lnf_rstd), N, C);

  for (int l = L - 1; l >= 0; --l) {
    const size_t base = 2 + static_cast<size_t>(l) * kNumBlockParams;
    const Tensor* w = P + base;
    const Tensor* g = G + base;
    const BlockActs& a = m.blocks[l];
    View block_in = l > 0 ? m.act(m.blocks[l - 1].res3) : m.act(m.encoded);
    // dres is replicated, so every rank computes the same replicated bias gradient here
    // (though only rank 0 added the bias in forward: the bias still fed every output).
    backend_->MatmulBackward(m.act(m.dfch_gelu), g[kFcProjW].view(), g[kFcProjB].view(), dres,
                             m.act(a.fch_gelu), w[kFcProjW].view(), N, Fl, C);
    backend_->GeluBackward(m.act(m.dfch), m.act(a.fch), m.act(m.dfch_gelu), N * Fl);
    backend_->MatmulBackward(m.act(m.dbtc), g[kFcW].view(), g[kFcB].view(), m.act(m.dfch),
                             m.act(a.ln2), w[kFcW].view(), N, C, Fl);
    if (absl::Status s = AllReduceSum(m.act_plan[m.dbtc].data, N * C, "an MLP input gradient");
        !s.ok()) {
      return s;
    }
    backend_->LayerNormBackward(dres, g[kLn2W].view(), g[kLn2B].view(), m.act(m.dbtc),
                                m.act(a.res2), w[kLn2W].view(), m.actf(a.ln2_mean),
                                m.actf(a.ln2_rstd), N, C);
    backend_->MatmulBackward(m.act(m.dbtc), g[kProjW].view(), g[kProjB].view(), dres,
                             m.act(a.atty), w[kProjW].view(), N, Cl, C);
    backend_->AttentionBackward(m.act(m.dqkv), m.act(m.dbtc), m.act(a.qkv), m.act(a.atty),
                                m.actf(a.att_lse), B, T, Cl, NHl);
    backend_->MatmulBackward(m.act(m.dbtc), g[kQkvW].view(), g[kQkvB].view(), m.act(m.dqkv),
                             m.act(a.ln1), w[kQkvW].view(), N, C, 3 * Cl);
    if (absl::Status s =
            AllReduceSum(m.act_plan[m.dbtc].data, N * C, "an attention input gradient");
        !s.ok()) {
      return s;
    }
    backend_->LayerNormBackward(dres, g[kLn1W].view(), g[kLn1B].view(), m.act(m.dbtc), block_in,
                                w[kLn1W].view(), m.actf(a.ln1_mean), m.actf(a.ln1_rstd), N, C);
  }
  // The embedding's all-reduce passes dres through unchanged ("g" backward): each rank
  // scatters it into its own rows (the zero row collects the others' and is dropped),
  // and into the whole, replicated, position table.
  const Tensor& dwte_ext = m.act_plan[m.dwte_ext];
  backend_->Fill(dwte_ext.view(), 0.0f);
  backend_->EmbeddingBackward(dwte_ext.view(), G[1].view(), dres,
                              m.act_plan[m.tokens].as<int32_t>(), B, T, C);
  backend_->Accumulate(G[0].view(), View(dwte_ext.data, DType::kF32, Vl * C), Vl * C);
  m.have_targets = false;
  return absl::OkStatus();
}

}  // namespace colossus::parallel
