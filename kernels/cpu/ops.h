// The CPU reference ops: one template per op, explicitly instantiated for float (what
// CpuBackend runs) and double (what the tests' finite-difference gradient checks run).
//
// Shapes, layouts and gradient semantics are exactly those of kernels::Backend
// (backend.h); the differences are only in the types:
//   * every floating-point argument is an F*, statistics (LayerNorm mean/rstd,
//     attention and cross-entropy log-sum-exp, per-row losses) included, so the
//     float64 instantiation carries no float32 rounding anywhere;
//   * "absent" optional arguments (a bias, a dbias) are nullptr.
// The template parameter is F, not T, because T is the sequence length throughout.
//
// Threading: every op parallelises with OpenMP over omp_get_max_threads() threads (the
// caller sets the count; CpuBackend does so per op) and must not be called from inside
// an OpenMP parallel region. BLAS calls made inside the ops' own parallel regions run
// single-threaded (the OpenMP build of OpenBLAS).
//
// Determinism: for a given binary and thread count, results are bitwise reproducible.
// Beyond that, every reduction the ops do themselves (parameter gradients across rows,
// SumSquares, attention's per-head GEMMs) is split by columns or by fixed-size blocks,
// never by thread, so only the Linear layer's GEMMs, which OpenBLAS partitions by
// thread count, can change bits when the thread count changes.
//
// Thread safety: the ops share no state (their scratch belongs to each OS thread, see
// parallel.h), so calls from different host threads may overlap.
//
// Fill, Cast and SumSquares, which serve every float dtype, are in convert.h.
#pragma once

#include <cstdint>

#include "colossus/kernels/backend.h"

namespace colossus::kernels::cpu {

// ---- Embedding (embedding.cc) ------------------------------------------------------
// out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]. out [B,T,C] (=). Tokens must lie in
// [0, Vp); the caller checks that (CpuBackend does, it knows Vp).
template <typename F>
void EmbeddingForward(F* out, const int32_t* tokens, const F* wte, const F* wpe, int B,
                      int T, int C);
// dwte [Vp,C] (+=) and dwpe [T..,C] (+=) from dout [B,T,C].
template <typename F>
void EmbeddingBackward(F* dwte, F* dwpe, const F* dout, const int32_t* tokens, int B, int T,
                       int C);

// ---- LayerNorm, eps = 1e-5, biased variance (layernorm.cc) ---------------------------
// out [N,C] (=), mean [N] (=), rstd [N] (=) from inp [N,C], weight [C], bias [C].
template <typename F>
void LayerNormForward(F* out, F* mean, F* rstd, const F* inp, const F* weight,
                      const F* bias, int64_t N, int C);
// dinp [N,C] (+=), dweight [C] (+=), dbias [C] (+=).
template <typename F>
void LayerNormBackward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp,
                       const F* weight, const F* mean, const F* rstd, int64_t N, int C);

// ---- Linear: out = inp @ weight^T + bias (matmul.cc) ---------------------------------
// out [N,OC] (=); inp [N,C]; weight [OC,C]; bias [OC] or nullptr.
// N, C and OC must each fit BLAS's int.
template <typename F>
void MatmulForward(F* out, const F* inp, const F* weight, const F* bias, int64_t N, int C,
                   int OC);
// dinp [N,C] (=); dweight [OC,C] (+=); dbias [OC] (+=) or nullptr.
template <typename F>
void MatmulBackward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp,
                    const F* weight, int64_t N, int C, int OC);

// ---- Causal self-attention, scale 1/sqrt(hs) (attention.cc) ---------------------------
// out [B,T,C] (=), lse [B,NH,T] (=) from qkv [B,T,3,NH,hs]. C % NH == 0.
template <typename F>
void AttentionForward(F* out, F* lse, const F* qkv, int B, int T, int C, int NH);
// dqkv [B,T,3,NH,hs] (=) from dout [B,T,C] and the forward's qkv, out and lse.
template <typename F>
void AttentionBackward(F* dqkv, const F* dout, const F* qkv, const F* out, const F* lse,
                       int B, int T, int C, int NH);

// ---- Elementwise (elementwise.cc) -----------------------------------------------------
// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
template <typename F>
void GeluForward(F* out, const F* inp, int64_t n);  // out (=); may alias inp
template <typename F>
void GeluBackward(F* dinp, const F* inp, const F* dout, int64_t n);  // dinp (=)
template <typename F>
void Add(F* out, const F* a, const F* b, int64_t n);  // out = a + b; out may alias a or b
template <typename F>
void Accumulate(F* dst, const F* src, int64_t n);  // dst += src

// ---- Fused softmax + cross-entropy (cross_entropy.cc) ----------------------------------
// losses [N] (=), lse [N] (=) from logits [N,Vp], of which the first V columns count,
// and targets [N] (negative = ignored row: loss 0, lse still written). Non-negative
// targets must be < V (the caller checks).
template <typename F>
void CrossEntropyForward(F* losses, F* lse, const F* logits, const int32_t* targets,
                         int64_t N, int V, int Vp);
// dlogits [N,Vp] (=) = dloss * (softmax - onehot) on columns < V, 0 on padding columns
// and on ignored rows. dlogits may alias logits.
template <typename F>
void CrossEntropyBackward(F* dlogits, const F* logits, const F* lse, const int32_t* targets,
                          F dloss, int64_t N, int V, int Vp);

// ---- Optimizer (optimizer.cc) ------------------------------------------------------------
// One AdamW step (torch.optim.AdamW's formula) on param, m, v (F, updated in place)
// from grad, times p.grad_scale. Instantiated for F = float with G = float, double,
// Bf16 or Half (convert.h), and for F = G = double.
template <typename F, typename G>
void AdamW(F* param, const G* grad, F* m, F* v, int64_t n, const AdamWParams& p);

}  // namespace colossus::kernels::cpu
