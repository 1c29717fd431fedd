// ForwardingBackend: every op as a closure through Dispatch (forwarding_backend.h).
#include "colossus/kernels/forwarding_backend.h"

#include <utility>

#include "colossus/check.h"

namespace colossus::kernels {
namespace {

constexpr const char* kOpNames[ForwardingBackend::kNumOps] = {
    "CopyToHost",
    "CopyFromHost",
    "Copy",
    "Fill",
    "EmbeddingForward",
    "EmbeddingBackward",
    "LayerNormForward",
    "LayerNormBackward",
    "ResidualLayerNormForward",
    "MatmulForward",
    "MatmulGeluForward",
    "MatmulBackward",
    "AttentionForward",
    "AttentionBackward",
    "GeluForward",
    "GeluBackward",
    "Add",
    "Accumulate",
    "CrossEntropyForward",
    "CrossEntropyBackward",
    "AdamW",
    "SumSquares",
    "Cast",
};

}  // namespace

const char* ForwardingBackend::OpName(Op op) {
  return op < kNumOps ? kOpNames[op] : "?";
}

ForwardingBackend::ForwardingBackend(Backend* inner) : inner_(inner) {
  CHECK(inner_ != nullptr) << "ForwardingBackend: no inner backend";
}

void ForwardingBackend::Dispatch(Op, std::function<void()> call) { call(); }

void ForwardingBackend::CopyToHost(void* host_dst, const void* src, size_t bytes) {
  Dispatch(kCopyToHost, [=, be = inner_] { be->CopyToHost(host_dst, src, bytes); });
}
void ForwardingBackend::CopyFromHost(void* dst, const void* host_src, size_t bytes) {
  Dispatch(kCopyFromHost, [=, be = inner_] { be->CopyFromHost(dst, host_src, bytes); });
}
void ForwardingBackend::Copy(void* dst, const void* src, size_t bytes) {
  Dispatch(kCopy, [=, be = inner_] { be->Copy(dst, src, bytes); });
}
void ForwardingBackend::Fill(View x, float value) {
  Dispatch(kFill, [=, be = inner_] { be->Fill(x, value); });
}
void ForwardingBackend::EmbeddingForward(View out, const int32_t* tokens, View wte, View wpe, int B,
                                         int T, int C) {
  Dispatch(kEmbeddingForward, [=, be = inner_] {
    be->EmbeddingForward(out, tokens, wte, wpe, B, T, C);
  });
}
void ForwardingBackend::EmbeddingBackward(View dwte, View dwpe, View dout, const int32_t* tokens,
                                          int B, int T, int C) {
  Dispatch(kEmbeddingBackward, [=, be = inner_] {
    be->EmbeddingBackward(dwte, dwpe, dout, tokens, B, T, C);
  });
}
void ForwardingBackend::LayerNormForward(View out, float* mean, float* rstd, View inp, View weight,
                                         View bias, int64_t N, int C) {
  Dispatch(kLayerNormForward, [=, be = inner_] {
    be->LayerNormForward(out, mean, rstd, inp, weight, bias, N, C);
  });
}
void ForwardingBackend::LayerNormBackward(View dinp, View dweight, View dbias, View dout, View inp,
                                          View weight, const float* mean, const float* rstd,
                                          int64_t N, int C) {
  Dispatch(kLayerNormBackward, [=, be = inner_] {
    be->LayerNormBackward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  });
}
void ForwardingBackend::ResidualLayerNormForward(View residual, View out, float* mean, float* rstd,
                                                 View a, View b, View weight, View bias, int64_t N,
                                                 int C) {
  Dispatch(kResidualLayerNormForward, [=, be = inner_] {
    be->ResidualLayerNormForward(residual, out, mean, rstd, a, b, weight, bias, N, C);
  });
}
void ForwardingBackend::MatmulForward(View out, View inp, View weight, View bias, int64_t N, int C,
                                      int OC) {
  Dispatch(kMatmulForward, [=, be = inner_] {
    be->MatmulForward(out, inp, weight, bias, N, C, OC);
  });
}
void ForwardingBackend::MatmulGeluForward(View out, View pre_gelu, View inp, View weight, View bias,
                                          int64_t N, int C, int OC) {
  Dispatch(kMatmulGeluForward, [=, be = inner_] {
    be->MatmulGeluForward(out, pre_gelu, inp, weight, bias, N, C, OC);
  });
}
void ForwardingBackend::MatmulBackward(View dinp, View dweight, View dbias, View dout, View inp,
                                       View weight, int64_t N, int C, int OC) {
  Dispatch(kMatmulBackward, [=, be = inner_] {
    be->MatmulBackward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
  });
}
void ForwardingBackend::AttentionForward(View out, float* lse, View qkv, int B, int T, int C,
                                         int NH) {
  Dispatch(kAttentionForward, [=, be = inner_] {
    be->AttentionForward(out, lse, qkv, B, T, C, NH);
  });
}
void ForwardingBackend::AttentionBackward(View dqkv, View dout, View qkv, View out,
                                          const float* lse, int B, int T, int C, int NH) {
  Dispatch(kAttentionBackward, [=, be = inner_] {
    be->AttentionBackward(dqkv, dout, qkv, out, lse, B, T, C, NH);
  });
}
void ForwardingBackend::GeluForward(View out, View inp, int64_t n) {
  Dispatch(kGeluForward, [=, be = inner_] { be->GeluForward(out, inp, n); });
}
void ForwardingBackend::GeluBackward(View dinp, View inp, View dout, int64_t n) {
  Dispatch(kGeluBackward, [=, be = inner_] { be->GeluBackward(dinp, inp, dout, n); });
}
void ForwardingBackend::Add(View out, View a, View b, int64_t n) {
  Dispatch(kAdd, [=, be = inner_] { be->Add(out, a, b, n); });
}
void ForwardingBackend::Accumulate(View dst, View src, int64_t n) {
  Dispatch(kAccumulate, [=, be = inner_] { be->Accumulate(dst, src, n); });
}
void ForwardingBackend::CrossEntropyForward(float* losses, float* lse, View logits,
                                            const int32_t* targets, int64_t N, int V, int Vp) {
  Dispatch(kCrossEntropyForward, [=, be = inner_] {
    be->CrossEntropyForward(losses, lse, logits, targets, N, V, Vp);
  });
}
void ForwardingBackend::CrossEntropyBackward(View dlogits, View logits, const float* lse,
                                             const int32_t* targets, float dloss, int64_t N, int V,
                                             int Vp) {
  Dispatch(kCrossEntropyBackward, [=, be = inner_] {
    be->CrossEntropyBackward(dlogits, logits, lse, targets, dloss, N, V, Vp);
  });
}
void ForwardingBackend::AdamW(View param, View grad, float* m, float* v, View param_copy, int64_t n,
                              const AdamWParams& p) {
  Dispatch(kAdamW, [=, be = inner_] { be->AdamW(param, grad, m, v, param_copy, n, p); });
}
void ForwardingBackend::SumSquares(float* out, View x, int64_t n) {
  Dispatch(kSumSquares, [=, be = inner_] { be->SumSquares(out, x, n); });
}
void ForwardingBackend::Cast(View out, View in, int64_t n) {
  Dispatch(kCast, [=, be = inner_] { be->Cast(out, in, n); });
}

}  // namespace colossus::kernels
