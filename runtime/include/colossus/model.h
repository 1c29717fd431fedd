// The GPT model: parameters, gradients and activations planned once, an explicit
// forward and backward for every layer, on any kernels::Backend.
//
// Parameter names and layouts (also the safetensors checkpoint's; linear weights in
// nn.Linear's [out, in] layout):
//   wte [Vp, C]                      token embedding, tied to the output projection
//   wpe [block_size, C]              position embedding
//   h.{l}.ln_1.weight/.bias [C]
//   h.{l}.attn.qkv.weight [3C, C]    .bias [3C]
//   h.{l}.attn.proj.weight [C, C]    .bias [C]
//   h.{l}.ln_2.weight/.bias [C]
//   h.{l}.mlp.fc.weight [4C, C]      .bias [4C]
//   h.{l}.mlp.proj.weight [C, 4C]    .bias [C]
//   ln_f.weight/.bias [C]
// All parameters live in one contiguous buffer in this order (likewise gradients),
// so optimizers and communicators can treat them as one flat vector (zero-filled
// alignment gaps between tensors, and zero padding at the end when Create is asked for
// a multiple). Master weights
// and gradients are f32 on every backend; activations and the weights the ops read
// are in the backend's compute dtype (kernels::Backend::compute_dtype()).
//
// Thread safety: none; a model is driven by one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "colossus/config.h"
#include "colossus/kernels/backend.h"
#include "colossus/tensor.h"

namespace colossus {

// Called by GPT::Backward when the gradients of params()[first, end) are final for this
// backward pass: every op that accumulates into them has been issued on the backend
// (on the CPU: has completed; on asynchronous backends the callee must order itself
// after the backend's stream, e.g. Synchronize(), before reading them from elsewhere).
// Ranges come in a fixed order, back to front through the layout: ln_f, blocks L-1 ..
// 0, then the embeddings (wte collects from the output projection first and the
// embedding last, so it is final only at the very end). Each parameter is reported
// exactly once per Backward. Runs on the thread that called Backward.
using GradsReadyFn = std::function<void(size_t first, size_t end)>;

class GPT {
 public:
  // Plans and allocates parameters, gradients and activations for batches of up to
  // max_batch sequences of up to max_seq tokens (max_seq <= config.block_size).
  // `backend` must outlive the model. Weights are zero until InitWeights or Load.
  // flat_multiple: the flat parameter and gradient buffers (flat_params(),
  // flat_grads()) are zero-padded to a multiple of this many elements, so that a
  // data-parallel group of that size can reduce-scatter them in equal shards (ZeRO).
  static absl::StatusOr<std::unique_ptr<GPT>> Create(const GPTConfig& config,
                                                     kernels::Backend* backend,
                                                     int max_batch, int max_seq,
                                                     int64_t flat_multiple = 1);
  ~GPT();
  GPT(const GPT&) = delete;
  GPT& operator=(const GPT&) = delete;

  const GPTConfig& config() const { return config_; }
  kernels::Backend* backend() const { return backend_; }
  int max_batch() const { return max_batch_; }
  int max_seq() const { return max_seq_; }

  // Parameters (the f32 master weights) and their gradients (f32), in layout order;
  // params()[i] and grads()[i] have the same name and shape.
  const std::vector<Tensor>& params() const { return params_; }
  const std::vector<Tensor>& grads() const { return grads_; }
  // The weights as the ops read them, in the backend's compute dtype (bf16 copies of
  // the master weights on CUDA; the master weights themselves on f32 backends).
  const std::vector<Tensor>& compute_params() const { return compute_params_; }
  // Refreshes compute_params() from params(); call after writing the master weights
  // directly (a checkpoint load). InitWeights and the optimizer keep them in step.
  void SyncComputeWeights();
  // The whole parameter (gradient) buffer as one flat f32 view: every tensor at its
  // offset, the gaps and the end padding zero (the optimizer never writes them).
  kernels::View flat_params() const;
  kernels::View flat_grads() const;
  // The compute copies as one flat view in the compute dtype, element for element
  // aligned with flat_params() (compute_params()[i] starts at the element params()[i]
  // does); flat_params() itself on f32 backends.
  kernels::View flat_compute_params() const;
  int64_t num_parameters() const { return num_params_; }
  // nullptr if no parameter has that name.
  const Tensor* FindParam(const std::string& name) const;

  // GPT-2 initialisation from `seed`: N(0, 0.02) for weights and embeddings, the two
  // residual projections per block scaled by 1/sqrt(2 * n_layer), zero biases, unit
  // LayerNorm gains. Deterministic for a seed and independent of the backend.
  void InitWeights(uint64_t seed);

  // Runs the model on tokens [B, T] (host memory, int32, each < vocab_size). With
  // targets (host [B, T], negative = ignore), also computes the loss and returns the
  // mean loss over counted positions; without, returns 0 and only logits are valid.
  // Errors (not crashes) for B > max_batch, T > max_seq, or a token out of range,
  // naming the position.
  absl::StatusOr<float> Forward(const int32_t* tokens, const int32_t* targets, int B, int T);

  // Forward in three parts, for a step launched as an op graph (backend.h, "Graphs";
  // graph_step.h), where only the middle one is captured:
  //   Stage: checks the batch as Forward does and copies tokens and targets into the
  //     model's device buffers (host copies: never inside a capture);
  //   EnqueueForward: every op of the forward pass (and the loss, with targets) over the
  //     staged batch, enqueued and not waited for; capturable;
  //   ReadLoss: waits, and returns the staged batch's mean loss as Forward does.
  // Forward(t, y, B, T) is exactly Stage(t, y, B, T), EnqueueForward(), ReadLoss().
  absl::Status Stage(const int32_t* tokens, const int32_t* targets, int B, int T);
  void EnqueueForward();
  float ReadLoss();
  // Positions of the staged batch whose target counts (not negative): Backward's loss
  // gradient per row is loss_scale / counted_targets(), an argument frozen in a graph.
  int64_t counted_targets() const;

  // Back-propagates the last Forward with targets, ACCUMULATING into the gradients
  // (call ZeroGrad between optimizer steps). The loss differentiated is
  // loss_scale * mean(loss), so gradient accumulation over k micro-batches passes
  // loss_scale = 1/k. grads_ready, if given, hears which gradients are final as the
  // pass proceeds (GradsReadyFn), so that their all-reduce can overlap the rest.
  void Backward(float loss_scale = 1.0f, const GradsReadyFn& grads_ready = nullptr);
  void ZeroGrad();

  // Logits of the last Forward, [B, T, Vp] in backend memory (columns >= V padding).
  // Valid until the next Backward, which overwrites them with their gradient.
  Tensor logits() const;
  // Copies the logits of position (b, t) of the last Forward to host (first V only).
  std::vector<float> LogitsAt(int b, int t) const;

  // Bytes of backend memory held, by group ("parameters", "gradients", "activations").
  std::vector<std::pair<std::string, size_t>> MemoryUsage() const;

 private:
  GPT(const GPTConfig& config, kernels::Backend* backend, int max_batch, int max_seq);
  absl::Status Plan(int64_t flat_multiple);

  struct Impl;
  GPTConfig config_;
  kernels::Backend* backend_;
  int max_batch_;
  int max_seq_;
  int64_t num_params_ = 0;
  int64_t flat_numel_ = 0;  // elements of flat_params() / flat_grads()
  std::vector<Tensor> params_;
  std::vector<Tensor> compute_params_;
  std::vector<Tensor> grads_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace colossus
