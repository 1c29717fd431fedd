// CudaOpsBackend: the CUDA backend's ops, shared by the backend on a GPU (cuda_backend.cc)
// and the emulated one the tests run on machines without a GPU
// (tests/kernels/cuda_emulated_backend.cc), so that the View checks and the way each op
// calls its kernels are the same code in both and the emulation exercises them.
//
// Each op checks every View on the host (presence, dtype, size; the contract is in
// backend.h and cuda_backend.h), makes the device current (Enter) and enqueues its
// kernels (ops.h, attention.h) through ctx_, or its GEMMs through the Gemm* hooks.
//
// View rules per op, with A the activation dtype (f32 or bf16, taken from the op's main
// input and required of every activation and weight view):
//   * parameter gradients (dwte, dwpe, dweight, dbias) are f32;
//   * statistics (mean, rstd, lse, losses) are float* in device memory;
//   * tokens and targets are int32 in device memory. Their values cannot be checked
//     without a copy to the host: the kernels turn a bad one into NaN (see
//     embedding.cu and cross_entropy.cu).
//
// What a subclass supplies: memory, copies, Synchronize, graphs, the GEMMs, Enter, and
// ctx_'s stream and SM count (SetLaunchContext). Thread safety: Backend's rule.
#pragma once

#include <cstdint>
#include <string>

#include "colossus/kernels/backend.h"
#include "cuda/ops.h"

namespace colossus::kernels::cuda {

class CudaOpsBackend : public Backend {
 public:
  DeviceKind kind() const override { return DeviceKind::kCUDA; }
  DType compute_dtype() const override { return DType::kBF16; }

  void Fill(View x, float value) override;
  void EmbeddingForward(View out, const int32_t* tokens, View wte, View wpe, int B, int T,
                        int C) override;
  void EmbeddingBackward(View dwte, View dwpe, View dout, const int32_t* tokens, int B, int T,
                         int C) override;
  void LayerNormForward(View out, float* mean, float* rstd, View inp, View weight, View bias,
                        int64_t N, int C) override;
  void LayerNormBackward(View dinp, View dweight, View dbias, View dout, View inp, View weight,
                         const float* mean, const float* rstd, int64_t N, int C) override;
  void ResidualLayerNormForward(View residual, View out, float* mean, float* rstd, View a,
                                View b, View weight, View bias, int64_t N, int C) override;
  void MatmulForward(View out, View inp, View weight, View bias, int64_t N, int C,
                     int OC) override;
  void MatmulGeluForward(View out, View pre_gelu, View inp, View weight, View bias, int64_t N,
                         int C, int OC) override;
  void MatmulBackward(View dinp, View dweight, View dbias, View dout, View inp, View weight,
                      int64_t N, int C, int OC) override;
  void AttentionForward(View out, float* lse, View qkv, int B, int T, int C, int NH) override;
  void AttentionBackward(View dqkv, View dout, View qkv, View out, const float* lse, int B,
                         int T, int C, int NH) override;
  void GeluForward(View out, View inp, int64_t n) override;
  void GeluBackward(View dinp, View inp, View dout, int64_t n) override;
  void Add(View out, View a, View b, int64_t n) override;
  void Accumulate(View dst, View src, int64_t n) override;
  void CrossEntropyForward(float* losses, float* lse, View logits, const int32_t* targets,
                           int64_t N, int V, int Vp) override;
  void CrossEntropyBackward(View dlogits, View logits, const float* lse, const int32_t* targets,
                            float dloss, int64_t N, int V, int Vp) override;
  void AdamW(View param, View grad, float* m, float* v, View param_copy, int64_t n,
             const AdamWParams& p) override;
  void SumSquares(float* out, View x, int64_t n) override;
  void Cast(View out, View in, int64_t n) override;

 protected:
  CudaOpsBackend() { ctx_.scratch = &scratch_; }

  void SetLaunchContext(cudaStream_t stream, int num_sms) {
    ctx_.stream = stream;
    ctx_.num_sms = num_sms;
  }
  const LaunchContext& ctx() const { return ctx_; }
  // Scratch on the backend's stream (the kernels' partial sums, attention's dQ).
  DeviceScratch& scratch() { return scratch_; }

  // Makes the backend's device current for the calling thread.
  virtual void Enter() const = 0;
  // The Linear layer's GEMMs, with CublasLt's contracts (matmul.h): GemmForward returns
  // false, having written nothing, when it has no fused GELU for the call (pre_gelu set);
  // the op then runs the GEMM and the GELU kernel separately.
  virtual bool GemmForward(DType act, void* out, const void* inp, const void* weight,
                           const void* bias, void* pre_gelu, int64_t N, int C, int OC) = 0;
  virtual void GemmBackwardInput(DType act, void* dinp, const void* dout, const void* weight,
                                 int64_t N, int C, int OC) = 0;
  virtual void GemmBackwardWeight(DType act, float* dweight, const void* dout, const void* inp,
                                  int64_t N, int C, int OC) = 0;

 private:
  DeviceScratch scratch_;
  LaunchContext ctx_;
};

}  // namespace colossus::kernels::cuda
