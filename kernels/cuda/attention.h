// Causal multi-head self-attention on CUDA: the FlashAttention-2 kernel pair, plus a
// plain fp32-accumulating reference path.
//
// Layouts are exactly kernels::Backend's (colossus/kernels/backend.h):
//   qkv  [B, T, 3, NH, hs]  per token: all query heads, then all keys, then all values
//   out  [B, T, C]          heads concatenated (C = NH * hs)
//   lse  [B, NH, T] f32     log-sum-exp of each query's scaled scores (scale 1/sqrt(hs))
// Attention is causal: query t attends to keys 0..t.
//
// Paths (chosen per call, invisible to the caller):
//   * bf16 views, hs = 64 or 128, every pointer 16-byte aligned: the tiled tensor-core
//     kernels (attention_forward.cu, attention_backward.cu). O(T) extra memory; no
//     T x T matrix is ever written to device memory.
//   * everything else (f32 views, other head sizes up to 256, unaligned views): the
//     reference kernels (attention_reference.cu), one warp per row, fp32 arithmetic.
//     They are the f32 path the 1e-5 tests check, and the fallback.
//
// All functions are stream-ordered: they enqueue work on `s` and return; nothing is
// synchronous, nothing allocates, and every launch is capturable in a CUDA graph.
// Misuse (mismatched dtypes, views too short, head size > 256) aborts with a message
// naming the op and the argument, as does a failed launch (call text, file, line).
// Thread safety: calls may come from any thread; they share no host state.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "colossus/kernels/dtype.h"

namespace colossus::kernels::cuda {

// out (=) [B,T,C] and lse (=) [B,NH,T] from qkv [B,T,3,NH,hs]. out and qkv: both bf16 or
// both f32. lse is device memory.
void AttentionForward(View out, float* lse, View qkv, int B, int T, int C, int NH, cudaStream_t s);

// Bytes of device scratch AttentionBackward needs: an f32 dQ accumulator [B,T,C] and
// D = rowsum(dO * O) [B,NH,T]. Depends only on the shape, so callers plan it once.
size_t AttentionBackwardScratchBytes(int B, int T, int C, int NH);

// dqkv (=) [B,T,3,NH,hs] from dout [B,T,C], the forward's qkv, out and lse. All four views
// share one dtype (bf16 or f32). `scratch` is device memory of at least
// AttentionBackwardScratchBytes(B,T,C,NH) bytes, aligned to 16 bytes, owned by the caller;
// its contents on entry do not matter and on return are garbage. dqkv must not alias
// the inputs.
void AttentionBackward(View dqkv, View dout, View qkv, View out, const float* lse, void* scratch,
                       int B, int T, int C, int NH, cudaStream_t s);

}  // namespace colossus::kernels::cuda
