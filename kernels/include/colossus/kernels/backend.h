// The kernel backend: every transformer op, forward and backward, behind one
// signature that the CPU reference (kernels/cpu) and the CUDA kernels (kernels/cuda)
// both implement, so the model, the trainer and the tests run on either.
//
// Conventions shared by all ops:
//   * Shapes are given explicitly. B batch, T sequence length, C channels, NH heads
//     (head size hs = C / NH), N rows (usually B*T), V real vocabulary, Vp padded
//     vocabulary (V <= Vp; columns V..Vp-1 of the logits are padding).
//   * Layouts are row-major and contiguous. Linear weights are [OC, C] (PyTorch's
//     nn.Linear layout): out = inp @ weight^T + bias.
//   * The fused QKV activation is [B, T, 3, NH, hs]: all query heads, then all keys,
//     then all values, for each token (the layout of GPT-2's c_attn output).
//   * Floating-point dtypes. Activations, weights as the ops read them, and the
//     gradients of activations take one dtype per op call, the "activation dtype":
//     compute_dtype() (f32 on the CPU, also f64 in its tests; bf16 on CUDA) or f32,
//     which CUDA also accepts (the 1e-5 test path). GRADIENTS OF PARAMETERS are
//     always f32 whatever the activation dtype (dweight, dbias, dwte, dwpe): they
//     accumulate across micro-batches, which bf16 cannot carry. Statistics saved
//     for backward (LayerNorm mean/rstd, attention log-sum-exp, per-row losses) are
//     always f32. The optimizer updates f32 master weights and writes the
//     activation-dtype copy the ops read (AdamW's param_copy). AdamW, SumSquares,
//     Cast and Fill take any float dtype per view, as their comments say; on CUDA
//     Add and Accumulate also take f32 or bf16 per view (e.g. a bf16 gradient added
//     into an f32 one).
//   * Gradient semantics: gradients of PARAMETERS always accumulate (+=), so a
//     training step can accumulate over micro-batches and tied weights can collect
//     from two uses. Gradients of ACTIVATIONS overwrite (=), except LayerNorm's dinp,
//     which accumulates because it is the residual stream's gradient.
//   * Ops are ordered on the backend's stream: on the CPU they complete before
//     returning; on CUDA they are enqueued and complete in order. Pointers to host
//     memory are never accepted unless the argument says so.
//   * Thread safety: a Backend is used by one thread at a time.
//   * Misuse (a dtype the backend does not implement, mismatched sizes) is a bug in
//     the caller and aborts with a message naming the op and the argument.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "colossus/kernels/dtype.h"

namespace colossus::kernels {

// Granularity of AdamWParams::decay_mask, in elements: 16 f32 elements are 64 bytes,
// the alignment of every tensor in a MemoryPlan, so no granule holds two tensors.
inline constexpr int64_t kAdamWDecayGranule = 16;

// Hyper-parameters of one AdamW update (decoupled weight decay, Loshchilov & Hutter).
struct AdamWParams {
  float lr = 0.0f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // applied as param -= lr * wd * param
  float grad_scale = 1.0f;    // multiplies every gradient first (clipping, averaging)
  int64_t step = 1;           // 1-based, for bias correction
  // Which elements decay, so that one call covers many tensors (all of a model's
  // parameters, some with weight decay and some without). Absent (null): every element
  // decays by weight_decay. Present: element i of the call decays by weight_decay if
  // decay_mask[(mask_origin + i) / kAdamWDecayGranule] != 0 and not at all otherwise;
  // mask_origin is the call's first element's index in the buffer the mask describes.
  // One byte per granule, in backend memory.
  const uint8_t* decay_mask = nullptr;
  int64_t mask_origin = 0;
  // Per-step values read from backend memory instead of from the fields above, so that a
  // step captured once (a CUDA graph: kernel arguments are frozen at capture) stays right
  // when replayed at later steps:
  //   step_scalars, if set: [lr, bias_correction1, bias_correction2] in f32 (replacing
  //     lr and the corrections from `step`; AdamWBiasCorrection computes them);
  //   grad_sumsq, if set: the squared global gradient norm (one f32); every gradient is
  //     then multiplied by grad_scale * min(1, clip_norm / (sqrt(*grad_sumsq) + 1e-6)),
  //     torch's clip_grad_norm_ rule, computed on the device. REQUIRES clip_norm > 0.
  // Either way the arithmetic is that of the host-side fields with the same values.
  const float* step_scalars = nullptr;
  const float* grad_sumsq = nullptr;
  float clip_norm = 0.0f;
};

// 1 - beta^step, in double as PyTorch computes it (Python floats), rounded once to f32:
// the value AdamW's kernels use for `step`, and what step_scalars must hold.
inline float AdamWBiasCorrection(float beta, int64_t step) {
  return static_cast<float>(1.0 - std::pow(static_cast<double>(beta), static_cast<double>(step)));
}

// A sequence of backend ops recorded once (Backend::BeginCapture, EndCapture) and run
// again as a unit: the ops of one training step, launched at the cost of one.
class OpGraph {
 public:
  virtual ~OpGraph() = default;
  // Runs the recorded ops in order with the arguments they were recorded with, ordered on
  // the backend's stream like any op (the CPU's complete before this returns).
  virtual void Replay() = 0;
  // The ops (CPU) or graph nodes (CUDA) recorded, for reports.
  virtual int64_t size() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual DeviceKind kind() const = 0;
  // The activation dtype the backend is fastest in (see "Floating-point dtypes"
  // above): f32 on the CPU, bf16 on CUDA. A model allocates its activations and the
  // compute copies of its weights in this dtype.
  virtual DType compute_dtype() const = 0;
  // Human-readable description, e.g. "cpu (2 threads, OpenBLAS 0.3.21)".
  virtual std::string Describe() const = 0;

  // ---- Memory ------------------------------------------------------------------
  // Allocate returns memory aligned to at least 256 bytes, or an error naming the
  // size when the device is out of memory. Free(nullptr) is a no-op.
  virtual absl::StatusOr<void*> Allocate(size_t bytes) = 0;
  virtual void Free(void* ptr) = 0;
  // Synchronous copies between host memory and backend memory (and within the
  // backend). On the CPU all three are memcpy. On CUDA, Copy (device to device) is
  // enqueued on the backend's stream like an op, which no caller can tell apart from
  // synchronous, since every later op and CopyToHost run after it.
  virtual void CopyToHost(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void CopyFromHost(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void Copy(void* dst, const void* src, size_t bytes) = 0;
  // Sets every element of x to `value` (converted to x.dtype). Used to zero
  // gradients and, in tests, to poison outputs with NaN.
  virtual void Fill(View x, float value) = 0;
  // Blocks until every op enqueued so far has completed.
  virtual void Synchronize() = 0;

  // ---- Graphs: ops recorded once, replayed as one launch --------------------------------
  // Between BeginCapture and EndCapture the ops called are recorded, not run; the
  // OpGraph's Replay runs them. Everything an op was given is frozen at capture:
  // pointers, shapes and scalars. Values that change from one replay to the next must
  // therefore live in backend memory and be written before each replay (a batch's
  // tokens; AdamWParams::step_scalars). Between the two calls no memory call (Allocate,
  // Free, CopyToHost, CopyFromHost) and no Synchronize may be made, and each op must have
  // run once before at the same shapes (the CUDA backend grows its scratch and plans on
  // first use, and nothing may allocate while capturing).
  // CUDA: stream capture into a CUDA graph, replayed with one cudaGraphLaunch. Other
  // backends: Unimplemented (RecordingBackend records any backend's ops, the CPU's
  // included). Errors: FailedPrecondition for a capture already (or not) in progress;
  // the backend's error for a capture it could not complete (the call that broke it).
  virtual absl::Status BeginCapture() {
    return absl::UnimplementedError(Describe() + " cannot capture op graphs");
  }
  virtual absl::StatusOr<std::unique_ptr<OpGraph>> EndCapture() {
    return absl::UnimplementedError(Describe() + " cannot capture op graphs");
  }

  // ---- Embedding: out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:] ----------------------
  // out [B,T,C] (=); tokens [B,T] int32 in backend memory, each in [0, Vp);
  // wte [Vp,C]; wpe [maxT,C] with T <= maxT.
  virtual void EmbeddingForward(View out, const int32_t* tokens, View wte, View wpe,
                                int B, int T, int C) = 0;
  // dwte (+=), dwpe (+=) from dout [B,T,C].
  virtual void EmbeddingBackward(View dwte, View dwpe, View dout, const int32_t* tokens,
                                 int B, int T, int C) = 0;

  // ---- LayerNorm over the last dimension, eps = 1e-5 ----------------------------
  // out [N,C] (=); mean, rstd [N] f32 (=); inp [N,C]; weight, bias [C].
  virtual void LayerNormForward(View out, float* mean, float* rstd, View inp, View weight,
                                View bias, int64_t N, int C) = 0;
  // dinp [N,C] (+=, residual stream); dweight, dbias [C] (+=).
  virtual void LayerNormBackward(View dinp, View dweight, View dbias, View dout, View inp,
                                 View weight, const float* mean, const float* rstd,
                                 int64_t N, int C) = 0;

  // Residual add fused with the LayerNorm that follows it (one pass over memory
  // instead of two): residual [N,C] (=) = a + b, rounded to its dtype, then out, mean,
  // rstd exactly as LayerNormForward(out, mean, rstd, residual, weight, bias, N, C).
  // residual may alias a or b (the in-place residual stream).
  virtual void ResidualLayerNormForward(View residual, View out, float* mean, float* rstd,
                                        View a, View b, View weight, View bias, int64_t N,
                                        int C) = 0;

  // ---- Linear: out = inp @ weight^T + bias ----------------------------------------
  // out [N,OC] (=); inp [N,C]; weight [OC,C]; bias [OC] or absent.
  virtual void MatmulForward(View out, View inp, View weight, View bias, int64_t N, int C,
                             int OC) = 0;
  // The MLP's first Linear with GELU fused in (on CUDA a cuBLASLt epilogue in bf16):
  // pre_gelu [N,OC] (=) = inp @ weight^T + bias, kept for GeluBackward; out [N,OC] (=)
  // = gelu(pre_gelu): MatmulForward followed by GeluForward, up to rounding (an
  // epilogue applies GELU to the f32 sum before pre_gelu is rounded to bf16). out
  // and pre_gelu must not overlap.
  virtual void MatmulGeluForward(View out, View pre_gelu, View inp, View weight, View bias,
                                 int64_t N, int C, int OC) = 0;
  // dinp [N,C] (=); dweight [OC,C] (+=); dbias [OC] (+=) or absent.
  virtual void MatmulBackward(View dinp, View dweight, View dbias, View dout, View inp,
                              View weight, int64_t N, int C, int OC) = 0;

  // ---- Causal multi-head self-attention, scale 1/sqrt(hs) ---------------------------
  // out [B,T,C] (=), heads concatenated; lse [B,NH,T] f32 (=), the log-sum-exp of each
  // query's scaled scores, which is all backward needs to rebuild the probabilities
  // (no T x T matrix is stored); qkv [B,T,3,NH,hs].
  virtual void AttentionForward(View out, float* lse, View qkv, int B, int T, int C,
                                int NH) = 0;
  // dqkv [B,T,3,NH,hs] (=) from dout [B,T,C], the forward's qkv, out and lse.
  virtual void AttentionBackward(View dqkv, View dout, View qkv, View out, const float* lse,
                                 int B, int T, int C, int NH) = 0;

  // ---- GELU, tanh approximation (GPT-2's) ------------------------------------------
  virtual void GeluForward(View out, View inp, int64_t n) = 0;               // out (=)
  virtual void GeluBackward(View dinp, View inp, View dout, int64_t n) = 0;  // dinp (=)

  // ---- Elementwise -------------------------------------------------------------------
  virtual void Add(View out, View a, View b, int64_t n) = 0;   // out = a + b (out may alias)
  virtual void Accumulate(View dst, View src, int64_t n) = 0;  // dst += src

  // ---- Fused softmax + cross-entropy --------------------------------------------------
  // losses [N] f32 (=): -log softmax(logits[i, :V])[targets[i]]; lse [N] f32 (=) saved for
  // backward. logits [N,Vp]; only the first V columns take part. targets [N] int32 in
  // backend memory; a negative target marks a row to ignore (loss 0, gradient 0).
  // The probabilities are never written out.
  virtual void CrossEntropyForward(float* losses, float* lse, View logits,
                                   const int32_t* targets, int64_t N, int V, int Vp) = 0;
  // dlogits [N,Vp] (=) = dloss * (softmax(logits) - onehot(target)) on columns < V and 0
  // on the padding columns. dlogits may alias logits (the logits are consumed).
  virtual void CrossEntropyBackward(View dlogits, View logits, const float* lse,
                                    const int32_t* targets, float dloss, int64_t N, int V,
                                    int Vp) = 0;

  // ---- Optimizer -----------------------------------------------------------------------
  // One AdamW step over n elements: param (f32 master, updated in place), grad (any float
  // dtype, multiplied by p.grad_scale), m and v (f32 moments, updated), and, if present,
  // param_copy receives the updated parameter converted to its dtype (the bf16 compute
  // copy on CUDA). With p.decay_mask one call updates tensors with and without weight
  // decay alike (AdamWParams); the result is exactly that of one call per tensor.
  virtual void AdamW(View param, View grad, float* m, float* v, View param_copy, int64_t n,
                     const AdamWParams& p) = 0;
  // *out += sum(x[i]^2); out is one f32 in backend memory (the CPU sums in double
  // internally). Building block of global-norm gradient clipping.
  virtual void SumSquares(float* out, View x, int64_t n) = 0;
  // out = in converted elementwise between float dtypes (f32, bf16, f16, f64).
  virtual void Cast(View out, View in, int64_t n) = 0;
};

// The CPU reference backend: plain C++, OpenMP across `threads` threads (0 means
// OMP's default), matmuls through OpenBLAS. Never fails.
std::unique_ptr<Backend> MakeCpuBackend(int threads = 0);

}  // namespace colossus::kernels
