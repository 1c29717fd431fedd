// The CUDA backend's ops (cuda_ops_backend.h): View checks, then the kernels.
#include "cuda/cuda_ops_backend.h"

#include <cmath>
#include <cstdint>

#include "colossus/check.h"
#include "common/arg_checks.h"
#include "cuda/attention.h"

namespace colossus::kernels::cuda {
namespace {

using internal::CheckAttentionShape;
using internal::CheckNonNegative;
using internal::CheckPresentAndLong;
using internal::CheckVocab;
using internal::Overlap;
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
void CheckDtypeIn(const View& v, int64_t need, bool allow_f16, const char* op, const char* arg) {
  CheckPresentAndLong(v, need, op, arg);
  const bool ok = v.empty() || v.dtype == DType::kF32 || v.dtype == DType::kBF16 ||
                  (allow_f16 && v.dtype == DType::kF16);
  CHECK(ok) << op << ": " << arg << " has dtype " << DTypeName(v.dtype)
            << ", but the CUDA backend takes " << (allow_f16 ? "f32, bf16 or f16" : "f32 or bf16")
            << " here";
}

void CheckMatmulShape(const char* op, int64_t N, int C, int OC) {
  CheckNonNegative(op, "N", N);
  CheckNonNegative(op, "C", C);
  CheckNonNegative(op, "OC", OC);
}

}  // namespace

void CudaOpsBackend::Fill(View x, float value) {
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

// ---- embedding ------------------------------------------------------------------------
void CudaOpsBackend::EmbeddingForward(View out, const int32_t* tokens, View wte, View wpe, int B,
                                      int T, int C) {
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

void CudaOpsBackend::EmbeddingBackward(View dwte, View dwpe, View dout, const int32_t* tokens,
                                       int B, int T, int C) {
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
void CudaOpsBackend::LayerNormForward(View out, float* mean, float* rstd, View inp, View weight,
                                      View bias, int64_t N, int C) {
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
  cuda::LayerNormForward(ctx_, act, o, mean, rstd, /*residual=*/nullptr, x, nullptr, w, b, N, C);
}

void CudaOpsBackend::LayerNormBackward(View dinp, View dweight, View dbias, View dout, View inp,
                                       View weight, const float* mean, const float* rstd, int64_t N,
                                       int C) {
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

void CudaOpsBackend::ResidualLayerNormForward(View residual, View out, float* mean, float* rstd,
                                              View a, View b, View weight, View bias, int64_t N,
                                              int C) {
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
void CudaOpsBackend::MatmulForward(View out, View inp, View weight, View bias, int64_t N, int C,
                                   int OC) {
  const char* op = "MatmulForward";
  CheckMatmulShape(op, N, C, OC);
  const DType act = ActivationDtype(inp, op, "inp");
  void* o = Act(out, act, N * OC, op, "out");
  const void* x = Act(inp, act, N * C, op, "inp");
  const void* w = Act(weight, act, static_cast<int64_t>(OC) * C, op, "weight");
  const void* b = OptionalAct(bias, act, OC, op, "bias");
  Enter();
  GemmForward(act, o, x, w, b, /*pre_gelu=*/nullptr, N, C, OC);
}

void CudaOpsBackend::MatmulGeluForward(View out, View pre_gelu, View inp, View weight, View bias,
                                       int64_t N, int C, int OC) {
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
  if (act == DType::kBF16 && GemmForward(act, o, x, w, b, pre, N, C, OC)) return;
  GemmForward(act, pre, x, w, b, /*pre_gelu=*/nullptr, N, C, OC);
  cuda::GeluForward(ctx_, act, o, pre, N * OC);
}

void CudaOpsBackend::MatmulBackward(View dinp, View dweight, View dbias, View dout, View inp,
                                    View weight, int64_t N, int C, int OC) {
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
  GemmBackwardInput(act, dx, d, w, N, C, OC);
  GemmBackwardWeight(act, dw, d, x, N, C, OC);
  if (db != nullptr) cuda::BiasGradient(ctx_, act, db, d, N, OC);
}

// ---- attention ------------------------------------------------------------------------
void CudaOpsBackend::AttentionForward(View out, float* lse, View qkv, int B, int T, int C, int NH) {
  const char* op = "AttentionForward";
  CheckAttentionShape(op, B, T, C, NH);
  const int64_t BTC = static_cast<int64_t>(B) * T * C;
  const DType act = ActivationDtype(qkv, op, "qkv");
  Act(out, act, BTC, op, "out");
  Act(qkv, act, 3 * BTC, op, "qkv");
  Pointer(lse, static_cast<int64_t>(B) * NH * T, op, "lse");
  Enter();
  cuda::AttentionForward(out, lse, qkv, B, T, C, NH, ctx_.stream);
}

void CudaOpsBackend::AttentionBackward(View dqkv, View dout, View qkv, View out, const float* lse,
                                       int B, int T, int C, int NH) {
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
  void* scratch = scratch_.Get(cuda::AttentionBackwardScratchBytes(B, T, C, NH), ctx_.stream);
  cuda::AttentionBackward(dqkv, dout, qkv, out, lse, scratch, B, T, C, NH, ctx_.stream);
}

// ---- elementwise ----------------------------------------------------------------------
void CudaOpsBackend::GeluForward(View out, View inp, int64_t n) {
  const char* op = "GeluForward";
  CheckNonNegative(op, "n", n);
  const DType act = ActivationDtype(inp, op, "inp");
  void* o = Act(out, act, n, op, "out");
  const void* x = Act(inp, act, n, op, "inp");
  Enter();
  cuda::GeluForward(ctx_, act, o, x, n);
}

void CudaOpsBackend::GeluBackward(View dinp, View inp, View dout, int64_t n) {
  const char* op = "GeluBackward";
  CheckNonNegative(op, "n", n);
  const DType act = ActivationDtype(inp, op, "inp");
  void* dx = Act(dinp, act, n, op, "dinp");
  const void* x = Act(inp, act, n, op, "inp");
  const void* d = Act(dout, act, n, op, "dout");
  Enter();
  cuda::GeluBackward(ctx_, act, dx, x, d, n);
}

void CudaOpsBackend::Add(View out, View a, View b, int64_t n) {
  const char* op = "Add";
  CheckNonNegative(op, "n", n);
  CheckDtypeIn(out, n, /*allow_f16=*/false, op, "out");
  CheckDtypeIn(a, n, /*allow_f16=*/false, op, "a");
  CheckDtypeIn(b, n, /*allow_f16=*/false, op, "b");
  Enter();
  cuda::Add(ctx_, out, a, b, n);
}

void CudaOpsBackend::Accumulate(View dst, View src, int64_t n) {
  const char* op = "Accumulate";
  CheckNonNegative(op, "n", n);
  CheckDtypeIn(dst, n, /*allow_f16=*/false, op, "dst");
  CheckDtypeIn(src, n, /*allow_f16=*/false, op, "src");
  Enter();
  cuda::Accumulate(ctx_, dst, src, n);
}

// ---- cross-entropy --------------------------------------------------------------------
void CudaOpsBackend::CrossEntropyForward(float* losses, float* lse, View logits,
                                         const int32_t* targets, int64_t N, int V, int Vp) {
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

void CudaOpsBackend::CrossEntropyBackward(View dlogits, View logits, const float* lse,
                                          const int32_t* targets, float dloss, int64_t N, int V,
                                          int Vp) {
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
void CudaOpsBackend::AdamW(View param, View grad, float* m, float* v, View param_copy, int64_t n,
                           const AdamWParams& p) {
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

void CudaOpsBackend::SumSquares(float* out, View x, int64_t n) {
  const char* op = "SumSquares";
  CheckNonNegative(op, "n", n);
  Pointer(out, 1, op, "out");
  CheckDtypeIn(x, n, /*allow_f16=*/true, op, "x");
  Enter();
  cuda::SumSquares(ctx_, out, x, n);
}

void CudaOpsBackend::Cast(View out, View in, int64_t n) {
  const char* op = "Cast";
  CheckNonNegative(op, "n", n);
  CheckDtypeIn(out, n, /*allow_f16=*/true, op, "out");
  CheckDtypeIn(in, n, /*allow_f16=*/true, op, "in");
  Enter();
  cuda::Cast(ctx_, out, in, n);
}

}  // namespace colossus::kernels::cuda
