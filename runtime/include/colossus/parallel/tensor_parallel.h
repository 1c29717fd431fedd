// Megatron-style tensor parallelism: the GPT of model.h split across a tensor-parallel
// (TP) group of tp ranks, each holding 1/tp of the big matrices.
//
// The split (tp = group size, r = this rank's index in it, C = n_embd, Vp = padded vocab):
//   attention   qkv is COLUMN-parallel: rank r holds heads [r*NH/tp, (r+1)*NH/tp) of
//               q, k and v (rows of the [3C, C] weight; its local qkv activation has
//               the kernels' [B, T, 3, NH/tp, hs] layout), runs attention on its heads,
//               and the output projection is ROW-parallel (columns [r*C/tp, ...) of
//               the [C, C] weight): each rank's product is a partial sum, completed by
//               ONE all-reduce. The projection's bias is replicated and added by rank 0
//               only, before the all-reduce.
//   MLP         fc column-parallel (rows [r*4C/tp, ...) of [4C, C] and its bias),
//               proj row-parallel (columns of [C, 4C]) + one all-reduce, bias as above.
//   So per block: forward, one all-reduce after each row-parallel layer ("g": all-reduce
//   forward, identity backward); backward, one all-reduce of the input gradient of each
//   column-parallel layer ("f": identity forward, all-reduce backward).
//   replicated  LayerNorms, position embedding, the two row-parallel biases: every rank
//               holds the whole tensor and computes the same gradient from the same
//               (replicated, all-reduced) activations, bit for bit. They need no TP
//               reduction; GatherTo checks that the ranks' copies agree.
//   vocabulary  the token embedding is vocabulary-parallel: rank r owns rows
//               [r*Vp/tp, (r+1)*Vp/tp) of wte; a token outside that range embeds to
//               zeros, and an all-reduce makes the sum (position embedding added by rank
//               0 only). The tied output projection gives each rank the logits of its
//               rows only, and the softmax + cross-entropy is vocabulary-parallel
//               (tp_cross_entropy.h): the full [B, T, Vp] logits are never gathered.
//
// Parameters keep GPT's names and order (model.h) with local shapes; each is either
// SHARDED (its elements differ per rank) or REPLICATED. They live in one flat f32
// buffer, likewise the gradients, so a data-parallel group can all-reduce them as one.
// Weights come from a full GPT (LoadFrom: every layout starts from the same weights)
// and go back to one (GatherTo: for comparison or saving).
//
// Requirements: n_head % tp == 0 and PaddedVocab() % tp == 0 (Create names the field),
// an f32 compute dtype (the CPU backend; bf16 compute copies are GPU work not done yet),
// and every rank of the TP group passing the same tokens and targets to Forward.
//
// Thread safety: none; one thread drives a model. Forward, Backward and GatherTo are
// collective over the TP group (every rank calls them in the same order). The
// communicator and the backend must outlive the model.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "colossus/checkpoint/state.h"
#include "colossus/comm/communicator.h"
#include "colossus/config.h"
#include "colossus/kernels/backend.h"
#include "colossus/memory_plan.h"
#include "colossus/model.h"
#include "colossus/optimizer.h"
#include "colossus/tensor.h"

namespace colossus::parallel {

// OK when `config` splits across `tp` ranks; InvalidArgument naming the field otherwise
// ("model.n_head = 6 is not divisible by the tensor-parallel size 4").
absl::Status ValidateTensorParallel(const GPTConfig& config, int tp);

class TensorParallelGPT {
 public:
  // Plans parameters, gradients and activations of this rank's shard for batches of up
  // to max_batch x max_seq. `tp` is the tensor-parallel group (size 1 is allowed: the
  // plain model through this code path). Weights are zero until LoadFrom. The flat
  // buffers are zero-padded to a multiple of `flat_multiple` elements (so that ZeRO-1
  // over a data-parallel group of that size splits them evenly; GPT::Create's rule).
  static absl::StatusOr<std::unique_ptr<TensorParallelGPT>> Create(const GPTConfig& config,
                                                                   kernels::Backend* backend,
                                                                   comm::Communicator* tp,
                                                                   int max_batch, int max_seq,
                                                                   int64_t flat_multiple = 1);
  ~TensorParallelGPT();
  TensorParallelGPT(const TensorParallelGPT&) = delete;
  TensorParallelGPT& operator=(const TensorParallelGPT&) = delete;

  const GPTConfig& config() const { return config_; }
  kernels::Backend* backend() const { return backend_; }
  comm::Communicator* tp_group() const { return tp_; }
  int tp_rank() const { return tp_->rank(); }
  int tp_size() const { return tp_->size(); }
  // This rank's vocabulary rows: [vocab_begin(), vocab_begin() + local_vocab()).
  int64_t vocab_begin() const;
  int64_t local_vocab() const;

  // This rank's parameters and gradients (f32), in GPT's order and names, local shapes.
  const std::vector<Tensor>& params() const { return params_; }
  const std::vector<Tensor>& grads() const { return grads_; }
  // True when params()[i] is split across the TP group; false when replicated.
  bool sharded(size_t i) const { return sharded_[i]; }
  // The flat buffers, padding included (numel a multiple of Create's flat_multiple);
  // params()[i] and grads()[i] sit at element flat_offset(i) of theirs.
  kernels::View flat_params() const;
  kernels::View flat_grads() const;
  int64_t flat_offset(size_t i) const;
  int64_t num_local_parameters() const { return num_local_params_; }

  // Where params()[i]'s elements sit in the WHOLE tensor of the same name (row-major,
  // element 0 = the whole tensor's first): pieces (checkpoint/state.h, vector kParams)
  // whose data, back to back, is the local tensor. A column block is one strided piece,
  // each row range one contiguous piece, a replicated tensor one piece of everything.
  // `full` is a GPT of the same config (for its shapes; no data is read).
  std::vector<checkpoint::PieceRef> PlaceInFull(const GPT& full, size_t i) const;

  // Copies this rank's shard out of `full` (same config; any backend memory the host
  // can read through its backend). Local: no communication.
  absl::Status LoadFrom(const GPT& full);
  // Collective over the TP group: assembles the whole model's parameters (and, with
  // `grads`, the gradients) into `full` (same config) on every rank. FailedPrecondition
  // naming the tensor and the ranks when a replicated tensor differs between ranks (they
  // must stay bit-identical); comm errors as they come.
  absl::Status GatherTo(GPT* full, bool grads);

  // As GPT::Forward (same validation and errors): the mean loss over counted positions,
  // identical on every TP rank, or 0 without targets (then only local_logits() is valid).
  absl::StatusOr<float> Forward(const int32_t* tokens, const int32_t* targets, int B, int T);
  // As GPT::Backward: accumulates loss_scale * d(mean loss) into grads(). Collective.
  absl::Status Backward(float loss_scale = 1.0f);
  void ZeroGrad();

  // Logits of this rank's vocabulary rows from the last Forward: [B, T, local_vocab()]
  // (columns of global index >= vocab_size are padding). Valid until Backward.
  Tensor local_logits() const;

 private:
  TensorParallelGPT(const GPTConfig& config, kernels::Backend* backend, comm::Communicator* tp,
                    int max_batch, int max_seq, int64_t flat_multiple);
  absl::Status Plan();
  // In-place sum over the TP group of n f32 elements of backend memory.
  absl::Status AllReduceSum(void* data, int64_t n, const char* what);

  struct Impl;
  GPTConfig config_;
  kernels::Backend* backend_;
  comm::Communicator* tp_;
  int max_batch_;
  int max_seq_;
  int64_t flat_multiple_;
  int64_t num_local_params_ = 0;
  int64_t flat_numel_ = 0;
  std::vector<Tensor> params_;
  std::vector<Tensor> grads_;
  std::vector<bool> sharded_;
  std::unique_ptr<Impl> impl_;
};

// AdamW for a TensorParallelGPT, optionally data-parallel over `dp`. One Step:
//   1. with a DP group of size > 1: all-reduce (sum, in place) of the flat gradients over
//      it (the caller scaled the loss by 1/(micro-batches x dp) so the sum is the mean);
//   2. the global gradient norm, each element of the WHOLE model counted once: the sum of
//      squares over this rank's sharded tensors is all-reduced over the TP group, the
//      replicated tensors' (identical on every TP rank) added once;
//   3. clipping and the AdamW update (StepStatsFor, decay per DecaysWeight), the same
//      arithmetic as colossus::AdamW on the full model, tensor by tensor.
// With `zero` (ZeRO-1 over the DP group, dp > 1) the moments of each TP shard are
// sharded over its DP group: the flat buffer of n elements (the model was created with
// flat_multiple = dp) splits into dp ranges of S = n / dp, DP rank d owning
// [d*S, (d+1)*S) and the moments of that range only (8*S bytes instead of 8*n). Step:
//   1. reduce-scatter (sum) of the flat gradients over the DP group into the own range
//      (the rest of the gradient buffer is then partial: not to be read until ZeroGrad),
//   2. the norm from the own range: sums of squares of its sharded and of its
//      replicated elements, all-reduced over DP; then the sharded sum over TP,
//   3. the AdamW update of the own range only (the same element-wise arithmetic),
//   4. all-gather (in place) of the updated ranges over the DP group.
// The sums of squares are added in another order than without ZeRO, so the two agree
// to rounding (about 1e-7 relative), not bit for bit. Replicated tensors stay
// bit-identical across the TP group: every TP rank's DP group does the same arithmetic
// on the same values.
// Thread safety: none. `model` and `dp` must outlive it; dp may be nullptr.
class TpAdamW {
 public:
  // InvalidArgument (naming both numbers) with `zero` when the model's flat buffer does
  // not split into dp equal ranges.
  static absl::StatusOr<std::unique_ptr<TpAdamW>> Create(const OptimizerConfig& config,
                                                         TensorParallelGPT* model,
                                                         comm::Communicator* dp,
                                                         bool zero = false);
  ~TpAdamW();
  // Errors name the collective that failed (DP gradient all-reduce or reduce-scatter, TP
  // or DP norm all-reduce, DP parameter all-gather).
  absl::StatusOr<StepStats> Step(int64_t step);
  // Bytes of moments this rank holds: 8 x flat numel, or 8 x S with ZeRO.
  size_t state_bytes() const;
  const OptimizerConfig& config() const { return config_; }
  bool zero() const { return zero_; }
  // The local flat elements whose moments this rank holds, [moments_begin(),
  // moments_end()): the whole buffer, or the own ZeRO range. Element 0 of the moment
  // views is flat element moments_begin().
  int64_t moments_begin() const { return moments_begin_; }
  int64_t moments_end() const { return moments_end_; }
  kernels::View first_moment() const;
  kernels::View second_moment() const;

 private:
  TpAdamW(const OptimizerConfig& config, TensorParallelGPT* model, comm::Communicator* dp,
          bool zero)
      : config_(config), model_(model), dp_(dp), zero_(zero) {}
  absl::StatusOr<StepStats> ZeroStep(int64_t step);
  OptimizerConfig config_;
  TensorParallelGPT* model_;
  comm::Communicator* dp_;
  bool zero_;
  int64_t moments_begin_ = 0;
  int64_t moments_end_ = 0;
  std::unique_ptr<MemoryPlan> state_;  // [0] m, [1] v, [2] two norm cells
};

// The tp x dp layout (Megatron order): world rank = dp_index * tp + tp_index, so a TP
// group is tp consecutive ranks and a DP group takes every tp-th rank.
struct TpDpGroups {
  std::unique_ptr<comm::Communicator> tp;  // named "tp"
  std::unique_ptr<comm::Communicator> dp;  // named "dp"
  int tp_index = 0;
  int dp_index = 0;
};
// Collective over `world`: two Splits. InvalidArgument naming both sizes when the world
// size is not a multiple of tp (checked before any communication, on every rank alike).
absl::StatusOr<TpDpGroups> SplitTpDp(comm::Communicator& world, int tp);

}  // namespace colossus::parallel
