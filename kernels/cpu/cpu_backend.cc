// CpuBackend: kernels::Backend on the host. It checks every View (dtype, size,
// presence), pins the OpenMP thread count for the op, and runs the float
// instantiation of the ops in ops.h; the dtype-generic ops go to convert.h.
#include <cblas.h>
#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "colossus/check.h"
#include "colossus/kernels/backend.h"
#include "common/arg_checks.h"
#include "cpu/convert.h"
#include "cpu/ops.h"

namespace colossus::kernels {
namespace {

using internal::CheckAttentionShape;
using internal::CheckNonNegative;
using internal::CheckPresentAndLong;
using internal::CheckVocab;
using internal::Pointer;
using internal::TableRows;

// Sets the OpenMP thread count (which the OpenMP build of OpenBLAS follows too) for
// the duration of one op and restores the calling thread's own setting afterwards, so
// two backends with different counts can take turns on one thread.
class ThreadScope {
 public:
  explicit ThreadScope(int threads) : threads_(threads), saved_(omp_get_max_threads()) {
    if (threads_ > 0) omp_set_num_threads(threads_);
  }
  ~ThreadScope() {
    if (threads_ > 0) omp_set_num_threads(saved_);
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int threads_;
  int saved_;
};

// ---- argument checks: each names the op and the argument -----------------------------

// `v` as float*, after checking that it is f32, present, and holds at least `need`
// elements (a view may be longer than the op uses, e.g. wpe for T < maxT).
float* F32(const View& v, int64_t need, const char* op, const char* arg) {
  CHECK(need == 0 || v.data != nullptr) << op << ": " << arg << " is absent (null data)";
  CHECK(v.empty() || v.dtype == DType::kF32)
      << op << ": " << arg << " has dtype " << DTypeName(v.dtype)
      << ", but the CPU backend computes in f32";
  CheckPresentAndLong(v, need, op, arg);
  return v.as<float>();
}

// As F32, for an argument the op allows to be absent: nullptr when it is.
float* OptionalF32(const View& v, int64_t need, const char* op, const char* arg) {
  return v.empty() ? nullptr : F32(v, need, op, arg);
}

// Float views of any float dtype (gradients, parameter copies): present and long enough.
void CheckAnyFloat(const View& v, int64_t need, const char* op, const char* arg) {
  CHECK(need == 0 || v.data != nullptr) << op << ": " << arg << " is absent (null data)";
  CHECK(v.empty() || v.dtype != DType::kI32)
      << op << ": " << arg << " has dtype i32, expected a float dtype";
  CheckPresentAndLong(v, need, op, arg);
}

void CheckTokens(const char* op, const int32_t* tokens, int64_t n, int64_t Vp) {
  Pointer(tokens, n, op, "tokens");
  for (int64_t i = 0; i < n; ++i) {
    CHECK(tokens[i] >= 0 && tokens[i] < Vp)
        << op << ": tokens[" << i << "] = " << tokens[i] << " is outside [0, Vp = " << Vp
        << ")";
  }
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : threads_(threads) {
    CHECK(threads >= 0) << "MakeCpuBackend: threads = " << threads << " is negative";
  }

  DeviceKind kind() const override { return DeviceKind::kCPU; }
  DType compute_dtype() const override { return DType::kF32; }

  std::string Describe() const override {
    // openblas_get_config() reads "OpenBLAS 0.3.21 DYNAMIC_ARCH ...": keep name and version.
    std::istringstream config(openblas_get_config());
    std::string name, version;
    config >> name >> version;
    const int threads = threads_ > 0 ? threads_ : omp_get_max_threads();
    return absl::StrCat("cpu (", threads, " threads, ", name, " ", version, ", ",
                        openblas_get_corename(), " kernels)");
  }

  // ---- memory -------------------------------------------------------------------------
  absl::StatusOr<void*> Allocate(size_t bytes) override {
    constexpr size_t kAlign = 256;
    // aligned_alloc wants a multiple of the alignment; zero bytes still get a unique,
    // freeable pointer.
    const size_t rounded = bytes == 0 ? kAlign : (bytes + kAlign - 1) / kAlign * kAlign;
    if (rounded < bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("cpu: cannot allocate ", bytes, " bytes"));
    }
    void* p = std::aligned_alloc(kAlign, rounded);
    if (p == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cpu: out of host memory allocating ", bytes, " bytes"));
    }
    return p;
  }
  void Free(void* ptr) override { std::free(ptr); }
  void CopyToHost(void* host_dst, const void* src, size_t bytes) override {
    if (bytes > 0) std::memcpy(host_dst, src, bytes);
  }
  void CopyFromHost(void* dst, const void* host_src, size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, host_src, bytes);
  }
  void Copy(void* dst, const void* src, size_t bytes) override {
    // memmove: a caller copying within one buffer may overlap.
    if (bytes > 0) std::memmove(dst, src, bytes);
  }
  void Fill(View x, float value) override {
    CHECK(x.numel == 0 || x.data != nullptr) << "Fill: x is absent (null data)";
    ThreadScope scope(threads_);
    cpu::Fill(x, value);
  }
  void Synchronize() override {}  // every op has completed when it returns

  // ---- embedding ------------------------------------------------------------------------
  void EmbeddingForward(View out, const int32_t* tokens, View wte, View wpe, int B, int T,
                        int C) override {
    const char* op = "EmbeddingForward";
    CheckNonNegative(op, "B", B);
    CheckNonNegative(op, "T", T);
    CheckNonNegative(op, "C", C);
    const int64_t BT = static_cast<int64_t>(B) * T;
    const int64_t Vp = TableRows(wte, C, op);
    float* o = F32(out, BT * C, op, "out");
    const float* w = F32(wte, Vp * C, op, "wte");
    const float* p = F32(wpe, static_cast<int64_t>(T) * C, op, "wpe");
    CheckTokens(op, tokens, BT, Vp);
    ThreadScope scope(threads_);
    cpu::EmbeddingForward(o, tokens, w, p, B, T, C);
  }
  void EmbeddingBackward(View dwte, View dwpe, View dout, const int32_t* tokens, int B, int T,
                         int C) override {
    const char* op = "EmbeddingBackward";
    CheckNonNegative(op, "B", B);
    CheckNonNegative(op, "T", T);
    CheckNonNegative(op, "C", C);
    const int64_t BT = static_cast<int64_t>(B) * T;
    const int64_t Vp = TableRows(dwte, C, op);
    float* dw = F32(dwte, Vp * C, op, "dwte");
    float* dp = F32(dwpe, static_cast<int64_t>(T) * C, op, "dwpe");
    const float* d = F32(dout, BT * C, op, "dout");
    CheckTokens(op, tokens, BT, Vp);
    ThreadScope scope(threads_);
    cpu::EmbeddingBackward(dw, dp, d, tokens, B, T, C);
  }

  // ---- layernorm ------------------------------------------------------------------------
  void LayerNormForward(View out, float* mean, float* rstd, View inp, View weight, View bias,
                        int64_t N, int C) override {
    const char* op = "LayerNormForward";
    CheckNonNegative(op, "N", N);
    CheckNonNegative(op, "C", C);
    const int64_t NC = N * C;
    float* o = F32(out, NC, op, "out");
    const float* x = F32(inp, NC, op, "inp");
    const float* w = F32(weight, C, op, "weight");
    const float* b = F32(bias, C, op, "bias");
    Pointer(mean, N, op, "mean");
    Pointer(rstd, N, op, "rstd");
    ThreadScope scope(threads_);
    cpu::LayerNormForward(o, mean, rstd, x, w, b, N, C);
  }
  void LayerNormBackward(View dinp, View dweight, View dbias, View dout, View inp,
                         View weight, const float* mean, const float* rstd, int64_t N,
                         int C) override {
    const char* op = "LayerNormBackward";
    CheckNonNegative(op, "N", N);
    CheckNonNegative(op, "C", C);
    const int64_t NC = N * C;
    float* dx = F32(dinp, NC, op, "dinp");
    float* dw = F32(dweight, C, op, "dweight");
    float* db = F32(dbias, C, op, "dbias");
    const float* d = F32(dout, NC, op, "dout");
    const float* x = F32(inp, NC, op, "inp");
    const float* w = F32(weight, C, op, "weight");
    Pointer(mean, N, op, "mean");
    Pointer(rstd, N, op, "rstd");
    ThreadScope scope(threads_);
    cpu::LayerNormBackward(dx, dw, db, d, x, w, mean, rstd, N, C);
  }

  // The fused forward is the two reference ops in sequence: the CPU gains nothing from
  // fusing, and the composition is what the CUDA kernel is checked against.
  void ResidualLayerNormForward(View residual, View out, float* mean, float* rstd, View a,
                                View b, View weight, View bias, int64_t N, int C) override {
    const char* op = "ResidualLayerNormForward";
    CheckNonNegative(op, "N", N);
    CheckNonNegative(op, "C", C);
    const int64_t NC = N * C;
    float* r = F32(residual, NC, op, "residual");
    float* o = F32(out, NC, op, "out");
    const float* x = F32(a, NC, op, "a");
    const float* y = F32(b, NC, op, "b");
    const float* w = F32(weight, C, op, "weight");
    const float* bb = F32(bias, C, op, "bias");
    Pointer(mean, N, op, "mean");
    Pointer(rstd, N, op, "rstd");
    ThreadScope scope(threads_);
    cpu::Add(r, x, y, NC);
    cpu::LayerNormForward(o, mean, rstd, r, w, bb, N, C);
  }

  // ---- matmul ---------------------------------------------------------------------------
  void MatmulForward(View out, View inp, View weight, View bias, int64_t N, int C,
                     int OC) override {
    const char* op = "MatmulForward";
    CheckNonNegative(op, "N", N);
    CheckNonNegative(op, "C", C);
    CheckNonNegative(op, "OC", OC);
    float* o = F32(out, N * OC, op, "out");
    const float* x = F32(inp, N * C, op, "inp");
    const float* w = F32(weight, static_cast<int64_t>(OC) * C, op, "weight");
    const float* b = OptionalF32(bias, OC, op, "bias");
    ThreadScope scope(threads_);
    cpu::MatmulForward(o, x, w, b, N, C, OC);
  }
  void MatmulGeluForward(View out, View pre_gelu, View inp, View weight, View bias, int64_t N,
                         int C, int OC) override {
    const char* op = "MatmulGeluForward";
    CheckNonNegative(op, "N", N);
    CheckNonNegative(op, "C", C);
    CheckNonNegative(op, "OC", OC);
    float* o = F32(out, N * OC, op, "out");
    float* pre = F32(pre_gelu, N * OC, op, "pre_gelu");
    const uintptr_t o_begin = reinterpret_cast<uintptr_t>(o);
    const uintptr_t pre_begin = reinterpret_cast<uintptr_t>(pre);
    const uintptr_t bytes = static_cast<uintptr_t>(N * OC) * sizeof(float);
    CHECK(bytes == 0 || o_begin + bytes <= pre_begin || pre_begin + bytes <= o_begin)
        << op << ": out and pre_gelu overlap";
    const float* x = F32(inp, N * C, op, "inp");
    const float* w = F32(weight, static_cast<int64_t>(OC) * C, op, "weight");
    const float* b = OptionalF32(bias, OC, op, "bias");
    ThreadScope scope(threads_);
    cpu::MatmulForward(pre, x, w, b, N, C, OC);
    cpu::GeluForward(o, pre, N * OC);
  }
  void MatmulBackward(View dinp, View dweight, View dbias, View dout, View inp, View weight,
                      int64_t N, int C, int OC) override {
    const char* op = "MatmulBackward";
    CheckNonNegative(op, "N", N);
    CheckNonNegative(op, "C", C);
    CheckNonNegative(op, "OC", OC);
    float* dx = F32(dinp, N * C, op, "dinp");
    float* dw = F32(dweight, static_cast<int64_t>(OC) * C, op, "dweight");
    float* db = OptionalF32(dbias, OC, op, "dbias");
    const float* d = F32(dout, N * OC, op, "dout");
    const float* x = F32(inp, N * C, op, "inp");
    const float* w = F32(weight, static_cast<int64_t>(OC) * C, op, "weight");
    ThreadScope scope(threads_);
    cpu::MatmulBackward(dx, dw, db, d, x, w, N, C, OC);
  }

  // ---- attention ------------------------------------------------------------------------
  void AttentionForward(View out, float* lse, View qkv, int B, int T, int C, int NH) override {
    const char* op = "AttentionForward";
    CheckAttentionShape(op, B, T, C, NH);
    const int64_t BTC = static_cast<int64_t>(B) * T * C;
    float* o = F32(out, BTC, op, "out");
    const float* x = F32(qkv, 3 * BTC, op, "qkv");
    Pointer(lse, static_cast<int64_t>(B) * NH * T, op, "lse");
    ThreadScope scope(threads_);
    cpu::AttentionForward(o, lse, x, B, T, C, NH);
  }
  void AttentionBackward(View dqkv, View dout, View qkv, View out, const float* lse, int B,
                         int T, int C, int NH) override {
    const char* op = "AttentionBackward";
    CheckAttentionShape(op, B, T, C, NH);
    const int64_t BTC = static_cast<int64_t>(B) * T * C;
    float* dx = F32(dqkv, 3 * BTC, op, "dqkv");
    const float* d = F32(dout, BTC, op, "dout");
    const float* x = F32(qkv, 3 * BTC, op, "qkv");
    const float* o = F32(out, BTC, op, "out");
    Pointer(lse, static_cast<int64_t>(B) * NH * T, op, "lse");
    ThreadScope scope(threads_);
    cpu::AttentionBackward(dx, d, x, o, lse, B, T, C, NH);
  }

  // ---- elementwise ----------------------------------------------------------------------
  void GeluForward(View out, View inp, int64_t n) override {
    const char* op = "GeluForward";
    CheckNonNegative(op, "n", n);
    float* o = F32(out, n, op, "out");
    const float* x = F32(inp, n, op, "inp");
    ThreadScope scope(threads_);
    cpu::GeluForward(o, x, n);
  }
  void GeluBackward(View dinp, View inp, View dout, int64_t n) override {
    const char* op = "GeluBackward";
    CheckNonNegative(op, "n", n);
    float* dx = F32(dinp, n, op, "dinp");
    const float* x = F32(inp, n, op, "inp");
    const float* d = F32(dout, n, op, "dout");
    ThreadScope scope(threads_);
    cpu::GeluBackward(dx, x, d, n);
  }
  void Add(View out, View a, View b, int64_t n) override {
    const char* op = "Add";
    CheckNonNegative(op, "n", n);
    float* o = F32(out, n, op, "out");
    const float* x = F32(a, n, op, "a");
    const float* y = F32(b, n, op, "b");
    ThreadScope scope(threads_);
    cpu::Add(o, x, y, n);
  }
  void Accumulate(View dst, View src, int64_t n) override {
    const char* op = "Accumulate";
    CheckNonNegative(op, "n", n);
    float* d = F32(dst, n, op, "dst");
    const float* s = F32(src, n, op, "src");
    ThreadScope scope(threads_);
    cpu::Accumulate(d, s, n);
  }

  // ---- cross-entropy --------------------------------------------------------------------
  void CrossEntropyForward(float* losses, float* lse, View logits, const int32_t* targets,
                           int64_t N, int V, int Vp) override {
    const char* op = "CrossEntropyForward";
    CheckVocab(op, N, V, Vp);
    const float* x = F32(logits, N * Vp, op, "logits");
    Pointer(losses, N, op, "losses");
    Pointer(lse, N, op, "lse");
    Pointer(targets, N, op, "targets");
    ThreadScope scope(threads_);
    cpu::CrossEntropyForward(losses, lse, x, targets, N, V, Vp);
  }
  void CrossEntropyBackward(View dlogits, View logits, const float* lse,
                            const int32_t* targets, float dloss, int64_t N, int V,
                            int Vp) override {
    const char* op = "CrossEntropyBackward";
    CheckVocab(op, N, V, Vp);
    float* dx = F32(dlogits, N * Vp, op, "dlogits");
    const float* x = F32(logits, N * Vp, op, "logits");
    Pointer(lse, N, op, "lse");
    Pointer(targets, N, op, "targets");
    ThreadScope scope(threads_);
    cpu::CrossEntropyBackward(dx, x, lse, targets, dloss, N, V, Vp);
  }

  // ---- optimizer ------------------------------------------------------------------------
  void AdamW(View param, View grad, float* m, float* v, View param_copy, int64_t n,
             const AdamWParams& p) override {
    const char* op = "AdamW";
    CheckNonNegative(op, "n", n);
    float* w = F32(param, n, op, "param");
    CheckAnyFloat(grad, n, op, "grad");
    Pointer(m, n, op, "m");
    Pointer(v, n, op, "v");
    if (!param_copy.empty()) CheckAnyFloat(param_copy, n, op, "param_copy");
    ThreadScope scope(threads_);
    cpu::VisitFloatType(grad.dtype, op, "grad", [&](auto tag) {
      cpu::AdamW(w, grad.as<const decltype(tag)>(), m, v, n, p);
    });
    if (!param_copy.empty()) cpu::Cast(param_copy, View(w, n), n);
  }
  void SumSquares(float* out, View x, int64_t n) override {
    const char* op = "SumSquares";
    CheckNonNegative(op, "n", n);
    Pointer(out, 1, op, "out");
    CheckAnyFloat(x, n, op, "x");
    ThreadScope scope(threads_);
    // Added in double and rounded once.
    *out = static_cast<float>(static_cast<double>(*out) + cpu::SumSquares(x, n));
  }
  void Cast(View out, View in, int64_t n) override {
    const char* op = "Cast";
    CheckNonNegative(op, "n", n);
    CheckAnyFloat(out, n, op, "out");
    CheckAnyFloat(in, n, op, "in");
    ThreadScope scope(threads_);
    cpu::Cast(out, in, n);
  }

 private:

  const int threads_;  // 0: OpenMP's default
};

}  // namespace

std::unique_ptr<Backend> MakeCpuBackend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace colossus::kernels
