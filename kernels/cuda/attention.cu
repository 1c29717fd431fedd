// Argument checks and the choice between the flash kernels and the reference kernels
// (see attention.h for the contract).
#include "cuda/attention.h"

#include <cstdint>

#include "colossus/check.h"
#include "cuda/attention_internal.cuh"

namespace colossus::kernels::cuda {
namespace {

using attn::bf16;

void CheckShape(const char* op, int B, int T, int C, int NH) {
  CHECK(B >= 0 && T >= 0 && C >= 0 && NH > 0 && C % NH == 0)
      << op << ": bad shape B=" << B << " T=" << T << " C=" << C << " NH=" << NH
      << " (need non-negative sizes and NH > 0 dividing C)";
  CHECK(C / NH <= attn::kRefMaxHeadSize || C == 0)
      << op << ": head size " << C / NH << " > " << attn::kRefMaxHeadSize
      << " is not implemented on CUDA";
}

void CheckView(const char* op, const char* arg, const View& v, DType dtype, int64_t need) {
  CHECK(need == 0 || v.data != nullptr) << op << ": " << arg << " is absent (null data)";
  CHECK(v.dtype == dtype) << op << ": " << arg << " has dtype " << DTypeName(v.dtype)
                          << ", expected " << DTypeName(dtype) << " like the other views";
  CHECK(v.numel >= need) << op << ": " << arg << " has " << v.numel << " elements, the op needs "
                         << need;
}

// Scratch layout: dq_accum [B,T,C] f32, then delta [B,NH,T] f32, each 256-byte aligned.
size_t RoundUp256(size_t n) { return (n + 255) / 256 * 256; }
size_t DqAccumBytes(int B, int T, int C) {
  return RoundUp256(static_cast<size_t>(B) * T * C * sizeof(float));
}

}  // namespace

void AttentionForward(View out, float* lse, View qkv, int B, int T, int C, int NH, cudaStream_t s) {
  const char* op = "AttentionForward";
  CheckShape(op, B, T, C, NH);
  const int64_t BTC = static_cast<int64_t>(B) * T * C;
  CHECK(qkv.dtype == DType::kBF16 || qkv.dtype == DType::kF32)
      << op << ": qkv has dtype " << DTypeName(qkv.dtype) << "; CUDA attention takes bf16 or f32";
  CheckView(op, "qkv", qkv, qkv.dtype, 3 * BTC);
  CheckView(op, "out", out, qkv.dtype, BTC);
  CHECK(BTC == 0 || lse != nullptr) << op << ": lse is null";
  if (BTC == 0) return;
  const int hs = C / NH;
  if (attn::UsesFlash(qkv.dtype, hs, {out.data, qkv.data})) {
    if (hs == 64) {
      attn::LaunchFlashForward<64>(out.as<bf16>(), lse, qkv.as<bf16>(), B, T, NH, s);
    } else {
      attn::LaunchFlashForward<128>(out.as<bf16>(), lse, qkv.as<bf16>(), B, T, NH, s);
    }
  } else if (qkv.dtype == DType::kBF16) {
    attn::LaunchReferenceForward<bf16>(out.as<bf16>(), lse, qkv.as<bf16>(), B, T, NH, hs, s);
  } else {
    attn::LaunchReferenceForward<float>(out.as<float>(), lse, qkv.as<float>(), B, T, NH, hs, s);
  }
}

size_t AttentionBackwardScratchBytes(int B, int T, int C, int NH) {
  CheckShape("AttentionBackwardScratchBytes", B, T, C, NH);
  return DqAccumBytes(B, T, C) + RoundUp256(static_cast<size_t>(B) * NH * T * sizeof(float));
}

void AttentionBackward(View dqkv, View dout, View qkv, View out, const float* lse, void* scratch,
                       int B, int T, int C, int NH, cudaStream_t s) {
  const char* op = "AttentionBackward";
  CheckShape(op, B, T, C, NH);
  const int64_t BTC = static_cast<int64_t>(B) * T * C;
  const DType dt = qkv.dtype;
  CHECK(dt == DType::kBF16 || dt == DType::kF32)
      << op << ": qkv has dtype " << DTypeName(dt) << "; CUDA attention takes bf16 or f32";
  CheckView(op, "dqkv", dqkv, dt, 3 * BTC);
  CheckView(op, "dout", dout, dt, BTC);
  CheckView(op, "qkv", qkv, dt, 3 * BTC);
  CheckView(op, "out", out, dt, BTC);
  CHECK(BTC == 0 || lse != nullptr) << op << ": lse is null";
  CHECK(BTC == 0 || scratch != nullptr) << op << ": scratch is null";
  CHECK(attn::Aligned16(scratch)) << op << ": scratch must be 16-byte aligned";
  if (BTC == 0) return;
  const int hs = C / NH;
  float* dq_accum = static_cast<float*>(scratch);
  float* delta = reinterpret_cast<float*>(static_cast<char*>(scratch) + DqAccumBytes(B, T, C));
  if (attn::UsesFlash(dt, hs, {dqkv.data, dout.data, qkv.data, out.data})) {
    if (hs == 64) {
      attn::LaunchFlashBackward<64>(dqkv.as<bf16>(), dout.as<bf16>(), qkv.as<bf16>(),
                                    out.as<bf16>(), lse, dq_accum, delta, B, T, NH, s);
    } else {
      attn::LaunchFlashBackward<128>(dqkv.as<bf16>(), dout.as<bf16>(), qkv.as<bf16>(),
                                     out.as<bf16>(), lse, dq_accum, delta, B, T, NH, s);
    }
  } else if (dt == DType::kBF16) {
    attn::LaunchReferenceBackward<bf16>(dqkv.as<bf16>(), dout.as<bf16>(), qkv.as<bf16>(),
                                        out.as<bf16>(), lse, delta, B, T, NH, hs, s);
  } else {
    attn::LaunchReferenceBackward<float>(dqkv.as<float>(), dout.as<float>(), qkv.as<float>(),
                                         out.as<float>(), lse, delta, B, T, NH, hs, s);
  }
}

}  // namespace colossus::kernels::cuda
