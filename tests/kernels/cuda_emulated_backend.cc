// The CUDA backend's kernels, compiled from their own .cu source for the host and run
// on the CPU through kernels/cuda/emulate.h, behind a kernels::Backend, so that
// cuda_ops_test.cc and cuda_backend_test.cc check them against the CPU reference on
// machines without a GPU (the binary colossus_cuda_emulation_test).
//
// What is emulated here and what is not:
//   * every kernel of embedding, layernorm, matmul_bias, gelu, elementwise,
//     cross_entropy, adamw and sum_squares .cu: their exact source, launch code included;
//   * the GEMMs are NOT cuBLASLt: a plain loop with cuBLASLt's contract (inputs of the
//     activation dtype, fp32 accumulation, the output rounded once; dweight f32 += ),
//     so that MatmulBackward's bias kernel and MatmulGeluForward's GELU run in context;
//   * attention is cuda/attention.h's entry points compiled for the host in
//     cuda_emulated_attention.cc (their own emulation, which checks shared-memory races
//     and aborts with the list if it finds a problem);
//   * the View checks are CudaBackend's (cuda_backend.cc), not repeated here.
// "Device" memory is host memory, 256-byte aligned as cudaMalloc's.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "colossus/check.h"
#include "colossus/kernels/backend.h"
#include "cuda/attention.h"
#include "kernels/cuda_emulated_backend.h"

#ifndef COLOSSUS_CUDA_EMULATE
#error "compile with COLOSSUS_CUDA_EMULATE (the kernels below must be built for the host)"
#endif

// The kernels' translation units, whole. Their anonymous namespaces do not collide.
#include "cuda/adamw.cu"
#include "cuda/cross_entropy.cu"
#include "cuda/elementwise.cu"
#include "cuda/embedding.cu"
#include "cuda/gelu.cu"
#include "cuda/layernorm.cu"
#include "cuda/matmul_bias.cu"
#include "cuda/sum_squares.cu"

namespace colossus::kernels {

namespace cuda {

// The backend's scratch, in host memory; every (re)allocation is poisoned with NaN bytes
// so a partial sum a kernel forgets to write shows.
DeviceScratch::~DeviceScratch() { std::free(data_); }

void* DeviceScratch::Get(size_t bytes, cudaStream_t) {
  if (bytes <= bytes_ && data_ != nullptr) return data_;
  std::free(data_);
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  data_ = std::aligned_alloc(256, rounded);
  CHECK(data_ != nullptr) << "emulated scratch: out of host memory";
  std::memset(data_, 0xFF, rounded);
  bytes_ = rounded;
  return data_;
}

}  // namespace cuda

namespace {

float Load(const View& v, int64_t i) {
  return v.dtype == DType::kBF16 ? Bf16ToFloat(v.as<const uint16_t>()[i]) : v.as<const float>()[i];
}
void Store(const View& v, int64_t i, float x) {
  if (v.dtype == DType::kBF16) {
    v.as<uint16_t>()[i] = FloatToBf16(x);
  } else {
    v.as<float>()[i] = x;
  }
}

class EmulatedCudaBackend final : public Backend {
 public:
  EmulatedCudaBackend() {
    ctx_.stream = nullptr;
    ctx_.num_sms = 2;  // small grids: every block is a batch of fibers
    ctx_.scratch = &scratch_;
  }
  DeviceKind kind() const override { return DeviceKind::kCUDA; }
  DType compute_dtype() const override { return DType::kBF16; }
  std::string Describe() const override { return "cuda (kernels emulated on the CPU)"; }

  absl::StatusOr<void*> Allocate(size_t bytes) override {
    void* p = std::aligned_alloc(256, (std::max<size_t>(bytes, 1) + 255) / 256 * 256);
    if (p == nullptr) return absl::ResourceExhaustedError("emulated: out of host memory");
    return p;
  }
  void Free(void* ptr) override { std::free(ptr); }
  void CopyToHost(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, bytes);
  }
  void CopyFromHost(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, bytes);
  }
  void Copy(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) std::memmove(dst, src, bytes);
  }
  void Fill(View x, float value) override { cuda::Fill(ctx_, x, value); }
  void Synchronize() override {}

  void EmbeddingForward(View out, const int32_t* tokens, View wte, View wpe, int B, int T,
                        int C) override {
    cuda::EmbeddingForward(ctx_, wte.dtype, out.data, tokens, wte.data, wpe.data,
                           C == 0 ? 0 : wte.numel / C, B, T, C);
  }
  void EmbeddingBackward(View dwte, View dwpe, View dout, const int32_t* tokens, int B, int T,
                         int C) override {
    cuda::EmbeddingBackward(ctx_, dout.dtype, dwte.as<float>(), dwpe.as<float>(), dout.data,
                            tokens, C == 0 ? 0 : dwte.numel / C, B, T, C);
  }
  void LayerNormForward(View out, float* mean, float* rstd, View inp, View weight, View bias,
                        int64_t N, int C) override {
    cuda::LayerNormForward(ctx_, inp.dtype, out.data, mean, rstd, nullptr, inp.data, nullptr,
                           weight.data, bias.data, N, C);
  }
  void LayerNormBackward(View dinp, View dweight, View dbias, View dout, View inp, View weight,
                         const float* mean, const float* rstd, int64_t N, int C) override {
    cuda::LayerNormBackward(ctx_, inp.dtype, dinp.data, dweight.as<float>(), dbias.as<float>(),
                            dout.data, inp.data, weight.data, mean, rstd, N, C);
  }
  void ResidualLayerNormForward(View residual, View out, float* mean, float* rstd, View a,
                                View b, View weight, View bias, int64_t N, int C) override {
    cuda::LayerNormForward(ctx_, a.dtype, out.data, mean, rstd, residual.data, a.data, b.data,
                           weight.data, bias.data, N, C);
  }

  // cuBLASLt's contract, as plain loops (see the file comment).
  void MatmulForward(View out, View inp, View weight, View bias, int64_t N, int C,
                     int OC) override {
    for (int64_t i = 0; i < N; ++i) {
      for (int o = 0; o < OC; ++o) {
        float acc = 0.0f;
        for (int c = 0; c < C; ++c) acc += Load(inp, i * C + c) * Load(weight, int64_t{o} * C + c);
        Store(out, i * OC + o, acc + (bias.empty() ? 0.0f : Load(bias, o)));
      }
    }
  }
  void MatmulGeluForward(View out, View pre_gelu, View inp, View weight, View bias, int64_t N,
                         int C, int OC) override {
    MatmulForward(pre_gelu, inp, weight, bias, N, C, OC);
    cuda::GeluForward(ctx_, inp.dtype, out.data, pre_gelu.data, N * OC);
  }
  void MatmulBackward(View dinp, View dweight, View dbias, View dout, View inp, View weight,
                      int64_t N, int C, int OC) override {
    for (int64_t i = 0; i < N; ++i) {
      for (int c = 0; c < C; ++c) {
        float acc = 0.0f;
        for (int o = 0; o < OC; ++o) acc += Load(dout, i * OC + o) * Load(weight, int64_t{o} * C + c);
        Store(dinp, i * C + c, acc);
      }
    }
    float* dw = dweight.as<float>();
    for (int o = 0; o < OC; ++o) {
      for (int c = 0; c < C; ++c) {
        float acc = 0.0f;
        for (int64_t i = 0; i < N; ++i) acc += Load(dout, i * OC + o) * Load(inp, i * C + c);
        dw[int64_t{o} * C + c] += acc;
      }
    }
    if (!dbias.empty()) cuda::BiasGradient(ctx_, inp.dtype, dbias.as<float>(), dout.data, N, OC);
  }

  void AttentionForward(View out, float* lse, View qkv, int B, int T, int C, int NH) override {
    cuda::AttentionForward(out, lse, qkv, B, T, C, NH, ctx_.stream);
  }
  void AttentionBackward(View dqkv, View dout, View qkv, View out, const float* lse, int B, int T,
                         int C, int NH) override {
    void* scratch = scratch_.Get(cuda::AttentionBackwardScratchBytes(B, T, C, NH), ctx_.stream);
    cuda::AttentionBackward(dqkv, dout, qkv, out, lse, scratch, B, T, C, NH, ctx_.stream);
  }

  void GeluForward(View out, View inp, int64_t n) override {
    cuda::GeluForward(ctx_, inp.dtype, out.data, inp.data, n);
  }
  void GeluBackward(View dinp, View inp, View dout, int64_t n) override {
    cuda::GeluBackward(ctx_, inp.dtype, dinp.data, inp.data, dout.data, n);
  }
  void Add(View out, View a, View b, int64_t n) override { cuda::Add(ctx_, out, a, b, n); }
  void Accumulate(View dst, View src, int64_t n) override { cuda::Accumulate(ctx_, dst, src, n); }
  void CrossEntropyForward(float* losses, float* lse, View logits, const int32_t* targets,
                           int64_t N, int V, int Vp) override {
    cuda::CrossEntropyForward(ctx_, logits.dtype, losses, lse, logits.data, targets, N, V, Vp);
  }
  void CrossEntropyBackward(View dlogits, View logits, const float* lse, const int32_t* targets,
                            float dloss, int64_t N, int V, int Vp) override {
    cuda::CrossEntropyBackward(ctx_, logits.dtype, dlogits.data, logits.data, lse, targets,
                               dloss, N, V, Vp);
  }
  void AdamW(View param, View grad, float* m, float* v, View param_copy, int64_t n,
             const AdamWParams& p) override {
    cuda::AdamW(ctx_, param.as<float>(), grad, m, v, param_copy, n, p);
  }
  void SumSquares(float* out, View x, int64_t n) override { cuda::SumSquares(ctx_, out, x, n); }
  void Cast(View out, View in, int64_t n) override {
    // The same-dtype case is a cudaMemcpyAsync in the real kernel file.
    if (out.dtype == in.dtype) {
      if (n > 0) std::memmove(out.data, in.data, n * DTypeSize(in.dtype));
      return;
    }
    cuda::Cast(ctx_, out, in, n);
  }

 private:
  cuda::DeviceScratch scratch_;
  cuda::LaunchContext ctx_;
};

}  // namespace

std::unique_ptr<Backend> MakeEmulatedCudaBackend() { return std::make_unique<EmulatedCudaBackend>(); }

}  // namespace colossus::kernels
