// The CUDA kernels' host entry points: one function per op (forward and backward),
// each implemented in the .cu file of its op. CudaBackend (cuda_backend.cc) checks the
// Views and then calls these with raw pointers; no function here re-checks sizes.
//
// Conventions: pointers are device memory; `act` is the activation dtype (f32 or bf16)
// of every activation and weight argument typed const void* / void*; parameter
// gradients are float*; statistics are float*. Every function enqueues its work on
// ctx.stream and returns at once; none allocates, except through ctx.scratch.
// A function given zero work launches nothing.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "colossus/kernels/backend.h"

namespace colossus::kernels::cuda {

// Device scratch that ops borrow for partial results (per-block partial sums). One
// buffer per backend: ops run in stream order, so one op's use ends before the next
// op's kernels start. It only grows, on the first use of a larger shape, and growing
// synchronizes the stream (cudaFree); run one step before capturing a CUDA graph.
class DeviceScratch {
 public:
  DeviceScratch() = default;
  ~DeviceScratch();
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  // A buffer of at least `bytes` bytes, 256-byte aligned, valid until the next call.
  void* Get(size_t bytes, cudaStream_t stream);

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

struct LaunchContext {
  cudaStream_t stream = nullptr;
  int num_sms = 1;  // multiprocessors, for sizing persistent / grid-stride grids
  DeviceScratch* scratch = nullptr;
};

// ---- embedding.cu --------------------------------------------------------------------
void EmbeddingForward(const LaunchContext& ctx, DType act, void* out, const int32_t* tokens,
                      const void* wte, const void* wpe, int64_t Vp, int B, int T, int C);
void EmbeddingBackward(const LaunchContext& ctx, DType act, float* dwte, float* dwpe,
                       const void* dout, const int32_t* tokens, int64_t Vp, int B, int T,
                       int C);

// ---- layernorm.cu ----------------------------------------------------------------------
// residual == nullptr: plain LayerNorm of a (b ignored). Otherwise residual = a + b
// first, and the LayerNorm is of residual.
void LayerNormForward(const LaunchContext& ctx, DType act, void* out, float* mean,
                      float* rstd, void* residual, const void* a, const void* b,
                      const void* weight, const void* bias, int64_t N, int C);
void LayerNormBackward(const LaunchContext& ctx, DType act, void* dinp, float* dweight,
                       float* dbias, const void* dout, const void* inp, const void* weight,
                       const float* mean, const float* rstd, int64_t N, int C);

// ---- gelu.cu -------------------------------------------------------------------------------
void GeluForward(const LaunchContext& ctx, DType act, void* out, const void* inp, int64_t n);
void GeluBackward(const LaunchContext& ctx, DType act, void* dinp, const void* inp,
                  const void* dout, int64_t n);

// ---- matmul_bias.cu: column sums for the bias gradient (the GEMMs are in matmul.h) ---------
// dbias[j] += sum_i dout[i, j] over i < N, j < OC.
void BiasGradient(const LaunchContext& ctx, DType act, float* dbias, const void* dout,
                  int64_t N, int OC);

// ---- elementwise.cu: any float dtype per view (f32, bf16, f16) --------------------------------
void Add(const LaunchContext& ctx, View out, View a, View b, int64_t n);  // out may alias
void Accumulate(const LaunchContext& ctx, View dst, View src, int64_t n);
void Fill(const LaunchContext& ctx, View x, float value);  // also i32 (value truncated)
void Cast(const LaunchContext& ctx, View out, View in, int64_t n);

// ---- cross_entropy.cu ------------------------------------------------------------------------
void CrossEntropyForward(const LaunchContext& ctx, DType act, float* losses, float* lse,
                         const void* logits, const int32_t* targets, int64_t N, int V,
                         int Vp);
void CrossEntropyBackward(const LaunchContext& ctx, DType act, void* dlogits,
                          const void* logits, const float* lse, const int32_t* targets,
                          float dloss, int64_t N, int V, int Vp);

// ---- adamw.cu -----------------------------------------------------------------------------------
// grad and param_copy: any float dtype (param_copy may be absent).
void AdamW(const LaunchContext& ctx, float* param, View grad, float* m, float* v,
           View param_copy, int64_t n, const AdamWParams& p);

// ---- sum_squares.cu ---------------------------------------------------------------------------
// *out += sum x[i]^2, accumulated in double, deterministically.
void SumSquares(const LaunchContext& ctx, float* out, View x, int64_t n);

}  // namespace colossus::kernels::cuda
