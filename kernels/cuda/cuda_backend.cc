// CudaBackend: kernels::Backend on one GPU. It checks every View on the host (presence,
// dtype, size; the contract is in backend.h and cuda_backend.h), then enqueues the op's
// kernels (ops.h, attention.h) or cuBLASLt GEMMs (matmul.h) on its stream.
//
// View rules per op, with A the activation dtype (f32 or bf16, taken from the op's main
// input and required of every activation and weight view):
//   * parameter gradients (dwte, dwpe, dweight, dbias) are f32;
//   * statistics (mean, rstd, lse, losses) are float* in device memory;
//   * tokens and targets are int32 in device memory. Their values cannot be checked
//     without a copy to the host: the kernels turn a bad one into NaN (see
//     embedding.cu and cross_entropy.cu).
#include "colossus/kernels/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "colossus/check.h"
#include "common/arg_checks.h"
#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/cuda_graph.h"
#include "cuda/matmul.h"
#include "cuda/ops.h"

namespace colossus::kernels {
namespace {

using cuda::LaunchContext;
using internal::CheckAttentionShape;
using internal::CheckNonNegative;
using internal::CheckPresentAndLong;
using internal::CheckVocab;
using internal::Pointer;
using internal::TableRows;

// ---- argument checks: each names the op and the argument ------------------------------

// The activation dtype of an op, read off its main input.
DType ActivationDtype(const View& v, const char* op, const char* arg) {
  CHECK(v.dtype == DType::kF32 || v.dtype == DType::kBF16)
      << op << ": " << arg << " has dtype " << DTypeName(v.dtype)
      << ", but the CUDA backend takes f32 or bf16 activations";
  return v.dtype;
}

// An activation or weight view: present, long enough, and of the op's activation dtype.
void* Act(const View& v, DType act, int64_t need, const char* op, const char* arg) {
  CheckPresentAndLong(v, need, op, arg);
  CHECK(v.empty() || v.dtype == act)
      << op << ": " << arg << " has dtype " << DTypeName(v.dtype) << ", but the op runs in "
      << DTypeName(act) << " (all activations and weights of one call share a dtype)";
  return v.data;
}

void* OptionalAct(const View& v, DType act, int64_t need, const char* op, const char* arg) {
  return v.empty() ? nullptr : Act(v, act, need, op, arg);
}

// A parameter gradient: f32 whatever the activation dtype.
float* ParamGrad(const View& v, int64_t need, const char* op, const char* arg) {
  CheckPresentAndLong(v, need, op, arg);
  CHECK(v.empty() || v.dtype == DType::kF32)
      << op << ": " << arg << " has dtype " << DTypeName(v.dtype)
      << ", but parameter gradients are f32 (they accumulate across micro-batches)";
  return v.as<float>();
}

float* OptionalParamGrad(const View& v, int64_t need, const char* op, const char* arg) {
  return v.empty() ? nullptr : ParamGrad(v, need, op, arg);
}

float* F32(const View& v, int64_t need, const char* op, const char* arg) {
  CheckPresentAndLong(v, need, op, arg);
  CHECK(v.empty() || v.dtype == DType::kF32)
      << op << ": " << arg << " has dtype " << DTypeName(v.dtype) << ", expected f32";
  return v.as<float>();
}

// Views the elementwise ops take in any of the listed dtypes.
void CheckDtypeIn(const View& v, int64_t need, bool allow_f16, const char* op,
                  const char* arg) {
  CheckPresentAndLong(v, need, op, arg);
  const bool ok = v.empty() || v.dtype == DType::kF32 || v.dtype == DType::kBF16 ||
                  (allow_f16 && v.dtype == DType::kF16);
  CHECK(ok) << op << ": " << arg << " has dtype " << DTypeName(v.dtype)
            << ", but the CUDA backend takes " << (allow_f16 ? "f32, bf16 or f16" : "f32 or bf16")
            << " here";
}

bool Overlap(const void* a, const void* b, size_t bytes) {
  const uintptr_t x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return bytes > 0 && x < y + bytes && y < x + bytes;
}

// ---- RAII ------------------------------------------------------------------------------

class Stream {
 public:
  Stream() = default;
  explicit Stream(cudaStream_t s) : s_(s) {}
  ~Stream() {
    if (s_ != nullptr) cudaStreamDestroy(s_);
  }
  Stream(Stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stream& operator=(Stream&&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// ---- the backend -----------------------------------------------------------------------------

class CudaBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(int device);
  ~CudaBackend() override {
    // Let enqueued work finish before its buffers (scratch, workspace) are freed.
    if (cudaSetDevice(device_) == cudaSuccess) cudaStreamSynchronize(stream_.get());
  }

  DeviceKind kind() const override { return DeviceKind::kCUDA; }
  DType compute_dtype() const override { return DType::kBF16; }
  std::string Describe() const override { return description_; }
  cudaStream_t stream() const { return stream_.get(); }

  // ---- memory -------------------------------------------------------------------------
  absl::StatusOr<void*> Allocate(size_t bytes) override {
    NotCapturing("Allocate");
    Enter();
    void* p = nullptr;
    // Zero bytes still get a unique, freeable pointer, as on the CPU.
    const cudaError_t err = cudaMalloc(&p, bytes == 0 ? 256 : bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();  // out-of-memory is not sticky; clear it for the next launch
      return absl::ResourceExhaustedError(absl::StrCat(
          "cuda:", device_, ": cannot allocate ", bytes, " bytes: ", cudaGetErrorString(err)));
    }
    return p;  // cudaMalloc aligns to at least 256 bytes
  }
  void Free(void* ptr) override {
    if (ptr == nullptr) return;
    NotCapturing("Free");
    Enter();
    COLOSSUS_CUDA_CHECK(cudaFree(ptr));
  }
  void CopyToHost(void* host_dst, const void* src, size_t bytes) override {
    if (bytes == 0) return;
    NotCapturing("CopyToHost");
    Enter();
    COLOSSUS_CUDA_CHECK(
        cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_.get()));
    COLOSSUS_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  }
  void CopyFromHost(void* dst, const void* host_src, size_t bytes) override {
    if (bytes == 0) return;
    NotCapturing("CopyFromHost");
    Enter();
    COLOSSUS_CUDA_CHECK(
        cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_.get()));
    // The caller may free or reuse host_src as soon as this returns.
    COLOSSUS_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  }
  void Copy(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0 || dst == src) return;
    Enter();
    if (Overlap(dst, src, bytes)) {
      // cudaMemcpy's result is undefined for overlapping ranges (the CPU's is memmove):
      // go through scratch.
      void* tmp = scratch_.Get(bytes, stream_.get());
      COLOSSUS_CUDA_CHECK(
          cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, stream_.get()));
      src = tmp;
    }
    COLOSSUS_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_.get()));
  }
  void Fill(View x, float value) override {
    const char* op = "Fill";
    CHECK(x.numel == 0 || x.data != nullptr) << op << ": x is absent (null data)";
    if (x.dtype == DType::kI32) {
      CHECK(std::isfinite(value) && std::fabs(value) < 2147483648.0f)
          << op << ": value " << value << " does not fit an i32 view";
    } else {
      CheckDtypeIn(x, x.numel, /*allow_f16=*/true, op, "x");
    }
    Enter();
    cuda::Fill(ctx_, x, value);
  }
  void Synchronize() override {
    NotCapturing("Synchronize");
    Enter();
    COLOSSUS_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  }

  // ---- graphs ----------------------------------------------------------------------------
  absl::Status BeginCapture() override {
    if (capturing_) return absl::FailedPreconditionError("BeginCapture: a capture is in progress");
    if (absl::Status s = cuda::BeginStreamCapture(stream_.get(), device_); !s.ok()) return s;
    capturing_ = true;
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<OpGraph>> EndCapture() override {
    if (!capturing_) return absl::FailedPreconditionError("EndCapture: no capture in progress");
    capturing_ = false;
    return cuda::EndStreamCapture(stream_.get(), device_);
  }

  // ---- embedding ------------------------------------------------------------------------
  void EmbeddingForward(View out, const int32_t* tokens, View wte, View wpe, int B, int T,
                        int C) override {
    const char* op = "EmbeddingForward";
    CheckNonNegative(op, "B", B);
    CheckNonNegative(op, "T", T);
    CheckNonNegative(op, "C", C);
    const int64_t BT = static_cast<int64_t>(B) * T;
    const DType act = ActivationDtype(wte, op, "wte");
    const int64_t Vp = TableRows(wte, C, op);
    void* o = Act(out, act, BT * C, op, "out");
    const void* w = Act(wte, act, Vp * C, op, "wte");
    const void* p = Act(wpe, act, static_cast<int64_t>(T) * C, op, "wpe");
    Pointer(tokens, BT, op, "tokens");
    Enter();
    cuda::EmbeddingForward(ctx_, act, o, tokens, w, p, Vp, B, T, C);
  }
  void EmbeddingBackward(View dwte, View dwpe, View dout, const int32_t* tokens, int B, int T,
                         int C) override {
    const char* op = "EmbeddingBackward";
    CheckNonNegative(op, "B", B);
    CheckNonNegative(op, "T", T);
    CheckNonNegative(op, "C", C);
    const int64_t BT = static_cast<int64_t>(B) * T;
    const DType act = ActivationDtype(dout, op, "dout");
    const int64_t Vp = TableRows(dwte, C, op);
    float* dw = ParamGrad(dwte, Vp * C, op, "dwte");
    float* dp = ParamGrad(dwpe, static_cast<int64_t>(T) * C, op, "dwpe");
    const void* d = Act(dout, act, BT * C, op, "dout");
    Pointer(tokens, BT, op, "tokens");
    Enter();
    cuda::EmbeddingBackward(ctx_, act, dw, dp, d, tokens, Vp, B, T, C);
  }

  // ---- layernorm ------------------------------------------------------------------------
  void LayerNormForward(View out, float* mean, float* rstd, View inp, View weight, View bias,
                        int64_t N, int C) override {
    const char* op = "LayerNormForward";
    CheckNonNegative(op, "N", N);
    CheckNonNegative(op, "C", C);
    const int64_t NC = N * C;
    const DType act = ActivationDtype(inp, op, "inp");
    void* o = Act(out, act, NC, op, "out");
    const void* x = Act(inp, act, NC, op, "inp");
    const void* w = Act(weight, act, C, op, "weight");
    const void* b = Act(bias, act, C, op, "bias");
    Pointer(mean, N, op, "mean");
    Pointer(rstd, N, op, "rstd");
    Enter();
    cuda::LayerNormForward(ctx_, act, o, mean, rstd, /*residual=*/nullptr, x, nullptr, w, b,
                           N, C);
  }
  void LayerNormBackward(View dinp, View dweight, View dbias, View dout, View inp,
                         View weight, const float* mean, const float* rstd, int64_t N,
                         int C) override {
    const char* op = "LayerNormBackward";
    CheckNonNegative(op, "N", N);
    CheckNonNegative(op, "C", C);
    const int64_t NC = N * C;
    const DType act = ActivationDtype(inp, op, "inp");
    void* dx = Act(dinp, act, NC, op, "dinp");
    float* dw = ParamGrad(dweight, C, op, "dweight");
    float* db = ParamGrad(dbias, C, op, "dbias");
    const void* d = Act(dout, act, NC, op, "dout");
    const void* x = Act(inp, act, NC, op, "inp");
    const void* w = Act(weight, act, C, op, "weight");
    Pointer(mean, N, op, "mean");
    Pointer(rstd, N, op, "rstd");
    Enter();
    cuda::LayerNormBackward(ctx_, act, dx, dw, db, d, x, w, mean, rstd, N, C);
  }
  void ResidualLayerNormForward(View residual, View out, float* mean, float* rstd, View a,
                                View b, View weight, View bias, int64_t N, int C) override {
    const char* op = "ResidualLayerNormForward";
    CheckNonNegative(op, "N", N);
    CheckNonNegative(op, "C", C);
    const int64_t NC = N * C;
    const DType act = ActivationDtype(a, op, "a");
    void* r = Act(residual, act, NC, op, "residual");
    void* o = Act(out, act, NC, op, "out");
    const void* x = Act(a, act, NC, op, "a");
    const void* y = Act(b, act, NC, op, "b");
    const void* w = Act(weight, act, C, op, "weight");
    const void* bb = Act(bias, act, C, op, "bias");
    Pointer(mean, N, op, "mean");
    Pointer(rstd, N, op, "rstd");
    Enter();
    cuda::LayerNormForward(ctx_, act, o, mean, rstd, r, x, y, w, bb, N, C);
  }

  // ---- matmul ---------------------------------------------------------------------------
  void MatmulForward(View out, View inp, View weight, View bias, int64_t N, int C,
                     int OC) override {
    const char* op = "MatmulForward";
    CheckMatmulShape(op, N, C, OC);
    const DType act = ActivationDtype(inp, op, "inp");
    void* o = Act(out, act, N * OC, op, "out");
    const void* x = Act(inp, act, N * C, op, "inp");
    const void* w = Act(weight, act, static_cast<int64_t>(OC) * C, op, "weight");
    const void* b = OptionalAct(bias, act, OC, op, "bias");
    Enter();
    lt_->Forward(ctx_, act, o, x, w, b, /*pre_gelu=*/nullptr, N, C, OC);
  }
  void MatmulGeluForward(View out, View pre_gelu, View inp, View weight, View bias, int64_t N,
                         int C, int OC) override {
    const char* op = "MatmulGeluForward";
    CheckMatmulShape(op, N, C, OC);
    const DType act = ActivationDtype(inp, op, "inp");
    void* o = Act(out, act, N * OC, op, "out");
    void* pre = Act(pre_gelu, act, N * OC, op, "pre_gelu");
    CHECK(!Overlap(o, pre, static_cast<size_t>(N * OC) * DTypeSize(act)))
        << op << ": out and pre_gelu overlap";
    const void* x = Act(inp, act, N * C, op, "inp");
    const void* w = Act(weight, act, static_cast<int64_t>(OC) * C, op, "weight");
    const void* b = OptionalAct(bias, act, OC, op, "bias");
    Enter();
    // bf16: GELU in cuBLASLt's epilogue, saving a pass over [N, OC]. f32: the separate
    // GELU kernel, whose formula is the CPU's (the epilogue's GELU is not held to 1e-5);
    // also the fallback where cuBLASLt has no epilogue algorithm for the shape.
    if (act == DType::kBF16 && lt_->Forward(ctx_, act, o, x, w, b, pre, N, C, OC)) return;
    lt_->Forward(ctx_, act, pre, x, w, b, /*pre_gelu=*/nullptr, N, C, OC);
    cuda::GeluForward(ctx_, act, o, pre, N * OC);
  }
  void MatmulBackward(View dinp, View dweight, View dbias, View dout, View inp, View weight,
                      int64_t N, int C, int OC) override {
    const char* op = "MatmulBackward";
    CheckMatmulShape(op, N, C, OC);
    const DType act = ActivationDtype(inp, op, "inp");
    void* dx = Act(dinp, act, N * C, op, "dinp");
    float* dw = ParamGrad(dweight, static_cast<int64_t>(OC) * C, op, "dweight");
    float* db = OptionalParamGrad(dbias, OC, op, "dbias");
    const void* d = Act(dout, act, N * OC, op, "dout");
    const void* x = Act(inp, act, N * C, op, "inp");
    const void* w = Act(weight, act, static_cast<int64_t>(OC) * C, op, "weight");
    Enter();
    lt_->BackwardInput(ctx_, act, dx, d, w, N, C, OC);
    lt_->BackwardWeight(ctx_, act, dw, d, x, N, C, OC);
    if (db != nullptr) cuda::BiasGradient(ctx_, act, db, d, N, OC);
  }

  // ---- attention ------------------------------------------------------------------------
  void AttentionForward(View out, float* lse, View qkv, int B, int T, int C, int NH) override {
    const char* op = "AttentionForward";
    CheckAttentionShape(op, B, T, C, NH);
    const int64_t BTC = static_cast<int64_t>(B) * T * C;
    const DType act = ActivationDtype(qkv, op, "qkv");
    Act(out, act, BTC, op, "out");
    Act(qkv, act, 3 * BTC, op, "qkv");
    Pointer(lse, static_cast<int64_t>(B) * NH * T, op, "lse");
    Enter();
    cuda::AttentionForward(out, lse, qkv, B, T, C, NH, stream_.get());
  }
  void AttentionBackward(View dqkv, View dout, View qkv, View out, const float* lse, int B,
                         int T, int C, int NH) override {
    const char* op = "AttentionBackward";
    CheckAttentionShape(op, B, T, C, NH);
    const int64_t BTC = static_cast<int64_t>(B) * T * C;
    const DType act = ActivationDtype(qkv, op, "qkv");
    Act(dqkv, act, 3 * BTC, op, "dqkv");
    Act(dout, act, BTC, op, "dout");
    Act(qkv, act, 3 * BTC, op, "qkv");
    Act(out, act, BTC, op, "out");
    Pointer(lse, static_cast<int64_t>(B) * NH * T, op, "lse");
    Enter();
    void* scratch =
        scratch_.Get(cuda::AttentionBackwardScratchBytes(B, T, C, NH), stream_.get());
    cuda::AttentionBackward(dqkv, dout, qkv, out, lse, scratch, B, T, C, NH, stream_.get());
  }

  // ---- elementwise ----------------------------------------------------------------------
  void GeluForward(View out, View inp, int64_t n) override {
    const char* op = "GeluForward";
    CheckNonNegative(op, "n", n);
    const DType act = ActivationDtype(inp, op, "inp");
    void* o = Act(out, act, n, op, "out");
    const void* x = Act(inp, act, n, op, "inp");
    Enter();
    cuda::GeluForward(ctx_, act, o, x, n);
  }
  void GeluBackward(View dinp, View inp, View dout, int64_t n) override {
    const char* op = "GeluBackward";
    CheckNonNegative(op, "n", n);
    const DType act = ActivationDtype(inp, op, "inp");
    void* dx = Act(dinp, act, n, op, "dinp");
    const void* x = Act(inp, act, n, op, "inp");
    const void* d = Act(dout, act, n, op, "dout");
    Enter();
    cuda::GeluBackward(ctx_, act, dx, x, d, n);
  }
  void Add(View out, View a, View b, int64_t n) override {
    const char* op = "Add";
    CheckNonNegative(op, "n", n);
    CheckDtypeIn(out, n, /*allow_f16=*/false, op, "out");
    CheckDtypeIn(a, n, /*allow_f16=*/false, op, "a");
    CheckDtypeIn(b, n, /*allow_f16=*/false, op, "b");
    Enter();
    cuda::Add(ctx_, out, a, b, n);
  }
  void Accumulate(View dst, View src, int64_t n) override {
    const char* op = "Accumulate";
    CheckNonNegative(op, "n", n);
    CheckDtypeIn(dst, n, /*allow_f16=*/false, op, "dst");
    CheckDtypeIn(src, n, /*allow_f16=*/false, op, "src");
    Enter();
    cuda::Accumulate(ctx_, dst, src, n);
  }

  // ---- cross-entropy --------------------------------------------------------------------
  void CrossEntropyForward(float* losses, float* lse, View logits, const int32_t* targets,
                           int64_t N, int V, int Vp) override {
    const char* op = "CrossEntropyForward";
    CheckVocab(op, N, V, Vp);
    const DType act = ActivationDtype(logits, op, "logits");
    const void* x = Act(logits, act, N * Vp, op, "logits");
    Pointer(losses, N, op, "losses");
    Pointer(lse, N, op, "lse");
    Pointer(targets, N, op, "targets");
    Enter();
    cuda::CrossEntropyForward(ctx_, act, losses, lse, x, targets, N, V, Vp);
  }
  void CrossEntropyBackward(View dlogits, View logits, const float* lse,
                            const int32_t* targets, float dloss, int64_t N, int V,
                            int Vp) override {
    const char* op = "CrossEntropyBackward";
    CheckVocab(op, N, V, Vp);
    const DType act = ActivationDtype(logits, op, "logits");
    void* dx = Act(dlogits, act, N * Vp, op, "dlogits");
    const void* x = Act(logits, act, N * Vp, op, "logits");
    Pointer(lse, N, op, "lse");
    Pointer(targets, N, op, "targets");
    Enter();
    cuda::CrossEntropyBackward(ctx_, act, dx, x, lse, targets, dloss, N, V, Vp);
  }

  // ---- optimizer ------------------------------------------------------------------------
  void AdamW(View param, View grad, float* m, float* v, View param_copy, int64_t n,
             const AdamWParams& p) override {
    const char* op = "AdamW";
    CheckNonNegative(op, "n", n);
    float* w = F32(param, n, op, "param");
    CheckDtypeIn(grad, n, /*allow_f16=*/true, op, "grad");
    Pointer(m, n, op, "m");
    Pointer(v, n, op, "v");
    if (!param_copy.empty()) CheckDtypeIn(param_copy, n, /*allow_f16=*/true, op, "param_copy");
    CHECK(p.step >= 1) << op << ": step is 1-based, got " << p.step;
    Enter();
    cuda::AdamW(ctx_, w, grad, m, v, param_copy, n, p);
  }
  void SumSquares(float* out, View x, int64_t n) override {
    const char* op = "SumSquares";
    CheckNonNegative(op, "n", n);
    Pointer(out, 1, op, "out");
    CheckDtypeIn(x, n, /*allow_f16=*/true, op, "x");
    Enter();
    cuda::SumSquares(ctx_, out, x, n);
  }
  void Cast(View out, View in, int64_t n) override {
    const char* op = "Cast";
    CheckNonNegative(op, "n", n);
    CheckDtypeIn(out, n, /*allow_f16=*/true, op, "out");
    CheckDtypeIn(in, n, /*allow_f16=*/true, op, "in");
    Enter();
    cuda::Cast(ctx_, out, in, n);
  }

 private:
  CudaBackend(int device, std::string description, Stream stream,
              std::unique_ptr<cuda::CublasLt> lt, int num_sms)
      : device_(device),
        description_(std::move(description)),
        stream_(std::move(stream)),
        lt_(std::move(lt)) {
    ctx_.stream = stream_.get();
    ctx_.num_sms = num_sms;
    ctx_.scratch = &scratch_;
  }

  // Makes this backend's GPU current for the calling thread (cheap when it already is).
  void Enter() const { COLOSSUS_CUDA_CHECK(cudaSetDevice(device_)); }
  // Memory calls and synchronizes cannot be part of a graph (backend.h, "Graphs"); CUDA
  // would fail them with an error less clear than this.
  void NotCapturing(const char* call) const {
    CHECK(!capturing_) << "cuda:" << device_ << ": " << call << " while capturing an op graph";
  }

  static void CheckMatmulShape(const char* op, int64_t N, int C, int OC) {
    CheckNonNegative(op, "N", N);
    CheckNonNegative(op, "C", C);
    CheckNonNegative(op, "OC", OC);
  }

  const int device_;
  const std::string description_;
  Stream stream_;
  // Destroyed before the stream (members die in reverse order): the plans and the
  // workspace may be in use by work on it until the device is synchronized.
  std::unique_ptr<cuda::CublasLt> lt_;
  cuda::DeviceScratch scratch_;
  LaunchContext ctx_;
  bool capturing_ = false;

};

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(int device) {
  int count = 0;
  const cudaError_t count_error = cudaGetDeviceCount(&count);
  if (count_error != cudaSuccess) {
    cudaGetLastError();  // leave no error behind for the process's later CUDA calls
    // Whatever the code, no device count means no usable GPU here.
    return absl::UnavailableError(
        cuda::CudaErrorStatus(count_error, "cudaGetDeviceCount(&count)", __FILE__, __LINE__)
            .message());
  }
  if (count == 0) return absl::UnavailableError("cudaGetDeviceCount: no CUDA device");
  if (device < 0 || device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("cuda:", device, " asked for, but this machine has ", count, " GPU(s)"));
  }
  COLOSSUS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  cudaDeviceProp prop{};
  COLOSSUS_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device));
  int runtime_version = 0, driver_version = 0;
  COLOSSUS_CUDA_RETURN_IF_ERROR(cudaRuntimeGetVersion(&runtime_version));
  COLOSSUS_CUDA_RETURN_IF_ERROR(cudaDriverGetVersion(&driver_version));
  cudaStream_t raw_stream = nullptr;
  // Non-blocking: the legacy default stream (which other code in the process may use
  // implicitly) must not serialize with our ops.
  COLOSSUS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&raw_stream, cudaStreamNonBlocking));
  Stream stream(raw_stream);
  absl::StatusOr<std::unique_ptr<cuda::CublasLt>> lt = cuda::CublasLt::Create();
  if (!lt.ok()) return lt.status();
  std::string description = absl::StrFormat(
      "cuda:%d (%s, sm_%d%d, %d SMs, %.1f GiB, CUDA runtime %d.%d, driver %d.%d, cuBLASLt %d)",
      device, prop.name, prop.major, prop.minor, prop.multiProcessorCount,
      static_cast<double>(prop.totalGlobalMem) / (1 << 30), runtime_version / 1000,
      runtime_version % 1000 / 10, driver_version / 1000, driver_version % 1000 / 10,
      static_cast<int>(cublasLtGetVersion()));
  return std::unique_ptr<CudaBackend>(new CudaBackend(
      device, std::move(description), std::move(stream), *std::move(lt),
      prop.multiProcessorCount));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(int device) {
  absl::StatusOr<std::unique_ptr<CudaBackend>> backend = CudaBackend::Create(device);
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<Backend>(*std::move(backend));
}

void* CudaStreamOf(const Backend& backend) {
  const auto* cuda_backend = dynamic_cast<const CudaBackend*>(&backend);
  CHECK(cuda_backend != nullptr) << "CudaStreamOf: the backend is " << backend.Describe()
                                 << ", not one made by MakeCudaBackend";
  return cuda_backend->stream();
}

}  // namespace colossus::kernels
