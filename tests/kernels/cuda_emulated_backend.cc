// The CUDA backend on the CPU, behind a kernels::Backend, so that cuda_ops_test.cc,
// cuda_backend_test.cc and cuda/train_steps_test.cc check it against the CPU reference on
// machines without a GPU (colossus_cuda_emulation_test, colossus_cuda_emulated_train_test).
//
// What is the real backend's code here and what is not:
//   * every op's View checks and kernel calls: CudaOpsBackend (cuda_ops_backend.cc),
//     the very wiring the GPU backend runs;
//   * every kernel of embedding, layernorm, matmul_bias, gelu, elementwise,
//     cross_entropy, adamw and sum_squares .cu: their exact source, launch code included,
//     on host fibers through kernels/cuda/emulate.h;
//   * attention: cuda/attention.h's entry points compiled for the host in
//     cuda_emulated_attention.cc (their own emulation, which checks shared-memory races
//     and aborts with the list if it finds a problem);
//   * NOT cuBLASLt: the GEMM hooks are plain loops with its contract (inputs of the
//     activation dtype, fp32 accumulation, the output rounded once; dweight f32 +=), and
//     offer no fused GELU, so MatmulGeluForward takes its GEMM-then-GELU path;
//   * NOT the GPU backend's memory, stream and graph capture (cuda_backend.cc): "device"
//     memory is host memory, 256-byte aligned as cudaMalloc's, and ops run synchronously.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "colossus/check.h"
#include "colossus/kernels/backend.h"
#include "cuda/attention.h"
#include "cuda/cuda_ops_backend.h"
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
// The ops' wiring, the GPU backend's own (see the file comment).
#include "cuda/cuda_ops_backend.cc"

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

class EmulatedCudaBackend final : public cuda::CudaOpsBackend {
 public:
  // Small grids: every block is a batch of fibers.
  EmulatedCudaBackend() { SetLaunchContext(/*stream=*/nullptr, /*num_sms=*/2); }
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
  void Synchronize() override {}

 protected:
  void Enter() const override {}

  // cuBLASLt's contract, as plain loops (see the file comment).
  bool GemmForward(DType act, void* out, const void* inp, const void* weight, const void* bias,
                   void* pre_gelu, int64_t N, int C, int OC) override {
    if (pre_gelu != nullptr) return false;  // no fused GELU here
    const View x(const_cast<void*>(inp), act, N * C);
    const View w(const_cast<void*>(weight), act, int64_t{OC} * C);
    const View b(const_cast<void*>(bias), act, bias == nullptr ? 0 : OC);
    const View o(out, act, N * OC);
    for (int64_t i = 0; i < N; ++i) {
      for (int oc = 0; oc < OC; ++oc) {
        float acc = 0.0f;
        for (int c = 0; c < C; ++c) acc += Load(x, i * C + c) * Load(w, int64_t{oc} * C + c);
        Store(o, i * OC + oc, acc + (b.empty() ? 0.0f : Load(b, oc)));
      }
    }
    return true;
  }
  void GemmBackwardInput(DType act, void* dinp, const void* dout, const void* weight, int64_t N,
                         int C, int OC) override {
    const View d(const_cast<void*>(dout), act, N * OC);
    const View w(const_cast<void*>(weight), act, int64_t{OC} * C);
    const View dx(dinp, act, N * C);
    for (int64_t i = 0; i < N; ++i) {
      for (int c = 0; c < C; ++c) {
        float acc = 0.0f;
        for (int oc = 0; oc < OC; ++oc) acc += Load(d, i * OC + oc) * Load(w, int64_t{oc} * C + c);
        Store(dx, i * C + c, acc);
      }
    }
  }
  void GemmBackwardWeight(DType act, float* dweight, const void* dout, const void* inp,
                          int64_t N, int C, int OC) override {
    const View d(const_cast<void*>(dout), act, N * OC);
    const View x(const_cast<void*>(inp), act, N * C);
    for (int oc = 0; oc < OC; ++oc) {
      for (int c = 0; c < C; ++c) {
        float acc = 0.0f;
        for (int64_t i = 0; i < N; ++i) acc += Load(d, i * OC + oc) * Load(x, i * C + c);
        dweight[int64_t{oc} * C + c] += acc;
      }
    }
  }
};

}  // namespace

std::unique_ptr<Backend> MakeEmulatedCudaBackend() { return std::make_unique<EmulatedCudaBackend>(); }

}  // namespace colossus::kernels
