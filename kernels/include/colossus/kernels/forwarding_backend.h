// A Backend that hands every op to another backend through one hook, for decorators
// that act around ops: ProfilingBackend times each op, RecordingBackend records ops for
// replay. An op reaches the hook as a closure that calls the inner backend with the
// caller's arguments, captured by value (views, pointers, shapes, scalars: all cheap to
// copy), so a decorator may run it at once, bracket it, or keep it to run later.
//
// Memory calls (Allocate, Free) and Synchronize are not ops: they go straight to the
// inner backend. So do BeginCapture and EndCapture unless a subclass takes them over.
//
// Thread safety: one thread at a time, as for any Backend.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "colossus/kernels/backend.h"

namespace colossus::kernels {

class ForwardingBackend : public Backend {
 public:
  // Every op, in Backend's declaration order.
  enum Op : uint8_t {
    kCopyToHost,
    kCopyFromHost,
    kCopy,
    kFill,
    kEmbeddingForward,
    kEmbeddingBackward,
    kLayerNormForward,
    kLayerNormBackward,
    kResidualLayerNormForward,
    kMatmulForward,
    kMatmulGeluForward,
    kMatmulBackward,
    kAttentionForward,
    kAttentionBackward,
    kGeluForward,
    kGeluBackward,
    kAdd,
    kAccumulate,
    kCrossEntropyForward,
    kCrossEntropyBackward,
    kAdamW,
    kSumSquares,
    kCast,
    kNumOps
  };
  static const char* OpName(Op op);

  // REQUIRES: inner outlives this.
  explicit ForwardingBackend(Backend* inner);
  Backend* inner() const { return inner_; }

  DeviceKind kind() const override { return inner_->kind(); }
  DType compute_dtype() const override { return inner_->compute_dtype(); }
  std::string Describe() const override { return inner_->Describe(); }
  absl::StatusOr<void*> Allocate(size_t bytes) override { return inner_->Allocate(bytes); }
  void Free(void* ptr) override { inner_->Free(ptr); }
  void Synchronize() override { inner_->Synchronize(); }
  absl::Status BeginCapture() override { return inner_->BeginCapture(); }
  absl::StatusOr<std::unique_ptr<OpGraph>> EndCapture() override {
    return inner_->EndCapture();
  }

  void CopyToHost(void* host_dst, const void* src, size_t bytes) final override;
  void CopyFromHost(void* dst, const void* host_src, size_t bytes) final override;
  void Copy(void* dst, const void* src, size_t bytes) final override;
  void Fill(View x, float value) final override;
  void EmbeddingForward(View out, const int32_t* tokens, View wte, View wpe, int B, int T,
                        int C) final override;
  void EmbeddingBackward(View dwte, View dwpe, View dout, const int32_t* tokens, int B, int T,
                         int C) final override;
  void LayerNormForward(View out, float* mean, float* rstd, View inp, View weight, View bias,
                        int64_t N, int C) final override;
  void LayerNormBackward(View dinp, View dweight, View dbias, View dout, View inp, View weight,
                         const float* mean, const float* rstd, int64_t N, int C) final override;
  void ResidualLayerNormForward(View residual, View out, float* mean, float* rstd, View a, View b,
                                View weight, View bias, int64_t N, int C) final override;
  void MatmulForward(View out, View inp, View weight, View bias, int64_t N, int C,
                     int OC) final override;
  void MatmulGeluForward(View out, View pre_gelu, View inp, View weight, View bias, int64_t N,
                         int C, int OC) final override;
  void MatmulBackward(View dinp, View dweight, View dbias, View dout, View inp, View weight,
                      int64_t N, int C, int OC) final override;
  void AttentionForward(View out, float* lse, View qkv, int B, int T, int C, int NH) final override;
  void AttentionBackward(View dqkv, View dout, View qkv, View out, const float* lse, int B, int T,
                         int C, int NH) final override;
  void GeluForward(View out, View inp, int64_t n) final override;
  void GeluBackward(View dinp, View inp, View dout, int64_t n) final override;
  void Add(View out, View a, View b, int64_t n) final override;
  void Accumulate(View dst, View src, int64_t n) final override;
  void CrossEntropyForward(float* losses, float* lse, View logits, const int32_t* targets,
                           int64_t N, int V, int Vp) final override;
  void CrossEntropyBackward(View dlogits, View logits, const float* lse, const int32_t* targets,
                            float dloss, int64_t N, int V, int Vp) final override;
  void AdamW(View param, View grad, float* m, float* v, View param_copy, int64_t n,
             const AdamWParams& p) final override;
  void SumSquares(float* out, View x, int64_t n) final override;
  void Cast(View out, View in, int64_t n) final override;

 protected:
  // Called for every op with the closure that runs it on the inner backend. The default
  // runs it at once.
  virtual void Dispatch(Op op, std::function<void()> call);

 private:
  Backend* inner_;
};

}  // namespace colossus::kernels
